"""`ssp serve`: a checkpoint behind an OpenAI-compatible endpoint, built on `ray.serve.llm`.

The app is `ray.serve.llm`'s own: an `LLMServer` deployment (vLLM, engine settings from the same
`EngineConfig` the rollout workers use) behind the `OpenAiIngress` (`/v1/models`, `/v1/chat/completions`,
`/v1/completions`). What this module adds is the front door, as an ASGI middleware on the ingress's FastAPI
app (Ray 2.60's `LLMServingArgs` has no `api_key`): the API key on every `/v1/*` route, a body-size limit,
JSON and `max_tokens` checks with clear 4xx answers, and only the OpenAI routes plus `/health` exposed; and a
model replica that fails under a request (killed, unreachable) is answered with a 503 to retry, or, once a stream
has begun, an OpenAI error event that ends it (`guarded`), never a silently cut-off answer.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from pathlib import Path

from serve.config import ServeConfig

ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/health")
KEY_ENV = "SSP_API_KEY"


def api_key(conf: ServeConfig) -> str | None:
    """The key from SSP_API_KEY, else from `serve.api_key_file`; never from the command line."""
    key = os.environ.get(KEY_ENV)
    if not key and conf.api_key_file:
        from ssp.io import DataError, regular_file

        try:
            raw = regular_file(conf.api_key_file, "an API key file").read_bytes()
            key = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DataError(f"serve.api_key_file {conf.api_key_file}: not UTF-8 text") from None
        except (DataError, OSError) as e:
            raise DataError(f"serve.api_key_file: {e} — write the key into that file, or set {KEY_ENV}") from None
        if not key:
            raise DataError(f"serve.api_key_file {conf.api_key_file}: the file is empty — write the key into it, "
                            f"or set {KEY_ENV}")
        if any(c.isspace() or not c.isprintable() for c in key):
            raise DataError(f"serve.api_key_file {conf.api_key_file}: the key holds whitespace or control "
                            "characters (one key, one line); clients could not send it in a header")
    return key or None


def _error(status: int, message: str, kind: str) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "code": status}}


def _json_error(status: int, message: str, kind: str) -> tuple[int, bytes]:
    return status, json.dumps(_error(status, message, kind)).encode()


class FrontDoor:
    """ASGI middleware: routes, API key, body size, JSON shape and token limit, before the OpenAI ingress."""

    def __init__(self, app, key: str | None, max_bytes: int, max_tokens: int, models: tuple[str, ...]):
        self.app, self.key, self.max_bytes, self.max_tokens, self.models = app, key, max_bytes, max_tokens, models

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        if not (path in ROUTES or path.startswith("/v1/models/")):
            return await _reply(send, *_json_error(404, f"no route {path}", "not_found"))
        if path != "/health" and self.key is not None:
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), self.key.encode()):
                return await _reply(send, *_json_error(401, "missing or wrong API key (Authorization: Bearer ...)",
                                                       "authentication_error"))
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_bytes:
                return await _reply(send, *_json_error(413, f"request body over {self.max_bytes} bytes "
                                                            "(serve.max_request_bytes)", "invalid_request_error"))
        status, problem = self.check(path, body)
        if problem:
            return await _reply(send, *_json_error(status, problem, "invalid_request_error"))
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await guarded(self.app, scope, replay, send)

    def check(self, path: str, body: bytes) -> tuple[int, str | None]:
        """(status, why) a request body is refused, or (200, None)."""
        try:
            req = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return 400, f"the body is not valid JSON ({e})"
        if not isinstance(req, dict):
            return 400, "the body must be a JSON object"
        need = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}.get(path)
        if need and not req.get(need):
            return 400, f"missing field '{need}'"
        if need == "messages" and not (isinstance(req["messages"], list) and all(
                isinstance(m, dict) and "role" in m for m in req["messages"])):
            return 400, "field 'messages' must be a list of objects with a 'role'"
        if "model" in req and req["model"] not in self.models:
            return 404, f"unknown model {req['model']!r}; this server has {list(self.models)}"
        for key in ("max_tokens", "max_completion_tokens"):
            v = req.get(key)
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                return 400, f"{key} must be a positive integer, got {v!r}"
            if v > self.max_tokens:
                return 400, f"{key}={v} is over this server's limit of {self.max_tokens} (serve.max_tokens)"
        return 200, None


def failure(e: BaseException | None) -> tuple[int, str, str]:
    """(status, message, type) for an error raised while the model answers: 503 when the model's replica died,
    is unreachable or is refusing work (a retry can succeed once Serve has started another), else 500. Looks
    through the causes (Starlette re-raises a handled error as a RuntimeError once a response has started)."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    if e is None:
        return 500, "the answer's stream ended before its [DONE]", "internal_error"
    seen, x = set(), e
    while x is not None and id(x) not in seen:
        if isinstance(x, (RayActorError, DeploymentUnavailableError, BackPressureError)):
            return 503, (f"the model's replica is unavailable ({type(x).__name__}); Serve restarts a failed one: "
                         "retry"), "service_unavailable"
        seen.add(id(x))
        x = x.__cause__ or x.__context__ or getattr(x, "cause", None)
    return 500, f"internal error ({type(e).__name__})", "internal_error"


