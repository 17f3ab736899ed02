"""Verifier throughput on this host: math checks/s, sandboxed code executions/s, sandbox overhead.

Run: PYTHONPATH=. .venv/bin/python benchmarks/verifiers.py   (last line: one JSON object)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.sandbox import SYSTEM_PYTHON, Sandbox, SandboxLimits  # noqa: E402
from trainer.rewards import MathChecker, grade_code, mbpp_tests  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
WORKERS = 2


def _median_ms(fn, n: int = 50) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def bench_math() -> float:
    answers = [json.loads(x)["answer"] for x in (SHARED / "data/math/eval/math500.jsonl").read_text().splitlines()]
    checkers = [MathChecker(timeout_s=5) for _ in range(WORKERS)]
    for c in checkers:
        c.check("\\boxed{1}", "1")  # start the helpers outside the timing
    chunks = [answers[k::WORKERS] for k in range(WORKERS)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(lambda k: [checkers[k].check(f"\\boxed{{{a}}}", a) for a in chunks[k]], range(WORKERS)))
    rate = len(answers) / (time.perf_counter() - t0)
    for c in checkers:
        c.close()
    return rate


def bench_code(sb: Sandbox) -> float:
    rows = [json.loads(x) for x in (SHARED / "data/code/mbpp_sanitized.jsonl").read_text().splitlines()][:200]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(lambda r: grade_code(r["reference_solution"], mbpp_tests(r), lambda s, i: sb.run(s, i)), rows))
    return len(rows) / (time.perf_counter() - t0)


def main() -> None:
    sb = Sandbox(SandboxLimits(timeout_s=10), uids=[63900 + k for k in range(WORKERS)])
    math_rate = bench_math()
    code_rate = bench_code(sb)
    sandbox_ms = _median_ms(lambda: sb.run("pass"))
    plain_ms = _median_ms(lambda: subprocess.run([SYSTEM_PYTHON, "-c", "pass"], check=True))
    print(f"math: {math_rate:.1f} checks/s   code: {code_rate:.1f} execs/s   ({WORKERS} workers)")
    print(f"trivial program: sandbox {sandbox_ms:.1f} ms, plain subprocess {plain_ms:.1f} ms (median of 50)")
    print(json.dumps({"math_checks_per_s": round(math_rate, 1), "code_execs_per_s": round(code_rate, 1),
                      "sandbox_ms": round(sandbox_ms, 2), "plain_subprocess_ms": round(plain_ms, 2),
                      "sandbox_overhead_ms": round(sandbox_ms - plain_ms, 2)}))


if __name__ == "__main__":
    main()
