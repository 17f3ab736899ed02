"""Connecting to Ray: an existing cluster (address, or RAY_ADDRESS as set by `ray job submit`), the one
`ssp cluster up` left running (its state file), or a local head started here for this command alone.
Resources for each role come from config; nothing here picks a device."""

from __future__ import annotations

import json
import os

import ray

from cluster.config import ClusterConfig
from cluster.env import process_env
from cluster.state import live_state, named_address


def connect(config: ClusterConfig) -> dict:
    """ray.init for `config`; returns {'address', 'dashboard_url', 'metrics_export_port'}."""
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return {"address": ctx.gcs_address, "dashboard_url": _dashboard_url(), "metrics_export_port": None}
    env = _runtime_env()
    up = None if named_address(config.address) else live_state(config.state_dir)
    if up is not None:  # the head `ssp cluster up` started (its token auth: cluster.env.apply)
        ray.init(address=up["gcs_address"], runtime_env=env, log_to_driver=False)
        return {"address": up["gcs_address"], "dashboard_url": up["dashboard_url"],
                "metrics_export_port": up["metrics_export_port"]}
    if named_address(config.address):
        info = ray.init(address=config.address, runtime_env=env, log_to_driver=False)
    else:
        kw = {"_metrics_export_port": config.metrics_export_port} if config.metrics_export_port else {}
        info = ray.init(num_cpus=config.num_cpus, num_gpus=config.num_gpus, include_dashboard=config.dashboard,
                        runtime_env=env, log_to_driver=False, **kw)
    return {"address": info.address_info.get("gcs_address"), "dashboard_url": info.dashboard_url or None,
            "metrics_export_port": info.address_info.get("metrics_export_port")}


def _runtime_env() -> dict:
    """process_env() for every worker, less the variables a job's own runtime env already sets (Ray refuses
    a driver that sets a key its job set too: `ray job submit` with cluster/jobs/submit.sh)."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    taken = (job.get("runtime_env") or {}).get("env_vars") or {}
    return {"env_vars": {k: v for k, v in process_env().items() if k not in taken}}


def _dashboard_url() -> str | None:
    try:
        return ray.worker.get_dashboard_url() or None
    except Exception:
        return None
