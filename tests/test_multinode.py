"""`ssp rl` on a real 3-node Ray cluster on this machine (cluster/local_nodes.py), laid out as
k8s/raycluster.yaml: a head with no CPUs (GCS and the driver), a "gpu" worker carrying `ssp_gpu` (engines and
learner ranks) and a "cpu" worker carrying `ssp_cpu` (verifiers). One cluster for the module; the runs go in
order and each loses something: the verifier node during a code phase, the engine+learner node mid-run, the
run's Redis. Each run must finish with a summary and the scheduler's attempts equal to the samples its
metrics count (nothing lost, nothing counted twice)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cluster.local_nodes import LocalNodes
from tests.conftest import REPO

GPU = {"ssp_gpu": 4}  # the engine (1) and two learner ranks (1 each); 4 Ray CPUs
CPU = {"ssp_cpu": 4}  # two verifiers, or two verifiers and two learner ranks; 4 Ray CPUs


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    # the GCS declares a silent node dead after 3 missed 1 s health checks (Ray's default: 5 x 3 s)
    n = LocalNodes(tmp_path_factory.mktemp("nodes"), health_period_ms=1000, health_misses=3).start()
    try:
        n.add_worker("gpu", GPU, num_cpus=4)
        n.add_worker("cpu", CPU, num_cpus=4)
        yield n
    finally:
        n.stop()


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


def test_placement_follows_the_resources_and_the_verifier_node_is_lost_in_a_code_phase(nodes, tiny_model_dir,
                                                                                         tmp_path):
    run_dir, log = tmp_path / "placed", tmp_path / "placed.log"
    phases = ("rl.phases=[{name: math, steps: 2, max_tokens: 24, subdomains: [add, sub, mul, mod]}, "
              "{name: code, steps: 4, max_tokens: 24, subdomains: [code]}]")
    proc = start(nodes, rl_cmd(nodes, run_dir, tiny_model_dir, phases, "learner.resources={ssp_gpu: 1}"), log)
    wait_steps(proc, run_dir, 3, log)  # the code phase has begun
    p = json.loads((run_dir / "placement.json").read_text())
    gpu, cpu = nodes.nodes["gpu"].node_id, nodes.nodes["cpu"].node_id
    assert p["engines"] == [gpu] and p["learner"] == [gpu, gpu] and p["verifiers"] == [cpu, cpu], p
    assert p["nodes"][p["driver"]]["head"] and "CPU" not in p["nodes"][p["driver"]]["resources"]
    nodes.kill("cpu")
    lost_at = steps_logged(run_dir)
    time.sleep(3)
    nodes.add_worker("cpu2", CPU, num_cpus=4)
    summary = finish(proc, run_dir, log)
    out = log.read_text()
    assert summary["steps"] == 6 and summary["recoveries"] == 0, summary  # the pool waited; no step was redone
    assert lost_at < 5, "the node was lost at the last step: nothing was tested"
    assert out.count("verifier: actor 0 lost (ActorUnavailableError") == 1 and "verifier: actor 0 is back" in out
    assert f"node {cpu[:6]} (ssp_cpu) left the cluster; it held verifiers 0, verifiers 1" in out, out[-3000:]
    assert f"placement: engines on {gpu[:6]} (ssp_gpu)" in out
    new = json.loads((run_dir / "placement.json").read_text())
    assert new["verifiers"] == [nodes.nodes["cpu2"].node_id] * 2 and new["engines"] == [gpu], new
    assert attempts_and_samples(run_dir) == (6 * 16, 6 * 16)


def test_losing_the_engine_and_learner_node_waits_for_a_replacement_and_resumes(nodes, tiny_model_dir, tmp_path):
    run_dir, log = tmp_path / "lost", tmp_path / "lost.log"
    phases = "rl.phases=[{name: math, steps: 6, max_tokens: 24, subdomains: [add, sub, mul, mod]}]"
    proc = start(nodes, rl_cmd(nodes, run_dir, tiny_model_dir, phases, "learner.resources={ssp_gpu: 1}",
                               "rl.checkpoint_every=3"), log)
    wait_steps(proc, run_dir, 4, log)  # the checkpoint of step 3 is written
    old = nodes.nodes["gpu"].node_id
    nodes.kill("gpu")
    time.sleep(3)
    new = nodes.add_worker("gpu2", GPU, num_cpus=4).node_id
    summary = finish(proc, run_dir, log)
    out = log.read_text()
    assert summary["steps"] == 6 and summary["recoveries"] >= 1 and summary["learner_restarts"] >= 1, summary
    back = re.search(r"rl: recovered in [0-9.]+s from .*\(learner restarted, back to checkpoint step (\d+): (\d+) "
                     r"steps redone\)", out)
    assert back and int(back[1]) in (3, 6) and summary["steps_retrained"] == int(back[2]), out[-3000:]
    p = json.loads((run_dir / "placement.json").read_text())
    assert p["engines"] == [new] and p["learner"] == [new, new] and old not in p["nodes"], p
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 6 * 16
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "samples" in json.loads(x)]
    assert steps == list(range(6)), steps  # each step once in the record: redone steps replaced, not added


def test_weights_cross_nodes_and_the_runs_redis_is_killed_and_restarted(nodes, tiny_model_dir, tmp_path):
    """Learner ranks on the verifiers' node, engines on the other: every publish moves the weights between
    nodes through the object store. Mid-run the run's own Redis is SIGKILLed: the run restarts it on the same
    port from its AOF and goes on; the counts stay exact."""
    run_dir, log = tmp_path / "weights", tmp_path / "weights.log"
    phases = "rl.phases=[{name: math, steps: 5, max_tokens: 24, subdomains: [add, sub, mul, mod]}]"
    proc = start(nodes, rl_cmd(nodes, run_dir, tiny_model_dir, phases, "learner.resources={ssp_cpu: 1}"), log)
    wait_steps(proc, run_dir, 2, log)
    pid = json.loads((run_dir / "redis" / "server.json").read_text())["pid"]
    psutil.Process(pid).kill()
    summary = finish(proc, run_dir, log)
    out = log.read_text()
    p = json.loads((run_dir / "placement.json").read_text())
    assert set(p["engines"]).isdisjoint(p["learner"]) and p["driver"] not in p["engines"] + p["learner"], p
    assert summary["steps"] == 5, summary
    assert "scheduler: the run's embedded Redis had died; restarted it" in out, out[-3000:]
    assert not (run_dir / "redis" / "server.json").exists()  # the revived server was shut down with the run
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if "samples" in x]
    assert all(r["sync_mb"] == pytest.approx(wire_mb(run_dir / "final-model"), rel=1e-3) and r["time_sync"] > 0
               for r in steps), [(r["sync_mb"], r["time_sync"]) for r in steps]
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 5 * 16
