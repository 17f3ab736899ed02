"""Problem scheduler: persistent per-problem pass rates in Redis, shared by all workers, sampled near p=0.5.

Per problem (keyed by run, dataset fingerprint and id) Redis holds attempts, correct, an EMA of the recent
pass rate, the last step seen and the subdomain. Problems sit in one band set each (unseen per subdomain,
parked at 0/1, dropped, or one of `bands` bins of the Beta-smoothed p-hat), so `sample()` draws bands by
weight x count and members with SRANDMEMBER in one server-side script: no scan of the problem set per batch.
An unseen problem is weighted by its subdomain's pass rate so far (the cell prior), so a short run, which
sees most problems once or never, still steers away from subdomains the policy always or never solves.
sampler=thompson instead draws a pass rate from each problem's Beta posterior (counts decayed per step, so old
evidence fades as the policy changes) and takes the n draws nearest 0.5 (MoPPS). The scripts are in
scheduler.lua.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cluster.config import SchedulerConfig
from cluster.samplers import (  # noqa: F401  (re-exported: the pure weights are tested from here)
    SAMPLERS,
    ThompsonSampler,
    band_label,
    band_names,
    band_weights,
    fit_prior,
    p_hat,
    priority,
    unseen_prior,
    unseen_weight,
)
from ssp.io import Unavailable

T = TypeVar("T")

METRIC_BAND_PROBLEMS = "ssp_scheduler_band_problems"
METRIC_ZERO_ADV_FRAC = "ssp_scheduler_zero_adv_frac"
METRIC_UPDATES_PER_S = "ssp_scheduler_updates_per_s"


class SchedulerUnavailable(Unavailable):
    """Redis could not be reached after retries; the message says what to do."""


def dataset_fingerprint(ids: Iterable[str]) -> str:
    """Dataset fingerprint: sha256 of the sorted problem ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def _load_scripts() -> dict[str, str]:
    text = (Path(__file__).with_name("scheduler.lua")).read_text()
    prelude, *sections = text.split("\n--- @")
    return {s.split("\n", 1)[0].strip(): prelude + "\n" + s.split("\n", 1)[1] for s in sections}


_LUA = _load_scripts()
_GAUGES: dict[str, Any] = {}


def _as_triple(r: Any) -> tuple[str, int, bool]:
    if isinstance(r, tuple | list):
        pid, idx, ok = r
    elif isinstance(r, dict):
        pid, idx, ok = r["problem_id"], r["sample_idx"], r["correct"]
    else:
        pid, idx, ok = r.problem_id, r.sample_idx, r.correct
    return str(pid), int(idx), bool(ok)


def _problem_fields(p: Any, cells: str = "subdomain") -> tuple[str, str]:
    """(id, cell): the cell is the subdomain, or with cells=level `subdomain/L<level>` where the problem has one."""
    get = p.get if isinstance(p, dict) else lambda k: getattr(p, k, None)
    cell = str(get("subdomain") or "")
    if cells == "level" and get("level") is not None:
        cell = f"{cell}/L{get('level')}"
    return str(get("id")), cell


