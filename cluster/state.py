"""Which cluster a command uses: one it was pointed at (`named_address`), else the one `ssp cluster up` recorded
(where, and whether it still runs).

A leaf of the cluster room (no Ray, no Redis client): `cluster/env.py`, `cluster/local.py`, the cluster config
and `ssp serve` read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

STATE = "state.json"


def named_address(address: str) -> str | None:
    """The cluster a command was pointed at: `cluster.address`, else RAY_ADDRESS (as `ray job submit` sets it)."""
    return address or os.environ.get("RAY_ADDRESS") or None


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
