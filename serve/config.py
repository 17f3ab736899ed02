"""The serve room's config: the OpenAI-compatible endpoint `ssp serve` deploys (no Ray here)."""

from __future__ import annotations

from dataclasses import dataclass

from ssp.config import cfg


@dataclass
class ServeConfig:
    host: str = cfg("127.0.0.1", "address the HTTP proxy binds (0.0.0.0 exposes it to the network)")
    port: int = cfg(8000, "HTTP port", ge=1, le=65535)
    app_name: str = cfg("ssp", "Serve application name (`ssp serve --stop` removes it)")
    model_id: str = cfg("", "the name clients pass as `model` ('' = the model folder's name)")
    replicas: int = cfg(1, "engine replicas when autoscaling is off", ge=1)
    autoscaling: bool = cfg(False, "scale replicas between min_replicas and max_replicas on load")
    min_replicas: int = cfg(1, "autoscaling floor", ge=0)
    max_replicas: int = cfg(1, "autoscaling ceiling", ge=1)
    target_ongoing_requests: int = cfg(16, "requests per replica autoscaling aims at (ray.serve.llm's default, "
                                           "1e9, never scales up)", ge=1)
    max_ongoing_requests: int = cfg(64, "requests one replica takes at once; more wait in the proxy", ge=1)
    num_cpus: float = cfg(2.0, "CPUs per replica (CPU engines)", gt=0)
    num_gpus: int = cfg(0, "GPUs per replica (engine.tensor_parallel_size of them on GPU boxes; 0 = CPU engine)",
                        ge=0)
    max_request_bytes: int = cfg(1 << 20, "largest request body accepted (413 above)", ge=1024)
    max_tokens: int = cfg(1024, "most tokens one request may ask for (max_tokens / max_completion_tokens)", ge=1)
    reasoning_parser: str = cfg("", "vLLM reasoning parser (e.g. deepseek_r1): thinking returned in "
                                    "message.reasoning, the answer in content; '' = off")
    api_key_file: str = cfg("", "file holding the API key (the SSP_API_KEY environment variable wins); no key "
                                "from either = no authentication")
    ready_timeout_s: float = cfg(600.0, "fail if the app is not running within this time", gt=0)
    engine_metrics: bool = cfg(True, "export vLLM's engine metrics (ray_vllm_*) to the Ray dashboard")
