"""Verifier throughput on this host: math checks/s, code checks/s, sandbox overhead and the harness's cost.

The sandbox overhead is a sandboxed `pass` program minus a bare `python3 -c pass`, measured interleaved
(one of each, in turn) so load drifts hit both alike. The harness split costs a serving run (solution
loaded, one call answered over the channel) minus a sandboxed script run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/verifiers.py [--baseline OTHER_CHECKOUT]   (last line: JSON)
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.verifier.code_grader import grade_code, mbpp_tests  # noqa: E402
from actors.verifier.host import SYSTEM_PYTHON  # noqa: E402
from actors.verifier.math_checker import MathChecker  # noqa: E402
from actors.verifier.sandbox import Sandbox, SandboxLimits  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
WORKERS = 2


def _median_ms(fn, n: int = 50) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def bench_math(checker_cls=MathChecker) -> float:
    """math-500's gold answers, each boxed after a closed think block, checked against itself."""
    answers = [json.loads(x)["answer"] for x in (DATA / "eval/math/math500.jsonl").read_text().splitlines()]
    checkers = [checker_cls(timeout_s=5) for _ in range(WORKERS)]
    for c in checkers:
        c.check("<think>.</think>\\boxed{1}", "1")  # start the helpers outside the timing
    chunks = [answers[k::WORKERS] for k in range(WORKERS)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(lambda k: [checkers[k].check(f"<think>.</think>\\boxed{{{a}}}", a) for a in chunks[k]],
                    range(WORKERS)))
    rate = len(answers) / (time.perf_counter() - t0)
    for c in checkers:
        c.close()
    return rate


def bench_code(sb: Sandbox, grader=None) -> float:
    """MBPP's first 200 reference solutions through `grader` (a code_grader module; this checkout's by default)."""
    grade, tests_of = (grader.grade_code, grader.mbpp_tests) if grader else (grade_code, mbpp_tests)
    rows = [json.loads(x) for f in ("eval/code/mbpp_test.jsonl", "train/code/mbpp_train.jsonl")
            for x in (DATA / f).read_text().splitlines()][:200]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as ex:
        results = list(ex.map(lambda r: grade(f"```python\n{r['reference_solution']}\n```", tests_of(r), sb),
                              rows))
    assert all(r.reward == 1.0 for r in results), [r.reason for r in results if r.reward != 1.0][:5]
    return len(rows) / (time.perf_counter() - t0)


def interleaved_ms(fns: dict, n: int = 60) -> dict[str, float]:
    """Median ms of each function, called in turn n times."""
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in ts.items()}


def one_call(ch) -> None:
    ch.recv()
    assert ch.request({"op": "call", "target": "f", "args": [], "kwargs": {"$dict": []}}) == {"ok": 1}


def _where(checkout: str, *paths: str) -> str:
    """The first of `paths` the other checkout has (the verifier moved to actors/verifier/ in issue 28)."""
    return next((p for p in paths if (Path(checkout) / p).exists()), paths[-1])


def load_baseline(checkout: str, package: str, relpath: str, name: str):
    """Module `relpath` of another checkout of this repo (e.g. the commit before an issue), imported under
    `name` with its own `package.*` imports resolved there, so both versions run side by side in this process."""
    import importlib.util

    root = Path(checkout).resolve()
    sys.path.insert(0, str(root))  # its own imports resolve there while it loads
    mine = [k for k in sys.modules if k.split(".")[0] in (package, "trainer", "actors")]
    saved = {k: sys.modules.pop(k) for k in mine}
    try:
        spec = importlib.util.spec_from_file_location(name, root / relpath)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(root))
        mod_theirs = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in (package, "trainer", "actors")}
        sys.modules.update(saved)
    mod.__baseline_modules__ = mod_theirs  # for the imports its functions make when called (see `theirs`)
    return mod


@contextlib.contextmanager
def theirs(mod):
    """Run the other checkout's code with its own modules importable (its functions import lazily)."""
    mine = {k: sys.modules.pop(k) for k in list(sys.modules) if k in mod.__baseline_modules__}
    sys.modules.update(mod.__baseline_modules__)
    try:
        yield
    finally:
        for k in mod.__baseline_modules__:
            sys.modules.pop(k, None)
        sys.modules.update(mine)


def baseline_grader(checkout: str):
    """(the other checkout's code_grader module, a Sandbox of its own with two slots)."""
    mod = load_baseline(checkout, "actors", _where(checkout, "actors/verifier/code_grader.py", "actors/code_grader.py"),
                        "baseline_code_grader")
    limits = mod.Sandbox.__init__.__globals__["SandboxLimits"]  # from its own actors.verifier.sandbox
    return mod, mod.Sandbox(limits(timeout_s=10), uids=[63910, 63911])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="another checkout whose sandbox to time side by side (git worktree)")
    args = ap.parse_args()
    sb = Sandbox(SandboxLimits(timeout_s=10), uids=[63900 + k for k in range(WORKERS)])
    assert sb.cgroups is not None, "no cgroup: these figures would not be the ones CI and users get"
    math_rate = bench_math()
    old_math = None
    if args.baseline:
        old_rewards = load_baseline(args.baseline, "trainer", _where(
            args.baseline, "actors/verifier/math_checker.py", "trainer/rewards.py"), "baseline_rewards")
        with theirs(old_rewards):
            old_math = bench_math(old_rewards.MathChecker)
    code_rate = bench_code(sb)
    if args.baseline:
        old_grader, old = baseline_grader(args.baseline)
        with theirs(old_grader):
            old_code = bench_code(old, old_grader)
    fns = {"plain": lambda: subprocess.run([SYSTEM_PYTHON, "-c", "pass"], check=True),
           "sandbox": lambda: sb.run("pass"),
           "serve": lambda: sb.serve("def f():\n    return 1\n", one_call)}
    if args.baseline:
        fns["baseline"] = lambda: old.run("pass")
    ms = interleaved_ms(fns)
    if args.baseline:
        print(f"baseline ({args.baseline}): sandbox {ms['baseline']:.1f} ms, overhead "
              f"{ms['baseline'] - ms['plain']:.1f} ms; math {old_math:.1f} checks/s; code {old_code:.1f} checks/s")
    print(f"math: {math_rate:.1f} checks/s   code: {code_rate:.1f} checks/s (MBPP references, {WORKERS} workers)")
    print(f"trivial program: sandbox {ms['sandbox']:.1f} ms, plain subprocess {ms['plain']:.1f} ms; "
          f"serving run with one harness call {ms['serve']:.1f} ms (medians of 60, interleaved)")
    print(json.dumps({"math_checks_per_s": round(math_rate, 1), "code_checks_per_s": round(code_rate, 1),
                      "sandbox_ms": round(ms["sandbox"], 2), "plain_subprocess_ms": round(ms["plain"], 2),
                      "sandbox_overhead_ms": round(ms["sandbox"] - ms["plain"], 2),
                      "harness_split_ms": round(ms["serve"] - ms["sandbox"], 2),
                      **({"baseline_sandbox_overhead_ms": round(ms["baseline"] - ms["plain"], 2),
                          "baseline_math_checks_per_s": round(old_math, 1),
                          "baseline_code_checks_per_s": round(old_code, 1)} if args.baseline else {})}))


if __name__ == "__main__":
    main()
