"""The Spectrum stage: Pass@K, SFT on Ray Train (masking, checkpoints, resume), probing through running
engines, and the streaming merge."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ssp.config import load_config
from ssp.tree import SSPConfig
from tests.conftest import REPO
from trainer.data.problems import DataError


def test_unbiased_pass_at_k_against_hand_computed_values():
    from trainer.eval.metrics import mean_pass_at_k, pass_at_k

    # 1 - C(n-c, k) / C(n, k), worked out by hand
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)
    assert pass_at_k(16, 3, 8) == pytest.approx(1 - 1287 / 12870)
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0 and pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert mean_pass_at_k([(4, 1), (4, 0), (4, 4)], 2) == pytest.approx((0.5 + 0 + 1) / 3)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


# ---- SFT data and loss -----------------------------------------------------------------------------

def test_sft_loss_is_on_response_tokens_only_hand_checked():
    import torch

    from actors.losses import sft_loss
    from trainer.spectrum.sft import collate

    rows = [{"prompt_ids": [5, 6, 7], "response_ids": [8, 9]}, {"prompt_ids": [5], "response_ids": [4, 3, 2]}]
    b = collate(rows, pad_id=0, global_tokens=5.0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 4, 3, 2, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    torch.testing.assert_close(b["weights"], torch.tensor([[0, 0, 0, 0.2, 0.2], [0, 0.2, 0.2, 0.2, 0]]))
    logp = -torch.arange(1.0, 11.0).reshape(2, 5)  # -1 .. -10
    # response positions: row 0 cols 3,4 (-4, -5); row 1 cols 1,2,3 (-7, -8, -9): mean NLL = 33/5
    assert sft_loss(logp, b["weights"]).item() == pytest.approx(33 / 5)


def test_sft_loss_equals_transformers_masked_cross_entropy(tiny_model_dir):
    """Our token-mean loss over response tokens = HF's CE with the prompt labelled -100 (one rank, one batch)."""
    import torch
    from transformers import AutoModelForCausalLM

    from actors.losses import sft_loss
    from actors.train_engine import token_logprobs
    from trainer.spectrum.sft import collate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rows = [{"prompt_ids": [11, 12, 13, 14], "response_ids": [21, 22, 2]}, {"prompt_ids": [15, 16], "response_ids": [23, 2]}]
    b = collate(rows, pad_id=0, global_tokens=5.0)
    labels = torch.full_like(b["input_ids"], -100)
    labels[0, 4:7] = torch.tensor([21, 22, 2])
    labels[1, 2:4] = torch.tensor([23, 2])
    with torch.no_grad():
        ours = sft_loss(token_logprobs(model, b["input_ids"], b["attention_mask"], False)[0], b["weights"])
        ref = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=labels).loss
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_chat_pairs_load_messages_and_prompt_response_and_name_bad_lines(tmp_path, shared_dir):
    from trainer.models.tiny import load_tokenizer
    from trainer.spectrum.sft import load_chat_pairs, render

    f = tmp_path / "sft.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "1+1?"},
                                          {"role": "assistant", "content": "\\boxed{2}"}]}) + "\n"
                 + json.dumps({"prompt": "2+2?", "response": "\\boxed{4}"}) + "\n"
                 + json.dumps({"prompt": "3+3?", "completion": "\\boxed{6}"}) + "\n"  # TRL, standard
                 + json.dumps({"prompt": [{"role": "user", "content": "4+4?"}],  # TRL, conversational
                               "completion": [{"role": "assistant", "content": "\\boxed{8}"}]}) + "\n")
    convs = load_chat_pairs(f)
    assert [len(c) for c in convs] == [3, 2, 2, 2] and convs[1][0] == {"role": "user", "content": "2+2?"}
    assert convs[2] == [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "\\boxed{6}"}]
    assert convs[3] == [{"role": "user", "content": "4+4?"}, {"role": "assistant", "content": "\\boxed{8}"}]
    tok = load_tokenizer(shared_dir / "models" / "qwen2.5-tokenizer")
    ex = render(tok, convs[0])
    prompt = tok.decode(ex["prompt_ids"])
    assert prompt.startswith("<|im_start|>system\nBe brief.") and prompt.endswith("<|im_start|>assistant\n")
    assert tok.decode(ex["response_ids"]) == "\\boxed{2}" + tok.eos_token
    for bad, msg in (({"messages": [{"role": "user", "content": "x"}]}, "last turn must be the assistant's"),
                     ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, r"messages\[0\]"),
                     ({"prompt": "x"}, "field 'response'"),
                     ({"prompt": "x", "completion": [{"role": "user", "content": "y"}]}, "last turn must be"),
                     ({"prompt": 3, "completion": "y"}, "field 'prompt' must be a string or a non-empty list")):
        g = tmp_path / "bad.jsonl"
        g.write_text(json.dumps({"prompt": "ok", "response": "ok"}) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{msg}"):
            load_chat_pairs(g)


# ---- SFT on Ray Train ----------------------------------------------------------------------------

def spectrum_conf(tmp: Path, model: Path, *extra: str):
    return load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", [
        f"run_dir={tmp}", f"model.path={model}", "cluster.dashboard=false", "data.toy.per_cell=40",
        "sft.batch_size=64", "sft.lr=3e-3", "verifier.num_workers=1", "rollout.num_cpus_per_engine=1",
        "spectrum.probe_problems=6", "spectrum.probe_n=4", "spectrum.probe_k=2", "sampling.seed=1234",
        "sampling.max_tokens=32", *extra])


