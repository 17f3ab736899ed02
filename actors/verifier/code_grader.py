"""The code reward: a trusted harness here, the untrusted solution in the sandbox, plain data between them.

The solution's process never holds a test or an expected value. Function tests (MBPP asserts, HumanEval
`check(candidate)`, LiveCodeBench functional cases, the toy tasks) run *here*, in the verifier's process.
Only the entry point is taken from the solution, as a `Remote` proxy (actors/verifier/harness.py): calling it sends the
arguments to the sandbox, which calls the real function and sends back the result (and the arguments' state
after the call) as tagged JSON. Helpers the problem itself defines (HumanEval's `poly`, `encode_cyclic`) come
from the problem's own code (`tests["prompt"]`), the tests' modules from this process; a name neither defines
is an error of the tests (verdict `test_error`), never a name the solution gets to fill. The tests' own
`assert`s compare with this process's builtins and modules, which the solution cannot touch. A pass is this
harness reaching the end of every test with the channel intact; an exit status, stdout or stderr of the
solution never counts as one. stdin/stdout problems run the program once per case and compare its stdout
here, line by line (`same_output`).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import re
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from actors.verifier.channel import Channel, OutputLimit
from actors.verifier.harness import CHANNEL_ERRORS, Remote, RemoteError, Session, TestError, short_repr
from actors.verifier.protocols import lcb_extract_code
from actors.verifier.sandbox import RunResult, Sandbox
from actors.verifier.types import Result

__all__ = ["InvalidTests", "RemoteError", "Verdict", "check_tests", "grade_code", "mbpp_tests", "same_output"]

TEST_KINDS = ("asserts", "test_code", "functional", "stdin_stdout")


# ---------------------------------------------------------------- extraction

def strip_think(text: str) -> str:
    """The text after the last `</think>`, or all of it (code extraction; math reads `answer_region`)."""
    i = text.rfind("</think>")
    return text if i < 0 else text[i + len("</think>"):]


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


# ---------------------------------------------------------------- tests

class InvalidTests(ValueError):
    """A problem's `tests` field is unusable (unknown format, or no test at all)."""


def check_tests(tests: Any) -> str:
    """The format of a `tests` field; raises InvalidTests for an unknown format or an empty test list (a
    problem without tests would give reward 1 to anything that runs)."""
    if not isinstance(tests, dict):
        raise InvalidTests(f"tests must be an object, got {type(tests).__name__}")
    kinds = [k for k in TEST_KINDS if k in tests]
    if len(kinds) != 1:
        raise InvalidTests(f"tests must have exactly one of {list(TEST_KINDS)}, got keys {sorted(tests)}")
    kind, body = kinds[0], tests[kinds[0]]
    if kind == "test_code":
        if not isinstance(body, str) or "def check" not in body or not tests.get("entry_point"):
            raise InvalidTests("test_code tests need a `def check(candidate)` and an entry_point")
    elif not isinstance(body, list) or not body:
        raise InvalidTests(f"tests.{kind} must be a non-empty list")
    if kind == "functional" and not tests.get("fn_name"):
        raise InvalidTests("functional tests need fn_name")
    if kind == "asserts" and not all(isinstance(a, str) for a in body):
        raise InvalidTests("tests.asserts must be strings")
    imports = tests.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise InvalidTests("tests.imports must be a list of import lines")
    for key in ("entry_point", "prompt"):
        if tests.get(key) is not None and not isinstance(tests[key], str):
            raise InvalidTests(f"tests.{key} must be a string")
    return kind


def mbpp_tests(record: dict[str, Any]) -> dict[str, Any]:
    """The `tests` field for an MBPP row of data/eval/code/mbpp_test.jsonl (and data/train/code)."""
    return {"asserts": record["tests"], "imports": record.get("test_imports") or [],
            "entry_point": record.get("entry_point")}


# ---------------------------------------------------------------- which names come from where

