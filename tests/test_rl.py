"""The Signal stage end to end on the tiny model: real Ray, vLLM, verifiers, DeepSpeed and Redis.

Kill tests: a rollout actor, a verifier actor and a learner actor are SIGKILLed mid-run, and the driver
itself is killed and resumed; each run finishes and the scheduler's attempt totals equal the number of
verified samples in the run's metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ssp.config import load_config
from ssp.io import DataError
from ssp.tree import SSPConfig
from tests.conftest import REPO
from trainer import checkpoints as ck
from trainer.export import export

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


@pytest.fixture(scope="module")
def kills_run(ray_cluster, tiny_model_dir, tmp_path_factory):
    """One 6-step run (evals at 3 and 6; HF checkpoints every 2 steps and at the step-3 eval, rl.keep_last=2) during
    which a rollout, a verifier and a learner actor are SIGKILLed; the kill test and the checkpoint tests read it."""
    from trainer.rl import main

    run_dir = tmp_path_factory.mktemp("rl") / "kills"
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", small(run_dir, tiny_model_dir, "rl.keep_last=2"))
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
    return {"dir": run_dir, "summary": summary, "killed": killed}


def test_rl_survives_killed_rollout_verifier_and_learner(kills_run):
    run_dir, summary, killed = kills_run["dir"], kills_run["summary"], kills_run["killed"]
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


def eval_by_step(run_dir: Path) -> dict[int, dict]:
    """The run's held-out evals by step (a step redone after a restart: its last eval)."""
    return {r["step"]: r for r in map(json.loads, (run_dir / "eval.jsonl").read_text().splitlines())}


def card_table(readme: str) -> dict[int, tuple[float, bool]]:
    """step -> (Pass@1, marked exported) from the model card's eval table."""
    rows = [line.strip("|").split("|") for line in readme.splitlines() if re.match(r"\| \d+ \|", line)]
    return {int(r[0]): (float(r[1]), "exported" in r[5]) for r in rows}


