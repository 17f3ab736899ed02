"""actors/train_engine.py `token_logprobs` chunked over positions and HF gradient checkpointing, against the
plain full-logits computation on small random models (pure torch: no Ray, no DeepSpeed)."""

from __future__ import annotations

import pytest
import torch

from actors.train_engine import token_logprobs

B, T, V = 2, 23, 5000


def qwen2(tie: bool = True, layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=tie, use_cache=False)
    return Qwen2ForCausalLM(cfg).float()


def batch(seed: int = 0, t: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    t = t or T
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, t), generator=g)
    attn = torch.ones_like(ids)
    attn[1, t - 5:] = 0  # a right-padded row
    return ids, attn


def reference(model, ids, attn, with_entropy, entropy_grad=False):
    """The pre-chunking implementation: [B, T, V] logits, one log_softmax, kept for backward."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    logsm = torch.log_softmax(logits, -1)
    logp = torch.nn.functional.pad(logsm.gather(-1, ids[:, 1:, None]).squeeze(-1), (1, 0))
    ent = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = torch.nn.functional.pad(-(logsm.exp() * logsm).sum(-1), (1, 0))
    return logp, ent


def run(model, fn, entropy_grad=True, **kw):
    """logp, entropy and every parameter's grad of a loss that uses both."""
    model.zero_grad(set_to_none=True)
    ids, attn = batch()
    logp, ent = fn(model, ids, attn, True, entropy_grad, **kw)
    w = torch.linspace(-1, 1, logp.numel()).reshape(logp.shape) * attn
    loss = (logp * w).sum() + 0.3 * (ent * w.flip(1)).sum()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), ent.detach(), grads, ent.requires_grad


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("chunk", [0, 1, 7, T, B * T])
def test_chunked_logprobs_entropy_and_grads_equal_full(chunk, tie):
    model = qwen2(tie)
    want = run(model, reference)
    got = run(model, token_logprobs, chunk=chunk)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert set(got[2]) == {k for k, _ in model.named_parameters()} == set(want[2])
    for k in want[2]:
        torch.testing.assert_close(got[2][k], want[2][k], msg=k)
    assert got[3] and want[3]


def test_chunked_equals_full_at_qwen_vocabulary_and_a_few_hundred_tokens(monkeypatch):
    """Qwen2.5's 151,936-token vocabulary, 2 x 160 tokens (one row right-padded), chunks of 128: the same log-probs,
    entropies and gradients as the full computation, to fp32 rounding."""
    monkeypatch.setitem(globals(), "V", 151936)
    monkeypatch.setitem(globals(), "T", 160)
    model = qwen2(tie=True, layers=1)
    want = run(model, reference)
    got = run(model, token_logprobs, chunk=128)
    assert got[0].shape == (2, 160) and model.lm_head.weight.shape[0] == 151936
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    for k in want[2]:
        torch.testing.assert_close(got[2][k], want[2][k], msg=k)


@pytest.mark.parametrize("chunk", [0, 5])
def test_entropy_grad_off_and_no_grad_as_before(chunk):
    model = qwen2()
    want = run(model, reference, entropy_grad=False)
    got = run(model, token_logprobs, entropy_grad=False, chunk=chunk)
    assert not got[3] and not want[3]  # the entropy carries no gradient unless asked
    for k in want[2]:
        torch.testing.assert_close(got[2][k], want[2][k], msg=k)
    ids, attn = batch(1)
    with torch.no_grad():
        lp, ent = token_logprobs(model, ids, attn, False, chunk=chunk)
        ref = reference(model, ids, attn, False)[0]
    assert ent is None and not lp.requires_grad
    torch.testing.assert_close(lp, ref)
    one = torch.tensor([[7]])  # a one-token row: nothing to predict, column 0 only
    assert token_logprobs(model, one, torch.ones_like(one), True, chunk=chunk)[0].tolist() == [[0.0]]


