"""Rollout workers on real vLLM engines in real Ray actors."""

import threading
import time

import pytest
import ray
import torch

from actors.config import EngineConfig, RolloutConfig, SamplingConfig
from actors.rollout import RolloutPool
from trainer.data.problems import Problem, build_prompt
from trainer.models.tiny import load_tokenizer

PROBLEMS = [{"id": "p0", "prompt": "What is 2 + 3?"}, {"id": "p1", "prompt": "What is 7 * 8?"},
            {"id": "p2", "prompt": "What is 9 mod 4?"}]


@pytest.fixture(scope="module")
def pool(ray_cluster, tiny_model_dir):
    p = RolloutPool(str(tiny_model_dir), RolloutConfig(num_engines=2, num_cpus_per_engine=1),
                    EngineConfig(max_model_len=256), SamplingConfig(max_tokens=16))
    yield p
    p.shutdown()


def _perturbed(tiny_model_dir, scale):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def test_generate_returns_g_tagged_samples_in_problem_order(pool, tiny_model_dir):
    rollouts = pool.generate(PROBLEMS, n=4)
    assert [r.problem_id for r in rollouts] == [p["id"] for p in PROBLEMS for _ in range(4)]
    assert [r.sample_idx for r in rollouts[:4]] == [0, 1, 2, 3]
    tok = load_tokenizer(tiny_model_dir)
    want = tok(build_prompt(tok, Problem(id="p0", prompt=PROBLEMS[0]["prompt"], kind="math")),
               add_special_tokens=False)["input_ids"]
    for r in rollouts:
        assert len(r.response_ids) == len(r.logprobs) > 0
        assert all(lp <= 0 for lp in r.logprobs)
        assert r.finish_reason in ("stop", "length") and r.weight_version == pool.version
        assert (len(r.response_ids) == 16) == (r.finish_reason == "length")
    assert rollouts[0].prompt_ids == want


def test_seeded_sampling_is_reproducible(pool):
    a = pool.generate(PROBLEMS[:1], n=3, overrides={"seed": 123})
    b = pool.generate(PROBLEMS[:1], n=3, overrides={"seed": 123})
    c = pool.generate(PROBLEMS[:1], n=3, overrides={"seed": 124})
    assert [r.response_ids for r in a] == [r.response_ids for r in b]
    assert [r.response_ids for r in a] != [r.response_ids for r in c]


def test_update_weights_in_place_matches_transformers(pool, tiny_model_dir):
    model = _perturbed(tiny_model_dir, 0.05)
    secs = pool.update_weights(model.state_dict(), version=1)
    assert secs > 0 and pool.version == 1
    rollouts = pool.generate(PROBLEMS[:2], n=1, overrides={"temperature": 0.0})
    for r in rollouts:
        assert r.weight_version == 1
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(r.prompt_ids) - 1 : -1]
        hf = torch.log_softmax(logits, -1).gather(1, torch.tensor(r.response_ids)[:, None])[:, 0]
        assert torch.allclose(hf, torch.tensor(r.logprobs), atol=1e-4), (hf, r.logprobs)  # fp32
        assert r.response_ids == logits.argmax(-1).tolist()  # greedy under the new weights


def test_killed_engine_mid_batch_is_restarted_with_current_weights(pool, tiny_model_dir):
    model = _perturbed(tiny_model_dir, 0.02)
    pool.update_weights(model.state_dict(), version=2)
    out = {}
    # ~49k tokens: several seconds even for the hidden-128 tiny model (~10k tok/s on 2 quiet cores)
    many = [{"id": f"k{i}", "prompt": f"What is {i} + {i}?"} for i in range(96)]
    t = threading.Thread(target=lambda: out.setdefault("r", pool.generate(many, n=8, overrides={"max_tokens": 64})))
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the batch finished before the kill; make it longer"
    ray.kill(pool.workers[0], no_restart=False)
    t.join(timeout=300)
    rollouts = out["r"]
    assert len(rollouts) == 96 * 8
    assert {r.weight_version for r in rollouts} == {2}
    # the restarted engine serves again only on the current weights (resynced on retry or on its next call)
    again = pool.generate(many[:4], n=1)
    assert {r.weight_version for r in again} == {2}
    assert ray.get([w.ready.remote() for w in pool.workers]) == [2, 2]


def test_stream_yields_problems_as_they_finish_and_survives_a_killed_engine(pool):
    """`stream` (what the evaluator uses): each problem once, with its n samples, in finishing order; an engine
    killed mid-stream is restarted and resynced, and only its unfinished problems run again."""
    short = [{"id": "s", "prompt": "What is 1 + 1?"}]
    many = [{"id": f"m{i}", "prompt": f"What is {i} * {i}?"} for i in range(64)]
    order = [p.id for p, _ in pool.stream(many + short, 4, overrides={"max_tokens": 64})]
    assert sorted(order) == sorted(p["id"] for p in many + short)
    got, killed = {}, False
    for p, rollouts in pool.stream(many, 8, overrides={"max_tokens": 64}):
        got[p.id] = rollouts
        if not killed and len(got) == 4:
            ray.kill(pool.workers[0], no_restart=False)
            killed = True
    assert killed
    assert sorted(got) == sorted(p["id"] for p in many)
    assert all(sorted(r.sample_idx for r in rs) == list(range(8)) and {r.problem_id for r in rs} == {pid}
               for pid, rs in got.items())
    assert {r.weight_version for rs in got.values() for r in rs} == {pool.version}


def test_update_weights_reaches_an_engine_that_is_restarting(pool, tiny_model_dir):
    """The learner's weight sync hits an engine killed a moment before: it is waited for and resynced."""
    model = _perturbed(tiny_model_dir, 0.03)
    ray.kill(pool.workers[0], no_restart=False)
    pool.update_weights(model.state_dict(), version=3)
    assert ray.get([w.ready.remote() for w in pool.workers]) == [3] * len(pool.workers)
    rollouts = pool.generate(PROBLEMS[:2], n=1, overrides={"temperature": 0.0})
    assert {r.weight_version for r in rollouts} == {3}


def test_startup_failure_is_loud(ray_cluster, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="engine failed to start"):
        RolloutPool(str(tmp_path), RolloutConfig(num_engines=1, max_restarts=0), EngineConfig(), SamplingConfig())
