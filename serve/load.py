"""Load on an OpenAI-compatible chat endpoint (`ssp serve`'s or your own): valid requests, part of them streamed,
mixed with malformed ones drawn from a seeded generator; every request under its own hard timeout.

    python -m serve.load --url http://127.0.0.1:8000 --model NAME [--key-file F] [--clients 16] [--requests 300]
        [--malformed 0.2] [--stream 0.5] [--timeout-s 60] [--max-tokens 16] [--max-body-bytes 1048576]
        [--kill-at FRAC [--app ssp]]   (SIGKILL this host's LLM replica once FRAC of the requests are sent)

Prints a summary, then one JSON line of figures (`run_load`'s dict). Exit status 1 if a valid request failed or
a malformed one was not answered with a 4xx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

ROUTE = "/v1/chat/completions"
KINDS = ("bad_json", "not_object", "no_messages", "messages_type", "unknown_model", "max_tokens_over",
         "max_tokens_bad", "sampling_type", "oversize", "auth")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(("what", "is", "two", "plus", "seven", "why", "x", "sum", "3", "41")) for _ in range(n))


def malformed_request(rng: random.Random, model: str, key: str | None, max_body: int) -> tuple[str, bytes, dict]:
    """(kind, body, headers) of one request an endpoint must refuse with a 4xx."""
    kind = rng.choice(KINDS if key else KINDS[:-1])  # without a key the server takes any Authorization header
    good = {"model": model, "messages": [{"role": "user", "content": _words(rng, rng.randint(1, 8))}]}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: object = good
    if kind == "bad_json":
        text = json.dumps(good).encode()
        body = rng.choice((text[:rng.randrange(len(text))], text.replace(b":", b"=", 1), b"\xff\xfe" + text))
    elif kind == "not_object":
        body = rng.choice(([good], _words(rng, 2), rng.randint(-9, 9), None, True))
    elif kind == "no_messages":
        body = {"model": model, **rng.choice(({}, {"messages": []}, {"messages": None}, {"prompt": "hi"}))}
    elif kind == "messages_type":
        body = {**good, "messages": rng.choice((_words(rng, 3), rng.randint(0, 99), {"role": "user"},
                                                [_words(rng, 2)], [{"content": "hi"}], [[{"role": "user"}]]))}
    elif kind == "unknown_model":
        body = {**good, "model": model + rng.choice(("-x", "2", "/v", " ")) + _words(rng, 1)}
    elif kind == "max_tokens_over":
        body = {**good, rng.choice(("max_tokens", "max_completion_tokens")): rng.randint(10**7, 10**9)}
    elif kind == "max_tokens_bad":
        body = {**good, "max_tokens": rng.choice((0, -rng.randint(1, 10**6), 1.5, "16", True, [16]))}
    elif kind == "sampling_type":
        body = {**good, rng.choice(("temperature", "top_p", "n")): rng.choice(({"a": 1}, [0.5], "warm"))}
    elif kind == "oversize":
        body = {**good, "messages": [{"role": "user", "content": "x" * rng.randint(max_body + 1, max_body * 3 // 2)}]}
    elif kind == "auth":
        headers = rng.choice(({}, {"Authorization": f"Bearer {key}x"}, {"Authorization": f"Basic {key}"},
                              {"Authorization": "Bearer"}, {"Authorization": (key or "")[::-1]}))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return kind, raw, {**headers, "Content-Type": "application/json"}


def pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else None


async def _valid(c: dict, stream: bool, text: str, rec: dict) -> None:
    """One chat request through the openai client. A stream that ends without a finish_reason is a failure
    ('truncated'), never a success."""
    req = {"model": c["model"], "messages": [{"role": "user", "content": text}], "max_tokens": c["max_tokens"],
           "temperature": 0, "extra_body": c["extra_body"]}
    if not stream:
        r = await c["oai"].chat.completions.create(**req)
        return rec.update(ok=True, status=200, content=r.choices[0].message.content or "")
    parts, finish = [], None
    async for ch in await c["oai"].chat.completions.create(**req, stream=True):
        d = ch.choices[0].delta if ch.choices else None
        if d is not None and "ttft" not in rec and (d.content or (d.model_extra or {}).get("reasoning")):
            rec["ttft"] = time.perf_counter() - rec["t0"]
        parts.append((d.content or "") if d else "")
        finish = (ch.choices[0].finish_reason if ch.choices else None) or finish
    rec.update(ok=finish is not None, status=200, content="".join(parts), **({} if finish else {"error": "truncated"}))


async def _one(c: dict, job: tuple) -> dict:
    import openai

    kind, payload, headers = job
    rec: dict = {"kind": kind, "t0": time.perf_counter()}
    try:
        async with asyncio.timeout(c["timeout_s"]):  # the whole request, stream included
            if kind.startswith("valid"):
                await _valid(c, kind == "valid_stream", payload, rec)
            else:
                rec["status"] = (await c["raw"].post(c["url"] + ROUTE, content=payload, headers=headers)).status_code
    except (TimeoutError, openai.APITimeoutError, httpx.TimeoutException):
        rec["error"] = "timeout"
    except openai.APIStatusError as e:
        rec["status"] = e.status_code
    except openai.APIConnectionError as e:  # refused, reset, or a body cut off mid-transfer
        rec["error"] = f"connection:{type(e.__cause__).__name__}"
    except openai.APIError as e:  # an error event inside a stream
        rec["error"] = f"stream_error:{e.body.get('code') if isinstance(e.body, dict) else type(e).__name__}"
    except httpx.HTTPError as e:
        rec["error"] = f"connection:{type(e).__name__}"
    rec["latency"] = time.perf_counter() - rec["t0"]
    return rec


def outcome(r: dict) -> str:
    """'ok', the error kind, or the HTTP status of one request."""
    return "ok" if r.get("ok") else r.get("error") or str(r.get("status"))


def figures(recs: list[dict], wall_s: float) -> dict:
    valid = [r for r in recs if r["kind"].startswith("valid")]
    bad = [r for r in recs if not r["kind"].startswith("valid")]
    ok = [r for r in valid if r.get("ok")]
    lat, ttft = [1000 * r["latency"] for r in ok], [1000 * r["ttft"] for r in ok if "ttft" in r]
    r1 = lambda x: None if x is None else round(x, 1)  # noqa: E731
    return {"requests": len(recs), "valid": len(valid), "malformed": len(bad), "rps": round(len(recs) / wall_s, 2),
            "p50_ms": r1(pct(lat, 0.5)), "p99_ms": r1(pct(lat, 0.99)), "ttft_p50_ms": r1(pct(ttft, 0.5)),
            "ttft_p99_ms": r1(pct(ttft, 0.99)), "ok_valid": len(ok),
            "ok_stream": sum(r["kind"] == "valid_stream" for r in ok),
            "5xx_valid": sum(r.get("status", 0) >= 500 for r in valid),
            "4xx_valid": sum(400 <= r.get("status", 0) < 500 for r in valid),
            "errors_valid": dict(Counter(r["error"] for r in valid if "error" in r)),
            "failures_valid": dict(Counter(outcome(r) for r in valid if not r.get("ok"))),
            "4xx_malformed": sum(400 <= r.get("status", 0) < 500 for r in bad),
            "other_malformed": dict(Counter(f"{r['kind']}:{outcome(r)}" for r in bad
                                            if not 400 <= r.get("status", 0) < 500)),
            "malformed_kinds": dict(Counter(r["kind"] for r in bad)),
            "contents": [list(x) for x in Counter(r.get("content") for r in ok).most_common(5)],
            "timeouts": sum(r.get("error") == "timeout" for r in recs),
            "max_latency_ms": r1(max((1000 * r["latency"] for r in recs), default=None)), "wall_s": round(wall_s, 2)}


async def load(url: str, model: str, key: str | None, clients: int = 16, requests: int = 300,
               malformed_frac: float = 0.2, stream_frac: float = 0.5, timeout_s: float = 60.0, max_tokens: int = 16,
               seed: int = 0, during=None, during_at: float = 0.3, max_body: int = 1 << 20,
               extra_body: dict | None = None) -> dict:
    """`run_load` inside a running event loop."""
    from openai import AsyncOpenAI

    rng, url = random.Random(seed), url.rstrip("/")
    n_bad = round(requests * malformed_frac)
    n_stream = round((requests - n_bad) * stream_frac)
    jobs = [malformed_request(rng, model, key, max_body) for _ in range(n_bad)]
    jobs += [("valid_stream" if i < n_stream else "valid", f"What is {_words(rng, rng.randint(1, 6))}?", None)
             for i in range(requests - n_bad)]
    rng.shuffle(jobs)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    c = {"url": url, "model": model, "max_tokens": max_tokens, "timeout_s": timeout_s, "extra_body": extra_body,
         "raw": httpx.AsyncClient(limits=limits, timeout=timeout_s),
         "oai": AsyncOpenAI(base_url=url + "/v1", api_key=key or "none", max_retries=0, timeout=timeout_s,
                            http_client=httpx.AsyncClient(limits=limits, timeout=timeout_s))}
    recs: list[dict] = []
    it, fire_at, side = enumerate(jobs, 1), max(1, int(during_at * requests)), []

    async def worker():
        for i, job in it:
            if during is not None and i == fire_at:
                side.append(asyncio.create_task(during()))
            recs.append(await _one(c, job))

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
        out = figures(recs, time.perf_counter() - t0)
        if side:
            out["during"] = d = await side[0]
            if isinstance(d, dict) and "killed_at" in d:  # what the valid requests under way at a kill became
                t = d.pop("killed_at")
                out["under_way_at_kill"] = dict(Counter(outcome(r) for r in recs if r["kind"].startswith("valid")
                                                        and r["t0"] <= t <= r["t0"] + r["latency"]))
    finally:
        await c["oai"].close()
        await c["raw"].aclose()
    return out


def run_load(url: str, model: str, key: str | None, clients: int = 16, requests: int = 300,
             malformed_frac: float = 0.2, stream_frac: float = 0.5, timeout_s: float = 60.0, max_tokens: int = 16,
             seed: int = 0, during=None, **kw) -> dict:
    """Send `requests` requests from `clients` concurrent clients. `during` (an async callable) is started once
    `during_at` (default 0.3) of them are sent; its result is figures["during"]. `max_body`: the server's body
    limit (oversize bodies are drawn just above it); `extra_body`: added to every valid request."""
    return asyncio.run(load(url, model, key, clients, requests, malformed_frac, stream_frac, timeout_s, max_tokens,
                            seed, during, **kw))


def replica_pids(app: str, deployment: str = "LLMServer", root_pid: int | None = None) -> list[int]:
    """Pids of the Serve replicas of `deployment` (a name prefix: ray.serve.llm names it `LLMServer:<model id>`)
    in app `app`, by process title (Ray 2.60: `ray::ServeReplica:<app>:<deployment>`). With `root_pid`, only
    among that process's descendants (the cluster `ssp serve` started), not another cluster's on this host."""
    import psutil

    pids = []
    for p in psutil.Process(root_pid).children(recursive=True) if root_pid else psutil.process_iter():
        try:
            if " ".join(p.cmdline()).startswith(f"ray::ServeReplica:{app}:{deployment}"):
                pids.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return sorted(pids)


def kill_replica(app: str, deployment: str = "LLMServer", root_pid: int | None = None) -> int:
    """SIGKILL one replica, as a crash would (its vLLM engine processes exit with it; Serve starts another)."""
    pids = replica_pids(app, deployment, root_pid)
    if not pids:
        raise RuntimeError(f"no process titled ray::ServeReplica:{app}:{deployment}* on this host")
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


async def until_ok(url: str, model: str, key: str | None, timeout_s: float, every_s: float = 1.0) -> float:
    """Seconds until a valid chat request succeeds (each try under 10 s); TimeoutError after `timeout_s`."""
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=10) as c:
        while time.perf_counter() - t0 < timeout_s:
            try:
                r = await c.post(url.rstrip("/") + ROUTE, headers={"Authorization": f"Bearer {key}"} if key else {},
                                 json={"model": model, "messages": [{"role": "user", "content": "hi"}],
                                       "max_tokens": 4})
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            await asyncio.sleep(every_s)
    raise TimeoutError(f"no valid request succeeded within {timeout_s} s")


def kill_and_recover(url: str, model: str, key: str | None, app: str = "ssp", root_pid: int | None = None,
                     recover_s: float = 300.0):
    """A `during` callback: SIGKILL one LLM replica; {"killed_pid", "recovery_s"} once a request succeeds again.
    (Requests the replica had not yet accepted are re-routed by Serve to the new one; those it was answering fail.)"""
    async def during() -> dict:
        pid, t = kill_replica(app, "LLMServer", root_pid), time.perf_counter()
        return {"killed_pid": pid, "killed_at": t, "recovery_s": round(await until_ok(url, model, key, recover_s), 2)}
    return during


@contextlib.contextmanager
def serve_process(args: list[str], log: Path, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                  ready_timeout_s: float = 600.0) -> Iterator[subprocess.Popen]:
    """`python -m ssp.cli serve ARGS` in a session of its own, as a user starts it, its output in `log`; yields the
    process once it prints its `serving ...` line (RuntimeError with the log's tail if it exits or `ready_timeout_s`
    passes first). On leaving: SIGINT to its session (the app is deleted), SIGKILL if it is not gone in 120 s."""
    with Path(log).open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ssp.cli", "serve", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + ready_timeout_s
        while "serving " not in Path(log).read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ssp serve did not start (exit {proc.poll()}):\n{Path(log).read_text()[-4000:]}")
            time.sleep(1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serve.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True, help="the model id clients pass")
    ap.add_argument("--key-file", help="file holding the API key (default: $SSP_API_KEY, else none)")
    ap.add_argument("--app", default="ssp", help="the Serve app whose local LLM replica --kill-at kills")
    for name, typ, default in (("clients", int, 16), ("requests", int, 300), ("malformed", float, 0.2),
                               ("stream", float, 0.5), ("timeout-s", float, 60.0), ("max-tokens", int, 16),
                               ("seed", int, 0), ("max-body-bytes", int, 1 << 20), ("kill-at", float, None)):
        ap.add_argument(f"--{name}", type=typ, default=default)
    a = ap.parse_args(argv)
    key = open(a.key_file).read().strip() if a.key_file else os.environ.get("SSP_API_KEY") or None
    during = None if a.kill_at is None else kill_and_recover(a.url, a.model, key, a.app)
    f = run_load(a.url, a.model, key, a.clients, a.requests, a.malformed, a.stream, a.timeout_s, a.max_tokens,
                 a.seed, during, during_at=a.kill_at or 0.3, max_body=a.max_body_bytes)
    print(f"{f['requests']} requests ({f['valid']} valid, {f['malformed']} malformed), {a.clients} clients, "
          f"{f['wall_s']} s: {f['rps']} req/s\nvalid: {f['ok_valid']} ok, {f['5xx_valid']} 5xx, {f['4xx_valid']} "
          f"4xx, errors {f['errors_valid']} (failures by kind {f['failures_valid']}); latency p50/p99 {f['p50_ms']}/{f['p99_ms']} ms, time to first token "
          f"p50/p99 {f['ttft_p50_ms']}/{f['ttft_p99_ms']} ms\nmalformed: {f['4xx_malformed']} answered 4xx, "
          f"others {f['other_malformed']}; timeouts {f['timeouts']}, slowest {f['max_latency_ms']} ms" +
          (f"\nkill: {f['during']}; the valid requests under way then: {f['under_way_at_kill']}"
           if "under_way_at_kill" in f else ""))
    print(json.dumps(f))
    return int(bool(f["5xx_valid"] or f["4xx_valid"] or f["errors_valid"] or f["other_malformed"]))


if __name__ == "__main__":
    raise SystemExit(main())
