"""Run untrusted Python in a throwaway bubblewrap sandbox.

Layers: bwrap with every namespace unshared (no network, own pid and IPC space, only /usr read-only, a
read-only /dev, size-capped tmpfs at /scratch and /dev/shm); an unprivileged uid per concurrent slot,
reserved per host and never an account's; rlimits and a seccomp filter installed by `sandbox_boot.py`
inside the child before the program runs; one cgroup per run (memory with swap, pids, cpu: see cgroup.py)
filled before bwrap starts and killed after the run; output written to capped files. Whether bwrap set the
sandbox up comes from its --json-status-fd, never from the program's output.

Two modes: `run(code, stdin)` runs a program (stdin/stdout problems); `serve(code, interact)` loads a
solution and lets the trusted harness (`code_grader.py`) call into it over a pair of pipes (`Channel`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.verifier.cgroup import Cgroups, RunCgroup
from actors.verifier.channel import Channel, Interact, OutputLimit, SandboxClosed, SandboxTimeout
from actors.verifier.host import (
    ENV,
    SYSTEM_PYTHON,
    box_root,
    bwrap_args,
    cgroups_or_warn,
    codec_beside,
    compile_boot,
    probe_isolation,
    reap_zombies,
)
from actors.verifier.uids import UID_BASE, UidLease

SPAWNER = Path(__file__).with_name("spawner.py")
SPAWNER_MB = 16



class IsolationError(RuntimeError):
    """The host lacks an isolation property and weak isolation was not allowed."""


@dataclass
class SandboxLimits:
    timeout_s: float = 5.0
    memory_mb: int = 512  # the whole run: every process, tmpfs page and pipe of it together (cgroup)
    max_output_bytes: int = 1 << 20
    nproc: int = 32
    nofile: int = 64
    scratch_mb: int = 64  # each of /scratch and /dev/shm
    cpus: float = 1.0  # CPU time per wall second for the whole run (cgroup cpu quota)


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    elapsed: float = 0.0
    weak: list[str] = field(default_factory=list)
    started: bool = True  # bwrap set the sandbox up and started the program (out of band, --json-status-fd)
    memory_exceeded: bool = False  # the run's cgroup OOM-killed one of its processes
    killed_by_us: bool = False  # we sent the run's SIGKILL (timeout, or the harness was done)
    value: Any = None  # what `interact` returned (serve mode)


class _Slot:
    """One uid, its cgroup, and a spawner process inside that cgroup (spawner.py); one run at a time."""

    def __init__(self, uid: int | None, cgroups: Cgroups | None, limits: SandboxLimits):
        self.uid = uid
        self.cg: RunCgroup | None = None
        if cgroups is not None:  # the spawner's own ~10 MB and one pid are charged to the group too
            self.cg = cgroups.create(f"slot-{uid if uid is not None else os.getpid()}",
                                     limits.memory_mb + SPAWNER_MB, limits.nproc + 1, limits.cpus)
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-I", "-B", str(SPAWNER), str(theirs.fileno()), str(os.getpid())],
                                     pass_fds=[theirs.fileno()], env={}, start_new_session=True)
        theirs.close()
        self.sock = ours
        if self.cg is not None:
            self.cg.add(self.proc.pid)

    def spawn(self, argv: list[str], cwd: str | None, fds: list[int]) -> int:
        """Fork a run from the spawner (restarted once if it died); the pid of the run's first process."""
        req = json.dumps({"argv": argv, "env": ENV, "cwd": cwd, "uid": self.uid}).encode()
        for attempt in (0, 1):
            try:
                socket.send_fds(self.sock, [req], fds)
                return self._recv()["pid"]
            except (OSError, SandboxClosed):
                if attempt:
                    raise
                self.close(keep_cgroup=True)
                self._start()
        raise AssertionError("unreachable")

    def _recv(self) -> dict:
        msg = self.sock.recv(1 << 16)
        if not msg:
            raise SandboxClosed("the sandbox spawner died")
        return json.loads(msg)

    def wait_status(self, timeout_s: float | None = None) -> tuple[bool, int | None]:
        """(exited, exit code) of the run, waiting at most `timeout_s` (None: until it exits). The code is
        negative when a signal killed it, None if the spawner died meanwhile."""
        if timeout_s is not None and not select.select([self.sock], [], [], timeout_s)[0]:
            return False, None
        try:
            return True, self._recv()["status"]
        except (OSError, SandboxClosed):
            return True, None

    def kill_run(self) -> None:
        """SIGKILL everything of the run (the cgroup less the spawner)."""
        if self.cg is not None:
            self.cg.kill(reap_zombies, keep={self.proc.pid})

    def close(self, keep_cgroup: bool = False) -> None:
        self.sock.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.cg is not None:
            self.cg.kill(reap_zombies)
            if not keep_cgroup:
                self.cg.remove()