def test_final_logit_softcapping_kept():
    """Gemma 2 caps its logits after the LM head; the chunked path applies the same cap."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=2.0,
                       use_cache=False)
    model = Gemma2ForCausalLM(cfg).float()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # (tied to the embeddings) logits well past the cap
    ids, attn = batch()
    want = reference(model, ids, attn, True)
    got = token_logprobs(model, ids, attn, True, chunk=6)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    with torch.no_grad():  # the cap matters here: without it the log-probs are far off
        uncapped = torch.log_softmax(model.lm_head(model.model(input_ids=ids, attention_mask=attn)[0]), -1)
    assert (uncapped[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] - want[0][:, 1:]).abs().max() > 1


def saved_bytes(model, fn, ids, attn, **kw) -> int:
    """Bytes of the non-parameter tensors kept for the backward pass (each storage once), plus the decoder's
    output hidden states (what the chunks' checkpoints keep to recompute from)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            kept[s.data_ptr()] = s.nbytes()
        return t

    def keep_hidden(_m, _a, out):
        s = out[0].untyped_storage()
        kept[s.data_ptr()] = s.nbytes()

    hook = model.model.register_forward_hook(keep_hidden)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp, ent = fn(model, ids, attn, True, True, **kw)
    finally:
        hook.remove()
    (logp.sum() + ent.sum()).backward()
    return sum(kept.values())


def test_chunked_path_keeps_no_full_vocabulary_logits():
    model = qwen2()
    ids, attn = batch(t=256)
    full = saved_bytes(model, reference, ids, attn)
    chunked = saved_bytes(model, token_logprobs, ids, attn, chunk=16)
    logits = B * (256 - 1) * V * 4  # one fp32 [B, T-1, V] copy: 10.2 MB
    print(f"saved for backward: full {full} B, chunk=16 {chunked} B, one [B, T-1, V] fp32 copy {logits} B")
    # the full path keeps two [B, T-1, V] fp32 copies (log_softmax and its exp, for the entropy) on top of
    # what the chunked one keeps: the decoder's activations (and the chunks' int64 targets, B x T x 8 bytes)
    assert full - chunked == 2 * logits - B * 256 * 8
    assert chunked < logits / 2
    assert saved_bytes(model, token_logprobs, ids, attn, chunk=0) == full


def test_gradient_checkpointing_same_grads_and_fewer_saved_tensors():
    model = qwen2(layers=3).train()
    plain = run(model, reference)
    ids, attn = batch()
    before = saved_bytes(model, token_logprobs, ids, attn, chunk=7)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt = run(model, reference)
    both = run(model, token_logprobs, chunk=7)
    after = saved_bytes(model, token_logprobs, ids, attn, chunk=7)
    print(f"saved for backward with chunk=7: checkpointing off {before} B, on {after} B")
    assert after < before / 2  # the decoder layers' activations are recomputed, not kept
    for got in (ckpt, both):
        torch.testing.assert_close(got[0], plain[0])
        torch.testing.assert_close(got[1], plain[1])
        for k in plain[2]:
            torch.testing.assert_close(got[2][k], plain[2][k], msg=k)


def test_lm_head_sees_at_most_chunk_tokens_forward_and_backward():
    """Chunks are over the micro-batch's B x T tokens, not positions: many short rows are chunked too."""
    model = qwen2()
    cls, calls = type(model.lm_head), []
    inner = cls.forward

    def spy(self, x):
        if self is model.lm_head:  # (nn.Linear: the decoder's projections pass here too)
            calls.append(x.shape[0])
        return inner(self, x)

    ids, attn = batch()
    cls.forward = spy
    try:
        logp, ent = token_logprobs(model, ids, attn, True, True, chunk=7)
        forward_calls = len(calls)
        (logp.sum() + ent.sum()).backward()
    finally:
        cls.forward = inner
    assert max(calls) == 7 and sum(calls[:forward_calls]) == B * T  # ... B x T: the last position included
    assert sorted(calls[forward_calls:]) == sorted(calls[:forward_calls])  # each chunk recomputed once

