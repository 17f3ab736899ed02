"""What a stage's actors ask of the cluster (Ray CPUs, GPUs, custom resources) against what a local head or this
machine has: the `resources` row of `ssp check` (trainer/preflight.py) and the GPU facts its memory row uses."""

from __future__ import annotations

import shutil

from cluster.state import named_address
from ssp.config import ConfigError


def asks(conf, stage: str) -> dict[str, float]:
    """Ray CPUs and GPUs the stage's actors reserve at once."""
    cuda = conf.learner.device == "cuda"
    if stage in ("sft", "spectrum"):
        return {"CPU": conf.sft.num_workers * conf.learner.threads_per_rank,
                "GPU": conf.sft.num_workers * conf.learner.num_gpus_per_actor if cuda else 0}
    engines = {"CPU": conf.rollout.num_engines * conf.rollout.num_cpus_per_engine,
               "GPU": conf.rollout.num_engines * conf.rollout.num_gpus_per_engine}
    if stage in ("eval", "serve"):
        return engines
    return {"CPU": engines["CPU"] + conf.learner.num_actors * conf.learner.threads_per_rank
            + conf.verifier.num_workers * conf.verifier.num_cpus,
            "GPU": engines["GPU"] + (conf.learner.num_actors * conf.learner.num_gpus_per_actor if cuda else 0)}


def gpus_here() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    import subprocess

    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def gpu_memory_gib() -> float | None:
    """The smallest visible GPU's memory, or None where there is none."""
    if not shutil.which("nvidia-smi"):
        return None
    import subprocess

    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20).stdout.split()
    return min(float(x) for x in out) / 1024 if out else None


def check_resources(conf, rep, stage: str) -> None:
    """The `resources` rows into `rep` (trainer/preflight.py's Report); a local head that cannot hold them: ConfigError."""
    stages = ("sft", "rl") if stage in ("all", "spectrum") else (stage,)
    for st in stages:
        ask = asks(conf, st)
        want = f"{st}: {ask['CPU']:g} CPUs, {ask['GPU']:g} GPUs"
        if named_address(conf.cluster.address):
            rep.add("resources", "skip", f"{want} (needs the live cluster at {conf.cluster.address or 'RAY_ADDRESS'}: "
                                         "checked when the job connects)")
            continue
        roles = {"sft": ("learner",), "eval": ("rollout", "verifier")}.get(st, ("rollout", "learner", "verifier"))
        if custom := [f"{r}.resources={getattr(conf, r).resources}" for r in roles if getattr(conf, r).resources]:
            raise ConfigError(f"cluster: {', '.join(custom)}: a local head has no custom resources; connect to a cluster "
                              "whose nodes carry them (cluster.address: k8s/raycluster.yaml, python -m cluster.local_nodes)")
        have = {"CPU": conf.cluster.num_cpus, "GPU": conf.cluster.num_gpus}
        short = [k for k in ("CPU", "GPU") if ask[k] > have[k]]
        if short:
            raise ConfigError(f"cluster: {want} asked, the local head has {have['CPU']} CPUs and {have['GPU']} GPUs "
                              f"(cluster.num_cpus / cluster.num_gpus): not enough {', '.join(short)}")
        if ask["GPU"] and (here := gpus_here()) < have["GPU"]:
            rep.add("resources", "skip", f"{want} of the local head's {have['GPU']} GPUs (needs the GPUs: this "
                                         f"machine has {here})")
        else:
            rep.add("resources", "ok", f"{want} of the local head's {have['CPU']} CPUs, {have['GPU']} GPUs")
