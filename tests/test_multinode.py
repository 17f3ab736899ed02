"""`ssp rl` on a real 3-node Ray cluster on this machine (cluster/local_nodes.py), laid out as
k8s/raycluster.yaml: a head with no CPUs (GCS and the driver), a "gpu" worker carrying `ssp_gpu` (engines and
learner ranks) and a "cpu" worker carrying `ssp_cpu` (verifiers). One cluster for the module; the runs go in
order and each loses something: the verifier node during a code phase, the engine+learner node mid-run, the
run's Redis. Each run must finish with a summary and the scheduler's attempts equal to the samples its
metrics count (nothing lost, nothing counted twice)."""

from __future__ import annotations

import json
import re
import time

import psutil
import pytest

from cluster.local_nodes import LocalNodes
from ssp.chaos import CPU, GPU, attempts_and_samples, finish, rl_cmd, start, steps_logged, wait_steps, wire_mb


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
