"""The learner, measured: training tokens/s of the DeepSpeed learner (ZeRO-2, 1 and 2 actors) beside a plain
PyTorch AdamW loop; the log-prob pass's peak memory and speed with full-vocabulary logits vs in chunks; bf16 vs
fp32 on CPU (speed, and the log-prob mismatch with the vLLM engine the IS correction sees); MFU.

Same tiny model (or --model), same batch, same loss and micro-batching; one thread per process (the learner
actors run with OMP_NUM_THREADS=1, so the torch loop does too), except arm ds1t2: one actor with
`learner.threads_per_rank=2` (both cores in one rank, no gradient exchange). Tokens = response tokens trained.
Arms `mem`, `chunk` use a tiny model with Qwen2.5's 151,936-token vocabulary; `bf16` uses SmolLM2-135M
(`ssp import-gguf`). Last line: JSON.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS, WARMUP = 6, 2  # (--model: use a small model, each step trains 32 samples)
ARMS = {"torch": None, "ds1": (1, 1), "ds2": (2, 1), "ds1t2": (1, 2)}  # DeepSpeed arms: (actors, threads per rank)
EXTRA = ["mem", "chunk", "bf16"]  # the issue-32 figures (see the module docstring)
QWEN_VOCAB = 151936


def make_samples(groups: int = 8, size: int = 4, seed: int = 0) -> list:
    """Scored rollouts (half of each group right), as the RL loop hands them to the learner."""
    from actors.config import LossConfig
    from actors.losses import score
    from actors.records import Rollout

    rng = random.Random(seed)
    out, rewards = [], []
    for g in range(groups):
        prompt = [rng.randrange(10, 300) for _ in range(24)]
        for i in range(size):
            n = rng.randint(32, 96)
            out.append(Rollout(f"g{g}", i, prompt, [rng.randrange(10, 300) for _ in range(n)], [-5.0] * n, "", "stop", 0))
            rewards.append(float(i % 2))
    return score(out, rewards, LossConfig())


def torch_tok_s(model_dir: str, samples: list, c, chunk: int = 0) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from actors.learner import collate
    from actors.losses import policy_loss
    from actors.train_engine import plan_micro_batches, token_logprobs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr)
    b = collate(samples, c.loss, pad_id=0)
    (plan,) = plan_micro_batches(b.attention_mask.sum(1).tolist(), b.keep, c.micro_batch_tokens, 1)
    tokens, t0 = 0.0, 0.0
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            tokens, t0 = 0.0, time.perf_counter()
        for idx in plan:
            rows = torch.tensor(idx)
            t = int(b.attention_mask[rows].sum(1).max())
            ids, attn = b.input_ids[rows, :t], b.attention_mask[rows, :t]
            logp, ent = token_logprobs(model, ids, attn, True, chunk=chunk)
            loss, m = policy_loss(logp, logp.detach(), b.advantages[rows], b.weights[rows, :t], c.loss,
                                  entropy=ent)
            loss.backward()
            tokens += m["tokens"]
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        opt.zero_grad()
    return tokens / (time.perf_counter() - t0)


def ds_tok_s(model_dir: str, samples: list, c, actors: int, threads: int = 1, steps: int = STEPS,
             warmup: int = WARMUP) -> tuple[float, float]:
    """(response tokens trained per second, mean MFU of the timed steps) of a LearnerGroup."""
    from dataclasses import replace

    from actors.learner import LearnerGroup

    c = replace(c, threads_per_rank=threads)
    group = LearnerGroup(c, model_dir, actors)
    try:
        tokens, t0, mfu = 0.0, 0.0, []
        for step in range(warmup + steps):
            if step == warmup:
                tokens, t0, mfu = 0.0, time.perf_counter(), []
            m = group.step(samples)
            tokens += m["tokens"]
            mfu.append(m["mfu"])
        return tokens / (time.perf_counter() - t0), sum(mfu) / len(mfu)
    finally:
        group.shutdown()


MEM_PROBE = """
import sys, torch
from transformers import AutoModelForCausalLM
from actors.train_engine import token_logprobs
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
tokens, chunk = int(sys.argv[2]), int(sys.argv[3])
ids = torch.randint(10, 1000, (tokens // 512, 512))
def vm(key):  # kB from /proc/self/status; ru_maxrss would carry the parent's peak across exec
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(key + ":")))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the current size
before = vm("VmRSS")
logp, ent = token_logprobs(model, ids, torch.ones_like(ids), True, chunk=chunk)
(logp.sum() + ent.sum() * 0).backward()
print((vm("VmHWM") - before) / 1024)
"""


def peak_mem_mb(model_dir: str, tokens: int, chunk: int) -> float:
    """Peak memory (MB above what the loaded model held) of one log-prob + entropy pass and its backward over
    `tokens` tokens, in a fresh process (VmHWM, reset when the pass starts)."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", MEM_PROBE, model_dir, str(tokens), str(chunk)], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        return float("nan")  # killed (out of memory) or failed: reported, not hidden
    return float(r.stdout.strip().splitlines()[-1])