class Sandbox:
    """Runs one program at a time per uid slot; thread-safe up to `slots` concurrent runs."""

    def __init__(self, limits: SandboxLimits | None = None, uids: list[int] | None = None,
                 allow_weak_isolation: bool = False, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON,
                 slots: int = 1, uid_base: int = UID_BASE):
        self.limits = limits or SandboxLimits()
        self.python = python
        self.root = os.geteuid() == 0
        self.lease = UidLease(slots, uid_base, uids) if self.root else None
        self.missing = probe_isolation(bwrap, python, self.lease.uids[0] if self.lease else None)
        if self.missing and not allow_weak_isolation:
            if self.lease:
                self.lease.release()
            raise IsolationError("sandbox refuses to start, missing isolation: " + "; ".join(self.missing)
                                 + " (set allow_weak_isolation=true to run anyway)")
        self.bwrap = None if any(m.startswith("namespaces") for m in self.missing) else shutil.which(bwrap)
        self.seccomp = not any(m.startswith("seccomp") for m in self.missing)
        self.cgroups = cgroups_or_warn()
        self.box_root = box_root()
        self.boot = compile_boot(self.python, self.box_root)
        self._all = [_Slot(uid, self.cgroups, self.limits)
                     for uid in (self.lease.uids if self.lease else [None] * slots)]
        self._slots: queue.Queue[_Slot] = queue.Queue()
        for slot in self._all:
            self._slots.put(slot)

    @property
    def uids(self) -> list[int]:
        return list(self.lease.uids) if self.lease else []

    def close(self) -> None:
        """Stop the spawners, remove the cgroups and release the uids."""
        for slot in self._all:
            slot.close()
        if self.lease:
            self.lease.release()

    def run(self, code: str, stdin: str = "", timeout_s: float | None = None) -> RunResult:
        """Run `code` as __main__ with `stdin`; stdout/stderr come back capped."""
        return self._with_slot(code, stdin, timeout_s, None)

    def serve(self, code: str, interact: Interact, timeout_s: float | None = None) -> RunResult:
        """Load `code` as module `solution` and call `interact(channel)` while it serves; its return value
        lands in RunResult.value (the exception instead when the channel broke or overflowed)."""
        return self._with_slot(code, "", timeout_s, interact)

    def _with_slot(self, code: str, stdin: str, timeout_s: float | None, interact: Interact | None) -> RunResult:
        slot = self._slots.get()
        try:
            return self._run(slot, code, stdin, timeout_s or self.limits.timeout_s, interact)
        finally:
            self._slots.put(slot)

    def _argv(self, mode: str, box: str, timeout_s: float, fds: list[int]) -> list[str]:
        lim = self.limits
        # -S: no `site` import (~4 ms of every run); the boot puts the system's dist-packages on sys.path
        return [self.python, "-I", "-S", "-B", f"{box}/{Path(self.boot).name}", mode, f"{box}/main.py",
                str(lim.memory_mb << 20), str(math.ceil(timeout_s) + 1), str(lim.nproc),
                str(lim.max_output_bytes + 1), str(lim.nofile), "1" if self.seccomp else "0", *map(str, fds)]

    def _run(self, slot: _Slot, code: str, stdin: str, timeout_s: float, interact: Interact | None) -> RunResult:
        box = scratch = None
        pipes: list[int] = []
        try:
            # In the run the fds are renumbered: 0-2 stdio, then [status, program,] [request, response].
            extra: list[int] = []
            if self.bwrap:  # no files on the host: bwrap copies the program from a memfd, binds the boot
                status_r, status_w = os.pipe()
                prog = os.memfd_create("main.py")
                pipes += [status_r, status_w, prog]
                data = code.encode()
                while data:
                    data = data[os.write(prog, data):]
                os.lseek(prog, 0, os.SEEK_SET)
                extra += [status_w, prog]
            if interact is not None:
                req_r, req_w = os.pipe()
                resp_r, resp_w = os.pipe()
                pipes += [req_r, req_w, resp_r, resp_w]
                extra += [req_r, resp_w]
            chan = list(range(3 + len(extra) - 2, 3 + len(extra))) if interact else []
            mode = "serve" if interact else "script"
            if self.bwrap:
                codec = codec_beside(self.boot)
                mounts = ["--ro-bind", self.boot, f"/box/{Path(self.boot).name}", "--ro-bind", codec,
                          f"/box/{Path(codec).name}", "--ro-bind-data", "4", "/box/main.py"]
                cmd = (bwrap_args(self.bwrap, mounts, self.limits.scratch_mb << 20) + ["--json-status-fd", "3"]
                       + self._argv(mode, "/box", timeout_s, chan))
                cwd = None
            else:  # weak isolation: no namespaces, files in a host box dir, a scratch dir owned by the slot uid
                box = tempfile.mkdtemp(prefix="box-", dir=self.box_root)
                os.chmod(box, 0o755)
                Path(box, "main.py").write_text(code)
                for f in (self.boot, codec_beside(self.boot)):
                    shutil.copyfile(f, Path(box, Path(f).name))
                scratch = tempfile.mkdtemp(prefix="ssp-scratch-")
                if slot.uid is not None:
                    os.chown(scratch, slot.uid, slot.uid)
                cmd, cwd = self._argv(mode, box, timeout_s, chan), scratch
            with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
                    tempfile.TemporaryFile() as ferr:
                fin.write(stdin.encode())
                fin.seek(0)
                res = self._launch(slot, cmd, cwd, [fin.fileno(), fout.fileno(), ferr.fileno(), *extra], pipes,
                                   timeout_s, interact)
                res.stdout, res.output_truncated = _read_capped(fout, self.limits.max_output_bytes)
                res.stderr, _ = _read_capped(ferr, 64 << 10)
            if self.bwrap:
                res.started = '"child-pid"' in _read_all(pipes[0])
            res.output_truncated = res.output_truncated or res.returncode == -signal.SIGXFSZ
            res.weak = list(self.missing)
            return res
        finally:
            for fd in pipes:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for d in (box, scratch):
                if d:
                    shutil.rmtree(d, ignore_errors=True)

    def _launch(self, slot: _Slot, cmd: list[str], cwd: str | None, fds: list[int], pipes: list[int],
                timeout_s: float, interact: Interact | None) -> RunResult:
        oom0 = slot.cg.oom_kills() if slot.cg else 0
        t0 = time.monotonic()
        pid = slot.spawn(cmd, cwd, fds)
        for fd in fds[3:]:  # the run holds the child ends now; closing ours lets EOF reach both sides
            os.close(fd)
            pipes.remove(fd)
        res = RunResult(None, "", "")
        deadline = t0 + timeout_s
        try:
            if interact is not None:
                req_w, resp_r = pipes[-2], pipes[-1]  # [status_r,] req_w, resp_r
                try:
                    res.value = interact(Channel(req_w, resp_r, deadline, self.limits.max_output_bytes))
                    res.killed_by_us = True  # the harness has its verdict: nothing more to wait for
                except SandboxTimeout:
                    res.timed_out = True
                except (SandboxClosed, OutputLimit) as e:
                    # The channel is done with. A program that closed it by exiting gets a moment to report
                    # its own status; one that is still there (garbage on the channel, a reply too large) is
                    # killed now rather than waited out.
                    res.value = e
                    grace = 0.5 if isinstance(e, SandboxClosed) else 0.0
                    exited, res.returncode = slot.wait_status(min(grace, max(0.0, deadline - time.monotonic())))
                    res.killed_by_us = not exited
            if not res.killed_by_us and not res.timed_out and res.returncode is None:
                exited, res.returncode = slot.wait_status(max(0.0, deadline - time.monotonic()))
                res.timed_out = not exited
            if res.timed_out or res.killed_by_us:
                res.killed_by_us = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # the run's session; its pid namespace dies with bwrap
                slot.kill_run()
        finally:
            if res.returncode is None:  # also when `interact` raised something unexpected: never wait on a
                exited, res.returncode = slot.wait_status(0)  # program that is still serving
                if not exited:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    slot.kill_run()
                    res.returncode = slot.wait_status()[1]
            slot.kill_run()  # nothing of this run outlives it
            res.memory_exceeded = bool(slot.cg) and slot.cg.oom_kills() > oom0
            reap_zombies()
        res.elapsed = time.monotonic() - t0
        return res


def _read_all(fd: int) -> str:
    chunks = []
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _read_capped(fh, cap: int) -> tuple[str, bool]:
    fh.seek(0)
    data = fh.read(cap + 1)
    return data[:cap].decode(errors="replace"), len(data) > cap
