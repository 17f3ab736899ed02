"""`ssp cluster up | status | down`: a local Ray head and the scheduler's Redis that outlive one command.

`up` starts both (the head with token auth, its dashboard on 127.0.0.1; Redis on loopback with AOF under
state_dir) and records them in `state_dir/state.json`. `ssp rl | sft | eval | serve` then attach to them
(cluster.ray_cluster.connect, cluster.scheduler.open_scheduler), and so do jobs sent with
cluster/jobs/submit.sh, so the scheduler's pass rates persist across runs. `down` stops what `up` started, by
PID, and keeps the data: the next `up` serves the same Redis state.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from cluster.env import process_env
from cluster.redis_server import RedisServer, attach, free_port
from cluster.state import STATE, default_state_dir, live_state, state_path  # noqa: F401  (re-exported)
from ssp.io import Unavailable


class ClusterError(Unavailable):
    """`ssp cluster` could not do what was asked; the message says why."""


def live_redis_url(state_dir: str) -> str | None:
    """The Redis URL of a running `ssp cluster up`, or None."""
    st = live_state(state_dir)
    return attach(st["redis_dir"]) if st else None


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _head_procs(temp_dir: str) -> list[psutil.Process]:
    """This head's processes (their command lines name its temp dir) and all their children."""
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(p.info["cmdline"] or []):
            procs.append(p)
            try:
                procs += p.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
    return list({p.pid: p for p in procs}.values())