def test_kept_checkpoints_are_indexed_and_load_in_transformers_and_vllm(kills_run, tiny_model_dir):
    """rl.keep_last=2 (+ the best eval): steps 4 and 6 and the best of the evals at 3 and 6 remain, whatever the
    learner restart redid; step 4 has every HF file, loads in transformers and generates in vLLM."""
    import filecmp

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.config import EngineConfig, SamplingConfig
    from actors.engine import make_llm, sampling_params

    run_dir = kills_run["dir"]
    evals = eval_by_step(run_dir)
    best = max((evals[s]["pass1"], s) for s in (3, 6))[1]
    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    assert sorted(e["step"] for e in index["checkpoints"]) == sorted({4, 6, best})
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == sorted(
        ["index.json", *{f"step-{s}" for s in (4, 6, best)}])
    for e in index["checkpoints"]:  # Pass@1 where an eval ran at that step, else none
        assert e["pass1"] == (evals[e["step"]]["pass1"] if e["step"] in evals else None) and e["time"] > 0
    assert index["policy"] == str(tiny_model_dir) and index["train_problems"] > 0
    assert filecmp.cmp(run_dir / "checkpoints/step-6/model.safetensors", run_dir / "final-model/model.safetensors",
                       shallow=False)
    step4 = run_dir / "checkpoints" / "step-4"
    for f in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (step4 / f).exists(), f
    assert json.loads((step4 / "config.json").read_text())["use_cache"] is True
    tok = AutoTokenizer.from_pretrained(step4)
    assert tok.chat_template and tok.chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    hf = AutoModelForCausalLM.from_pretrained(step4, dtype=torch.float32).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "2 + 3 = ?"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        first = int(hf(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    llm = make_llm(str(step4), EngineConfig(max_model_len=128))
    out = llm.generate([{"prompt_token_ids": ids}],
                       sampling_params(SamplingConfig(temperature=0.0, max_tokens=8), logprobs=False), use_tqdm=False)
    assert out[0].outputs[0].token_ids[0] == first  # the same weights in both: the same greedy token
    del llm


def test_export_best_writes_the_checkpoint_with_a_model_card_and_refuses_a_non_empty_out(kills_run, tiny_model_dir,
                                                                                        tmp_path, capsys):
    """`ssp export --best`: the best evaluated checkpoint, a card whose eval table is the run's eval.jsonl (its row
    marked), the run's config.yaml; a non-empty --out is refused and left untouched; a missing step is named."""
    import filecmp

    import yaml

    from ssp.cli import main as cli

    run_dir = kills_run["dir"]
    evals = eval_by_step(run_dir)
    best = max((evals[s]["pass1"], s) for s in (3, 6))[1]
    dest = tmp_path / "export"
    assert cli(["export", str(run_dir), "--best", "--out", str(dest)]) == 0
    readme = (dest / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["base_model"] == str(tiny_model_dir) and front["library_name"] == "transformers" and front["tags"]
    table = card_table(readme)
    assert set(table) == set(evals)
    for step, (pass1, marked) in table.items():
        assert pass1 == pytest.approx(evals[step]["pass1"], abs=5e-5) and marked == (step == best)
    assert filecmp.cmp(dest / "model.safetensors", run_dir / f"checkpoints/step-{best}/model.safetensors",
                       shallow=False)
    assert (dest / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()
    assert (dest / "chat_template.jinja").exists() or "chat_template" in (dest / "tokenizer_config.json").read_text()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in dest.iterdir())
    capsys.readouterr()
    assert cli(["export", str(run_dir), "--step", "4", "--out", str(dest)]) == 2
    assert f"{dest}: already exists" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in dest.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert cli(["export", str(run_dir), "--step", "5", "--out", str(tmp_path / "e5")]) == 2
    assert f"available steps: {', '.join(map(str, sorted({4, 6, best})))}" in capsys.readouterr().err


def test_learner_killed_while_checkpointing_restarts_from_the_previous_checkpoint(ray_cluster, tiny_model_dir,
                                                                                  tmp_path, monkeypatch):
    """The learner dies inside the step-4 checkpoint (not in a train step): the driver restarts it from the
    step-2 checkpoint, redoes steps 2-3 and finishes; nothing is double-counted."""
    from trainer import rl

    run_dir = tmp_path / "ckpt-kill"
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       small(run_dir, tiny_model_dir, "rl.eval_every=0", "rl.pipeline=false"))
    save, calls = rl.Run.checkpoint, []

    def checkpoint_with_kill(self, step, resume_state=True):
        calls.append(step)
        if calls == [2, 4]:
            assert kill_actor("LearnerWorker")
        return save(self, step, resume_state)

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
    are killed mid-run; the resumed run redoes the lost steps from their plans and counts each sample once.
    The same `--auto-resume` command three times, as a retried job runs it: it starts the run, continues it after
    the kill, and finds it finished."""
    run_dir = tmp_path / "resume"
    cmd = [sys.executable, "-m", "ssp.cli", "rl", "--config", "configs/tiny-cpu.yaml",
           *small(run_dir, tiny_model_dir, "rl.mode=async", "rl.max_staleness=2"), "--auto-resume"]
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
    at_kill = logged_steps(run_dir)
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rl --auto-resume: continuing the run in" in out.stdout, out.stdout[-2000:]
    m = re.search(r"rl: resumed at step (\d+) \(checkpoint .+\); (\d+) step\(s\) logged after it are redone", out.stdout)
    assert m and int(m[1]) in (2, 4) and int(m[2]) == at_kill - int(m[1]), (at_kill, out.stdout[-2000:])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6
    attempts, samples = attempts_and_samples(run_dir)
    assert attempts == samples == 6 * 4 * 4
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "samples" in r]
    assert [r["step"] for r in steps] == list(range(6))
    assert all(0 <= r["staleness"] <= 2 for r in steps) and max(r["staleness"] for r in steps) >= 1
    assert all(0 <= r["is_frac"] <= 1 for r in steps)  # TIS ran (auto in async mode)
    before = (run_dir / "metrics.jsonl").read_text()
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "finished already" in again.stdout, again.stdout + again.stderr[-2000:]
    assert (run_dir / "metrics.jsonl").read_text() == before



def test_zero_advantage_share_and_group_counts_are_read_from_the_scored_groups():
    """With a KL term no group is skipped, yet a group whose rewards are all equal still carries no signal."""
    from types import SimpleNamespace as NS

    from trainer.rl import group_correct, zero_adv_frac

    adv = {"a": [0.0] * 4, "b": [0.5, -0.5, 0.5, -0.5], "c": [0.0] * 4}
    rollouts = [NS(problem_id=p, advantage=x) for p, xs in adv.items() for x in xs]
    verdicts = [NS(reward=r) for r in [1, 1, 1, 1] + [1, 0, 1, 0] + [0, 0, 0, 0]]
    assert zero_adv_frac(rollouts) == pytest.approx(2 / 3)
    assert group_correct(rollouts, verdicts) == [0, 2, 4]


# ---- the keep policy and `ssp export`, without Ray -------------------------------------------------------------

def test_keep_policy_keeps_the_newest_and_the_best():
    best, due, keep, kept_entries = ck.best, ck.due, ck.keep, ck.kept_entries
    assert keep([2, 4, 6, 8], 2) == {6, 8} and keep([2, 4, 6, 8], 0) == {2, 4, 6, 8}
    assert keep([2, 4, 6, 8], 1, {4, 10}) == {4, 8}  # `also` only among the steps there are
    entries = [{"step": 2, "pass1": 0.3}, {"step": 4, "pass1": None}, {"step": 6, "pass1": 0.5},
               {"step": 8, "pass1": 0.5}, {"step": 10}]
    assert best(entries)["step"] == 8 and best([{"step": 1, "pass1": None}]) is None  # ties: the later step
    assert [e["step"] for e in kept_entries(entries, 1, True)] == [8, 10]
    entries[3]["pass1"] = 0.1
    assert [e["step"] for e in kept_entries(entries, 2, True)] == [6, 8, 10]
    assert [e["step"] for e in kept_entries(entries, 2, False)] == [8, 10]
    # every 4 steps, evals every 3 (a checkpoint at each eval with keep_best), and the end (10)
    assert [s for s in range(1, 11) if due(s, 10, 4, 3, True)] == [3, 4, 6, 8, 9, 10]
    assert [s for s in range(1, 11) if due(s, 10, 4, 3, False)] == [4, 8, 10]
    assert [s for s in range(1, 11) if due(s, 10, 0, 0, True)] == [10]


def fake_checkpoint(root: Path, step: int) -> Path:
    staged = ck.staging(root, step)
    staged.mkdir()
    (staged / "config.json").write_text(json.dumps({"step": step}))
    return staged


def test_checkpoint_folder_keeps_the_policy_through_evals_and_a_resume(tmp_path):
    root = tmp_path / "checkpoints"
    for s in (2, 4, 6):
        ck.add(root, s, fake_checkpoint(root, s), keep_last=2, keep_best=True, policy="base")
        if s == 2:
            ck.record_eval(root, 2, 0.6, 2, True)  # the best so far: kept past keep_last
    names = lambda: sorted(p.name for p in root.iterdir())  # noqa: E731
    assert names() == ["index.json", "step-2", "step-4", "step-6"]
    ck.record_eval(root, 6, 0.7, 2, True)  # a better eval: step 2 goes
    assert names() == ["index.json", "step-4", "step-6"]
    index = ck.read_index(root)
    assert index["policy"] == "base" and [(e["step"], e["pass1"]) for e in index["checkpoints"]] == [(4, None), (6, 0.7)]
    assert index["checkpoints"][0]["path"] == "checkpoints/step-4"
    fake_checkpoint(root, 8)  # a kill left a half-written folder; the run resumes from step 4
    ck.prune_after(root, 4)
    assert names() == ["index.json", "step-4"]
    ck.add(root, 6, fake_checkpoint(root, 6), 2, True)  # the redone step 6
    assert [e["step"] for e in ck.read_index(root)["checkpoints"]] == [4, 6]


def fake_run(tmp_path: Path) -> Path:
    """A finished `ssp pipeline` layout (RUN/rl) with checkpoints 2 (Pass@1 0.5) and 4 (not evaluated)."""
    import yaml

    rl = tmp_path / "pipe" / "rl"
    (tmp_path / "pipe" / "spectrum").mkdir(parents=True)
    root = rl / "checkpoints"
    ck.add(root, 2, fake_checkpoint(root, 2), 0, True, policy="pipe/spectrum/merged", train_problems=40,
           held_out_problems=8)
    ck.record_eval(root, 2, 0.5, 0, True)
    ck.add(root, 4, fake_checkpoint(root, 4), 0, True)
    (rl / "config.yaml").write_text(yaml.safe_dump({"model": {"path": "org/base-model", "source": "path"},
                                                    "data": {"train": [str(tmp_path / "t.jsonl")]},
                                                    "rl": {"group_size": 4}}))
    (tmp_path / "t.jsonl").write_text('{"problem": "1+1"}\n{"problem": "2+2"}\n\n')
    evals = [{"step": 0, "pass1": 0.25, "k": 2, "pass2": 0.4, "problems": 8},
             {"step": 2, "pass1": 0.5, "k": 2, "pass2": 0.6, "problems": 8}]
    (rl / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return tmp_path / "pipe"


def test_export_picks_the_step_and_names_what_is_wrong(tmp_path):
    run = fake_run(tmp_path)
    out = export(run, tmp_path / "last")  # default: the last checkpoint
    assert json.loads((out / "config.json").read_text()) == {"step": 4}
    card = (out / "README.md").read_text()
    assert "base_model: org/base-model" in card and "pipe/spectrum/merged" in card and "| 2 |" in card
    assert "Step 4 (exported) was not evaluated" in card
    assert re.search(r"t\.jsonl` \| 2 \|", card) and "`rl.group_size` | `4`" in card
    best = export(run / "rl", tmp_path / "best", best=True)  # the RL run's own directory works too
    assert json.loads((best / "config.json").read_text()) == {"step": 2}
    assert card_table((best / "README.md").read_text()) == {0: (0.25, False), 2: (0.5, True)}
    (tmp_path / "empty").mkdir()
    assert json.loads((export(run, tmp_path / "empty", step=2) / "config.json").read_text()) == {"step": 2}
    with pytest.raises(DataError, match="no checkpoint at step 3; available steps: 2, 4"):
        export(run, tmp_path / "s3", step=3)
    with pytest.raises(DataError, match="no checkpoints/index.json"):
        export(tmp_path, tmp_path / "x")
    with pytest.raises(DataError, match="already exists and is not an empty folder"):
        export(run, tmp_path / "best", step=4)
    assert json.loads((tmp_path / "best" / "config.json").read_text()) == {"step": 2}
    index = run / "rl" / "checkpoints" / "index.json"
    index.write_text(json.dumps({"checkpoints": [{"step": 4, "path": "checkpoints/step-4", "pass1": None}]}))
    with pytest.raises(DataError, match="no evaluated checkpoint"):
        export(run, tmp_path / "b2", best=True)
    assert not (tmp_path / "s3").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