async def guarded(app, scope, receive, send) -> None:
    """`app` with a failure answered, not dropped: before the response starts, a JSON 503/500; in a stream
    (text/event-stream) that ends without its `data: [DONE]`, an OpenAI error event before the end. Without that
    event a replica dying mid-stream reaches the client as a normal end of a 200 body cut off after a few chunks
    (measured: Starlette's BaseHTTPMiddleware ends the body, then re-raises), which a client takes for a whole
    answer. The stream's last message is held back until it is known whether [DONE] came."""
    started = stream = done = held = False

    async def watch(msg):
        nonlocal started, stream, done, held
        if msg["type"] == "http.response.start":
            started = True
            stream = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                         for k, v in msg.get("headers", ()))
        elif msg["type"] == "http.response.body" and stream:
            done = done or b"data: [DONE]" in msg.get("body", b"")
            if not (done or msg.get("more_body", False)):
                held = True
                if not msg.get("body"):
                    return
                msg = {**msg, "more_body": True}
        await send(msg)

    error = None
    try:
        await app(scope, receive, watch)
    except Exception as e:
        error = e
    if error is None and not held:
        return
    status, message, kind = failure(error)
    logging.getLogger("ray.serve").warning("request failed, answered %s%s: %r", status,
                                           " in its stream" if started else "", error)
    if not started:
        return await _reply(send, *_json_error(status, message, kind))
    if not stream:
        raise error
    if not done:  # (an error after [DONE] has nothing left to tell the client)
        event = f"data: {json.dumps(_error(status, message, kind))}\n\n".encode()
        await send({"type": "http.response.body", "body": event, "more_body": False})


