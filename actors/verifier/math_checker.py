"""The math graders' registry (the strict training reward is math_reward.py, the eval protocols protocols.py) and
the killable helper process they run in (`MathChecker`).

No Ray here. `MathChecker` adds the hard time limit: checks run in a helper process that is killed on timeout
(math-verify's signal-based timeout cannot work off the main thread, where Ray actor methods run).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from actors.verifier.math_answer import answer_region, last_boxed
from actors.verifier.math_reward import grade_strict
from actors.verifier.protocols import grade_vibethinker
from actors.verifier.types import Result

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- extraction

def extract_math_answer(response: str, think: str = "optional") -> str | None:
    """The last box of the answer region (actors/verifier/math_answer.py), or None: the answer a log shows."""
    region, _ = answer_region(response, think)
    return last_boxed(region) if region is not None else None


# ---------------------------------------------------------------- math graders

def _math_verify_protocol(response: str, gold: str | list[str], think: str = "optional", unboxed: bool = True,
                          choices: dict[str, str] | None = None) -> tuple[float, str, str | None]:
    """The eval protocol for models without think tags: the strict reader over the whole response (or after a
    closed think block), a final-answer line accepted when nothing is boxed. `think`/`unboxed` are fixed."""
    return grade_strict(response, gold, "optional", True, choices)


# name -> grading function(response, gold, think=, unboxed=, choices=). "strict" is the training reward (its
# think/unboxed options come from verifier.*); the others are eval protocols with their own fixed rules.
MATH_GRADERS = {"strict": grade_strict, "math-verify": _math_verify_protocol, "vibethinker": grade_vibethinker}


def math_grader(name: str):
    """The math grading function called `name` (MATH_GRADERS). Unknown names fail listing the valid ones."""
    if name not in MATH_GRADERS:
        raise ValueError(f"unknown math grader {name!r}; valid: {sorted(MATH_GRADERS)}")
    return MATH_GRADERS[name]


def _serve(memory_mb: int, parent: int) -> None:
    """Helper-process loop: JSON lines in on stdin, results out on the original stdout."""
    import logging
    import warnings

    # Die with the actor. Not PR_SET_PDEATHSIG: that fires when the *thread* that started us exits (a
    # short-lived worker thread killed its helpers between checks); stdin's EOF ends the loop below, and this
    # watchdog covers a check that hangs meanwhile.
    def watchdog() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    if os.getppid() != parent:
        return
    threading.Thread(target=watchdog, daemon=True).start()

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library prints go to stderr, not into the protocol
    import math_verify  # noqa: F401  (warm import before the first request)

    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            grade = math_grader(req.get("grader") or "strict")
            reward, reason, answer = grade(req["response"], req["gold"], **req.get("options", {}))
        except Exception as e:  # reported to the caller, which counts it
            reward, reason, answer = 0.0, f"verifier_error: {type(e).__name__}: {e}"[:300], None
        out.write(json.dumps([reward, reason, answer]) + "\n")
        out.flush()


class MathChecker:
    """One killable helper process running the math graders; restarts it after a timeout or crash.

    Thread-safe (one check at a time); use several checkers for parallelism.
    """

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 4096, start_timeout_s: float = 60.0):
        self.timeout_s, self.memory_mb, self.start_timeout_s = timeout_s, memory_mb, start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-c", f"from actors.verifier.math_checker import _serve; _serve({self.memory_mb}, {os.getpid()})"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env, cwd=str(REPO))
        if _readline(proc, self.start_timeout_s) != "ready":
            _kill(proc)
            raise RuntimeError("math checker helper failed to start")
        return proc

    def check(self, response: str, gold: str | list[str], grader: str = "strict", **options: Any) -> Result:
        """Grade one response with `grader` (see `math_grader`) and its `options` (think, unboxed, choices);
        reason "timeout" when the helper had to be killed."""
        math_grader(grader)  # an unknown name is the caller's error, not a helper crash
        t0 = time.perf_counter()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps({"response": response, "gold": gold, "grader": grader, "options": options}) + "\n")
                proc.stdin.flush()
                line = _readline(proc, self.timeout_s)
            except (BrokenPipeError, OSError):
                line = None
            if line is None:
                _kill(proc)
                self._proc = None
                self.restarts += 1
                timed_out = time.perf_counter() - t0 >= self.timeout_s
                answer = extract_math_answer(response)
                return Result("", "math", 0.0, "timeout" if timed_out else "verifier_error",
                              time.perf_counter() - t0, answer)
        reward, reason, answer = json.loads(line)
        return Result("", "math", reward, reason, time.perf_counter() - t0, answer)

    def close(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
            self._proc = None


def _readline(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """One line from the helper, or None on timeout / EOF."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        return None
    line = proc.stdout.readline()
    return line.rstrip("\n") if line else None


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
