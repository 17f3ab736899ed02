"""`ssp serve` for real (Ray Serve + `ray.serve.llm` + vLLM) on a tiny model, through the `openai` client.

One server per module. Its model is the tiny model rewired so that its greedy answer to any chat prompt is
fixed (" step</think> by", then end of turn): the reasoning parser's split can then be checked exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
KEY = "test-key-5f1c"


def scripted_model(src: Path, dst: Path) -> Path:
    """The tiny model with every layer's output projections zeroed (each position's hidden state is its own
    token's embedding) and an untied LM head that maps each token of a chain to the next: prompt end ->
    'Ġstep' -> '</think>' -> 'Ġby' -> <|im_end|>."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(src, dst)
    tok = AutoTokenizer.from_pretrained(dst)
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32)
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight.data.zero_()
        layer.mlp.down_proj.weight.data.zero_()
    emb = model.model.embed_tokens.weight.data
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    chain = [tok(prompt, add_special_tokens=False)["input_ids"][-1],
             *tok.convert_tokens_to_ids(["Ġstep", "</think>", "Ġby"]), tok.eos_token_id]
    assert len(set(chain)) == len(chain)
    head = torch.zeros_like(emb)
    for x, y in zip(chain, chain[1:]):
        head[y] = emb[x] / emb[x].norm() * 50
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(dst, safe_serialization=True)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    from serve.load import serve_process

    model = scripted_model(tiny_model_dir, tmp_path_factory.mktemp("serve") / "scripted")
    port = free_port()
    args = ["--config", "configs/tiny-cpu.yaml", "--model", str(model), f"serve.port={port}",
            "serve.reasoning_parser=deepseek_r1", "serve.max_request_bytes=65536", "serve.max_tokens=64",
            "serve.model_id=scripted"]
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with serve_process(args, log, env={**os.environ, "RAY_ADDRESS": "", "SSP_API_KEY": KEY}, cwd=REPO) as proc:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "proc": proc, "log": log}


def client(server, key=KEY):
    from openai import OpenAI

    return OpenAI(base_url=server["url"] + "/v1", api_key=key, max_retries=0, timeout=120)


def test_chat_completion_streamed_and_not_with_reasoning_split(server):
    c = client(server)
    assert [m.id for m in c.models.list()] == ["scripted"]
    r = c.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                  max_tokens=16, temperature=0)
    msg = r.choices[0].message
    assert (msg.content, msg.model_extra["reasoning"]) == (" by", " step")  # the text was " step</think> by"
    assert r.choices[0].finish_reason == "stop"
    chunks = list(c.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=16, temperature=0, stream=True))
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    reasoning = "".join(ch.choices[0].delta.model_extra.get("reasoning") or "" for ch in chunks if ch.choices)
    assert (content, reasoning) == (" by", " step") and len(chunks) >= 3
    text = c.completions.create(model="scripted", prompt="What is", max_tokens=3, temperature=0).choices[0].text
    assert len(text) > 0


