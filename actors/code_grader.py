"""The code reward: a trusted harness here, the untrusted solution in the sandbox, plain data between them.

The solution's process never holds a test or an expected value. Function tests (MBPP asserts, HumanEval
`check(candidate)`, LiveCodeBench functional cases, the toy tasks) run *here*, in the verifier's process,
with every name the tests take from the solution bound to a `Remote` proxy: calling it sends the arguments
to the sandbox, which calls the real function and sends back the result as tagged JSON
(`sandbox_boot.encode`). Results are rebuilt as plain Python values (exact builtin types only; anything
else stays in the sandbox as a handle that compares equal to nothing), and the tests' own `assert`s compare
them with this process's builtins and modules, which the solution cannot touch. A pass is this harness
reaching the end of every test; an exit status, stdout or stderr of the solution never counts as one.
stdin/stdout problems run the program once per case and compare its stdout here, token by token.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from actors.sandbox import Channel, OutputLimit, RunResult, Sandbox, SandboxClosed, SandboxTimeout
from actors.sandbox_boot import decode, encode
from trainer.graders import lcb_extract_code
from trainer.rewards import Result, extract_code

TEST_KINDS = ("asserts", "test_code", "functional", "stdin_stdout")


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
    return kind


def mbpp_tests(record: dict[str, Any]) -> dict[str, Any]:
    """The `tests` field for an MBPP row of shared/data/code/mbpp_sanitized.jsonl."""
    return {"asserts": record["tests"], "imports": record.get("test_imports") or [],
            "entry_point": record.get("entry_point")}


# ---------------------------------------------------------------- the harness side of the channel

class RemoteError(Exception):
    """The solution raised an exception that is not a builtin one."""


class Remote:
    """A name or object that lives in the sandbox. Calls, attribute reads and truth tests go there (their
    results come back as plain data); comparisons never do, so it equals nothing but itself."""

    __slots__ = ("_ch", "_target")

    def __init__(self, ch: Channel, target: str | int):
        self._ch, self._target = ch, target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ch_reply({"op": "call", "target": self._target, "args": _enc(list(args)),
                               "kwargs": _enc(kwargs)})

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._ch_reply({"op": "getattr", "target": self._target, "attr": attr})

    def __repr__(self) -> str:
        return f"<sandboxed object {self._target!r}>"

    def __bool__(self) -> bool:  # e.g. a re.Match; asked there, as returning that bool would be
        return self._ch_reply({"op": "bool", "target": self._target}) is True

    def _ch_reply(self, msg: dict) -> Any:
        reply = self._ch.request(msg)
        if "ok" in reply:
            return decode(reply["ok"], lambda n: Remote(self._ch, n))
        name, text = (reply.get("raise") or ["RemoteError", "malformed reply"])[:2]
        exc = getattr(builtins, str(name), None)
        if isinstance(exc, type) and issubclass(exc, Exception) and exc is not RemoteError:
            raise exc(str(text))
        raise RemoteError(f"{name}: {text}")


def _enc(x: Any) -> Any:
    """Arguments to the sandbox: plain data, and handles it gave us."""
    t = type(x)
    if t is Remote:
        if isinstance(x._target, int):
            return {"$ref": x._target}
        raise TypeError(f"cannot pass {x!r} to the sandbox")
    if t is list:
        return [_enc(v) for v in x]
    if t in (tuple, set, frozenset):
        return {"$" + t.__name__: [_enc(v) for v in x]}
    if t is dict:
        return {"$dict": [[_enc(k), _enc(v)] for k, v in x.items()]}
    return encode(x)  # scalars; anything else (a lambda, an object) is a TypeError: it cannot cross


def free_names(source: str) -> set[str]:
    """Names the test code reads but never binds and that are not builtins: the solution's names."""
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


@dataclass
class Verdict:
    reason: str  # "correct" or why not
    detail: str = ""
    passed: int = 0  # tests (asserts / cases) that passed before the verdict


def _harness(tests: dict[str, Any], kind: str):
    """interact(channel) for Sandbox.serve: runs every test here and returns a Verdict."""

    def interact(ch: Channel) -> Verdict:
        hello = ch.recv()
        if "load_error" in hello:
            name, text = (hello["load_error"] + ["", ""])[:2]
            reason = {"SyntaxError": "syntax_error", "IndentationError": "syntax_error", "TabError": "syntax_error",
                      "MemoryError": "memory_limit"}.get(name, "runtime_error")
            return Verdict(reason, f"{name}: {text}"[:500])
        if hello.get("ready") is not True:
            return Verdict("runtime_error", "the program wrote something else on the result channel")
        names = set(hello.get("names") or [])
        if kind == "functional":
            return _functional(ch, tests, names)
        return _exec_tests(ch, tests, kind)

    return interact


