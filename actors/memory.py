"""The memory model `ssp check` plans with: bytes per device of the learner (weights, gradients, optimizer states
by ZeRO stage, activations with and without gradient checkpointing, the log-prob chunk, a reference model) and of
a vLLM engine (weights, one longest sequence's KV cache). Pure arithmetic on the model's shape; no torch.

The terms follow what the engine does (actors/train_engine.py, DeepSpeed ZeRO): the weights in the `dtype` it
computes with; the gradients twice (the backward's reduce bucket and the reduced partition); the optimizer state
12 bytes a parameter (AdamW's two fp32 moments and the fp32 master partition DeepSpeed keeps, in fp32 training
too); `token_logprobs` keeps ~4 fp32 copies of one chunk's logits at its peak (logits, log_softmax, exp for the
entropy, and the gradient). Activations: 9 x hidden + 5.5 x intermediate elements per token and layer without
checkpointing (the inputs the backward keeps, norms' fp32 copies and rotary q/k included), and 11 x hidden per
token outside the layers; with checkpointing, each layer's input plus two layers' worth for the one being
recomputed. The constants were fitted to the peak memory of a ZeRO-2 rank measured on this machine kind at 2-8
layers and 1-4K tokens (within 5% without checkpointing, up to 20% over with it; tests/test_memory_model.py
checks three sizes within 25%); GPU kernels (flash attention) keep less, so on a GPU this errs on the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024 ** 3
RUNTIME = 128 * 1024 ** 2  # what a learner process holds beyond the terms (measured on CPU; see below)
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
    opt_per_param = 12  # AdamW's two fp32 moments + the fp32 master partition DeepSpeed keeps whatever the dtype
    per_tok_layer = 9 * m.hidden + 11 * m.intermediate // 2  # elements the backward keeps per token and layer
    outside = 11 * m.hidden  # per token outside the layers: embeddings, final norm, the log-prob pass's inputs
    if checkpointing:  # each layer's input kept; a recomputed layer's working set and its gradients at a time
        act = tokens * b * (outside + m.layers * m.hidden + 2 * per_tok_layer)
        act_how = (f"{tokens} tokens x ({outside} + {m.layers} layers x {m.hidden} + 2 x {per_tok_layer}) x {b} B "
                   "(checkpointed)")
    else:
        act = tokens * b * (outside + m.layers * per_tok_layer)
        act_how = f"{tokens} tokens x ({outside} + {m.layers} layers x {per_tok_layer}) x {b} B (no checkpointing)"
    rows = chunk if 0 < chunk < tokens else tokens
    terms = [
        Term("weights", p * b / shard(3), f"{p / 1e9:.3g}B params x {b} B / {shard(3)} (ZeRO-{zero_stage})"),
        Term("gradients", 2 * p * b / shard(2), f"2 x {p / 1e9:.3g}B x {b} B / {shard(2)} (bucket + partition)"),
        Term("optimizer", p * opt_per_param / shard(1), f"{p / 1e9:.3g}B x {opt_per_param} B / {shard(1)}"),
        Term("activations", act, act_how),
        Term("logits", 4 * rows * m.vocab * 4, f"4 fp32 copies x {rows} tokens x vocab {m.vocab}"
                                               + (" (logprob_chunk_tokens)" if rows < tokens else "")),
    ]
    if reference:
        terms.append(Term("reference", p * b / shard(3), f"{p / 1e9:.3g}B x {b} B (KL reference model)"))
    terms.append(Term("runtime", RUNTIME, "DeepSpeed's and torch's own buffers (measured; a GPU's CUDA context "
                                          "is more, inside gpu_memory_gib's margin)"))
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
