"""The Signal stage end to end on the tiny model: real Ray, vLLM, verifiers, DeepSpeed and Redis.

Kill tests: a rollout actor, a verifier actor and a learner actor are SIGKILLed mid-run, and the driver
itself is killed and resumed; each run finishes and the scheduler's attempt totals equal the number of
verified samples in the run's metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ssp.config import load_config
from ssp.tree import SSPConfig
from tests.conftest import REPO

PHASES = "rl.phases=[{name: math, steps: 6, max_tokens: 24, subdomains: [add, sub, mul, mod]}]"


def small(tmp: Path, model: Path, *extra: str) -> list[str]:
    return [f"run_dir={tmp}", f"model.path={model}", "cluster.dashboard=false", "data.toy.per_cell=20",
            "rl.batch_problems=4", "rl.group_size=4", "rl.eval_every=3",
            "rl.eval_k=2", "rl.eval_max_problems=8", "rl.checkpoint_every=2", "learner.lr=1e-3",
            "rollout.num_cpus_per_engine=1", "engine.max_model_len=128", "rl.pipeline=true", PHASES, *extra]


def attempts_and_samples(run_dir: Path) -> tuple[int, int]:
    from cluster.scheduler import open_scheduler

    conf = load_config(SSPConfig, run_dir / "config.yaml")
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    samples = sum(r["samples"] for r in recs if "samples" in r)
    with open_scheduler(f"{run_dir.name}-{conf.rl.phases[0].name}", conf.scheduler, run_dir / "redis") as s:
        attempts = sum(p["attempts"] for p in s.problems())
    return attempts, samples


def kill_actor(cls: str) -> int | None:
    """SIGKILL one process of a Ray actor class (found by Ray's process title)."""
    for p in psutil.process_iter(["cmdline"]):
        if " ".join(p.info["cmdline"] or []).startswith(f"ray::{cls}"):
            p.send_signal(signal.SIGKILL)
            return p.pid
    return None


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum('"samples"' in line for line in path.read_text().splitlines())


def test_rl_survives_killed_rollout_verifier_and_learner(ray_cluster, tiny_model_dir, tmp_path):
    from trainer.rl import main

    run_dir = tmp_path / "kills"
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", small(run_dir, tiny_model_dir))
    killed: dict[str, int | None] = {}

    def killer():
        for after, cls in ((1, "RolloutWorker"), (2, "VerifierActor"), (3, "LearnerWorker")):
            while logged_steps(run_dir) < after:
                time.sleep(0.05)
            time.sleep(0.3)
            killed[cls] = kill_actor(cls)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = main(conf)
    t.join(timeout=5)
    assert all(killed.get(c) for c in ("RolloutWorker", "VerifierActor", "LearnerWorker")), killed
    assert summary["steps"] == 6 and summary["learner_restarts"] == 1
    ids = set(summary["eval_before"]["per_problem"])  # the paired gain is over the same held-out problems
    assert ids == set(summary["eval_after"]["per_problem"]) and len(ids) == summary["eval_after"]["problems"]
    assert summary["pass1_gain_paired"] == pytest.approx(summary["pass1_gain"])
    by_level = summary["eval_after"]["pass1_by_level"]  # the graded toy pool's levels
    assert by_level and set(by_level) <= {"1", "2", "3", "4", "5", "6"} and all(0 <= v <= 1 for v in by_level.values())
    se = summary["pass1_gain_paired_se"]
    assert summary["pass1_gain_se"] == pytest.approx(summary["pass1_gain"] / se if se else 0.0)
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 6 * 4 * 4
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "samples" in r]
    assert [r["step"] for r in steps] == list(range(6))
    for key in ("reward_mean", "pass_rate", "zero_adv_frac", "w_mean", "entropy", "clip_frac", "approx_kl",
                "len_mean", "len_max", "trunc_frac", "time_generate", "time_verify", "time_train", "time_sync",
                "tokens_per_s", "grad_norm", "lr", "w_std", "adv_abs_mean", "time", "step_wall_s"):
        assert key in steps[0], key
    for r in steps:  # sane values, sync mode
        assert r["staleness"] == 0 and 0 < r["w_mean"] <= 1 and 0 <= r["pass_rate"] <= 1 and r["lr"] == 1e-3
        assert r["step_wall_s"] >= r["time_generate"] + r["time_verify"] + r["time_train"] > 0
        assert abs(r["tokens_per_s"] - r["samples"] * r["len_mean"] / r["step_wall_s"]) < 1e-6 * r["tokens_per_s"]
    assert [r["time"] for r in steps] == sorted(r["time"] for r in steps)
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert all(e["duration_s"] > 0 and e["time"] > 0 for e in evals)
    s = json.loads((run_dir / "summary.json").read_text())
    for key in ("pass1_before", "pass1_after", "wall_minutes", "steps", "samples", "zero_adv_frac_mean",
                "time_generate", "time_verify", "time_train", "time_sync"):
        assert key in s, key
    assert (run_dir / "curves.png").stat().st_size > 10_000
    assert (run_dir / "final-model" / "model.safetensors").exists()


