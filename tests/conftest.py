"""Shared fixtures: one local Ray cluster and one tiny model per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tests never attach to a cluster a user left up with `ssp cluster up` (tests/test_cluster.py starts its own).
os.environ["SSP_CLUSTER_DIR"] = tempfile.mkdtemp(prefix="ssp-no-cluster-")

from cluster.env import apply, process_env  # noqa: E402  (the one source of process env vars)

apply()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"expected the read-only shared/ folder at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (started once; 8 logical CPUs so an RL run's actors fit; stages take turns on the 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {**process_env(), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model, built once per session with the tiny-cpu config's sizes."""
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.models.tiny import build

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    return build(conf.model.tiny, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_llm(tiny_model_dir):
    """One in-process vLLM engine (CPU build) on the tiny model, shared by the tests that only read it."""
    from actors.config import EngineConfig
    from actors.engine import make_llm

    return make_llm(str(tiny_model_dir), EngineConfig(max_model_len=256))
