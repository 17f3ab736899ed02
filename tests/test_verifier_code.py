"""Code rewards: extraction, the three test formats, MBPP references in the sandbox, and refusal to start."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from actors.verifier.code_grader import extract_code, grade_code, mbpp_tests
from actors.verifier.sandbox import IsolationError, Sandbox, SandboxLimits

UIDS = [63100, 63101]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=10), uids=UIDS)


def _grade(sb: Sandbox, response: str, tests: dict):
    return grade_code(response, tests, sb)


def test_extract_code():
    assert extract_code("x\n```python\na=1\n```\n```python\nb=2\n```\n") == "b=2\n"
    assert extract_code("```\nc=3\n```") == "c=3\n"
    assert extract_code("```python\np=1\n```\n```\nnot code\n```") == "p=1\n"
    assert extract_code("<think>```python\nbad\n```</think>print(1)") == "print(1)"
    assert extract_code("print(2)") == "print(2)"


def test_three_formats(sandbox):
    f = "```python\ndef add(a, b):\n    return a + b\n```"
    assert _grade(sandbox, f, {"asserts": ["assert add(1, 2) == 3"], "imports": ["import math"]}).reward == 1
    assert _grade(sandbox, f, {"asserts": ["assert add(1, 2) == 4"]}).reason == "wrong_answer"
    he = {"test_code": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}
    assert _grade(sandbox, f, he).reward == 1
    echo = "```python\nn = int(input())\nprint(n * 2)\n```"
    io = {"stdin_stdout": [{"input": "2\n", "output": "4\n"}, {"input": "5", "output": "10 \n\n"}]}
    r = _grade(sandbox, echo, io)
    assert (r.reward, r.stdout) == (1.0, "10\n")
    io["stdin_stdout"].append({"input": "1", "output": "3"})
    assert _grade(sandbox, echo, io).reason == "wrong_answer"
    assert _grade(sandbox, "```python\ndef f(:\n```", he).reason == "syntax_error"
    assert _grade(sandbox, "```python\nraise ValueError\n```", he).reason == "runtime_error"
    assert _grade(sandbox, "```python\n```", he).reason == "format_miss"


def _mutate(rec: dict) -> str:
    """The reference with the entry point rebound to a function returning None."""
    return f"{rec['reference_solution']}\n\ndef {rec['entry_point']}(*args, **kwargs):\n    return None\n"


def test_program_killing_itself_is_scored_but_launcher_killed_from_outside_is_not(sandbox):
    """A dying Ray actor's children are killed before the actor: that run must not score as the answer's."""
    ok = "```python\nimport time\ntime.sleep({s})\ndef f():\n    return 1\n```"
    tests = {"asserts": ["assert f() == 1"]}
    self_kill = "```python\nimport os\nos.kill(os.getpid(), 9)\n```"
    assert _grade(sandbox, self_kill, tests).reason == "runtime_error"

    def kill_children():  # only the sandbox's: Ray's head processes are this process's children too
        time.sleep(0.5)
        for c in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if c.uids().real in UIDS:
                    c.kill()

    killer = threading.Thread(target=kill_children)
    killer.start()
    r = _grade(sandbox, ok.format(s=3), tests)
    killer.join()
    assert (r.reward, r.reason) == (0.0, "verifier_error")
    assert _grade(sandbox, ok.format(s=0), tests).reward == 1.0


def test_mbpp_references_pass_and_mutants_fail(sandbox, shared_dir):
    rows = [json.loads(x) for x in (shared_dir / "data/code/mbpp_sanitized.jsonl").read_text().splitlines()]
    assert len(rows) == 427
    jobs = [(f"```python\n{r['reference_solution']}\n```", mbpp_tests(r)) for r in rows]
    jobs += [(f"```python\n{_mutate(r)}\n```", mbpp_tests(r)) for r in rows]
    with ThreadPoolExecutor(len(UIDS)) as ex:
        results = list(ex.map(lambda j: _grade(sandbox, *j), jobs))
    ref, mut = results[:427], results[427:]
    failed = [(r["id"], x.reason, x.detail.get("stderr", "")[-200:]) for r, x in zip(rows, ref) if x.reward != 1]
    assert not failed, failed[:5]
    passed = [r["id"] for r, x in zip(rows, mut) if x.reward != 0]
    assert not passed, passed


def test_refuses_without_namespaces():
    with pytest.raises(IsolationError, match="namespaces: bubblewrap"):
        Sandbox(uids=[63110], bwrap="/nonexistent/bwrap")


def test_refuses_without_seccomp(tmp_path):
    import sys

    with pytest.raises(IsolationError, match="seccomp"):
        Sandbox(uids=[63111], python=sys.executable)  # the venv python has no seccomp module


def test_weak_isolation_is_opt_in_and_still_runs():
    sb = Sandbox(SandboxLimits(timeout_s=5), uids=[63112], allow_weak_isolation=True, bwrap="/nonexistent/bwrap")
    assert any(m.startswith("namespaces") for m in sb.missing)
    r = sb.run("import os; print(os.getuid())")
    assert r.returncode == 0 and r.stdout.strip() == "63112" and r.weak == sb.missing
