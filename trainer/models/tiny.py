"""`ssp tiny-model`: a tokenizer and a random-init Qwen2 built here, so nothing is downloaded.

The tokenizer is a byte-level BPE trained with `tokenizers` on the toy-task corpus (digits split one
per token, as Qwen does), with ChatML special tokens and `<think>`/`</think>`. Optionally the real
Qwen2.5 tokenizer (a folder with its tokenizer files) is used instead. The model is a
`Qwen2ForCausalLM` with sizes from config, saved with `save_pretrained` (safetensors); the same seed
gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from actors.prompts import CHAT_TEMPLATE, load_tokenizer  # noqa: F401  (re-exported)
from ssp.io import building, check_output_dir
from trainer.config import TinyModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
THINK_TOKENS = ("<think>", "</think>")  # added tokens but not special (as Qwen3 and DeepSeek-R1 have them): decoded
#                                        text keeps them, so graders and reasoning parsers can find the thinking
BUILD_VERSION = 2  # bumped when build() changes what it writes: 2 = think tags not special

MARKER = "ssp_tiny_model.json"  # written by build(): what was built, from which config


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML specials and our chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())
    for t in spec["added_tokens"]:
        t["special"] = t["content"] not in THINK_TOKENS
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(config: TinyModelConfig, out_dir: str | Path) -> Path:
    """Write tokenizer + random-init Qwen2 to `out_dir`; deterministic for `config.seed`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from trainer.data import toy_tasks

    out = Path(out_dir)
    check_output_dir(out, [config.tokenizer_from] if config.tokenizer_from else [], MARKER, "ssp tiny-model")
    if config.tokenizer_from:
        tok = load_tokenizer(config.tokenizer_from)
        qwen_template = Path(config.tokenizer_from) / "chat_template.qwen2.5-math.derived.jinja"
        if qwen_template.exists():
            tok.chat_template = qwen_template.read_text()
    else:
        records = toy_tasks.generate(toy_tasks.ToyTaskConfig(per_cell=100, levels=[1, 2, 3], seed=config.seed))
        texts = list(toy_tasks.corpus(records)) + ["Please reason step by step.", "system user assistant"]
        tok = train_tokenizer(texts, config.vocab_size)
    vocab = ((len(tok) + 63) // 64) * 64  # padded, as Qwen pads its embedding
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    mcfg = Qwen2Config(
        vocab_size=vocab, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
        rope_theta=10000.0, torch_dtype="float32", use_sliding_window=False,
    )
    torch.manual_seed(config.seed)
    model = Qwen2ForCausalLM(mcfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=pad)
    with building(out) as tmp:  # a kill mid-write leaves no half model where a whole one was
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                                              "vocab": len(tok), "seed": config.seed, "config": asdict(config),
                                              "version": BUILD_VERSION}))
    return out
