"""Where `ssp cluster up` records the cluster it started, and whether that cluster still runs.

A leaf of the cluster room (no Ray, no Redis client): `cluster/env.py`, `cluster/local.py`, the cluster config
and `ssp serve` read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

STATE = "state.json"


def default_state_dir() -> str:
    return os.environ.get("SSP_CLUSTER_DIR", "~/.ssp/cluster")


def state_path(state_dir: str) -> Path:
    return Path(os.path.expanduser(state_dir)) / STATE


def live_state(state_dir: str) -> dict | None:
    """What `up` recorded in state_dir, if that head is still running; else None."""
    try:
        st = json.loads(state_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    pid = st.get("gcs_pid")
    return st if pid and psutil.pid_exists(pid) else None
