"""WeightSync: how the learner's weights reach the running rollout engines, without passing the driver.

`publish(state_dict)` runs on learner rank 0 and returns a small handle; the driver hands that handle to
the rollout pool unopened; `load(llm, handle)` runs in each engine and reloads the weights in place
(vLLM's `reload_weights`), then the prefix cache is reset. `from_checkpoint(path)` makes a handle for an
HF checkpoint on shared storage (the probe stage pushes saved checkpoints into running engines with it).

`object-store` (the default; CPU and GPU): rank 0 packs the state dict to one safetensors blob and
`ray.put`s it, so the blob travels learner -> object store -> engines; the driver holds an ObjectRef.
A GPU implementation (NCCL broadcast, CUDA IPC, vLLM's native weight transfer) is one more class here,
selected by `rollout.weight_sync`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class WeightSync:
    """One way to move weights. Subclasses keep to these three calls."""

    name = ""

    def publish(self, state_dict: dict) -> Any:
        """On the learner (rank 0): make the weights available; return a handle the driver can pass on."""
        raise NotImplementedError

    def load(self, llm: Any, handle: Any) -> None:
        """In a rollout engine: load the weights behind `handle` in place."""
        raise NotImplementedError

    @staticmethod
    def from_checkpoint(path: str | Path) -> CheckpointHandle:
        """A handle for an HF checkpoint directory that every engine can read."""
        return CheckpointHandle(str(path))


class CheckpointHandle(str):
    """A checkpoint directory, read by each engine itself (no copy through Ray)."""


def pack_weights(state_dict: dict) -> bytes:
    """HF-named CPU tensors -> one safetensors blob (the wire format to the engines).

    Tied tensors (lm_head sharing embed_tokens) are sent under every name: vLLM's CPU backend keeps
    a repacked lm_head of its own, which must be reloaded too."""
    from safetensors.torch import save

    out, seen = {}, set()
    for k, v in state_dict.items():
        v = v.detach().cpu()
        out[k] = v.clone() if v.data_ptr() in seen else v.contiguous()
        seen.add(v.data_ptr())
    return save(out)


class ObjectStoreSync(WeightSync):
    """Safetensors bytes through Ray's object store."""

    name = "object-store"

    def publish(self, state_dict: dict) -> Any:
        import ray

        return ray.put(pack_weights(state_dict))  # owned by the learner rank that packed it

    def load(self, llm: Any, handle: Any) -> None:
        # Ray resolved the ObjectRef argument: `handle` is the blob (or a CheckpointHandle path)
        llm.collective_rpc(_reload, args=(handle,))
        llm.reset_prefix_cache()


def _reload(worker: Any, handle: bytes | str) -> None:
    """Runs inside the vLLM worker: an in-place reload from an iterator of (name, tensor)."""
    from safetensors.torch import load, load_file

    if isinstance(handle, str):
        tensors: dict = {}
        for f in sorted(Path(handle).glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        if "lm_head.weight" not in tensors and "model.embed_tokens.weight" in tensors:  # tied: see pack_weights
            tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    else:
        tensors = load(handle)
    worker.model_runner.reload_weights(weights_iterator=iter(tensors.items()))


WEIGHT_SYNCS: dict[str, type[WeightSync]] = {"object-store": ObjectStoreSync}


def make(name: str) -> WeightSync:
    if name not in WEIGHT_SYNCS:
        raise ValueError(f"rollout.weight_sync: unknown {name!r}; known: {sorted(WEIGHT_SYNCS)}")
    return WEIGHT_SYNCS[name]()