@pytest.fixture(scope="module")
def sft_run(ray_cluster, tiny_model_dir, tmp_path_factory):
    """60 steps of Ray Train SFT (2 ranks, ZeRO-2), run as 40 steps, then resumed to 60."""
    from trainer.data.splits import load_problems_for
    from trainer.spectrum.sft import run_sft

    tmp = tmp_path_factory.mktemp("sft")
    first = spectrum_conf(tmp, tiny_model_dir, "sft.steps=40", "sft.save_every=20")
    held = load_problems_for(first)[1]
    saved40 = run_sft(first, str(tiny_model_dir), tmp / "sft", held)
    lines40 = (tmp / "sft" / "metrics.jsonl").read_text().splitlines()
    ds40 = [s for s, p in saved40 if (p / "ds").exists()]  # the optimizer state: only where a resume needs it
    conf = spectrum_conf(tmp, tiny_model_dir, "sft.steps=60", "sft.save_every=20")
    saved = run_sft(conf, str(tiny_model_dir), tmp / "sft", held)
    return {"conf": conf, "dir": tmp / "sft", "saved40": saved40, "saved": saved, "lines40": lines40, "ds40": ds40}


def test_sft_on_ray_train_saves_loadable_checkpoints_and_resumes(sft_run):
    import torch
    from transformers import AutoModelForCausalLM

    assert [s for s, _ in sft_run["saved40"]] == [20, 40]
    assert [s for s, _ in sft_run["saved"]] == [20, 40, 60]
    recs = [json.loads(x) for x in (sft_run["dir"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 61))  # the rerun continued at step 41, not 1
    assert len(sft_run["lines40"]) == 40
    assert recs[40]["loss"] < 0.8 * recs[0]["loss"]  # resumed weights, not the base model
    assert recs[-1]["loss"] < 0.5 * recs[0]["loss"]
    # the lr each step used: linear warm-up over 5% of the steps (2 of the first run's 40), then cosine decay
    # to 10% of the peak; the resumed run keeps the scheduler's state and decays over its own 60 steps
    assert recs[0]["lr"] == pytest.approx(3e-3 / 2) and recs[1]["lr"] == pytest.approx(3e-3)
    assert recs[2]["lr"] == pytest.approx(3e-3) and all(recs[i]["lr"] > recs[i + 1]["lr"] for i in range(2, 39))
    assert recs[39]["lr"] == pytest.approx(3e-4 + 2.7e-3 * 0.5 * (1 + math.cos(math.pi * 37 / 38)))
    for i in (41, 59):  # (step 41 ran at the lr the first run's scheduler left in the optimizer state)
        assert recs[i]["lr"] == pytest.approx(3e-4 + 2.7e-3 * 0.5 * (1 + math.cos(math.pi * (i - 3) / 57)))
    last = sft_run["saved"][-1][1]
    assert (last / "ds" / "latest").exists() and (last / "ds" / "rng_rank1.pt").exists()  # both ranks' state
    # ds/ only in the newest checkpoint, after the first run and after the resumed one
    assert sft_run["ds40"] == [40] and [s for s, p in sft_run["saved"] if (p / "ds").exists()] == [60]
    assert all((p / "model.safetensors").exists() for _, p in sft_run["saved"])
    listed = json.loads((sft_run["dir"] / "checkpoints.json").read_text())
    assert [e["step"] for e in listed] == [20, 40, 60]
    m = AutoModelForCausalLM.from_pretrained(last, dtype=torch.float32)  # an HF checkpoint as it is
    base = AutoModelForCausalLM.from_pretrained(sft_run["conf"].model.path, dtype=torch.float32)
    assert not torch.equal(m.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_probe_through_one_engine_matches_fresh_engines(sft_run, tiny_model_dir, tmp_path):
    """Two checkpoints pushed in place into one running engine score exactly as engines started on each."""
    from actors.rollout import RolloutPool
    from actors.verifier.pool import VerifierPool
    from trainer.data.splits import probe_sets
    from trainer.eval.score import evaluate
    from trainer.spectrum.probe import probe, specialists

    conf = sft_run["conf"]
    sets = probe_sets(conf)
    assert sorted(sets) == ["add", "mod", "mul", "sub"] and all(len(v) == 6 for v in sets.values())
    models = [(f"step-{s}", str(p)) for s, p in sft_run["saved"][::2]]  # steps 20 and 60
    verifier = VerifierPool(conf.verifier)
    pool = RolloutPool(str(tiny_model_dir), conf.rollout, conf.engine, conf.sampling)  # started on the base model
    try:
        table = probe(conf, pool, verifier, models, sets, tmp_path)
        # the push took effect: the pool now holds step-60, whose greedy answers differ from step-20's
        # (the coarse Pass@ table can coincide for two weak checkpoints)
        from actors.weight_sync import WeightSync

        probe_ps = [p for ps in sets.values() for p in ps]
        greedy = {"temperature": 0.0, "seed": 0}
        late = [r.response_ids for r in pool.generate(probe_ps, 1, greedy)]
        pool.update_weights(WeightSync.from_checkpoint(models[0][1]), pool.version + 1)
        early = [r.response_ids for r in pool.generate(probe_ps, 1, greedy)]
        assert late != early
    finally:
        pool.shutdown()
    problems = [p for ps in sets.values() for p in ps]
    for name, path in models:
        fresh = RolloutPool(path, conf.rollout, conf.engine, conf.sampling)
        try:
            res = evaluate(fresh, verifier, problems, conf.spectrum.probe_n, None, ks=(2,))
        finally:
            fresh.shutdown()
        assert {s: (res[f"pass1/{s}"], res[f"pass2/{s}"]) for s in sets} == \
               {s: (v["pass1"], v["passK"]) for s, v in table[name].items()}, name
    verifier.shutdown()
    assert sum(v["passK"] for v in table["step-60"].values()) > 0
    spec = specialists(table, list(sets))
    for s, n in spec.items():
        assert table[n][s]["passK"] == max(table[m][s]["passK"] for m in table)
    lines = (tmp_path / "probe.jsonl").read_text().splitlines()
    assert [json.loads(x)["model"] for x in lines] == ["step-20", "step-60"]


def test_spectrum_prunes_sft_checkpoints_by_keep_last_and_specialists_and_a_rerun_still_sees_them(tmp_path):
    """sft.keep_last=1 + keep_best: the newest and the specialists stay; the others are emptied but for PRUNED.txt
    (Ray Train's snapshot lists them), and the stage's checkpoint list still names them for the report."""
    from types import SimpleNamespace as NS

    from trainer.spectrum.sft import checkpoints
    from trainer.spectrum.stage import all_checkpoints, prune_sft

    storage = tmp_path / "sft" / "ray-train"
    for st in (10, 20, 30, 40):
        d = storage / f"checkpoint-{st:06d}"
        (d / "ds").mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "sft_state.json").write_text(json.dumps({"step": st}))
    saved = checkpoints(storage)
    (tmp_path / "sft" / "checkpoints.json").write_text(json.dumps([{"step": s, "path": str(p)} for s, p in saved]))
    models = all_checkpoints(tmp_path / "sft", saved)
    assert [n for n, _ in models] == ["step-10", "step-20", "step-30", "step-40"]
    spec = {"add": "step-20", "sub": "step-40"}
    assert prune_sft(NS(keep_last=1, keep_best=True), models, spec) == ["step-10", "step-30"]
    assert [s for s, _ in checkpoints(storage)] == [20, 40]
    assert sorted(p.name for p in (storage / "checkpoint-000010").iterdir()) == ["PRUNED.txt"]
    assert all_checkpoints(tmp_path / "sft", checkpoints(storage)) == models  # a rerun: same names, same table
    assert prune_sft(NS(keep_last=1, keep_best=True), models, spec) == []  # idempotent
    assert prune_sft(NS(keep_last=0, keep_best=False), models, spec) == []  # 0 = keep all
    assert prune_sft(NS(keep_last=1, keep_best=False), models, spec) == ["step-20"]


# ---- merge ------------------------------------------------------------------------------------------

def _variant(src: Path, dst: Path, scale: float, seed: int) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    g = torch.Generator().manual_seed(seed)
    sd = load_file(str(src / "model.safetensors"))
    sd = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in sd.items()}
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_merge_is_the_parameter_wise_mean_and_loads(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from trainer.spectrum.merge import merge

    a = _variant(tiny_model_dir, tmp_path / "a", 0.1, 1)
    b = _variant(tiny_model_dir, tmp_path / "b", 0.1, 2)
    out = merge([a, b], tmp_path / "m")
    sa, sb, sm = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    assert set(sm) == set(sa)
    for k in sa:
        assert sm[k].dtype == sa[k].dtype
        torch.testing.assert_close(sm[k], (sa[k] + sb[k]) / 2, rtol=0, atol=1e-6)
    w = merge([a, b, a], tmp_path / "w", [0.25, 0.5, 0.25])
    sw = load_file(str(w / "model.safetensors"))
    for k in sa:
        torch.testing.assert_close(sw[k], 0.5 * sa[k] + 0.5 * sb[k], rtol=0, atol=1e-6)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.model.embed_tokens.weight.shape == sa["model.embed_tokens.weight"].shape
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()


def test_merge_refuses_mismatched_architecture_vocab_and_tokenizer(tiny_model_dir, tmp_path):
    from trainer.spectrum.merge import merge

    a = _variant(tiny_model_dir, tmp_path / "a", 0.0, 1)
    arch = _variant(tiny_model_dir, tmp_path / "arch", 0.0, 1)
    c = json.loads((arch / "config.json").read_text())
    c["architectures"] = ["LlamaForCausalLM"]
    (arch / "config.json").write_text(json.dumps(c))
    with pytest.raises(DataError, match="architecture differs: config.json field 'architectures'"):
        merge([a, arch], tmp_path / "o1")
    vocab = _variant(tiny_model_dir, tmp_path / "vocab", 0.0, 1)
    c = json.loads((vocab / "config.json").read_text())
    c["vocab_size"] += 8
    (vocab / "config.json").write_text(json.dumps(c))
    with pytest.raises(DataError, match="vocabulary size differs"):
        merge([a, vocab], tmp_path / "o2")
    tok = _variant(tiny_model_dir, tmp_path / "tok", 0.0, 1)
    t = json.loads((tok / "tokenizer.json").read_text())
    first = next(iter(t["model"]["vocab"]))
    t["model"]["vocab"]["zz" + first] = t["model"]["vocab"].pop(first)
    (tok / "tokenizer.json").write_text(json.dumps(t))
    with pytest.raises(DataError, match="tokenizer differs: tokenizer.json"):
        merge([a, tok], tmp_path / "o3")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_probe_sets_are_carved_from_train_and_disjoint_from_train_and_held_out():
    from trainer.data.splits import load_problems_for, probe_sets, toy_split

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    train, held = load_problems_for(conf)
    full_train = toy_split(conf)[0]
    sets = probe_sets(conf)
    probe_ids = {p.id for ps in sets.values() for p in ps}
    assert sorted(sets) == ["add", "mod", "mul", "sub"]
    for sub, ps in sets.items():
        assert len(ps) == 32 and all(p.subdomain == sub for p in ps)
        per_level = Counter(p.level for p in ps)  # spread over the graded pool's six levels, round robin
        assert len(per_level) == 6 and max(per_level.values()) - min(per_level.values()) <= 1, per_level
    assert len(train) == len(full_train) - len(probe_ids)
    assert not probe_ids & {p.id for p in train + held}
    texts = {" ".join(p.prompt.lower().split()) for p in train + held}
    assert not {" ".join(p.prompt.lower().split()) for ps in sets.values() for p in ps} & texts
    bad = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", ["spectrum.probe_subdomains=[add, div]"])
    with pytest.raises(DataError, match="spectrum.probe_subdomains: no training problems in toy subdomain 'div'"):
        probe_sets(bad)


def test_a_failed_pipeline_stage_is_named_and_keeps_what_finished(tmp_path):
    from ssp.pipeline import StageFailed, _stage

    times = {"spectrum": 12.0}

    def boom():
        raise ValueError("engine exploded")

    with pytest.raises(StageFailed, match=r"stage 'rl' failed: ValueError: engine exploded\n.*kept in .*rerun"):
        _stage("rl", boom, times, tmp_path / "rl")
    assert times == {"spectrum": 12.0}
    assert _stage("rl", lambda: 7, times, tmp_path / "rl") == 7 and set(times) == {"spectrum", "rl"}
