"""The memory model `ssp check` plans with: bytes per device of the learner (weights, gradients, optimizer states
by ZeRO stage, activations with and without gradient checkpointing, the log-prob chunk, a reference model) and of
a vLLM engine (weights, one longest sequence's KV cache). Pure arithmetic on the model's shape; no torch.

The terms follow what the engine does (actors/train_engine.py): the HF model is loaded in fp32 and DeepSpeed keeps
the `dtype` copy it computes with (bf16: plus fp32 master weights in the optimizer state); AdamW holds two fp32
moments; `token_logprobs` keeps ~4 fp32 copies of one chunk's logits at its peak (logits, log_softmax, exp for
the entropy, and the gradient). Activations per token and layer are the inputs the backward pass keeps: the
attention block's (q, k, v, output, norm) and the MLP's (gate, up, activation, product) — an estimate, within a
small factor of the measured value, good for refusing configs that are off by more than that.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024 ** 3
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool

    @classmethod
    def from_hf(cls, c: dict) -> ModelShape:
        """From an HF config.json (Qwen2 / Llama-style keys)."""
        return cls(vocab=int(c["vocab_size"]), hidden=int(c["hidden_size"]), layers=int(c["num_hidden_layers"]),
                   heads=int(c["num_attention_heads"]),
                   kv_heads=int(c.get("num_key_value_heads") or c["num_attention_heads"]),
                   intermediate=int(c["intermediate_size"]), tied=bool(c.get("tie_word_embeddings", False)))

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        attn = h * h + h + 2 * (h * kv + kv) + h * h  # q (+bias), k and v (+bias), o
        layer = attn + 3 * h * self.intermediate + 2 * h  # + gate/up/down and two norms
        return self.vocab * h * (1 if self.tied else 2) + self.layers * layer + h


@dataclass(frozen=True)
class Term:
    name: str
    bytes: float
    how: str  # the arithmetic, for the table and the error message


def learner_terms(m: ModelShape, *, dtype: str, zero_stage: int, ranks: int, tokens: int, chunk: int,
                  checkpointing: bool, reference: bool) -> list[Term]:
    """Peak bytes on one learner device, by term. `tokens` = the largest micro-batch (micro_batch_tokens, or the
    longest single sequence when that is longer: a row is never split)."""
    p, b = m.params, _BYTES[dtype]
    shard = lambda stage: ranks if zero_stage >= stage else 1  # noqa: E731
    opt_per_param = 8 + (4 if b < 4 else 0)  # AdamW moments (+ fp32 master weights when computing in 16 bit)
    per_tok_layer = 6 * m.hidden + 4 * m.intermediate  # elements the backward keeps per token and layer
    if checkpointing:  # each layer's input kept; one layer's working set recomputed at a time
        act = tokens * b * (m.layers * m.hidden + per_tok_layer)
        act_how = f"{tokens} tokens x ({m.layers} layers x {m.hidden} + {per_tok_layer}) x {b} B (checkpointed)"
    else:
        act = tokens * b * m.layers * per_tok_layer
        act_how = f"{tokens} tokens x {m.layers} layers x {per_tok_layer} x {b} B (no checkpointing)"
    rows = chunk if 0 < chunk < tokens else tokens
    terms = [
        Term("weights", p * b / shard(3), f"{p / 1e9:.3g}B params x {b} B / {shard(3)} (ZeRO-{zero_stage})"),
        Term("gradients", p * b / shard(2), f"{p / 1e9:.3g}B x {b} B / {shard(2)}"),
        Term("optimizer", p * opt_per_param / shard(1), f"{p / 1e9:.3g}B x {opt_per_param} B / {shard(1)}"),
        Term("activations", act, act_how),
        Term("logits", 4 * rows * m.vocab * 4, f"4 fp32 copies x {rows} tokens x vocab {m.vocab}"
                                               + (" (logprob_chunk_tokens)" if rows < tokens else "")),
    ]
    if reference:
        terms.append(Term("reference", p * b / shard(3), f"{p / 1e9:.3g}B x {b} B (KL reference model)"))
    return terms


def engine_terms(m: ModelShape, *, dtype: str, max_model_len: int, tensor_parallel: int) -> list[Term]:
    """Bytes one vLLM engine needs at least on one device: weights and one longest sequence's KV cache."""
    b = _BYTES[dtype]
    kv = 2 * m.layers * m.kv_heads * m.head_dim * b * max_model_len / tensor_parallel
    return [Term("weights", m.params * b / tensor_parallel, f"{m.params / 1e9:.3g}B x {b} B / tp {tensor_parallel}"),
            Term("kv_cache", kv, f"2 x {m.layers} layers x {m.kv_heads} kv heads x {m.head_dim} x {b} B x "
                                 f"{max_model_len} tokens (one longest sequence)")]


def total(terms: list[Term]) -> float:
    return sum(t.bytes for t in terms)


def largest(terms: list[Term]) -> Term:
    return max(terms, key=lambda t: t.bytes)


def gib(x: float) -> str:
    return f"{x / GIB:.1f} GiB"