def free_names(source: str) -> set[str]:
    """Names the test code reads but never binds and that are not builtins."""
    tree = ast.parse(source)
    used, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return used - bound - set(dir(builtins))


def _called_names(source: str) -> set[str]:
    return {n.func.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


_FENCED = re.compile(r"```[\w+-]*\n(.*?)```", re.S)
_PROBLEM_STMTS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                  ast.AnnAssign)


def problem_code(prompt: str, entry_point: str | None) -> ast.Module | None:
    """The problem's own definitions (HumanEval's prompt: imports, helpers such as `poly`, constants), without
    the entry point the solution writes and without assignments that call anything; from the prompt, else from
    its fenced code blocks. None without any."""
    for text in [prompt, *_FENCED.findall(prompt)]:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        body = [n for n in tree.body if isinstance(n, _PROBLEM_STMTS) and getattr(n, "name", None) != entry_point
                and not (isinstance(n, ast.Assign | ast.AnnAssign) and any(isinstance(c, ast.Call) for c in ast.walk(n)))]
        return ast.Module(body=body, type_ignores=[]) if body else None
    return None


def with_problem_code(tests: dict[str, Any], prompt: str) -> dict[str, Any]:
    """`tests` with the problem's prompt as `tests["prompt"]` when the tests are HumanEval-style (`test_code`)
    and the prompt holds code of the problem's own (the helpers its tests may call); else `tests` as given."""
    if "test_code" in tests and "prompt" not in tests and problem_code(prompt, tests.get("entry_point")):
        return {**tests, "prompt": prompt}
    return tests


def harness_env(tests: dict[str, Any], source: str) -> tuple[dict[str, Any], set[str]]:
    """The tests' globals (their imports, the problem's own code, the standard-library modules they name) and
    the names they take from the solution: the entry point (without one, the names the tests call and nobody
    defines). TestError for any other name nobody defines."""
    env: dict[str, Any] = {"__name__": "ssp_tests", "__builtins__": builtins}
    entry = tests.get("entry_point")
    try:
        for line in tests.get("imports") or []:
            exec(compile(line, "<test imports>", "exec"), env)  # noqa: S102 (the dataset's own tests: trusted)
        if (code := problem_code(tests.get("prompt") or "", entry)) is not None:
            exec(compile(code, "<problem>", "exec"), env)  # noqa: S102 (the problem's own code: trusted)
        free = free_names(source) - set(env)
    except Exception as e:  # noqa: BLE001
        raise TestError(f"the tests or the problem's code do not run: {type(e).__name__}: {e}") from None
    for n in sorted(free & set(sys.stdlib_module_names)):  # the tests' modules are ours, never the solution's
        env[n] = importlib.import_module(n)
    free -= set(env)
    solution = {entry} if entry else free & _called_names(source)
    if free - solution:
        raise TestError(f"the tests use {sorted(free - solution)}, which neither the tests, the problem's code nor "
                        f"the standard library define (only the entry point {entry!r} comes from the solution)")
    return env, solution


# ---------------------------------------------------------------- running the tests here

@dataclass
class Verdict:
    reason: str  # "correct" or why not
    detail: str = ""
    passed: int = 0  # tests (asserts / cases) that passed before the verdict


def _harness(tests: dict[str, Any], kind: str, per_case: float | None):
    """interact(channel) for Sandbox.serve: runs every test here and returns a Verdict. `per_case`: each
    functional case's own time limit (LiveCodeBench's), the first one starting with the program's load."""

    def interact(ch: Channel) -> Verdict:
        if per_case:
            ch.limit(per_case)
        hello = ch.recv()
        if "load_error" in hello:
            name, text = (list(hello["load_error"]) + ["", ""])[:2]
            reason = {"SyntaxError": "syntax_error", "IndentationError": "syntax_error", "TabError": "syntax_error",
                      "MemoryError": "memory_limit"}.get(str(name), "runtime_error")
            return Verdict(reason, f"{name}: {text}"[:500])
        if hello.get("ready") is not True:
            return Verdict("runtime_error", "the program wrote something else on the result channel")
        s = Session(ch)
        if kind == "functional":
            return _settle(s, _functional(s, tests, set(hello.get("names") or []), per_case))
        return _settle(s, _exec_tests(s, tests, kind))

    return interact