def vocab_model(tmp: str) -> str:
    """The tiny model's shape (4 layers, hidden 128) with Qwen2.5's 151,936-token vocabulary: the logits dominate,
    as at real size (no tokenizer: these arms feed token ids)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trainer.config import TinyModelConfig

    t, out = TinyModelConfig(), Path(tmp) / "qwen-vocab"
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=QWEN_VOCAB, hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
                                 num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
                                 intermediate_size=t.intermediate_size, tie_word_embeddings=True,
                                 use_sliding_window=False)).save_pretrained(out)
    return str(out)


def engine_logprob_mismatch(model_dir: str, learner_dtypes: list[str], engine_dtype: str = "float32") -> dict:
    """Mean |log pi_learner - log pi_engine| over the response tokens vLLM sampled (engine in `engine_dtype`),
    and the share of tokens whose ratio exp(delta) leaves [0.5, 2] (what ICEPOP would drop), per learner dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.config import EngineConfig, SamplingConfig
    from actors.engine import make_llm, sampling_params
    from actors.train_engine import token_logprobs

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"What is {a} + {b}? Explain briefly."}],
                                       tokenize=False, add_generation_prompt=True) for a, b in
               [(12, 30), (7, 8), (101, 99), (45, 55), (3, 9), (250, 250), (17, 4), (66, 34)]]
    llm = make_llm(model_dir, EngineConfig(max_model_len=512, dtype=engine_dtype))
    outs = llm.generate(prompts, sampling_params(SamplingConfig(temperature=1.0, max_tokens=96, seed=0)))
    rows = [(list(o.prompt_token_ids), list(o.outputs[0].token_ids),
             [next(iter(lp.values())).logprob for lp in o.outputs[0].logprobs]) for o in outs]
    del llm
    res = {}
    for dt in learner_dtypes:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dt)).eval()
        deltas = []
        with torch.no_grad():
            for prompt, resp, eng in rows:
                ids = torch.tensor([prompt + resp])
                lp = token_logprobs(model, ids, torch.ones_like(ids), False, chunk=1024)[0][0, len(prompt):]
                deltas += (lp.float() - torch.tensor(eng)).tolist()
        d = torch.tensor(deltas)
        res[dt] = {"mean_abs": round(d.abs().mean().item(), 4), "ratio_outside_0.5_2": round(
            ((d.exp() < 0.5) | (d.exp() > 2)).float().mean().item(), 4), "tokens": len(deltas)}
    return res


def main() -> None:
    """Every arm asked for, one after the other in this process (the machine is noisy: compare within a run)."""
    import argparse
    from dataclasses import replace

    import ray

    from actors.config import LearnerConfig
    from trainer.config import TinyModelConfig
    from trainer.models.tiny import build

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="an HF model dir for the DeepSpeed/torch arms (default: a tiny model built here)")
    ap.add_argument("--smollm", default="artifacts/smollm2-135m-instruct", help="SmolLM2-135M dir (`ssp import-gguf`)")
    ap.add_argument("--arms", nargs="+", default=["torch", "ds1", "ds2", *EXTRA], choices=[*ARMS, *EXTRA])
    args = ap.parse_args()
    c = LearnerConfig(zero_stage=2, lr=1e-4, micro_batch_tokens=2048)
    samples = make_samples()
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(build(TinyModelConfig(), Path(tmp) / "tiny"))
        if "mem" in args.arms or "chunk" in args.arms:
            qwen = vocab_model(tmp)
        if "mem" in args.arms:  # the log-prob pass's peak, full logits vs 1,024-token chunks, at two sizes
            for n in (4096, 8192):
                res[f"peak_mem_full_mb_{n}"] = peak_mem_mb(qwen, n, 0)
                res[f"peak_mem_chunked_mb_{n}"] = peak_mem_mb(qwen, n, 1024)
            full = res["peak_mem_full_mb_8192"] - res["peak_mem_full_mb_4096"]
            res["chunked_mem_growth_vs_full"] = (res["peak_mem_chunked_mb_8192"] - res["peak_mem_chunked_mb_4096"]
                                                 ) / full
        if "chunk" in args.arms:  # training speed, same loop, full logits vs chunks
            res["tok_s_full"] = torch_tok_s(qwen, samples, c, chunk=0)
            res["tok_s_chunked"] = torch_tok_s(qwen, samples, c, chunk=1024)
            res["tok_s_chunked_vs_full"] = res["tok_s_chunked"] / res["tok_s_full"]
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        try:
            for arm in (a for a in args.arms if a in ARMS):
                if arm == "torch":
                    res["torch_tok_s"] = torch_tok_s(model_dir, samples, c)
                else:
                    res[f"{arm}_tok_s"], res[f"{arm}_mfu"] = ds_tok_s(model_dir, samples, c, *ARMS[arm])
            if "bf16" in args.arms:  # SmolLM2-135M, one actor with both cores, 8 samples, 2 timed steps
                few = make_samples(groups=2)
                for dt in ("float32", "bfloat16"):
                    res[f"smollm_tok_s_{dt}"], res[f"smollm_mfu_{dt}"] = ds_tok_s(
                        args.smollm, few, replace(c, dtype=dt), 1, 2, steps=2, warmup=1)
                res["tok_s_bf16_vs_fp32"] = res["smollm_tok_s_bfloat16"] / res["smollm_tok_s_float32"]
        finally:
            ray.shutdown()
        if "bf16" in args.arms:
            res["logprob_mismatch_engine_fp32"] = engine_logprob_mismatch(args.smollm, ["float32", "bfloat16"])
            res["logprob_mismatch_engine_bf16"] = engine_logprob_mismatch(args.smollm, ["bfloat16"], "bfloat16")
    res = {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}
    for arm, base in [(a, "torch") for a in ARMS if a != "torch"] + [("ds1t2", "ds2")]:
        if f"{arm}_tok_s" in res and f"{base}_tok_s" in res:
            res[f"{arm}_vs_{base}"] = round(res[f"{arm}_tok_s"] / res[f"{base}_tok_s"], 3)
    if "ds1_mfu" in res:
        res["mfu"] = res["ds1_mfu"]
    print(f"{args.model or 'tiny model (4 layers)'}, {len(samples)} samples, {STEPS} timed steps, ZeRO-2, "
          "1 thread per process (ds1t2: 2); mem/chunk: tiny model with vocab 151936; bf16: SmolLM2-135M")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
