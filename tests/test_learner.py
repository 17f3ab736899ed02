"""The DeepSpeed learner on CPU: real Ray actors, ZeRO-2 and ZeRO-3 over gloo, on a 1-layer tiny model."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from actors.config import LearnerConfig, LossConfig
from actors.learner import LearnerGroup, collate, find_checkpoint
from actors.losses import score
from actors.records import Rollout
from actors.train_engine import plan_micro_batches, token_logprobs
from trainer.config import TinyModelConfig
from trainer.models.tiny import build


@pytest.fixture(scope="module")
def model_1l(tmp_path_factory) -> Path:
    return build(TinyModelConfig(num_layers=1), tmp_path_factory.mktemp("tiny-1layer"))


def make_samples(model_dir: Path, seed: int, groups: int = 4, size: int = 4) -> list[Rollout]:
    """Random prompts/responses, scored as the RL loop scores them (actors/losses.py `score`); rollout logprobs
    from the initial model (so ratio = 1 at step 1)."""
    from transformers import AutoModelForCausalLM

    rng = random.Random(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    samples, rewards = [], []
    for g in range(groups):
        prompt = [rng.randrange(10, 300) for _ in range(6)]
        for i in range(size):
            resp = [rng.randrange(10, 300) for _ in range(rng.randint(4, 16))]
            with torch.no_grad():
                ids = torch.tensor([prompt + resp])
                lp = token_logprobs(model, ids, torch.ones_like(ids), False)[0][0, len(prompt):]
            samples.append(Rollout(f"p{seed}-{g}", i, prompt, resp, lp.tolist(), "", "stop", weight_version=0))
            rewards.append(float(i < 1 + g % 2))
    return score(samples, rewards, LossConfig())


def config(stage: int, **kw) -> LearnerConfig:
    return LearnerConfig(num_actors=2, zero_stage=stage, lr=2e-3, micro_batch_tokens=96, logprobs_source="engine",
                         loss=LossConfig(clip_high=10.0, clip_low=0.9), seed=0, **kw)


def train_and_export(model_dir: Path, stage: int, out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    samples = make_samples(model_dir, seed=0)
    group = LearnerGroup(config(stage), str(model_dir), 2)
    try:
        metrics = [group.step(samples) for _ in range(4)]
        same = score(samples, [1.0] * len(samples), LossConfig())  # every group all-correct: nothing to train
        skip = group.step(same)
        assert skip["skipped_frac"] == 1 and skip["stepped"] == 0
        sd = group.state_dict()
        group.save_hf(out)
    finally:
        group.shutdown()
    assert all(m["skipped_frac"] == 0 and m["tokens"] > 0 for m in metrics)
    # efficiency: the padding of the planned micro-batches, tokens/s and an MFU below the measured peak
    b = collate(samples, LossConfig(), 0)
    lengths = b.attention_mask.sum(1).tolist()
    plan = [[0] if mb == [-1] else mb for rank in plan_micro_batches(lengths, b.keep, 96, 2) for mb in rank]
    positions = sum(len(mb) * max(lengths[i] for i in mb) for mb in plan)
    real = sum(lengths[i] for mb in plan for i in mb)
    assert real < positions and all(m["pad_frac"] == pytest.approx(1 - real / positions) for m in metrics)
    assert all(m["learner_tok_s"] > 0 and 0 < m["mfu"] < 1 for m in metrics), metrics
    return [m["loss"] for m in metrics], sd


def assert_matches_file(sd: dict[str, torch.Tensor], out: Path) -> None:
    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) <= set(sd) and "model.embed_tokens.weight" in saved
    for k, v in saved.items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_group_loss_decreases_and_exports(ray_cluster, model_1l, tmp_path, stage):
    out = tmp_path / "hf"
    losses, sd = train_and_export(model_1l, stage, out)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert_matches_file(sd, out)
    init = load_file(str(model_1l / "model.safetensors"))
    assert not torch.equal(init["model.embed_tokens.weight"], sd["model.embed_tokens.weight"])


def test_exported_checkpoint_vllm_matches_transformers(ray_cluster, model_1l, tmp_path):
    from transformers import AutoModelForCausalLM
    from vllm import SamplingParams

    from actors.config import EngineConfig
    from actors.engine import make_llm

    out = tmp_path / "hf"
    _, sd = train_and_export(model_1l, 2, out)
    hf = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    for k, v in hf.state_dict().items():
        assert torch.equal(v, sd[k]), k
    rng = random.Random(1)
    prompts = [[rng.randrange(10, 300) for _ in range(n)] for n in (8, 13, 21)]
    llm = make_llm(str(out), EngineConfig(max_model_len=256))
    res = llm.generate([{"prompt_token_ids": p} for p in prompts],
                       SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0), use_tqdm=False)
    for p, r in zip(prompts, res):
        got = torch.tensor([r.prompt_logprobs[t][p[t]].logprob for t in range(1, len(p))])
        with torch.no_grad():
            ids = torch.tensor([p])
            want = token_logprobs(hf, ids, torch.ones_like(ids), False)[0][0, 1:]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    del llm


def test_resume_matches_uninterrupted(ray_cluster, model_1l, tmp_path):
    batches = [make_samples(model_1l, seed=s) for s in range(5)]
    c = config(2, warmup_steps=3)

    full = LearnerGroup(c, str(model_1l), 2)
    want = [full.step(b)["loss"] for b in batches]
    full.shutdown()

    first = LearnerGroup(c, str(model_1l), 2)
    got = [first.step(b)["loss"] for b in batches[:2]]
    ckpt = tmp_path / "ckpt"
    first.save_checkpoint(ckpt, {"cursor": 1})
    first.save_checkpoint(ckpt, {"cursor": 2})  # overwrite: temp dir + rename, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    first.shutdown()

    # a kill between save_checkpoint's two renames: the previous checkpoint is only in .ckpt.old-*
    ckpt.rename(tmp_path / ".ckpt.old-0000dead")
    assert find_checkpoint(ckpt) == ckpt and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert find_checkpoint(tmp_path / "none") is None

    second = LearnerGroup(c, str(model_1l), 2)
    extra = second.load_checkpoint(ckpt)
    assert extra == {"cursor": 2}
    got += [second.step(b)["loss"] for b in batches[extra["cursor"]:]]
    second.shutdown()
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-5, (got, want)
    assert len(set(round(x, 6) for x in want)) == len(want)  # the losses actually move


def test_on_policy_ratio_one_and_optional_terms(ray_cluster, model_1l):
    samples = make_samples(model_1l, seed=7)
    on = LearnerGroup(LearnerConfig(num_actors=1, lr=1e-3, micro_batch_tokens=96), str(model_1l), 1)
    m = on.step(samples)
    on.shutdown()
    assert m["approx_kl"] == 0 and m["clip_frac"] == 0 and abs(m["loss"]) < 1e-6  # pi_old = pi_theta
    c = LearnerConfig(num_actors=1, lr=1e-2, micro_batch_tokens=96, ppo_epochs=2,
                      loss=LossConfig(kl_coef=0.1, entropy_coef=0.01))
    multi = LearnerGroup(c, str(model_1l), 1)
    same = score(samples, [1.0] * len(samples), c.loss)
    ms = [multi.step(samples), multi.step(same)]
    multi.shutdown()
    assert ms[0]["approx_kl"] > 0 and ms[0]["entropy"] > 0  # 2nd epoch moved away from pi_old
    assert ms[1]["skipped_frac"] == 0  # KL/entropy terms on: zero-advantage groups still train


@pytest.mark.parametrize("stage", [2, 3])
def test_chunked_logprobs_and_checkpointing_match_plain(ray_cluster, model_1l, stage):
    """logprob_chunk_tokens and gradient_checkpointing change memory, not the math: the same losses and
    weights through DeepSpeed (ranks with different lengths, so different chunk counts: ZeRO-3 must gather the
    tied LM head once per pass, not per chunk), with the entropy's gradient, the no-grad pi_old pass and the
    bare reference model all on the chunked path."""
    samples = make_samples(model_1l, seed=3)
    loss = LossConfig(clip_high=10.0, clip_low=0.9, entropy_coef=0.01, kl_coef=0.05)
    runs = []
    for kw in ({"logprob_chunk_tokens": 0}, {"logprob_chunk_tokens": 5, "gradient_checkpointing": True}):
        c = replace(config(stage, **kw), loss=loss, ppo_epochs=2, logprobs_source="learner")
        group = LearnerGroup(c, str(model_1l), 2)
        try:
            runs.append(([group.step(samples) for _ in range(2)], group.state_dict()))
        finally:
            group.shutdown()
    (plain, sd_plain), (chunked, sd_chunked) = runs
    for a, b in zip(plain, chunked):
        for k in ("loss", "entropy", "approx_kl", "grad_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (k, a[k], b[k])
    assert plain[1]["approx_kl"] > 0
    for k, v in sd_plain.items():
        torch.testing.assert_close(sd_chunked[k], v, atol=1e-5, rtol=1e-4, msg=k)


def test_efficiency_figures_from_the_ranks_sums():
    from actors.efficiency import measure_peak, model_flops
    from actors.learner import efficiency

    assert model_flops(1000, 10, trained_passes=2, forward_passes=1) == 1000 * 10 * 14
    parts = [{"train_s": 2.0, "real_tokens": 300.0, "positions": 400.0, "flops": 6e9, "peak_flops": 1e10},
             {"train_s": 1.0, "real_tokens": 100.0, "positions": 100.0, "flops": 2e9, "peak_flops": 1e10}]
    e = efficiency(parts)  # the slowest rank sets the time
    assert e == pytest.approx({"learner_tok_s": 200.0, "pad_frac": 0.2, "mfu": 8e9 / (2.0 * 2e10)})
    peak = measure_peak("cpu", "float32", n=256, seconds=0.05)
    assert 1e8 < peak < 1e13  # a CPU core does between 0.1 and 10,000 GFLOP/s