def ensure_token() -> None:
    """Ray 2.60 heads with token auth read ~/.ray/auth_token (or RAY_AUTH_TOKEN); generate one, mode 600."""
    token = Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or token.exists():
        return
    old = os.umask(0o077)
    try:
        subprocess.run([_bin("ray"), "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    finally:
        os.umask(old)
    token.chmod(0o600)


def up(conf, sched) -> dict:
    """Start the head and Redis (or report the ones already up); `conf` is ClusterConfig, `sched`
    SchedulerConfig (its appendfsync and server binary)."""
    d = Path(os.path.expanduser(conf.state_dir)).resolve()
    st = live_state(str(d))
    if st is not None:
        print(f"already up (state {d / STATE})")
        print_addresses(st)
        return st
    d.mkdir(parents=True, exist_ok=True)
    ensure_token()
    # a short temp dir of its own (unix socket paths are limited to 107 bytes), so `down` finds its processes
    temp = f"/tmp/ssp-ray-{hashlib.sha1(str(d).encode()).hexdigest()[:8]}"
    metrics_port = conf.metrics_export_port or free_port()
    env = {**os.environ, **process_env(), "RAY_AUTH_MODE": "token", "SSP_CLUSTER_DIR": str(d),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # jobs' `python` is this venv's
    # The node's own address (what Ray resolves 127.0.0.1 to when a driver connects); dashboard on loopback
    from ray._private.services import get_node_ip_address

    node_ip = get_node_ip_address()
    cmd = [_bin("ray"), "start", "--head", "--node-ip-address", node_ip, "--port", str(conf.port),
           "--num-cpus", str(conf.num_cpus), "--num-gpus", str(conf.num_gpus), "--temp-dir", temp,
           "--include-dashboard", str(conf.dashboard).lower(), "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(conf.dashboard_port), "--dashboard-agent-listen-port", str(free_port()),
           "--metrics-export-port", str(metrics_port), "--disable-usage-stats"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise ClusterError(f"cluster up: `ray start` failed (exit {r.returncode}); is port {conf.port} or "
                           f"{conf.dashboard_port} taken? (cluster.port / cluster.dashboard_port)\n"
                           f"{(r.stdout + r.stderr)[-2000:]}")
    gcs = [p for p in _head_procs(temp) if p.name().startswith("gcs_server")]
    if not gcs:
        _stop(_head_procs(temp))
        raise ClusterError(f"cluster up: `ray start` returned but no GCS process of {temp} runs:\n"
                           f"{(r.stdout + r.stderr)[-2000:]}")
    try:
        url = attach(d / "redis")
        if url is None:
            server = RedisServer(d / "redis", sched.redis_server_bin, appendfsync=sched.appendfsync).start()
            server.detach()
            url = server.url
    except Exception:
        _stop(_head_procs(temp))
        raise
    st = {"gcs_address": f"{node_ip}:{conf.port}", "gcs_pid": gcs[0].pid,
          "dashboard_url": f"http://127.0.0.1:{conf.dashboard_port}" if conf.dashboard else None,
          "metrics_export_port": metrics_port, "temp_dir": temp, "redis_url": url, "redis_dir": str(d / "redis"),
          "redis_pid": json.loads((d / "redis" / "server.json").read_text())["pid"], "started": time.time()}
    fd = os.open(state_path(str(d)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the Redis password
    with os.fdopen(fd, "w") as f:
        json.dump(st, f, indent=1)
    print(f"cluster up (state {d / STATE}; Redis data {d / 'redis'})")
    print_addresses(st)
    return st


def print_addresses(st: dict) -> None:
    dash = st["dashboard_url"]
    print(f"  ray        {st['gcs_address']} (token auth: ~/.ray/auth_token; RAY_AUTH_MODE=token)\n"
          f"  dashboard  {dash}\n"
          f"  metrics    http://127.0.0.1:{st['metrics_export_port']}/metrics\n"
          f"  redis      {st['redis_url'].split('@')[-1]} (password in {st['redis_dir']}/server.json)\n"
          f"  submit     RAY_ADDRESS={dash} cluster/jobs/submit.sh eval --suite toy --limit 4\n"
          f"  or         RAY_AUTH_MODE=token ray job submit --address {dash} --working-dir . "
          f"--runtime-env-json \"$(python -m cluster.env --runtime-env)\" -- python -m ssp.cli rl --config "
          f"configs/tiny-cpu.yaml\n"
          f"  commands   ssp rl | sft | eval | serve attach to this cluster; `ssp cluster down` stops it")


def status(conf) -> dict | None:
    """Print what runs: Ray resources, jobs, Redis address and key count, the scheduler's runs."""
    import ray
    import redis
    from ray.job_submission import JobStatus, JobSubmissionClient

    st = live_state(conf.state_dir)
    if st is None:
        print(f"no cluster is up (no live head recorded in {state_path(conf.state_dir)}); `ssp cluster up`")
        return None
    ray.init(address=st["gcs_address"], log_to_driver=False, logging_level="ERROR")  # token: cluster/env.apply
    try:
        total, free = ray.cluster_resources(), ray.available_resources()
    finally:
        ray.shutdown()
    jobs = JobSubmissionClient(st["dashboard_url"]).list_jobs() if st["dashboard_url"] else []
    jobs = [j for j in jobs if j.submission_id]  # drivers that connected directly are not jobs
    with redis.Redis.from_url(st["redis_url"], socket_timeout=5) as client:
        keys = client.dbsize()
        runs = sorted(k.decode().split("{")[1].split("}")[0] for k in client.scan_iter("ssp:{*}:datasets"))
    live = [j for j in jobs if j.status in (JobStatus.RUNNING, JobStatus.PENDING)]
    out = {**st, "resources": {k: [free.get(k, 0.0), v] for k, v in total.items() if "node:" not in k},
           "redis_keys": keys, "scheduler_runs": runs,
           "jobs": [{"id": j.submission_id, "status": str(j.status), "entrypoint": j.entrypoint} for j in jobs],
           "live_jobs": len(live)}
    print(f"cluster up since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['started']))}")
    print_addresses(st)
    for k, (f, t) in sorted(out["resources"].items()):
        gib = k.endswith("memory")
        used, total = (round((t - f) / 2**30, 2), round(t / 2**30, 2)) if gib else (t - f, t)
        print(f"  resource   {k:24s} {used:g} used of {total:g}{' GiB' if gib else ''}")
    print(f"  redis      {keys} keys; scheduler runs: {', '.join(runs) or '-'}")
    print(f"  jobs       {len(live)} running or pending of {len(jobs)} submitted")
    for j in out["jobs"]:
        print(f"  job        {j['id']:32s} {j['status']:10s} {j['entrypoint'][:80]}")
    return out


def _is_gcs(p: psutil.Process) -> bool:
    try:
        return p.name() == "gcs_server"
    except psutil.Error:
        return False


def _stop(procs: list[psutil.Process], timeout: float = 15.0) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def down(conf) -> bool:
    """Stop the head's processes and Redis by PID (Redis fsyncs its AOF on SIGTERM); keep the data."""
    path = state_path(conf.state_dir)
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        print(f"no cluster to stop (no state in {path})")
        return False
    procs = _head_procs(st["temp_dir"])
    # the GCS last, as `ray stop` orders it: signalled together with its raylet, it waited out the whole 15 s
    # grace (`down` took ~19 s; ~7 s in this order)
    gcs = [p for p in procs if _is_gcs(p)]
    _stop([p for p in procs if p not in gcs])
    _stop(gcs)
    if psutil.pid_exists(st["redis_pid"]):
        _stop([psutil.Process(st["redis_pid"])])
    (Path(st["redis_dir"]) / "server.json").unlink(missing_ok=True)
    path.unlink()
    print(f"cluster down: stopped {len(procs)} Ray processes and Redis (pid {st['redis_pid']}); "
          f"data kept in {st['redis_dir']}")
    return True


def main(argv: list[str]) -> int:
    """`python -m cluster.local --dashboard-url`: the dashboard URL of a running `ssp cluster up` (exit 1: none)."""
    if argv != ["--dashboard-url"]:
        print("usage: python -m cluster.local --dashboard-url", file=sys.stderr)
        return 2
    st = live_state(default_state_dir())
    if st is None or not st["dashboard_url"]:
        return 1
    print(st["dashboard_url"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
