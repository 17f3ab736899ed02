"""Drive short `ssp rl` runs on a LocalNodes cluster (cluster/local_nodes.py) laid out as k8s/raycluster.yaml,
and audit them: the harness of tests/test_multinode.py and `make chaos` (benchmarks/faults.py). A head with no
CPUs (GCS and the driver), a "gpu" worker carrying `ssp_gpu` (engines, learner ranks) and a "cpu" worker
carrying `ssp_cpu` (verifiers). Runs are subprocesses in their own session, so a test can kill one whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cluster.local_nodes import LocalNodes

REPO = Path(__file__).resolve().parents[1]
GPU = {"ssp_gpu": 4}  # the engine (1) and two learner ranks (1 each); 4 Ray CPUs
CPU = {"ssp_cpu": 4}  # two verifiers, or two verifiers and two learner ranks; 4 Ray CPUs


def rl_cmd(nodes: LocalNodes, run_dir: Path, model: Path, phases: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ssp.cli", "rl", "--config", "configs/tiny-cpu.yaml", f"run_dir={run_dir}",
            f"model.path={model}", f"cluster.address={nodes.address}", "data.toy.per_cell=20",
            "rl.batch_problems=4", "rl.group_size=4", "rl.eval_every=0", "rl.eval_k=2", "rl.eval_max_problems=8",
            "rl.checkpoint_every=2", "learner.lr=1e-3", "rollout.num_cpus_per_engine=1", "engine.max_model_len=128",
            "rl.pipeline=true", "rollout.resources={ssp_gpu: 1}", "verifier.resources={ssp_cpu: 1}",
            "learner.startup_timeout_s=240", "rollout.startup_timeout_s=240", "verifier.restart_timeout_s=240",
            phases, *extra]


def start(nodes: LocalNodes, cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**nodes.env, "SSP_CLUSTER_DIR": str(log.parent / "no-cluster")}
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def steps_logged(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    return sum("samples" in json.loads(x) for x in lines if x.strip())


def wait_steps(proc: subprocess.Popen, run_dir: Path, n: int, log: Path, timeout_s: float = 400) -> None:
    deadline = time.time() + timeout_s
    while steps_logged(run_dir) < n:
        assert proc.poll() is None, f"the run ended before step {n}:\n{log.read_text()[-4000:]}"
        assert time.time() < deadline, f"step {n} not reached in {timeout_s}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def finish(proc: subprocess.Popen, run_dir: Path, log: Path, timeout_s: float = 600) -> dict:
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        raise AssertionError(f"the run did not finish in {timeout_s}s:\n{log.read_text()[-4000:]}") from None
    assert rc == 0, log.read_text()[-4000:]
    return json.loads((run_dir / "summary.json").read_text())


def attempts_and_samples(run_dir: Path) -> tuple[int, int]:
    """The scheduler's attempts over every pool of the run, and the samples of its logged steps."""
    from cluster.scheduler import open_scheduler
    from ssp.config import load_config
    from ssp.tree import SSPConfig

    conf = load_config(SSPConfig, run_dir / "config.yaml")
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    samples = sum(r["samples"] for r in recs if "samples" in r)
    attempts = 0
    for pool in dict.fromkeys(ph.name for ph in conf.rl.phases):
        with open_scheduler(f"{run_dir.name}-{pool}", conf.scheduler, run_dir / "redis") as s:
            attempts += sum(p["attempts"] for p in s.problems())
    return attempts, samples


def wire_mb(model: Path) -> float:
    """MiB the object-store publish sends for a model folder: every tensor, a tied LM head under its own name too
    (actors/weight_sync.py pack_weights)."""
    from safetensors import safe_open

    n, shapes = 0, {}
    for f in model.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                shapes[k] = t.numel() * t.element_size()
    n = sum(shapes.values())
    if "lm_head.weight" not in shapes:
        n += shapes["model.embed_tokens.weight"]
    return n / 2**20
