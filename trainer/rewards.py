"""Pure reward logic: answer extraction and math grading (math-verify). Code is graded in actors/code_grader.py.

No Ray here. `MathChecker` adds the hard time limit: checks run in a helper process that is killed on timeout
(math-verify's signal-based timeout cannot work off the main thread, where Ray actor methods run).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.graders import braced

REPO = Path(__file__).resolve().parents[1]


@dataclass
class VerifyRequest:
    id: str
    kind: str  # "math" | "code"
    response: str
    gold: str | list[str] | None = None  # a list: any of these answers is accepted
    tests: dict[str, Any] | None = None
    grader: str = ""  # "" = the kind's training reward; "vibethinker" (math) or "lcb" (code): eval protocols


@dataclass
class Result:
    id: str
    kind: str
    reward: float
    reason: str
    elapsed: float = 0.0
    answer: str | None = None
    stdout: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- extraction

def strip_think(text: str) -> str:
    """The text after the last `</think>`, or all of it."""
    i = text.rfind("</think>")
    return text if i < 0 else text[i + len("</think>"):]


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces handled; an unclosed one is skipped), or None."""
    i = text.rfind("\\boxed")
    while i >= 0:
        inner = braced(text, i + len("\\boxed"))
        if inner is not None:
            return inner
        i = text.rfind("\\boxed", 0, i)
    return None


def extract_math_answer(response: str) -> str | None:
    return last_boxed(strip_think(response))


_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)


def extract_code(response: str) -> str:
    """Last ```python block, else the last plain ``` block, else the whole (post-think) response."""
    text = strip_think(response)
    blocks = _FENCE.findall(text)
    py = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3")]
    plain = [b for lang, b in blocks if lang == ""]
    if py:
        return py[-1]
    return plain[-1] if plain else text


# ---------------------------------------------------------------- math

def gold_latex(gold: str) -> str:
    """Wrap a plain gold string so math-verify's LaTeX extractor reads it."""
    g = gold.strip()
    return g if ("\\boxed" in g or g.startswith("$")) else f"${g}$"


_THOUSANDS = re.compile(r"^-?\d{1,3}(?:(?:\s|\\[,;: ]|\{,\}|~|,)\d{3})+(?:\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d{1,2}|\d{4,})$")  # 3 digits after the comma read as thousands
_LETTER = re.compile(r"^\s*(?:\\text\{)?\s*\(?([A-J])\)?(?:[.:)\s}]|$)")


def _number_forms(answer: str) -> list[str]:
    """`1 000`, `1\\,000`, `10,455` -> `1000`/`10455`; `1000,99` -> `1000.99`. Only for a whole-number answer."""
    a = answer.strip().strip("$").strip()
    if _THOUSANDS.match(a):
        return [re.sub(r"\s|\\[,;: ]|\{,\}|~|,", "", a)]
    m = _DECIMAL_COMMA.match(a)
    return [f"{m.group(1)}.{m.group(2)}"] if m else []


def _answers(text: str) -> list[str]:
    """Candidate final answers as text: the last box, else the last line."""
    box = last_boxed(text)
    if box is not None:
        return [box]
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return [lines[-1]] if lines else []


def grade_math(response: str, gold: str | list[str]) -> tuple[float, str, str | None]:
    """(reward, reason, extracted answer). No time limit: call through MathChecker for one.

    Correct when any acceptable gold (a list of them is allowed) matches, by math-verify, any of: the last
    `\\boxed{}` after the thinking; math-verify's own default extraction of the whole answer (which also
    reads several boxes as one set, and answers without a box); the number with its thousands separators or
    decimal comma normalised; for a multiple-choice gold letter, the letter that leads the answer.
    """
    from math_verify import parse, verify

    golds = [str(g) for g in (gold if isinstance(gold, list) else [gold])]
    text = strip_think(response)
    answer = extract_math_answer(response)
    gold_parses = [parse(gold_latex(g), parsing_timeout=None) or parse(g, parsing_timeout=None) for g in golds]
    for g in golds:  # a multiple-choice letter
        letter = re.fullmatch(r"\s*\(?([A-J])\)?\.?\s*", g)
        if letter and any((m := _LETTER.match(a)) and m.group(1) == letter.group(1) for a in _answers(text)):
            return 1.0, "correct", answer

    def candidates():  # cheapest first; most answers are decided by the first
        if answer is not None:
            yield parse(f"\\boxed{{{answer}}}", parsing_timeout=None)
        yield parse(text, parsing_timeout=None)
        for a in _answers(text):
            for n in _number_forms(a):
                yield parse(f"${n}$", parsing_timeout=None)

    shown, any_pred = answer, False
    for pred in candidates():
        if not pred:
            continue
        any_pred = True
        shown = shown if shown is not None else str(pred[-1])
        if any(gp and verify(gp, pred, timeout_seconds=None) for gp in gold_parses):
            return 1.0, "correct", shown
    if not any_pred:
        return 0.0, "format_miss", None
    if not any(gold_parses):
        return 0.0, "gold_unparsable", shown
    return 0.0, "wrong_answer", shown


def math_grader(name: str):
    """The math grading function called `name`: "math-verify" (the training reward) or "vibethinker"
    (trainer/graders.py). Unknown names fail listing the valid ones."""
    from trainer.graders import grade_vibethinker

    graders = {"math-verify": grade_math, "vibethinker": grade_vibethinker}
    if name not in graders:
        raise ValueError(f"unknown math grader {name!r}; valid: {sorted(graders)}")
    return graders[name]


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
            reward, reason, answer = math_grader(req.get("grader") or "math-verify")(req["response"], req["gold"])
        except Exception as e:  # reported to the caller, which counts it
            reward, reason, answer = 0.0, f"verifier_error: {type(e).__name__}: {e}"[:300], None
        out.write(json.dumps([reward, reason, answer]) + "\n")
        out.flush()


class MathChecker:
    """One killable helper process running `grade_math`; restarts it after a timeout or crash.

    Thread-safe (one check at a time); use several checkers for parallelism.
    """

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 4096, start_timeout_s: float = 60.0):
        self.timeout_s, self.memory_mb, self.start_timeout_s = timeout_s, memory_mb, start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-c", f"from trainer.rewards import _serve; _serve({self.memory_mb}, {os.getpid()})"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env, cwd=str(REPO))
        if _readline(proc, self.start_timeout_s) != "ready":
            _kill(proc)
            raise RuntimeError("math checker helper failed to start")
        return proc

    def check(self, response: str, gold: str | list[str], grader: str = "math-verify") -> Result:
        """Grade one response with `grader` (see `math_grader`); reason "timeout" when the helper had to be
        killed."""
        math_grader(grader)  # an unknown name is the caller's error, not a helper crash
        t0 = time.perf_counter()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps({"response": response, "gold": gold, "grader": grader}) + "\n")
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
