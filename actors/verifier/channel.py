"""The harness's line to a serving program: JSON lines over a pair of pipes, bounded by the run's deadline, and
the ways a run ends that are not a verdict (timeout, the program gone, too much output)."""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any


class SandboxTimeout(Exception):
    """The run's wall-clock limit passed while the harness waited on it."""


class SandboxClosed(Exception):
    """The program closed its end (exited, crashed or was killed) before answering."""


class OutputLimit(Exception):
    """A reply from the program was larger than max_output_bytes."""


class Channel:
    """JSON lines to and from a program started by `Sandbox.serve`, bounded by the run's deadline (or a shorter
    one the harness sets with `limit`, e.g. per test case); `check` holds the harness's own work to it too."""

    def __init__(self, w: int, r: int, deadline: float, cap: int):
        self.w, self.r, self.deadline, self.cap = w, r, deadline, cap
        self.end = deadline  # the run's own: no `limit` goes past it
        self._buf = b""
        os.set_blocking(w, False)

    def limit(self, seconds: float) -> None:
        """The deadline `seconds` from now (never past the run's)."""
        self.deadline = min(self.end, time.monotonic() + seconds)

    def check(self) -> None:
        """SandboxTimeout once the deadline has passed."""
        if time.monotonic() >= self.deadline:
            raise SandboxTimeout

    def _wait(self, fd: int, write: bool) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([] if write else [fd], [fd] if write else [], [], left)[0 if not write else 1]:
            raise SandboxTimeout

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            self._wait(self.w, write=True)
            try:
                data = data[os.write(self.w, data):]
            except BrokenPipeError:
                raise SandboxClosed from None

    def recv(self) -> dict:
        while b"\n" not in self._buf:
            if len(self._buf) > self.cap:
                raise OutputLimit
            self._wait(self.r, write=False)
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise SandboxClosed
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if len(line) > self.cap:
            raise OutputLimit
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # garbage, or nested deep enough to blow the parser's stack
            raise SandboxClosed("the program's channel carried something that is not JSON") from None
        if not isinstance(msg, dict):
            raise SandboxClosed("the program's channel carried a non-object")
        return msg

    def request(self, msg: dict) -> dict:
        self.send(msg)
        return self.recv()


Interact = Callable[[Channel], Any]  # what Sandbox.serve runs against the program
