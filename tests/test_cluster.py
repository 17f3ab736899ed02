"""`ssp cluster up | status | down` on this machine, stages sent with cluster/jobs/submit.sh (`ray job
submit`), every metric of cluster/telemetry.py scraped from Ray's endpoint during a live run, and the
scheduler's Redis data surviving `down` / `up`. One cluster for the module; the tests run in order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from cluster.redis_server import free_port
from cluster.telemetry import METRICS

REPO = Path(__file__).resolve().parents[1]
PHASES = "rl.phases=[{name: math, steps: 6, max_tokens: 24, subdomains: [add, sub, mul, mod]}]"


class Cluster:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.ports = [f"cluster.port={free_port()}", f"cluster.dashboard_port={free_port()}"]
        self.env = {**os.environ, "SSP_CLUSTER_DIR": str(state_dir), "RAY_ADDRESS": "",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.env.pop("RAY_AUTH_MODE", None)

    def ssp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ssp.cli", "cluster", *args, *self.ports], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def submit(self, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "cluster/jobs/submit.sh", *args], cwd=REPO, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def redis_status(self) -> tuple[int, list[str]]:
        out = self.ssp("status")
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        m = re.search(r"redis\s+(\d+) keys; scheduler runs: (.*)", out.stdout)
        assert m, out.stdout
        return int(m[1]), [r for r in m[2].split(", ") if r != "-"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("ssp-cluster"))
    out = c.ssp("up")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    c.up_output = out.stdout
    try:
        yield c
    finally:
        c.ssp("down")


def test_up_prints_the_addresses_and_status_shows_the_cluster(cluster):
    st = cluster.state()
    assert f"dashboard  {st['dashboard_url']}" in cluster.up_output
    assert st["dashboard_url"].startswith("http://127.0.0.1:")
    assert "cluster/jobs/submit.sh" in cluster.up_output and "ray job submit --address" in cluster.up_output
    assert (cluster.dir / "state.json").stat().st_mode & 0o077 == 0  # holds the Redis password
    again = cluster.ssp("up")  # idempotent: reports the running one
    assert again.returncode == 0 and "already up" in again.stdout and cluster.state()["gcs_pid"] == st["gcs_pid"]
    out = cluster.ssp("status")
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"resource\s+CPU\s+0 used of 8\b", out.stdout), out.stdout
    assert cluster.redis_status() == (0, [])


@pytest.mark.timeout(900)
def test_rl_job_on_the_cluster_emits_every_metric(cluster, tiny_model_dir, tmp_path):
    """`submit.sh rl` (this directory, no upload) while the metrics endpoint is scraped: every metric of the
    table appears (counters as _total, histograms as _bucket), and the run's scheduler state is in the
    cluster's Redis."""
    run_dir = tmp_path / "rl"
    args = ["rl", "--config", "configs/tiny-cpu.yaml", f"run_dir={run_dir}", f"model.path={tiny_model_dir}",
            "data.toy.per_cell=20", "rl.batch_problems=4", "rl.group_size=4", "rl.eval_every=3", "rl.eval_k=2",
            "rl.eval_max_problems=8", "rl.checkpoint_every=2", "rollout.num_cpus_per_engine=1",
            "engine.max_model_len=128", PHASES]
    url = f"http://127.0.0.1:{cluster.state()['metrics_export_port']}/metrics"
    job = subprocess.Popen(["bash", "cluster/jobs/submit.sh", *args], cwd=REPO, env=cluster.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    deadline = time.time() + 800
    while job.poll() is None and time.time() < deadline:
        try:
            page = urllib.request.urlopen(url, timeout=5).read().decode()
            seen |= {line.split("{")[0].split(" ")[0] for line in page.splitlines() if line.startswith("ray_ssp_")}
        except OSError:
            pass
        time.sleep(1.5)
    out = job.communicate(timeout=60)[0]
    assert job.returncode == 0, out[-3000:]
    assert "logs:" in out and "succeeded" in out
    suffix = {"counter": "_total", "histogram": "_bucket", "gauge": ""}
    missing = sorted(n for n, m in METRICS.items() if f"ray_{n}{suffix[m.type]}" not in seen)
    assert not missing, f"never on {url}: {missing}"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6
    assert not (run_dir / "redis").exists()  # the cluster's Redis, not an embedded one
    keys, runs = cluster.redis_status()
    assert keys > 0 and runs == ["rl-math"]


@pytest.mark.timeout(900)
def test_eval_job_with_working_dir_no_wait(cluster, tiny_model_dir, tmp_path):
    """With RAY_ADDRESS the directory is uploaded as working_dir; --no-wait returns at once, the printed
    status command follows the job to SUCCEEDED, and its output file is there."""
    out_dir = tmp_path / "eval"
    env = {"RAY_ADDRESS": cluster.state()["dashboard_url"]}
    sub = cluster.submit("--no-wait", "eval", "--suite", "toy", "--limit", "2", "--k", "2", "--config",
                         "configs/tiny-cpu.yaml", "--model", str(tiny_model_dir), f"eval.out_dir={out_dir}", env=env,
                         timeout=300)
    assert sub.returncode == 0, sub.stdout + sub.stderr[-3000:]
    status_cmd = re.search(r"status: (.+?) +stop:", sub.stdout)[1].split()
    assert status_cmd[1:3] == ["job", "status"]
    deadline, status = time.time() + 800, ""
    while time.time() < deadline:
        r = subprocess.run(status_cmd, env={**cluster.env, **env, "RAY_AUTH_MODE": "token"}, capture_output=True,
                           text=True, timeout=120)
        status = r.stdout + r.stderr
        if re.search(r"job '[^']+' (succeeded|failed|was stopped)", status, re.I):
            break
        time.sleep(3)
    assert re.search(r"job '[^']+' succeeded", status, re.I), status[-3000:]
    results = json.loads((out_dir / "results.json").read_text())
    assert results["generated_problems"] > 0


def test_bad_stage_is_refused_naming_the_valid_ones(cluster):
    out = cluster.submit("train")
    assert out.returncode == 2 and "valid: spectrum sft probe rl eval serve pipeline" in out.stderr


def test_down_stops_by_pid_and_keeps_the_redis_data(cluster):
    keys, runs = cluster.redis_status()
    st = cluster.state()
    out = cluster.ssp("down")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not psutil.pid_exists(st["gcs_pid"]) and not psutil.pid_exists(st["redis_pid"])
    left = [p for p in psutil.process_iter(["cmdline"]) if st["temp_dir"] in " ".join(p.info["cmdline"] or [])]
    assert not left and not (cluster.dir / "state.json").exists()
    assert "no cluster is up" in cluster.ssp("status").stdout
    out = cluster.ssp("up")
    assert out.returncode == 0, out.stderr[-3000:]
    assert cluster.redis_status() == (keys, runs)  # AOF replayed: the scheduler's state is back
