"""Faults injected into real runs, one after another, and what each cost (`make chaos`, ~20 minutes).

A 3-node Ray cluster on this machine (cluster/local_nodes.py: a head with no CPUs, a "gpu" worker with `ssp_gpu`
for engines and learner ranks, a "cpu" worker with `ssp_cpu` for verifiers; Ray's default health checks, so a
lost node is declared dead after ~15 s), the tiny model, `ssp rl` as a user runs it:

- `gpu_node`: the engine + learner node is SIGKILLed mid-run (its raylet, agents, workers); a replacement node
  joins 5 s later. The run restarts the learner from its checkpoint and redoes the steps since.
- `cpu_node`: the verifiers' node is lost during a code phase; a replacement joins 5 s later.
- `redis_external`: the scheduler's Redis (scheduler.redis_url, as `ssp cluster up` or k8s/redis.yaml give) is
  SIGKILLed and restarted by its "operator" 10 s later on its AOF; the run waits for it.
- `redis_embedded`: the run's own Redis is SIGKILLed; the run restarts it.
- `head_node`: the head (GCS, driver) is SIGKILLed mid-run and the cluster replaced; the same `ssp rl ...
  --auto-resume` command on a new cluster continues from the checkpoint, as a RayJob's retry does.
- `serve`: `ssp serve` under load (streaming, non-streaming, malformed), then a replica killed mid-load.

Per run: `recovery_s` = the longest wait for a step after the fault (from the fault to the first step finished
after it, or between two steps), beside `step_s`, the median step before it; `samples_lost` = samples of
logged steps the scheduler never counted plus any it counted twice (must be 0). Usage:
    python benchmarks/faults.py [--steps 12] [--requests 2000] [--scenarios gpu_node cpu_node redis_external redis_embedded head_node serve]
Last line: {"faults_injected", "runs_completed", "runs_failed", "samples_lost", "steps_retrained", "recovery_s",
"serve_requests", "serve_5xx_valid", "serve_4xx_malformed", "serve_p99_ms", ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.env import apply  # noqa: E402

apply()

from ssp.chaos import (  # noqa: E402  (the run harness tests/test_multinode.py uses too)
    CPU,
    GPU,
    attempts_and_samples,
    rl_cmd,
    start,
    steps_logged,
    wait_steps,
)

MATH = "rl.phases=[{{name: math, steps: {n}, max_tokens: 24, subdomains: [add, sub, mul, mod]}}]"
CODE = ("rl.phases=[{{name: math, steps: 2, max_tokens: 24, subdomains: [add, sub, mul, mod]}}, "
        "{{name: code, steps: {m}, max_tokens: 24, subdomains: [code]}}]")


def stall(run_dir: Path, t: float) -> tuple[float, float]:
    """(the longest wait between `t` and the step records after it, the median gap between step records
    before `t`): what the fault cost the run's progress, beside what a step takes."""
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in recs if "samples" in r]
    after, before = [t] + [x for x in times if x > t], [x for x in times if x <= t]
    gaps = sorted(b - a for a, b in zip(before, before[1:]))
    return max(b - a for a, b in zip(after, after[1:])), gaps[len(gaps) // 2] if gaps else float("nan")


def one_run(nodes, model: Path, root: Path, name: str, phases: str, steps: int, at: int, fault, *extra: str) -> dict:
    """Start a run, inject `fault(run_dir)` once `at` steps are logged, wait for the end; the run's figures."""
    run_dir, log = root / name, root / f"{name}.log"
    proc = start(nodes, rl_cmd(nodes, run_dir, model, phases, *extra), log)
    wait_steps(proc, run_dir, at, log, timeout_s=900)
    t = time.time()
    fault(run_dir)
    return run_figures(name, run_dir, log, proc.wait(timeout=1800), t, steps)


def run_figures(name: str, run_dir: Path, log: Path, rc: int, t: float, steps: int, redone: int = 0) -> dict:
    """A finished run's figures: its stall after the fault at `t`, the scheduler's count against the samples."""
    out = {"scenario": name, "completed": rc == 0, "log": str(log)}
    if rc == 0:
        recovery, step_s = stall(run_dir, t)
        out.update(recovery_s=round(recovery, 1), step_s=round(step_s, 2))
        summary = json.loads((run_dir / "summary.json").read_text())
        attempts, samples = attempts_and_samples(run_dir)
        expected = steps * 16
        out.update(steps=summary["steps"], samples=samples, attempts=attempts,
                   samples_lost=max(expected - attempts, 0) + abs(attempts - samples) + max(expected - samples, 0),
                   steps_retrained=summary.get("steps_retrained", 0) + redone,
                   recoveries=summary.get("recoveries", 0), wall_minutes=round(summary["wall_minutes"], 2))
    print(json.dumps(out), flush=True)
    return out


def head_scenario(model: Path, root: Path, steps: int) -> dict:
    """The head node lost mid-run: the GCS and the driver (which runs there) die, then the workers' raylets are
    gone too, as when KubeRay replaces the cluster. A new cluster runs the same command again with --auto-resume,
    as the RayJob's retry runs cluster/jobs/k8s_stages.sh; the address comes from RAY_ADDRESS (as a job's does),
    so the command is the same. The scheduler's Redis is external (k8s/redis.yaml) and outlives the cluster."""
    import os
    import re
    import signal
    import subprocess

    from cluster.local_nodes import LocalNodes
    from cluster.redis_server import RedisServer

    run_dir = root / "head_node"
    with RedisServer(root / "head-redis") as srv:
        def attempt(nodes: LocalNodes, log: Path) -> subprocess.Popen:
            cmd = [a for a in rl_cmd(nodes, run_dir, model, MATH.format(n=steps), "learner.resources={ssp_gpu: 1}",
                                     f"scheduler.redis_url={srv.url}", "--auto-resume")
                   if not a.startswith("cluster.address=")]
            env = {**nodes.env, "RAY_ADDRESS": nodes.address, "SSP_CLUSTER_DIR": str(root / "no-cluster")}
            with log.open("w") as out:
                return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)

        with LocalNodes(root / "nodes-first") as first:
            first.add_worker("gpu", GPU, num_cpus=4)
            first.add_worker("cpu", CPU, num_cpus=4)
            proc = attempt(first, root / "head_node-1.log")
            wait_steps(proc, run_dir, steps // 2, root / "head_node-1.log", timeout_s=900)
            while steps_logged(run_dir) < steps // 2 + 1 and proc.poll() is None:  # closely: between checkpoints
                time.sleep(0.02)
            t = time.time()
            first.kill("head")
            os.killpg(proc.pid, signal.SIGKILL)  # the driver, on the head
            proc.wait()
        with LocalNodes(root / "nodes-second") as second:
            second.add_worker("gpu", GPU, num_cpus=4)
            second.add_worker("cpu", CPU, num_cpus=4)
            log = root / "head_node-2.log"
            proc = attempt(second, log)
            rc = proc.wait(timeout=1800)
            m = re.search(r"rl: resumed at step (\d+) .*; (\d+) step\(s\) logged after it are redone", log.read_text())
            # a run that did not say where it resumed counts as failed
            return run_figures("head_node", run_dir, log, rc if m else 1, t, steps, int(m[2]) if m else 0)


def rl_scenarios(model: Path, root: Path, steps: int, names: list[str]) -> list[dict]:
    from cluster.local_nodes import LocalNodes
    from cluster.redis_server import RedisServer

    res: list[dict] = []
    if not set(names) & {"gpu_node", "cpu_node", "redis_external", "redis_embedded"}:
        return res
    with LocalNodes(root / "nodes") as nodes:  # Ray's default health checks
        nodes.add_worker("gpu", GPU, num_cpus=4)
        nodes.add_worker("cpu", CPU, num_cpus=4)
        placed = ("learner.resources={ssp_gpu: 1}",)
        spare = iter(range(1, 100))

        def lose(kind: str, resources: dict):
            def fault(_run_dir: Path) -> None:
                alive = next(n for n in nodes.nodes.values() if n.alive and n.resources == resources)
                nodes.kill(alive.name)
                time.sleep(5)
                nodes.add_worker(f"{kind}-{next(spare)}", resources, num_cpus=4)
            return fault

        if "gpu_node" in names:
            res.append(one_run(nodes, model, root, "gpu_node", MATH.format(n=steps), steps, steps // 2 + 1,
                               lose("gpu", GPU), *placed))
        if "cpu_node" in names:
            res.append(one_run(nodes, model, root, "cpu_node", CODE.format(m=steps - 2), steps, 3,
                               lose("cpu", CPU), *placed))
        if "redis_external" in names:
            with RedisServer(root / "ext-redis") as srv:
                def operator(_run_dir: Path) -> None:
                    srv.kill()
                    time.sleep(10)
                    srv.restart()
                res.append(one_run(nodes, model, root, "redis_external", MATH.format(n=steps), steps, steps // 2,
                                   operator, *placed, f"scheduler.redis_url={srv.url}"))
        if "redis_embedded" in names:
            def kill_own(run_dir: Path) -> None:
                import psutil

                psutil.Process(json.loads((run_dir / "redis" / "server.json").read_text())["pid"]).kill()
            res.append(one_run(nodes, model, root, "redis_embedded", MATH.format(n=steps), steps, steps // 2,
                               kill_own, *placed))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12, help="steps of each RL run")
    ap.add_argument("--scenarios", nargs="+", default=["gpu_node", "cpu_node", "redis_external", "redis_embedded",
                                                       "head_node", "serve"])
    ap.add_argument("--requests", type=int, default=2000, help="serve: requests of the load run")
    args = ap.parse_args()

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.models.tiny import build

    root = Path(tempfile.mkdtemp(prefix="ssp-faults-"))
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    model = build(conf.model.tiny, root / "tiny-model")
    t0 = time.time()
    runs = rl_scenarios(model, root, args.steps, args.scenarios)
    if "head_node" in args.scenarios:
        runs.append(head_scenario(model, root, args.steps))
    serve = serve_scenario(model, root, args.requests) if "serve" in args.scenarios else {}
    done = [r for r in runs if r["completed"]]
    figures = {
        "faults_injected": len(runs) + (1 if serve else 0), "runs_completed": len(done),
        "runs_failed": len(runs) - len(done), "samples_lost": sum(r["samples_lost"] for r in done),
        "steps_retrained": sum(r["steps_retrained"] for r in done),
        "recovery_s": {r["scenario"]: r.get("recovery_s") for r in runs},
        "step_s": {r["scenario"]: r.get("step_s") for r in runs},
        **serve, "wall_minutes": round((time.time() - t0) / 60, 1),
    }
    print(json.dumps(figures))