def test_learner_killed_while_checkpointing_restarts_from_the_previous_checkpoint(ray_cluster, tiny_model_dir,
                                                                                  tmp_path, monkeypatch):
    """The learner dies inside the step-4 checkpoint (not in a train step): the driver restarts it from the
    step-2 checkpoint, redoes steps 2-3 and finishes; nothing is double-counted."""
    from trainer import rl

    run_dir = tmp_path / "ckpt-kill"
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       small(run_dir, tiny_model_dir, "rl.eval_every=0", "rl.pipeline=false"))
    save, calls = rl.Run.checkpoint, []

    def checkpoint_with_kill(self, step):
        calls.append(step)
        if calls == [2, 4]:
            assert kill_actor("LearnerWorker")
        return save(self, step)

    monkeypatch.setattr(rl.Run, "checkpoint", checkpoint_with_kill)
    # Weights never pass through the driver: nothing it receives from Ray is near the state dict's size.
    import pickle

    import ray

    from actors.learner import LearnerGroup

    real_get, received = ray.get, []

    def sized_get(refs, *a, **kw):
        out = real_get(refs, *a, **kw)
        received.append(len(pickle.dumps(out)))
        return out

    def no_state_dict(self):
        raise AssertionError("the RL loop must not gather the state dict into the driver")

    monkeypatch.setattr(ray, "get", sized_get)
    monkeypatch.setattr(LearnerGroup, "state_dict", no_state_dict)
    summary = rl.main(conf)
    assert calls == [2, 4, 4, 6] and summary["steps"] == 6 and summary["learner_restarts"] == 1
    weights_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    assert len(received) > 50 and max(received) < weights_bytes / 4, (max(received), weights_bytes)
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 6 * 4 * 4


def test_one_step_off_policy_with_dynamic_sampling_and_prefilter(ray_cluster, tiny_model_dir, tmp_path):
    from trainer.rl import main

    run_dir = tmp_path / "async"
    phases = ("rl.phases=[{name: a, steps: 3, max_tokens: 24, subdomains: [add, sub]}, "
              "{name: b, steps: 3, max_tokens: 24, subdomains: [sub, add], prefilter: true}]")
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       small(run_dir, tiny_model_dir, "rl.mode=one-step-off", "rl.dynamic_sampling_rounds=1",
                             "rl.eval_every=0", "rl.checkpoint_every=0", "scheduler.min_attempts=4", phases))
    summary = main(conf)
    all_recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in all_recs if "samples" in r]
    assert [r["staleness"] for r in recs] == [0, 1, 1, 0, 1, 1]  # t+1 generated on the weights before step t
    # phase b shares phase a's pool (same subdomains) and drops what a left at pass rate 0 or 1
    assert [r["prefiltered"] for r in all_recs if "prefiltered" in r][0] >= 1
    assert all(r["samples"] >= 16 for r in recs)
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == summary["samples"]


def test_driver_killed_then_resumed_in_async_mode(tiny_model_dir, tmp_path):
    """Async mode (2 batches in flight ahead of the learner, TIS on): the driver and everything it started
    are killed mid-run; the resumed run redoes the lost steps from their plans and counts each sample once."""
    run_dir = tmp_path / "resume"
    cmd = [sys.executable, "-m", "ssp.cli", "rl", "--config", "configs/tiny-cpu.yaml",
           *small(run_dir, tiny_model_dir, "rl.mode=async", "rl.max_staleness=2")]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 400
    while logged_steps(run_dir) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    assert (run_dir / "checkpoint" / "extra.pt").exists()
    out = subprocess.run([sys.executable, "-m", "ssp.cli", "rl", "--resume", str(run_dir)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 6 * 4 * 4
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "samples" in r]
    assert [r["step"] for r in steps] == list(range(6))
    assert all(0 <= r["staleness"] <= 2 for r in steps) and max(r["staleness"] for r in steps) >= 1
    assert all(0 <= r["is_frac"] <= 1 for r in steps)  # TIS ran (auto in async mode)



def test_zero_advantage_share_and_group_counts_are_read_from_the_scored_groups():
    """With a KL term no group is skipped, yet a group whose rewards are all equal still carries no signal."""
    from types import SimpleNamespace as NS

    from trainer.rl import group_correct, zero_adv_frac

    adv = {"a": [0.0] * 4, "b": [0.5, -0.5, 0.5, -0.5], "c": [0.0] * 4}
    rollouts = [NS(problem_id=p, advantage=x) for p, xs in adv.items() for x in xs]
    verdicts = [NS(reward=r) for r in [1, 1, 1, 1] + [1, 0, 1, 0] + [0, 0, 0, 0]]
    assert zero_adv_frac(rollouts) == pytest.approx(2 / 3)
    assert group_correct(rollouts, verdicts) == [0, 2, 4]