def _settle(s: Session, v: Verdict) -> Verdict:
    """The verdict, unless the run broke meanwhile (also where a test caught the error): then that failure."""
    if s.failed is not None:
        raise s.failed
    if s.test_error is not None:
        return Verdict("test_error", str(s.test_error)[:500], v.passed)
    if v.reason == "correct":
        s.check()  # the harness's own work counts against the deadline too
    return v


def _exec_tests(s: Session, tests: dict[str, Any], kind: str) -> Verdict:
    units = list(tests["asserts"]) if kind == "asserts" else [tests["test_code"]]
    try:
        env, solution = harness_env(tests, "\n".join(units))
    except TestError as e:
        return Verdict("test_error", str(e)[:500])
    env.update({n: Remote(s, n) for n in solution})
    passed = 0
    for unit in units:
        try:
            exec(compile(unit, "<tests>", "exec"), env)  # noqa: S102 (the dataset's own tests: trusted)
            if kind == "test_code":
                if not callable(env.get("check")):
                    raise TestError("the test code defines no check(candidate)")
                env["check"](Remote(s, tests["entry_point"]))
            s.check()
        except AssertionError as e:
            return Verdict("wrong_answer", f"failed: {unit[:300]} {e}"[:500], passed)
        except CHANNEL_ERRORS:  # the run's fate, not a test's verdict
            raise
        except TestError as e:
            return Verdict("test_error", str(e)[:500], passed)
        except Exception as e:  # the solution raised, returned something unusable, or lacks a name
            return Verdict("runtime_error", f"{type(e).__name__}: {e}"[:500], passed)
        if s.failed is not None or s.test_error is not None:
            break
        passed += 1
    return Verdict("correct", passed=passed)


def parse_lcb_input(text: Any) -> list[Any]:
    """LiveCodeBench functional input: one JSON value per line (or an already-parsed list of arguments)."""
    if isinstance(text, list):
        return text
    return [json.loads(line) for line in str(text).split("\n") if line.strip()]


def _functional(s: Session, tests: dict[str, Any], names: set[str], per_case: float | None) -> Verdict:
    """LiveCodeBench functional cases: fn(*args) == expected (tuples compared as lists, as its runner does)."""
    fn_name = tests["fn_name"]
    passed = 0
    s.write_back = False  # each case's arguments are its own and never looked at again
    try:
        fn = Remote(s, fn_name) if fn_name in names or "Solution" not in names else \
            getattr(Remote(s, "Solution")(), fn_name)
        for case in tests["functional"]:
            expected = case["output"]
            if isinstance(expected, str):
                expected = json.loads(expected)
            args = parse_lcb_input(case["input"])
            if per_case:
                s.ch.limit(per_case)
            got = fn(*args)
            if isinstance(got, tuple):
                got = list(got)
            if got != expected:  # plain values (a sandboxed object equals nothing), as LiveCodeBench compares
                return Verdict("wrong_answer", f"case {passed}: got {short_repr(got)}", passed)
            s.check()
            passed += 1
    except CHANNEL_ERRORS:
        raise
    except TestError as e:
        return Verdict("test_error", str(e)[:500], passed)
    except Exception as e:
        return Verdict("runtime_error", f"{type(e).__name__}: {e}"[:500], passed)
    return Verdict("correct", passed=passed)


# ---------------------------------------------------------------- stdin/stdout

def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (ArithmeticError, ValueError):
        return None


