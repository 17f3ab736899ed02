"""`ssp serve --model PATH [--config FILE] [key=value ...] [--detach | --stop]`."""

from __future__ import annotations

import argparse
import signal
import threading


def run_serve(args: argparse.Namespace) -> int:
    from cluster.ray_cluster import connect
    from serve.app import api_key, deploy
    from ssp.tree import load_tree
    from trainer.data.problems import DataError

    if args.model:
        args.overrides = [*args.overrides, f"model.path={args.model}", "model.source=path"]  # that folder, as it is
    conf = load_tree(args)
    s = conf.serve
    if not args.stop:
        from trainer.preflight import require

        key = api_key(s)  # a missing or empty secret is refused before anything starts
        require(conf, "serve")
    from ray import serve

    if args.stop:
        connect(conf.cluster)
        serve.delete(s.app_name)
        print(f"removed the Serve app {s.app_name!r}")
        return 0
    from trainer.models.ensure import check_model, ensure_model

    model = args.model or ensure_model(conf)
    check_model(model)  # an HF folder with a tokenizer and a chat template, or a clear error
    from cluster.state import live_state, named_address

    if args.detach and not (named_address(conf.cluster.address) or live_state(conf.cluster.state_dir)):
        raise DataError("serve --detach: needs a running cluster to leave the app on (`ssp cluster up`, or "
                        "RAY_ADDRESS / cluster.address for another); without one the app ends with this command")
    connect(conf.cluster)
    ready = deploy(model, conf, key)
    url = f"http://{s.host}:{s.port}"
    model_id = s.model_id or model.rstrip("/").split("/")[-1]
    auth = ' -H "Authorization: Bearer $SSP_API_KEY"' if key else ""
    print(f"serving {model} as {model_id!r} at {url}/v1 (ready in {ready:.0f} s; "
          f"API key {'required' if key else 'off'})\n"
          f"  curl {url}/v1/chat/completions{auth} -H 'Content-Type: application/json' "
          f"-d '{{\"model\": \"{model_id}\", \"messages\": [{{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}}]}}'",
          flush=True)
    if args.detach:
        print(f"left running; stop it with `ssp serve --stop` (app {s.app_name!r})")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("shutting down", flush=True)
    serve.delete(s.app_name)
    return 0


def register_cli(sub) -> None:
    from ssp.tree import add_config_args

    p = sub.add_parser("serve", help="an OpenAI-compatible endpoint for a checkpoint (Ray Serve + vLLM)")
    add_config_args(p)
    p.add_argument("--model", help="HF model dir (default: model.path)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--detach", action="store_true", help="leave the app running on the cluster and return")
    g.add_argument("--stop", action="store_true", help="remove a running app (serve.app_name)")
    p.set_defaults(func=run_serve)

