"""Rollout throughput on the tiny model, CPU, side by side in one run.

(a) raw `vllm.LLM.generate`, (b) the same through our Ray rollout actor, (c) transformers `generate`;
plus `n`-sampling vs repeated prompts inside the actor, and the in-place weight-update time
(extrapolated per GB). Usage: python benchmarks/rollout.py [--prompts 32] [--g 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster.env import apply  # noqa: E402

apply()


def tok_s(fn, repeats: int = 2) -> float:
    """Best-of-`repeats` generated tokens per second of `fn()` (which returns the token count)."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--g", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    import ray
    import torch
    from transformers import AutoModelForCausalLM

    from actors.config import EngineConfig, RolloutConfig, SamplingConfig
    from actors.engine import make_llm, sampling_params
    from actors.rollout import RolloutPool
    from trainer.config import TinyModelConfig
    from trainer.data.problems import Problem, build_prompt
    from trainer.models.tiny import build, load_tokenizer

    path = str(build(TinyModelConfig(), tempfile.mkdtemp(prefix="bench-rollout-")))
    tok = load_tokenizer(path)
    problems = [{"id": f"p{i}", "prompt": f"What is {i} + {i * 7 % 13}?"} for i in range(args.prompts)]
    prompts = [build_prompt(tok, Problem(id=p["id"], prompt=p["prompt"], kind="math")) for p in problems]
    engine, sampling = EngineConfig(max_model_len=256), SamplingConfig(max_tokens=args.tokens)

    # (a) raw vLLM in this process
    llm = make_llm(path, engine)
    params = sampling_params(sampling, n=args.g)

    def raw_run() -> int:
        return sum(len(c.token_ids) for o in llm.generate(prompts, params, use_tqdm=False) for c in o.outputs)

    raw = tok_s(raw_run)

    # (b) our actor, same engine settings, given both cores as the raw engine had
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    res = {}
    for mode in ("n", "repeat"):
        pool = RolloutPool(path, RolloutConfig(num_engines=1, num_cpus_per_engine=2, sampling_mode=mode),
                           engine, sampling)
        res[mode] = tok_s(lambda pool=pool: sum(len(r.response_ids) for r in pool.generate(problems, args.g)))
        if mode == "n":
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            sd = model.state_dict()
            nbytes = sum(v.numel() * v.element_size() for v in sd.values())
            upd = min(pool.update_weights(sd, version=v) for v in (1, 2, 3))
        pool.shutdown()
    ray.shutdown()
    actor = max(res.values())
    raw = max(raw, tok_s(raw_run))  # raw measured before and after the actor, best taken (noisy machine)

    # (c) transformers generate, same prompts and G, sampled
    torch.manual_seed(0)
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"].repeat_interleave(args.g, 0), enc["attention_mask"].repeat_interleave(args.g, 0)

    def hf_run() -> int:
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=args.tokens,
                                 pad_token_id=tok.pad_token_id)
        gen = out[:, ids.shape[1]:]
        return int((gen != tok.pad_token_id).sum())

    hf = tok_s(hf_run, repeats=1)
    figures = {
        "raw_vllm_tok_s": round(raw, 1), "actor_tok_s": round(actor, 1), "hf_tok_s": round(hf, 1),
        "actor_vs_raw_vllm": round(actor / raw, 3), "actor_n_tok_s": round(res["n"], 1),
        "actor_repeat_tok_s": round(res["repeat"], 1), "weight_update_s": round(upd, 4),
        "weight_update_s_per_gb": round(upd / (nbytes / 2**30), 2), "model_mb": round(nbytes / 2**20, 2),
    }
    print(f"{'path':28s} tokens/s\n{'raw vllm.LLM.generate':28s} {raw:10.1f}\n{'rollout actor (best mode)':28s} "
          f"{actor:10.1f}   ({actor / raw:.1%} of raw; n={res['n']:.0f}, repeat={res['repeat']:.0f})\n"
          f"{'transformers generate':28s} {hf:10.1f}\nweight update: {upd:.3f}s for {nbytes / 2**20:.1f} MB "
          f"(~{figures['weight_update_s_per_gb']} s/GB)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
