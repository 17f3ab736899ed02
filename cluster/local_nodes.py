"""Several Ray nodes on this machine, laid out as k8s/raycluster.yaml lays out pods: a head with no CPUs for
actors (it runs the GCS and the drivers) and worker raylets carrying the manifests' custom resources
(`ssp_gpu` for the rollout/learner group, `ssp_cpu` for the verifier group).

Each node is one `ray start --block` in a process group of its own, so a node can be lost on purpose (SIGKILL
of its raylet, its agents and its workers: what a preempted spot instance or an evicted pod does to a Ray
cluster) without touching any other Ray on the machine (`ray stop` would stop them all). Used by the
multi-node tests and `benchmarks/faults.py`; a user can try the manifests' layout with it too:

    python -m cluster.local_nodes --gpu-nodes 1 --cpu-nodes 1      # prints the address; Ctrl-C stops it
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.redis_server import free_port
from ssp.io import Unavailable

# How fast the GCS declares a silent raylet dead: Ray's defaults (period 3 s x 5 misses, ~15 s) unless set
HEALTH_ENV = ("RAY_health_check_period_ms", "RAY_health_check_failure_threshold")


class NodeError(Unavailable):
    """A local node did not start or register in time."""


@dataclass
class Node:
    name: str
    resources: dict[str, float]
    num_cpus: int
    proc: subprocess.Popen
    log: Path
    node_id: str = ""
    alive: bool = True
    extra: dict = field(default_factory=dict)


class LocalNodes:
    """A head (num-cpus 0) plus named worker nodes; `kill(name)` loses one, `add_worker` brings one (back)."""

    def __init__(self, root: str | Path | None = None, env: dict[str, str] | None = None,
                 health_period_ms: int | None = None, health_misses: int | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="ssp-nodes-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)
        for k, v in zip(HEALTH_ENV, (health_period_ms, health_misses)):
            if v is not None:
                self.env[k] = str(v)
        self.nodes: dict[str, Node] = {}
        # unix socket paths are limited to 107 bytes: a short temp dir of this cluster's own
        self.temp_dir = f"/tmp/ssp-nodes-{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ray(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block",
                                     "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                                     "--metrics-export-port", str(free_port()),
                                     "--dashboard-agent-listen-port", str(free_port()), *args],
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, log

    def start(self, timeout_s: float = 120.0) -> LocalNodes:
        """The head: GCS and drivers only, as the manifests' head (num-cpus 0). Token auth, as `ssp cluster up`."""
        from cluster.local import ensure_token

        ensure_token()
        proc, log = self._ray("head", ["--head", "--port", str(self.port), "--num-cpus", "0",
                                       "--temp-dir", self.temp_dir, "--include-dashboard", "false"])
        self.nodes["head"] = Node("head", {}, 0, proc, log)
        self._wait_registered("head", timeout_s)
        return self

    def add_worker(self, name: str, resources: dict[str, float], num_cpus: int = 2,
                   timeout_s: float = 120.0) -> Node:
        """Start a worker raylet with these custom resources and wait until the GCS lists it alive."""
        if name in self.nodes and self.nodes[name].alive:
            raise NodeError(f"local node {name!r} already runs")
        proc, log = self._ray(name, ["--address", self.address, "--num-cpus", str(num_cpus),
                                     "--resources", json.dumps(resources)])
        self.nodes[name] = Node(name, dict(resources), num_cpus, proc, log)
        self._wait_registered(name, timeout_s)
        return self.nodes[name]

    def _alive(self) -> list[dict]:
        out = subprocess.run([sys.executable, "-c", _LIST_NODES, self.address], env=self.env, capture_output=True,
                             text=True, timeout=60)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []

    def _wait_registered(self, name: str, timeout_s: float) -> None:
        node, known = self.nodes[name], {n.node_id for n in self.nodes.values() if n.node_id and n.alive}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise NodeError(f"local node {name!r}: `ray start` exited {node.proc.returncode}; log "
                                f"{node.log}:\n{node.log.read_text()[-2000:]}")
            for n in self._alive():
                if n["id"] not in known and _matches(n["resources"], node):
                    node.node_id = n["id"]
                    return
            time.sleep(0.5)
        raise NodeError(f"local node {name!r} did not register within {timeout_s:.0f}s; log {node.log}")

    def kill(self, name: str) -> Node:
        """Lose a node: SIGKILL every process of it at once (`ray start`, the raylet, its agents and its workers,
        which run in process groups of their own: the actors on the node die with it, as on a lost machine)."""
        import psutil

        node = self.nodes[name]
        try:
            procs = [psutil.Process(node.proc.pid), *psutil.Process(node.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        _killpg(node.proc, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        node.alive = False
        return node

    def stop(self) -> None:
        """Stop every node this object started (workers first), by process group. SIGKILL: a test cluster keeps
        no state of its own (runs keep theirs in their run directories)."""
        for node in sorted(self.nodes.values(), key=lambda n: n.name == "head"):
            if node.alive:
                self.kill(node.name)

    def __enter__(self) -> LocalNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _matches(resources: dict[str, float], node: Node) -> bool:
    if node.name == "head":
        return "node:__internal_head__" in resources
    return resources.get("CPU", 0) == node.num_cpus and all(resources.get(k) == v for k, v in node.resources.items())


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    proc.wait(timeout=30)


# The GCS's view of the nodes, asked from a fresh process (this one may hold another Ray connection)
_LIST_NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]))
"""


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cluster.local_nodes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu-nodes", type=int, default=1, help="nodes with {ssp_gpu: 2} (rollout, learner)")
    ap.add_argument("--cpu-nodes", type=int, default=1, help="nodes with {ssp_cpu: 2} (verifiers)")
    ap.add_argument("--cpus", type=int, default=2, help="Ray CPUs of each worker node")
    a = ap.parse_args(argv)
    nodes = LocalNodes().start()
    try:
        for i in range(a.gpu_nodes):
            nodes.add_worker(f"gpu-{i}", {"ssp_gpu": 2}, a.cpus)
        for i in range(a.cpu_nodes):
            nodes.add_worker(f"cpu-{i}", {"ssp_cpu": 2}, a.cpus)
        print(f"{len(nodes.nodes)} nodes up; RAY_ADDRESS={nodes.address} RAY_AUTH_MODE=token "
              f"ssp rl ... cluster.address={nodes.address}; logs in {nodes.root}; Ctrl-C stops them", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        nodes.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