def _exec_tests(ch: Channel, tests: dict[str, Any], kind: str) -> Verdict:
    if kind == "asserts":
        units = list(tests["asserts"])
        source = "\n".join(units)
    else:
        units = [tests["test_code"]]
        source = tests["test_code"]
    env: dict[str, Any] = {"__name__": "ssp_tests", "__builtins__": builtins}
    for line in tests.get("imports") or []:
        exec(compile(line, "<test imports>", "exec"), env)  # noqa: S102 (the dataset's own tests: trusted)
    names = free_names(source) - set(env)
    for n in names & set(sys.stdlib_module_names):  # the tests' modules are ours, never the solution's
        env[n] = importlib.import_module(n)
    remote = names - set(env)
    if tests.get("entry_point"):
        remote.add(tests["entry_point"])
    env.update({n: Remote(ch, n) for n in remote})
    passed = 0
    for unit in units:
        try:
            exec(compile(unit, "<tests>", "exec"), env)  # noqa: S102
            if kind == "test_code":
                env["check"](Remote(ch, tests["entry_point"]))
        except AssertionError as e:
            return Verdict("wrong_answer", f"failed: {unit[:300]} {e}"[:500], passed)
        except (SandboxClosed, OutputLimit, SandboxTimeout):  # the run's fate, not a test's verdict
            raise
        except Exception as e:  # the solution raised, returned something unusable, or lacks a name
            return Verdict("runtime_error", f"{type(e).__name__}: {e}"[:500], passed)
        passed += 1
    return Verdict("correct", passed=passed)


def parse_lcb_input(text: Any) -> list[Any]:
    """LiveCodeBench functional input: one JSON value per line (or an already-parsed list of arguments)."""
    if isinstance(text, list):
        return text
    return [json.loads(line) for line in str(text).split("\n") if line.strip()]


def _functional(ch: Channel, tests: dict[str, Any], names: set[str]) -> Verdict:
    """LiveCodeBench functional cases: fn(*args) == expected (tuples compared as lists, as its runner does)."""
    fn_name = tests["fn_name"]
    passed = 0
    try:
        fn = Remote(ch, fn_name) if fn_name in names or "Solution" not in names else \
            getattr(Remote(ch, "Solution")(), fn_name)
        for case in tests["functional"]:
            expected = case["output"]
            if isinstance(expected, str):
                expected = json.loads(expected)
            got = fn(*parse_lcb_input(case["input"]))
            if isinstance(got, tuple):
                got = list(got)
            if got != expected:  # plain values (a sandboxed object equals nothing), as LiveCodeBench compares
                return Verdict("wrong_answer", f"case {passed}: got {got!r:.200}", passed)
            passed += 1
    except (SandboxClosed, OutputLimit, SandboxTimeout):
        raise
    except Exception as e:
        return Verdict("runtime_error", f"{type(e).__name__}: {e}"[:500], passed)
    return Verdict("correct", passed=passed)


# ---------------------------------------------------------------- stdin/stdout

def same_output(got: str, expected: str) -> bool:
    """Whitespace-insensitive comparison, token by token (the usual checker for stdin/stdout problems)."""
    return got.split() == expected.split()


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
    extraction (between the last two fence lines) and the time limit per test: each stdin case runs alone
    under the sandbox limit, and a function-test run gets the limit once per test."""
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
            if reason is None and not same_output(r.stdout, case["output"]):
                reason = "wrong_answer"
            if reason:
                return result(reason, r)
        return result("correct", r)
    imports = "\n".join(tests.get("imports") or [])
    n_tests = len(tests[kind]) if kind in ("asserts", "functional") else 1
    limit = sandbox.limits.timeout_s * n_tests if lcb else None
    r = sandbox.serve(f"{imports}\n{code}" if imports else code, _harness(tests, kind), limit)
    v = r.value
    if isinstance(v, Verdict) and r.timed_out is False and not r.memory_exceeded:
        res = result(v.reason, r, v.detail)
        res.detail["tests_passed"] = v.passed  # before the first failure (all of them when correct)
        return res
    reason = _run_reason(r)
    if reason is None:  # the channel broke: the program exited, crashed or wrote garbage before the end
        reason = "output_limit" if isinstance(v, OutputLimit) else "runtime_error"
    return result(reason, r, str(v or "")[:300])