async def _reply(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def llm_config(model: str, conf, model_id: str):
    """The `ray.serve.llm.LLMConfig` for `model`: engine settings from `conf.engine` (the rollout workers'),
    replicas and device from `conf.serve`."""
    from ray.serve.llm import LLMConfig

    from cluster.env import process_env

    e, s = conf.engine, conf.serve
    engine_kwargs = {"dtype": e.dtype, "max_model_len": e.max_model_len, "enforce_eager": e.enforce_eager,
                     "tensor_parallel_size": e.tensor_parallel_size, "max_num_seqs": e.max_num_seqs,
                     "max_num_batched_tokens": max(e.max_num_batched_tokens, e.max_model_len), "seed": e.seed}
    if s.num_gpus:
        engine_kwargs["gpu_memory_utilization"] = e.gpu_memory_utilization
        bundles = [{"GPU": 1, "CPU": 1}] * e.tensor_parallel_size
    else:
        bundles = [{"CPU": s.num_cpus}]
    if s.reasoning_parser:
        engine_kwargs["reasoning_parser"] = s.reasoning_parser
    scaling = ({"autoscaling_config": {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                                       "target_ongoing_requests": s.target_ongoing_requests}}
               if s.autoscaling else {"num_replicas": s.replicas})
    # The engine core in its own process (vLLM's default; the rollout workers keep it in-process for in-place
    # weight loads, which a server does not do): in the replica's process it shares the GIL with the HTTP side.
    env = {**process_env(), "VLLM_CPU_KVCACHE_SPACE": str(e.kv_cache_gib), "RAYLLM_ENABLE_REQUEST_PROMPT_LOGS": "0",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    return LLMConfig(model_loading_config={"model_id": model_id, "model_source": model},
                     engine_kwargs=engine_kwargs, accelerator_config={"kind": "gpu" if s.num_gpus else "cpu"},
                     placement_group_config={"bundles": bundles, "strategy": "PACK"},
                     deployment_config={**scaling, "max_ongoing_requests": s.max_ongoing_requests},
                     runtime_env={"env_vars": env}, log_engine_metrics=s.engine_metrics)


def build_app(model: str, conf, key: str | None):
    """The Serve application: LLMServer deployment(s) behind the OpenAI ingress with our front door."""
    from fastapi import HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from ray import serve
    from ray.exceptions import RayActorError
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import DEFAULT_ENDPOINTS, init
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    model_id = conf.serve.model_id or Path(model).name
    cfg_ = llm_config(model, conf, model_id)
    app = init()
    app.add_middleware(FrontDoor, key=key, max_bytes=conf.serve.max_request_bytes, max_tokens=conf.serve.max_tokens,
                       models=(model_id,))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):  # a 4xx naming the fields (Ray's own handler sent a 500)
        why = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse(_error(400, why, "invalid_request_error"), status_code=400)

    async def unavailable(_, exc: Exception):  # before the first token: a 503 to retry (Ray's own handler: a 500)
        status, message, kind = failure(exc)
        return JSONResponse(_error(status, message, kind), status_code=status, headers={"Retry-After": "5"})

    for cls in (RayActorError, BackPressureError, DeploymentUnavailableError):
        app.add_exception_handler(cls, unavailable)

    @app.exception_handler(HTTPException)
    async def http_error(_, exc: HTTPException):
        return JSONResponse(_error(exc.status_code, str(exc.detail), "invalid_request_error"),
                            status_code=exc.status_code)

    endpoints = {k: DEFAULT_ENDPOINTS[k] for k in ("models", "model_data", "completions", "chat")}
    ingress = make_fastapi_ingress(OpenAiIngress, endpoint_map=endpoints, app=app)
    options = OpenAiIngress.get_deployment_options(llm_configs=[cfg_])
    return serve.deployment(ingress).options(**options).bind(
        llm_deployments={model_id: build_llm_deployment(cfg_)},
        model_cards={model_id: to_model_metadata(model_id, cfg_)})


def app_builder(args: dict):
    """Ray Serve's application builder for a config deploy (`import_path: serve.app:app_builder`, as in
    k8s/rayservice.yaml): args {"model": HF dir, "config": YAML path, "overrides": ["key.sub=value", ...]}.
    The same app `ssp serve` runs; the API key comes from SSP_API_KEY (a Secret there) or serve.api_key_file."""
    from ssp.config import ConfigError, load_config
    from ssp.tree import SSPConfig
    from trainer.models.ensure import check_model

    unknown = set(args) - {"model", "config", "overrides"}
    if "model" not in args or unknown:
        raise ConfigError(f"serve.app:app_builder args: need 'model' (an HF dir), may have 'config' and "
                          f"'overrides'; got {sorted(args)}")
    conf = load_config(SSPConfig, args.get("config"), [*args.get("overrides", []), f"model.path={args['model']}"])
    check_model(args["model"])
    return build_app(args["model"], conf, api_key(conf.serve))


def ask_once(model: str, conf, question: str, max_tokens: int = 64) -> dict:
    """Serve `model` on the connected cluster for one request: deploy, ask `question` through the OpenAI
    route over HTTP, remove the app. (`make demo`'s last stage; uses serve.host/port, no API key.)"""
    import requests
    from ray import serve

    s = conf.serve
    try:
        ready = deploy(model, conf, None)
        model_id = s.model_id or Path(model).name
        r = requests.post(f"http://{s.host}:{s.port}/v1/chat/completions", timeout=300,
                          json={"model": model_id, "messages": [{"role": "user", "content": question}],
                                "max_tokens": max_tokens, "temperature": 0})
        r.raise_for_status()
        msg = r.json()["choices"][0]["message"]
        return {"question": question, "answer": msg.get("content"), "reasoning": msg.get("reasoning"),
                "ready_s": ready, "url": f"http://{s.host}:{s.port}/v1"}
    finally:
        serve.delete(s.app_name)


def deploy(model: str, conf, key: str | None) -> float:
    """Start Serve's HTTP proxy on serve.host/port, deploy the app on the connected cluster and wait until it
    runs (serve.ready_timeout_s); the seconds that took."""
    from ray import serve

    s = conf.serve
    serve.start(http_options={"host": s.host, "port": s.port})
    t0 = time.time()
    serve.run(build_app(model, conf, key), name=s.app_name, route_prefix="/", blocking=False)
    wait_running(s.app_name, s.ready_timeout_s)
    return time.time() - t0


def wait_running(app: str, timeout_s: float) -> None:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        st = serve.status().applications.get(app)
        if st is not None and st.status == ApplicationStatus.RUNNING:
            return
        if st is not None and st.status == ApplicationStatus.DEPLOY_FAILED:
            raise RuntimeError(f"serve: the app failed to deploy:\n{st.message}")
        time.sleep(1.0)
    raise TimeoutError(f"serve: the app was not running within {timeout_s} s (serve.ready_timeout_s)")