class TaskScheduler(Protocol):
    """The calls the RL loop makes on a scheduler. Another store (in memory, SQL, a service) is one class
    with these; `ProblemScheduler` (Redis, below) is the one this project ships."""

    def register(self, problems: Iterable[Any]) -> int: ...
    def sample(self, n: int, step: int | None = None) -> list[str]: ...
    def record(self, step: int, results: Iterable[Any]) -> int: ...
    def prefilter(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...


class ProblemScheduler:
    """Per-problem pass rates of one run in Redis. Picklable (reconnects after unpickling)."""

    def __init__(self, url: str, run: str, config: SchedulerConfig | None = None,
                 fingerprint: str | None = None, revive: Callable[[], bool] | None = None):
        if "{" in run or "}" in run:
            raise ValueError(f"scheduler: run name must not contain braces, got {run!r}")
        self.url, self.run, self.config = url, run, config or SchedulerConfig()
        self.fingerprint = fingerprint
        self.revive = revive  # restarts an embedded server that died (cluster.redis_server.revive); not pickled
        self.outages: list[float] = []  # seconds of each stretch Redis did not answer
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._applied, self._t_metrics, self._published = 0, time.monotonic(), False  # the first record publishes

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "run": self.run, "config": self.config, "fingerprint": self.fingerprint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # --- connection -------------------------------------------------------------------------------
    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            # a URL without a password takes it from SSP_REDIS_PASSWORD (a Secret on Kubernetes: k8s/redis.yaml)
            self._client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=30,
                                                password=os.environ.get("SSP_REDIS_PASSWORD") or None,
                                                socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))
            self._scripts = {k: self._client.register_script(v) for k, v in _LUA.items()}
        return self._client

    def _call(self, fn: Callable[[], T]) -> T:
        """Run fn, retrying connection errors with backoff (every operation here is idempotent)."""
        c, delay, start = self.config, self.config.retry_base_s, time.monotonic()
        for attempt in range(c.retries + 1):
            try:
                out = fn()
                if attempt:
                    self.outages.append(time.monotonic() - start)
                    print(f"scheduler: Redis answers again after {self.outages[-1]:.1f}s; continuing (every "
                          "operation is idempotent: nothing counted twice)", file=sys.stderr, flush=True)
                return out
            except redis.ResponseError as e:  # our scripts' own errors carry a "scheduler:" message
                if "scheduler:" in str(e):
                    raise ValueError(str(e)) from None
                raise
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if attempt == c.retries:
                    kw = self.client.connection_pool.connection_kwargs
                    where = f"{kw.get('host', '?')}:{kw.get('port', '?')}"
                    raise SchedulerUnavailable(
                        f"scheduler: Redis at {where} refused the connection ({type(e).__name__}: {e}) "
                        f"after {c.retries} retries over {time.monotonic() - start:.1f}s; resume the run "
                        f"(`ssp rl --resume RUN_DIR` starts the embedded server on its data dir again), "
                        f"or point scheduler.redis_url at a running Redis") from e
                if attempt == 0:
                    print(f"scheduler: Redis does not answer ({type(e).__name__}); retrying for up to "
                          f"~{_patience(c):.0f}s (scheduler.retries, retry_cap_s)", file=sys.stderr, flush=True)
                if self.revive is not None and self.revive():
                    print("scheduler: the run's embedded Redis had died; restarted it on the same port from its "
                          "AOF", file=sys.stderr, flush=True)
                    continue
                time.sleep(delay)
                delay = min(delay * 2, c.retry_cap_s)
        raise AssertionError("unreachable")

    def _run(self, name: str, args: list[Any], client: Any = None) -> Any:
        pre, client = self._prefix(), client or self.client  # connecting also registers the scripts
        return self._scripts[name](keys=[pre + "M"], args=[pre, *args], client=client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- namespace --------------------------------------------------------------------------------
    def _datasets_key(self) -> str:
        return f"ssp:{{{self.run}}}:datasets"

    def datasets(self) -> list[str]:
        """Fingerprints of the datasets this run has state for."""
        return sorted(self._call(lambda: self.client.smembers(self._datasets_key())))

    def _prefix(self) -> str:
        if self.fingerprint is None:
            fps = self.datasets()
            if len(fps) != 1:
                raise ValueError(f"scheduler: run {self.run!r} has datasets {fps}; call register(problems) "
                                 "first or pass fingerprint=")
            self.fingerprint = fps[0]
        return f"ssp:{{{self.run}}}:{self.fingerprint}:"

    def _layout(self) -> str:
        c = self.config
        return f"bands={c.bands},alpha={c.alpha},beta={c.beta},min_attempts={c.min_attempts},unseen=per-{c.cells}"

    # --- writes -----------------------------------------------------------------------------------
    def register(self, problems: Iterable[Any], fingerprint: str | None = None, chunk: int = 5000) -> int:
        """Add problems (objects with .id/.subdomain or dicts); returns how many were new."""
        rows = [_problem_fields(p, self.config.cells) for p in problems]
        if bad := [i for i, _ in rows if "\n" in i]:  # the pool script joins ids with newlines
            raise ValueError(f"scheduler: problem ids must not contain a newline, got {bad[0]!r}")
        self.fingerprint = fingerprint or dataset_fingerprint(i for i, _ in rows)
        self._call(lambda: self.client.sadd(self._datasets_key(), self.fingerprint))
        new = 0
        for s in range(0, len(rows), chunk):
            args = [self._layout(), *(x for row in rows[s:s + chunk] for x in row)]
            new += self._call(lambda args=args: self._run("register", args))
        return new

    def _record_args(self, step: int, results: Iterable[Any]) -> list[Any]:
        c = self.config
        args: list[Any] = [int(step), c.bands, c.alpha, c.beta, c.min_attempts, c.ema_decay, c.dedupe_ttl_s,
                           c.thompson_decay]
        for r in results:
            pid, idx, ok = _as_triple(r)
            args += [pid, idx, int(ok)]
        return args

    def record(self, step: int, results: Iterable[Any]) -> int:
        """Apply (problem_id, sample_idx, correct) results of `step` atomically; returns how many were new.

        A result already recorded for the same (step, problem, sample) is ignored, so retries are safe."""
        args = self._record_args(step, results)
        applied = int(self._call(lambda: self._run("record", args)))
        self._after_record(applied)
        return applied

    def prefilter(self) -> int:
        """Drop problems parked at raw rate exactly 0 or 1 (after min_attempts); returns how many."""
        return int(self._call(lambda: self._run("prefilter", [])))

    # --- reads ------------------------------------------------------------------------------------
    def sample(self, n: int, step: int | None = None, seed: int | None = None,
               rng: np.random.Generator | None = None) -> list[str]:
        """n distinct problem ids drawn by the configured sampler (cluster/samplers.py SAMPLERS).

        Seeded by rng, else seed, else (config.seed, step). Raises ValueError if fewer than n are eligible."""
        if rng is None:
            rng = np.random.default_rng(seed if seed is not None else
                                        None if step is None else (self.config.seed, step))
        return SAMPLERS[self.config.sampler](self).sample(n, rng)

    def pool(self) -> list[Any]:
        """The pool script's reply (scheduler.lua): every problem's decayed counts, the unseen ones by subdomain."""
        return self._call(lambda: self._run("pool", []))

    def draw_bands(self, args: list[Any]) -> list[str]:
        """The band sampler's draw, done atomically on the server (scheduler.lua `sample`)."""
        return list(self._call(lambda: self._run("sample", args)))

    def posteriors(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Thompson's posteriors of every problem not dropped (cluster/samplers.py ThompsonSampler.posteriors)."""
        return ThompsonSampler(self).posteriors()

    def cells(self) -> dict[str, tuple[int, int]]:
        """(attempts, correct) so far per registered subdomain."""
        pre = self._prefix()

        def go() -> tuple[list[str], dict[str, str]]:
            pipe = self.client.pipeline(transaction=True)
            pipe.smembers(pre + "S")
            pipe.hgetall(pre + "M")
            subs, meta = pipe.execute()
            return sorted(subs), meta

        subs, meta = self._call(go)
        return {sub: (int(meta.get(f"a:{sub}", 0)), int(meta.get(f"c:{sub}", 0))) for sub in subs}

    def _bands(self) -> list[str]:
        return [f"u:{sub}" for sub in self.cells()] + band_names(self.config.bands)

    def band_counts(self) -> dict[str, int]:
        names = self._bands()
        pre = self._prefix()

        def go() -> list[int]:
            pipe = self.client.pipeline(transaction=True)
            for b in names:
                pipe.scard(pre + "B:" + b)
            return pipe.execute()

        return dict(zip(names, self._call(go)))

    def stats(self) -> dict[str, Any]:
        """Band counts, a p-hat histogram at band resolution and the zero-advantage group share."""
        counts = self.band_counts()
        meta = self._call(lambda: self.client.hgetall(self._prefix() + "M"))
        groups = int(meta.get("groups", 0))
        zero = int(meta.get("all_correct", 0)) + int(meta.get("all_wrong", 0))
        k = self.config.bands
        return {
            "run": self.run, "dataset": self.fingerprint, "problems": sum(counts.values()),
            "bands": {band_label(b, k): n for b, n in counts.items()},
            "hist": [((b / k), (b + 1) / k, counts[str(b)]) for b in range(k)],
            "updates": int(meta.get("updates", 0)), "groups": groups, "zero_adv_groups": zero,
            "all_correct": int(meta.get("all_correct", 0)), "all_wrong": int(meta.get("all_wrong", 0)),
            "zero_adv_frac": zero / groups if groups else 0.0,
        }

    def problems(self, chunk: int = 2000) -> Iterator[dict[str, Any]]:
        """Every problem's stored state (a full scan: for export and the CLI, not the training loop)."""
        pre = self._prefix()
        for b in self._bands():
            ids = list(self._call(lambda b=b: list(self.client.sscan_iter(pre + "B:" + b, count=chunk))))
            for s in range(0, len(ids), chunk):
                part = ids[s:s + chunk]

                def go(part: list[str] = part) -> list[Any]:
                    pipe = self.client.pipeline(transaction=False)
                    for pid in part:
                        pipe.hgetall(pre + "P:" + pid)
                    return pipe.execute()

                for pid, h in zip(part, self._call(go)):
                    if h:
                        yield {"id": pid, "subdomain": h.get("sub", ""), "attempts": int(h["a"]),
                               "correct": int(h["c"]), "ema": float(h["ema"]) if h.get("ema") else None,
                               "last_step": int(h["last"]), "band": h["band"]}

    # --- metrics ----------------------------------------------------------------------------------
    def _after_record(self, applied: int) -> None:
        self._applied += applied
        if not self._published or time.monotonic() - self._t_metrics >= self.config.metrics_interval_s:
            self.publish_metrics()

    def publish_metrics(self) -> bool:
        """Set the Ray dashboard gauges; a no-op (returns False) when Ray isn't initialized."""
        if "ray" not in sys.modules or not sys.modules["ray"].is_initialized():
            return False
        from cluster.telemetry import metric

        if not _GAUGES:
            _GAUGES.update(band=metric(METRIC_BAND_PROBLEMS), zero=metric(METRIC_ZERO_ADV_FRAC),
                           ups=metric(METRIC_UPDATES_PER_S))
        s = self.stats()
        for label, n in s["bands"].items():
            _GAUGES["band"].set(n, tags={"run": self.run, "band": label})
        _GAUGES["zero"].set(s["zero_adv_frac"], tags={"run": self.run})
        now = time.monotonic()
        _GAUGES["ups"].set(self._applied / max(now - self._t_metrics, 1e-9), tags={"run": self.run})
        self._applied, self._t_metrics, self._published = 0, now, True
        return True


def _patience(c: SchedulerConfig) -> float:
    """Seconds the retries of one operation add up to."""
    return sum(min(c.retry_base_s * 2**i, c.retry_cap_s) for i in range(c.retries))


@contextlib.contextmanager
def open_scheduler(run: str, config: SchedulerConfig | None = None, data_dir: str | Path | None = None,
                   own_server: bool = False, cluster_dir: str | None = None) -> Iterator[ProblemScheduler]:
    """A scheduler on scheduler.redis_url, else on the Redis of the `ssp cluster up` recorded in `cluster_dir`,
    else on the embedded server of the run's data dir (started if needed).

    `own_server`: the caller owns the run, so an embedded server it finds live there is stopped on exit too."""
    from cluster.local import live_redis_url
    from cluster.redis_server import attach_or_start, revive

    c = config or SchedulerConfig()
    url = c.redis_url or (live_redis_url(cluster_dir) if cluster_dir else None)
    if url:
        s = ProblemScheduler(url, run, c)
        try:
            yield s
        finally:
            s.close()
        return
    data_dir = data_dir or c.data_dir.format(run=run)
    with attach_or_start(data_dir, c.redis_server_bin, c.appendfsync, adopt=own_server) as url:
        s = ProblemScheduler(url, run, c, revive=partial(revive, data_dir, c.appendfsync) if own_server else None)
        try:
            yield s
        finally:
            s.close()
