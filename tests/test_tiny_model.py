"""The tiny model round-trips through transformers and vLLM, and the two agree."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from actors.config import SamplingConfig
from actors.engine import sampling_params
from trainer.config import TinyModelConfig
from trainer.data.problems import Problem, build_prompt
from trainer.models.tiny import build, load_tokenizer

QWEN_TOK = "../shared/models/qwen2.5-tokenizer"
REPO = Path(__file__).resolve().parents[1]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic(tmp_path, tiny_model_dir):
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from tests.conftest import REPO

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    again = build(conf.model.tiny, tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha(again / name) == _sha(tiny_model_dir / name)
    other = build(TinyModelConfig(seed=1, num_layers=1), tmp_path / "other")
    assert _sha(other / "model.safetensors") != _sha(tiny_model_dir / "model.safetensors")


def test_tokenizer_has_chat_specials_and_roundtrips(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"):
        ids = tok.encode(special, add_special_tokens=False)
        assert len(ids) == 1, special
    text = "<think>12 + 30 = 42</think>\n\\boxed{42}"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(tok.encode("123", add_special_tokens=False)) == ["1", "2", "3"]
    prompt = build_prompt(tok, Problem(id="x", prompt="What is 2 + 3?", kind="math", answer="5"))
    assert prompt == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"


def test_transformers_loads_and_trains_shape(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    info = json.loads((tiny_model_dir / "ssp_tiny_model.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == info["params"]
    assert model.config.vocab_size % 64 == 0 and model.config.vocab_size >= info["vocab"]


def test_vllm_and_transformers_agree_on_greedy_tokens_and_logprobs(tiny_model_dir, tiny_llm):
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(tiny_model_dir)
    prompt = build_prompt(tok, Problem(id="x", prompt="What is 17 * 3?", kind="math", answer="51"))
    params = sampling_params(SamplingConfig(temperature=0.0, max_tokens=24))
    params.ignore_eos = True
    out = tiny_llm.generate([prompt], params, use_tqdm=False)[0]
    v_ids = list(out.outputs[0].token_ids)
    v_lp = [lp[t].logprob for lp, t in zip(out.outputs[0].logprobs, v_ids)]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    p_ids = torch.tensor([out.prompt_token_ids])
    assert out.prompt_token_ids == tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf = model.generate(p_ids, max_new_tokens=24, do_sample=False, min_new_tokens=24)
        logits = model(torch.cat([p_ids, torch.tensor([v_ids])], 1)).logits[0, p_ids.shape[1] - 1 : -1]
    hf_ids = hf[0, p_ids.shape[1]:].tolist()
    assert hf_ids == v_ids
    hf_lp = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(v_ids)[:, None])[:, 0]
    assert max(abs(a - b) for a, b in zip(hf_lp.tolist(), v_lp)) < 1e-4  # fp32


def test_real_qwen_tokenizer_chat_template_and_prompt(shared_dir):
    tok = load_tokenizer(shared_dir / "models" / "qwen2.5-tokenizer")
    tok.chat_template = (shared_dir / "models/qwen2.5-tokenizer/chat_template.qwen2.5-math.derived.jinja").read_text()
    prompt = build_prompt(tok, Problem(id="x", prompt="Find 2+2.", kind="math", answer="4"))
    assert prompt.startswith("<|im_start|>system\nPlease reason step by step")
    assert prompt.endswith("<|im_start|>user\nFind 2+2.<|im_end|>\n<|im_start|>assistant\n")
    assert tok.encode("\\boxed{42}", add_special_tokens=False) == [59, 79075, 90, 19, 17, 92]
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645


def test_tiny_model_on_real_qwen_tokenizer_loads_in_vllm(tmp_path, shared_dir):
    from transformers import AutoModelForCausalLM

    out = build(TinyModelConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                                intermediate_size=64, tokenizer_from=str(shared_dir / "models/qwen2.5-tokenizer")),
                tmp_path / "qwen-tiny")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == 151680 and model.config.eos_token_id == 151645
    tok = load_tokenizer(out)
    assert "Please reason step by step" in build_prompt(tok, Problem(id="x", prompt="1+1?", kind="math"))


@pytest.mark.parametrize("n", [4])
def test_vllm_samples_n_per_prompt_with_logprobs(tiny_model_dir, tiny_llm, n):
    tok = load_tokenizer(tiny_model_dir)
    prompt = build_prompt(tok, Problem(id="x", prompt="What is 1 + 1?", kind="math", answer="2"))
    out = tiny_llm.generate([prompt], sampling_params(SamplingConfig(max_tokens=8), n=n), use_tqdm=False)[0]
    assert len(out.outputs) == n
    for c in out.outputs:
        assert len(c.logprobs) == len(c.token_ids) and c.finish_reason in ("stop", "length")


def test_ensure_model_rebuilds_a_tiny_model_built_from_other_settings(tmp_path):
    """A stale tiny model at model.path (built before model.tiny changed) is rebuilt, not silently used;
    a model directory without our marker file (e.g. a real checkpoint) is left alone."""
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.models.ensure import ensure_model

    path = tmp_path / "tiny"
    small = ["model.tiny.hidden_size=64", "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1",
             "model.tiny.intermediate_size=128", "model.tiny.num_layers=1"]
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", [f"model.path={path}", *small])
    ensure_model(conf)
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 64
    wider = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                        [f"model.path={path}", *small, "model.tiny.hidden_size=96", "model.tiny.num_heads=3"])
    ensure_model(wider)
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 96
    (path / "ssp_tiny_model.json").unlink()
    ensure_model(conf)  # no marker: not ours to rebuild
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 96