def same_output(got: str, expected: str, lcb: bool = False) -> bool:
    """stdout against the expected output, line by line. Default: each line's trailing whitespace and the
    trailing empty lines are ignored; leading whitespace, the spaces between tokens and the line breaks count.
    lcb: LiveCodeBench's checker (lcb_runner/evaluation/testing_util.py): the output and each line stripped at
    both ends, then each line equal as text or, token by token, as Decimals."""
    if not lcb:
        return _lines(got) == _lines(expected)
    a = [line.strip() for line in got.strip().split("\n")]
    b = [line.strip() for line in expected.strip().split("\n")]
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x != y:
            dx, dy = _decimals(x), _decimals(y)
            try:
                if dx is None or dy is None or dx != dy:
                    return False
            except ArithmeticError:  # a signalling NaN
                return False
    return True


def _run_reason(r: RunResult) -> str | None:
    """What went wrong with a run, judged from out-of-band facts only (never the program's output)."""
    if r.timed_out:
        return "timeout"
    if r.memory_exceeded:
        return "memory_limit"
    if not r.started:
        return "verifier_error"  # bwrap itself failed to set the sandbox up
    if r.output_truncated:
        return "output_limit"
    if r.returncode is None or (r.returncode < 0 and not r.killed_by_us):
        # The launcher died from a signal we did not send (e.g. Ray kills a dying actor's children before
        # the actor): the program never finished, so it is not scored; the pool retries it elsewhere.
        return "verifier_error"
    return None


def grade_code(response: str, tests: dict[str, Any], sandbox: Sandbox, lcb: bool = False) -> Result:
    """Reward 1 only when the harness saw every test pass. `lcb`: LiveCodeBench's protocol, i.e. its code
    extraction (between the last two fence lines), its output comparison, and its time limit per test case:
    each stdin case runs alone under the sandbox limit, and each functional case gets that limit on its own."""
    t0 = time.perf_counter()
    kind = check_tests(tests)
    code = lcb_extract_code(response) if lcb else extract_code(response)
    if not code.strip():
        return Result("", "code", 0.0, "format_miss", time.perf_counter() - t0, code)
    try:  # parsing runs nothing (ast.parse does not even fold constants): a program that cannot parse is not started
        ast.parse(code)
    except (SyntaxError, ValueError) as e:
        return Result("", "code", 0.0, "syntax_error", time.perf_counter() - t0, code,
                      detail={"detail": f"{type(e).__name__}: {e}"[:500]})
    except (RecursionError, MemoryError):
        pass  # too deep for this process's parser: the sandbox decides

    def result(reason: str, r: RunResult, detail: str = "") -> Result:
        return Result("", "code", float(reason == "correct"), reason, time.perf_counter() - t0, code, r.stdout,
                      {"stderr": r.stderr[-2000:], **({"detail": detail} if detail else {})})

    if kind == "stdin_stdout":
        r = None
        for case in tests["stdin_stdout"]:
            r = sandbox.run(code, case["input"])
            reason = _run_reason(r) or ("runtime_error" if r.returncode != 0 else None)
            if reason is None and not same_output(r.stdout, case["output"], lcb):
                reason = "wrong_answer"
            if reason:
                return result(reason, r)
        return result("correct", r)
    imports = "\n".join(tests.get("imports") or [])
    n_tests = len(tests[kind]) if kind in ("asserts", "functional") else 1
    per_case = sandbox.limits.timeout_s if lcb and kind == "functional" else None
    limit = sandbox.limits.timeout_s * (n_tests + (kind == "functional")) if lcb else None
    r = sandbox.serve(f"{imports}\n{code}" if imports else code, _harness(tests, kind, per_case), limit)
    v = r.value
    if isinstance(v, Verdict) and r.timed_out is False and not r.memory_exceeded:
        res = result(v.reason, r, v.detail)
        res.detail["tests_passed"] = v.passed  # before the first failure (all of them when correct)
        return res
    reason = _run_reason(r)
    if reason is None:  # the channel broke: the program exited, crashed or wrote garbage before the end
        reason = "output_limit" if isinstance(v, OutputLimit) else "runtime_error"
    return result(reason, r, str(v or "")[:300])
