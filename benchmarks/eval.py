"""`ssp eval` throughput beside raw `vllm.LLM.generate`, same engine settings, same prompts, one run.

Raw vLLM generates every prompt's n samples in one call in this process (no verification). `ssp eval` runs
the same prompts through a rollout actor's engine (one engine, streamed) with the verifier pool scoring each
problem under both math graders (or the sandbox) as it finishes. Both clocks exclude engine/Ray startup:
raw from the generate call to its return, eval from the first request to the last recorded problem
(results.json `gen_seconds`). Raw runs before and after the eval; the ratio uses their mean.

Usage: python benchmarks/eval.py [--model DIR] [--suite toy] [--limit 0] [--k 8] [key=value ...]
Last line: {"eval_samples_per_s", "raw_vllm_samples_per_s", "eval_vs_raw_vllm", ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.env import apply  # noqa: E402

apply()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="HF model dir (default: the tiny model of configs/tiny-cpu.yaml)")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--limit", type=int, default=0, help="problems per dataset (0 = all)")
    ap.add_argument("--k", type=int, default=8, help="samples per problem")
    ap.add_argument("overrides", nargs="*", help="config overrides (configs/tiny-cpu.yaml), e.g. eval.max_model_len=1024")
    args = ap.parse_args()

    from actors.config import SamplingConfig
    from actors.engine import make_llm, sampling_params
    from actors.prompts import load_tokenizer
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.eval.run import run_eval
    from trainer.eval.suites import load_dataset, load_suite, user_content
    from trainer.models.ensure import ensure_model

    out = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       [f"eval.suite={args.suite}", f"eval.limit={args.limit}", f"eval.n={args.k}",
                        f"eval.out_dir={out / 'eval'}", "rollout.num_engines=1", f"run_dir={out}", *args.overrides])
    model = args.model or ensure_model(conf)
    suite, suite_file = load_suite(args.suite)
    tok = load_tokenizer(model)
    prompts = [tok.apply_chat_template([{"role": "user", "content": user_content(p, d, suite, conf.data.instruction)}],
                                       tokenize=False, add_generation_prompt=True)
               for d in suite.datasets for p in load_dataset(d, suite_file, conf)[: args.limit or None]]
    engine = replace(conf.engine, max_model_len=conf.eval.max_model_len or conf.engine.max_model_len)
    params = sampling_params(SamplingConfig(temperature=suite.temperature, top_p=suite.top_p, top_k=suite.top_k,
                                            max_tokens=conf.eval.max_tokens or suite.max_tokens), n=args.k)
    llm = make_llm(model, engine)
    llm.generate(prompts[:4], params, use_tqdm=False)  # warm-up

    def raw() -> tuple[float, int]:
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t0, sum(len(c.token_ids) for o in outs for c in o.outputs)

    raw1, tok1 = raw()
    del llm  # free the engine's threads before the eval's actor starts
    import gc

    gc.collect()
    res = run_eval(conf, model)
    samples = len(prompts) * args.k
    llm = make_llm(model, engine)
    raw2, tok2 = raw()
    raw_s = samples / ((raw1 + raw2) / 2)
    eval_s = samples / res["gen_seconds"]
    eval_tokens = sum(s["tokens"] for line in (out / "eval" / "samples.jsonl").read_text().splitlines()
                      for s in json.loads(line)["samples"])
    print(f"\n{'':28s} {'seconds':>8s} {'samples/s':>10s} {'tokens':>8s}")
    print(f"{'raw vllm.LLM.generate (1st)':28s} {raw1:8.2f} {samples / raw1:10.1f} {tok1:8d}")
    print(f"{'ssp eval (gen + verify)':28s} {res['gen_seconds']:8.2f} {eval_s:10.1f} {eval_tokens:8d}")
    print(f"{'raw vllm.LLM.generate (2nd)':28s} {raw2:8.2f} {samples / raw2:10.1f} {tok2:8d}")
    print(json.dumps({"eval_samples_per_s": round(eval_s, 2), "raw_vllm_samples_per_s": round(raw_s, 2),
                      "eval_vs_raw_vllm": round(eval_s / raw_s, 3), "samples": samples, "suite": args.suite,
                      "problems": len(prompts), "k": args.k, "eval_tokens": eval_tokens,
                      "raw_tokens": (tok1 + tok2) // 2}))


if __name__ == "__main__":
    main()
