"""Connecting to Ray: an existing cluster (address, or RAY_ADDRESS as set by `ray job submit`), or a
local head started here. Resources for each role come from config; nothing here picks a device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray

from cluster.env import process_env
from ssp.config import cfg


@dataclass
class ClusterConfig:
    address: str | None = cfg(None, "Ray address ('auto', 'ray://host:10001'); None = RAY_ADDRESS or a local head")
    num_cpus: int = cfg(8, "logical CPUs of a local head (stages run in turn, so this may exceed cores)", ge=1)
    num_gpus: int = cfg(0, "GPUs of a local head", ge=0)
    dashboard: bool = cfg(True, "start the Ray dashboard with a local head")
    metrics_export_port: int | None = cfg(None, "Prometheus metrics port of a local head (None = Ray's choice)")


def connect(config: ClusterConfig) -> dict:
    """ray.init for `config`; returns {'address', 'dashboard_url', 'metrics_export_port'}."""
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return {"address": ctx.gcs_address, "dashboard_url": _dashboard_url(), "metrics_export_port": None}
    env = {"env_vars": process_env()}
    if config.address or os.environ.get("RAY_ADDRESS"):
        info = ray.init(address=config.address, runtime_env=env, log_to_driver=False)
    else:
        kw = {"_metrics_export_port": config.metrics_export_port} if config.metrics_export_port else {}
        info = ray.init(num_cpus=config.num_cpus, num_gpus=config.num_gpus, include_dashboard=config.dashboard,
                        runtime_env=env, log_to_driver=False, **kw)
    return {"address": info.address_info.get("gcs_address"), "dashboard_url": info.dashboard_url or None,
            "metrics_export_port": info.address_info.get("metrics_export_port")}


def _dashboard_url() -> str | None:
    try:
        return ray.worker.get_dashboard_url() or None
    except Exception:
        return None
