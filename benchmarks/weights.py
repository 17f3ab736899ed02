"""A weight publish between two Ray nodes at real sizes, through the project's own seam (actors/weight_sync.py).

A 3-node cluster on this machine (cluster/local_nodes.py). An actor on the "gpu" node plays learner rank 0: it
builds a state dict with a model's real parameter shapes (random values) and publishes it with
`ObjectStoreSync.publish` (safetensors blob, `ray.put`); an actor on the "cpu" node plays an engine: it
receives the blob (Ray moves it between the nodes' object stores) and opens it with safetensors, as `_reload`
does before vLLM's `reload_weights` (not run here: vLLM's load is measured by `time_sync` in every run). The
driver only passes the ObjectRef: the blob's locations are checked never to include the head (the driver's node). Per shape: bytes, pack+put seconds, transfer+open seconds, GB/s.

Usage: python benchmarks/weights.py [--shapes smollm2-135m qwen2.5-1.5b] [--repeats 3]
(The tiny model's publish, 3.4 MiB, is in every run's metrics: `sync_mb`, `time_sync`.)
Last line: {"<shape>_mb", "<shape>_publish_s", "<shape>_fetch_s", "<shape>_gb_s", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cluster.env import apply  # noqa: E402

apply()
os.environ["RAY_AUTH_MODE"] = "token"  # this driver joins a LocalNodes cluster (token auth); read at `import ray`

# (hidden, intermediate, layers, heads, kv heads, vocab, tied, dtype) of each model's config.json
SHAPES = {
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, True, "float32"),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True, "bfloat16"),
}


def state_dict(shape: tuple) -> dict:
    import torch

    h, i, n, heads, kv, vocab, tied, dtype = shape
    dt, d = getattr(torch, dtype), h // heads
    sd = {"model.embed_tokens.weight": torch.randn(vocab, h, dtype=dt), "model.norm.weight": torch.ones(h, dtype=dt)}
    for k in range(n):
        p = f"model.layers.{k}."
        sd.update({p + "self_attn.q_proj.weight": torch.randn(h, h, dtype=dt),
                   p + "self_attn.k_proj.weight": torch.randn(kv * d, h, dtype=dt),
                   p + "self_attn.v_proj.weight": torch.randn(kv * d, h, dtype=dt),
                   p + "self_attn.o_proj.weight": torch.randn(h, h, dtype=dt),
                   p + "mlp.gate_proj.weight": torch.randn(i, h, dtype=dt),
                   p + "mlp.up_proj.weight": torch.randn(i, h, dtype=dt),
                   p + "mlp.down_proj.weight": torch.randn(h, i, dtype=dt),
                   p + "input_layernorm.weight": torch.ones(h, dtype=dt),
                   p + "post_attention_layernorm.weight": torch.ones(h, dtype=dt)})
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"] if tied else torch.randn(vocab, h, dtype=dt)
    return sd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    from cluster.local_nodes import LocalNodes

    @ray.remote
    class Learner:
        def __init__(self, shape):
            self.sd = state_dict(shape)

        def publish(self):
            from actors.weight_sync import ObjectStoreSync

            t = time.perf_counter()
            ref = ObjectStoreSync().publish(self.sd)
            return [ref, time.perf_counter() - t, ray.get_runtime_context().get_node_id()]

    @ray.remote
    class Engine:
        def fetch(self, wrapped):
            from safetensors.torch import load

            t = time.perf_counter()
            blob = ray.get(wrapped[0])  # the transfer from the other node's object store
            n = len(load(blob))
            return time.perf_counter() - t, len(blob), n, ray.get_runtime_context().get_node_id()

    out = {}
    with LocalNodes() as nodes:
        nodes.add_worker("gpu", {"ssp_gpu": 1}, num_cpus=1)
        nodes.add_worker("cpu", {"ssp_cpu": 1}, num_cpus=1)
        ray.init(address=nodes.address, log_to_driver=False)
        for name in args.shapes:
            learner = Learner.options(resources={"ssp_gpu": 1}).remote(SHAPES[name])
            engine = Engine.options(resources={"ssp_cpu": 1}).remote()
            pubs, fetches = [], []
            for _ in range(args.repeats):
                ref, pub_s, src = ray.get(learner.publish.remote())
                fetch_s, nbytes, tensors, dst = ray.get(engine.fetch.remote([ref]))
                assert src != dst and src == nodes.nodes["gpu"].node_id, (src, dst)
                where = ray.experimental.get_object_locations([ref])[ref]["node_ids"]
                assert nodes.nodes["head"].node_id not in where, where  # the driver's node never holds the blob
                pubs.append(pub_s)
                fetches.append(fetch_s)
                del ref
            pub, fetch = min(pubs), min(fetches)
            out.update({f"{name}_mb": round(nbytes / 2**20, 1), f"{name}_tensors": tensors,
                        f"{name}_publish_s": round(pub, 3), f"{name}_fetch_s": round(fetch, 3),
                        f"{name}_gb_s": round(nbytes / 1e9 / (pub + fetch), 2)})
            print(json.dumps({k: v for k, v in out.items() if k.startswith(name)}), flush=True)
            ray.kill(learner)
            ray.kill(engine)
        ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