def serve_scenario(model: Path, root: Path, requests: int) -> dict:
    """`ssp serve` (its own local head, as a user starts it) under `requests` requests from 32 clients, a quarter
    malformed, half the valid ones streamed; then a replica SIGKILLed a third of the way into another load."""
    import os

    from cluster.redis_server import free_port
    from serve.load import kill_and_recover, run_load, serve_process

    key, port = "faults-key", free_port()
    args = ["--config", "configs/tiny-cpu.yaml", "--model", str(model), f"serve.port={port}", "serve.max_tokens=64",
            "serve.model_id=tiny"]
    with serve_process(args, root / "serve.log", env={**os.environ, "RAY_ADDRESS": "", "SSP_API_KEY": key},
                       cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        kw = {"model": "tiny", "key": key, "clients": 32, "malformed_frac": 0.25, "stream_frac": 0.5,
              "max_tokens": 16, "timeout_s": 120}
        f = run_load(url, requests=requests, seed=11, **kw)
        print(json.dumps({"scenario": "serve_load", **{k: v for k, v in f.items() if k != "contents"}}), flush=True)
        k = run_load(url, requests=max(requests // 3, 60), seed=12, during_at=0.3,
                     during=kill_and_recover(url, "tiny", key, root_pid=proc.pid), **{**kw, "timeout_s": 300})
        print(json.dumps({"scenario": "serve_replica_kill", **{x: v for x, v in k.items() if x != "contents"}}),
              flush=True)
    return {"serve_requests": f["requests"], "serve_5xx_valid": f["5xx_valid"],
            "serve_4xx_malformed": f["4xx_malformed"], "serve_malformed": f["malformed"],
            "serve_rps": f["rps"], "serve_p50_ms": f["p50_ms"], "serve_p99_ms": f["p99_ms"],
            "serve_ttft_p99_ms": f["ttft_p99_ms"],
            "serve_kill_requests": k["requests"], "serve_kill_ok_valid": k["ok_valid"],
            "serve_kill_failed_valid": k["failures_valid"], "serve_kill_timeouts": k["timeouts"],
            "serve_kill_recovery_s": k["during"]["recovery_s"], "serve_kill_max_latency_ms": k["max_latency_ms"]}


if __name__ == "__main__":
    main()
