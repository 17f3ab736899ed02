"""BatchSource: where the RL loop's batches come from (`rl.mode` picks one).

A batch is sampled problems, G rollouts each, and a verdict per rollout (`RolloutBatch`). `sync` makes it
on the current weights when asked (strictly on-policy). `one-step-off` also starts the next step's batch
on the current weights while the learner trains on this one (staleness 1; every rollout carries the
weight version that made it). A deeper asynchronous mode (staleness bound k, importance correction) is
one more subclass here, not a change to the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class Timer(dict):
    """Seconds per named phase: `with timer("generate"): ...` adds to timer["time_generate"]."""

    @contextmanager
    def __call__(self, key: str):
        t0 = time.perf_counter()
        yield
        self[f"time_{key}"] = self.get(f"time_{key}", 0.0) + time.perf_counter() - t0


@dataclass
class RolloutBatch:
    step: int
    problems: dict[str, Any]  # id -> Problem
    rollouts: list[Any]  # Rollout, grouped by problem
    verdicts: list[Any]  # Result, one per rollout
    timer: Timer = field(default_factory=Timer)


Produce = Callable[[int], RolloutBatch]


class BatchSource:
    """`next(step)` returns the batch for `step`; `drain()` drops work in flight (before a restart)."""

    name = ""

    def __init__(self, produce: Produce, lookahead_ok: Callable[[int], bool]):
        self.produce, self.lookahead_ok = produce, lookahead_ok

    def next(self, step: int) -> RolloutBatch:
        raise NotImplementedError

    def drain(self) -> None:
        pass

    def close(self) -> None:
        self.drain()


class SyncSource(BatchSource):
    name = "sync"

    def next(self, step: int) -> RolloutBatch:
        return self.produce(step)


class OneStepOffSource(BatchSource):
    name = "one-step-off"

    def __init__(self, produce: Produce, lookahead_ok: Callable[[int], bool]):
        super().__init__(produce, lookahead_ok)
        self.pool = ThreadPoolExecutor(1)
        self.ahead: tuple[int, Future] | None = None

    def next(self, step: int) -> RolloutBatch:
        if self.ahead and self.ahead[0] == step:
            batch = self.ahead[1].result()
        else:
            self.drain()
            batch = self.produce(step)
        self.ahead = None
        if self.lookahead_ok(step + 1):  # generated on the current weights while the learner trains
            self.ahead = (step + 1, self.pool.submit(self.produce, step + 1))
        return batch

    def drain(self) -> None:
        """Wait out a look-ahead batch (discarded; its plan file makes the redo identical)."""
        if self.ahead is not None:
            try:
                self.ahead[1].result()
            except Exception:  # noqa: BLE001 (it is being thrown away)
                pass
        self.ahead = None

    def close(self) -> None:
        self.drain()
        self.pool.shutdown()


BATCH_SOURCES: dict[str, type[BatchSource]] = {"sync": SyncSource, "one-step-off": OneStepOffSource}
