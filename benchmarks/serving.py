"""`ssp serve` throughput and latency beside raw `vllm.LLM.generate`, same engine settings, one run.

Every request is one chat turn with a toy question and asks for exactly --tokens tokens (`ignore_eos`), so
both sides do the same work. Raw vLLM runs in this process: all requests in one `generate` call, and in
waves of 8 (8 sequences in flight, as with 8 clients). `ssp serve` (no API key) is then hit by 1, 8 and 32
concurrent clients over HTTP. `serve_vs_raw_vllm_c8` = serve's requests/s at 8 clients over raw's in waves
of 8.

Usage: python benchmarks/serving.py [--requests 64] [--tokens 64]
Last line: {"rps_c1", "rps_c8", "rps_c32", "p50_ms_c8", "p99_ms_c8", "serve_vs_raw_vllm_c8", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.env import apply  # noqa: E402

apply()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    import requests

    from actors.config import SamplingConfig
    from actors.engine import make_llm, sampling_params
    from actors.prompts import load_tokenizer
    from serve.load import serve_process
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.models.ensure import ensure_model

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    model = ensure_model(conf)
    tok = load_tokenizer(model)
    questions = [f"What is {i} + {i * 7 % 13}?" for i in range(args.requests)]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in questions]
    params = sampling_params(SamplingConfig(temperature=1.0, max_tokens=args.tokens), logprobs=False)
    params.ignore_eos = True

    llm = make_llm(model, conf.engine)
    llm.generate(prompts[:8], params, use_tqdm=False)
    t0 = time.perf_counter()
    llm.generate(prompts, params, use_tqdm=False)
    raw_all = args.requests / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(prompts), 8):
        llm.generate(prompts[i:i + 8], params, use_tqdm=False)
    raw_w8 = args.requests / (time.perf_counter() - t0)
    del llm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "SSP_API_KEY"}
    env["RAY_ADDRESS"] = ""
    t_start = time.time()
    with serve_process(["--config", "configs/tiny-cpu.yaml", f"serve.port={port}", "serve.max_ongoing_requests=64"],
                       Path(f"/tmp/bench-serve-{port}.log"), env=env, cwd=REPO, ready_timeout_s=900):
        ready_s = time.time() - t_start
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        model_id = Path(model).name

        def one(q: str) -> float:
            t = time.perf_counter()
            r = requests.post(url, json={"model": model_id, "messages": [{"role": "user", "content": q}],
                                         "max_tokens": args.tokens, "temperature": 1.0, "ignore_eos": True},
                              timeout=600)
            r.raise_for_status()
            assert r.json()["usage"]["completion_tokens"] == args.tokens
            return time.perf_counter() - t

        one(questions[0])
        res = {}
        for c in (1, 8, 32):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(c) as ex:
                lat = list(ex.map(one, questions))
            res[c] = (args.requests / (time.perf_counter() - t0), lat)

    print(f"\n{'':34s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'raw vllm.LLM.generate, all at once':34s} {raw_all:8.2f}")
    print(f"{'raw vllm.LLM.generate, waves of 8':34s} {raw_w8:8.2f}")
    for c, (rps, lat) in res.items():
        print(f"{f'ssp serve, {c} clients':34s} {rps:8.2f} {1000 * pct(lat, 0.5):8.0f} {1000 * pct(lat, 0.99):8.0f}")
    print(f"(ssp serve ready in {ready_s:.0f} s)")
    print(json.dumps({"rps_c1": round(res[1][0], 2), "rps_c8": round(res[8][0], 2), "rps_c32": round(res[32][0], 2),
                      "p50_ms_c8": round(1000 * pct(res[8][1], 0.5)), "p99_ms_c8": round(1000 * pct(res[8][1], 0.99)),
                      "serve_vs_raw_vllm_c8": round(res[8][0] / raw_w8, 3), "raw_rps_all_at_once": round(raw_all, 2),
                      "raw_rps_waves_of_8": round(raw_w8, 2), "requests": args.requests, "tokens": args.tokens}))


if __name__ == "__main__":
    main()