def test_api_key_required_on_v1_routes_only(server):
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError):
        client(server, "wrong-key").models.list()
    assert requests.get(server["url"] + "/v1/models", timeout=30).status_code == 401
    assert requests.get(server["url"] + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert requests.get(server["url"] + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).status_code == 200
    assert requests.get(server["url"] + "/health", timeout=30).status_code == 200
    assert requests.get(server["url"] + "/docs", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).status_code == 404


@pytest.mark.parametrize("body,status,words", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps({"model": "scripted"}).encode(), 400, "missing field 'messages'"),
    (json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}).encode(), 404, "unknown model"),
    (json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}).encode(),
     400, "over this server's limit of 64"),
    (json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}).encode(),
     400, "positive integer"),
    (json.dumps({"model": "scripted", "messages": "hi"}).encode(), 400, "list of objects"),
    (json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "x" * 70000}]}).encode(), 413,
     "over 65536 bytes"),
])
def test_bad_requests_get_a_clear_4xx(server, body, status, words):
    r = requests.post(server["url"] + "/v1/chat/completions", data=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_listens_on_localhost_only(server):
    socks = [c for c in psutil.net_connections(kind="tcp")
             if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == server["port"]]
    assert socks and {c.laddr.ip for c in socks} == {"127.0.0.1"}


LOAD = {"model": "scripted", "key": KEY, "clients": 16, "malformed_frac": 0.25, "stream_frac": 0.5, "max_tokens": 16,
        "max_body": 65536}


def test_load_with_malformed_requests_mixed_in(server):
    from serve.load import KINDS, run_load

    f = run_load(server["url"], requests=240, timeout_s=60, seed=1, **LOAD)
    print("load:", json.dumps(f))
    assert (f["valid"], f["malformed"], f["ok_valid"], f["ok_stream"]) == (180, 60, 180, 90), f
    assert (f["5xx_valid"], f["4xx_valid"], f["failures_valid"], f["timeouts"]) == (0, 0, {}, 0), f
    assert f["contents"] == [[" by", 180]]  # every answer the scripted one (its thinking, " step", apart)
    assert f["4xx_malformed"] == 60 and f["other_malformed"] == {} and set(f["malformed_kinds"]) == set(KINDS), f
    assert 0 < f["p50_ms"] <= f["p99_ms"] <= f["max_latency_ms"] < 60_000 and 0 < f["ttft_p50_ms"] <= f["ttft_p99_ms"]


async def kill_mid_stream(server, n: int = 48) -> dict:
    """n long streams (8 choices of 64 tokens, ignore_eos: ~2 s on this box), the LLM replica SIGKILLed as the
    first chunk of any arrives, and how each stream ended: 'done' (8 x 64 tokens and [DONE]), '503' (before its
    first token), 'event:<code>' (an error event ended it), 'cut' (ended short without one: the failure the
    front door exists to prevent)."""
    import asyncio

    import httpx

    from serve.load import replica_pids, until_ok

    (pid,) = replica_pids("ssp", "LLMServer", root_pid=server["proc"].pid)
    killed_at = []
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64, "n": 8,
            "ignore_eos": True, "stream": True, "temperature": 1.0}

    async def stream(c) -> str:
        data = []
        try:
            async with c.stream("POST", server["url"] + "/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {KEY}"}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        data.append(line[6:])
                        if not killed_at:  # here, not in another task: the event loop is busy with the load
                            os.kill(pid, signal.SIGKILL)
                            killed_at.append(time.perf_counter())
        except httpx.HTTPError as e:
            return f"connection:{type(e).__name__}"
        if r.status_code != 200 or not data:
            return str(r.status_code)
        if data[-1] == "[DONE]":
            ends = [ch["finish_reason"] for x in data[:-1] for ch in json.loads(x)["choices"]]
            return "done" if ends.count("length") == 8 else "cut"
        return f"event:{json.loads(data[-1])['error']['code']}" if "error" in json.loads(data[-1]) else "cut"

    async with httpx.AsyncClient(timeout=180) as c:
        ends = await asyncio.gather(*(stream(c) for _ in range(n)))
    await until_ok(server["url"], "scripted", KEY, 180)
    return {"killed_pid": pid, "killed_at": killed_at[0], "streams": {e: ends.count(e) for e in set(ends)},
            "recovery_s": round(time.perf_counter() - killed_at[0], 1)}


def test_a_replica_killed_mid_load_fails_requests_cleanly_and_recovers(server):
    from serve.load import run_load

    t0 = time.time()
    f = run_load(server["url"], requests=160, timeout_s=180, seed=2, during=lambda: kill_mid_stream(server),
                 during_at=0.3, **LOAD)
    print("kill:", json.dumps(f), f"{time.time() - t0:.1f} s")
    d = f["during"]
    assert sum(d["streams"].values()) == 48 and set(d["streams"]) <= {"done", "503", "event:503"}, d
    assert d["recovery_s"] < 180 and f["timeouts"] == 0 and f["max_latency_ms"] < 180_000, f
    # every valid request of the load succeeded or failed cleanly: a 503 before its answer, an error event in it
    assert set(f["failures_valid"]) <= {"503", "stream_error:503"}, f
    assert f["ok_valid"] + sum(f["failures_valid"].values()) == f["valid"] == 120, f
    assert f["contents"] == [[" by", f["ok_valid"]]] and f["4xx_malformed"] == 40, f
    after = run_load(server["url"], requests=80, timeout_s=60, seed=3, **LOAD)
    print("after:", json.dumps(after))
    assert (after["ok_valid"], after["5xx_valid"], after["failures_valid"], after["4xx_malformed"]) == (60, 0, {}, 20)
    assert after["contents"] == [[" by", 60]]


def test_sigint_shuts_the_app_down(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    assert "shutting down" in server["log"].read_text()
