"""BatchSource: where the RL loop's batches come from (`rl.mode` picks one).

A batch is sampled problems, G rollouts each, and a verdict per rollout (`RolloutBatch`). `sync` makes it
on the current weights when asked (strictly on-policy). `async` keeps up to k = `rl.max_staleness` batches
in flight ahead of the learner (every rollout carries the weight version that made it; the learner
corrects the lag with TIS or ICEPOP); `one-step-off` is async with k = 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.records import Rollout
    from actors.verifier.types import Result
    from trainer.data.problems import Problem


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
    problems: dict[str, Problem]  # id -> Problem
    rollouts: list[Rollout]  # grouped by problem; scored in place by the loop (actors/losses.py `score`)
    verdicts: list[Result]  # one per rollout
    timer: Timer = field(default_factory=Timer)


Produce = Callable[[int], RolloutBatch]


class BatchSource:
    """`next(step)` returns the batch for `step`; `drain()` drops work in flight (before a restart)."""

    name = ""

    def __init__(self, produce: Produce, lookahead_ok: Callable[[int], bool], depth: int = 0):
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


class AsyncSource(BatchSource):
    """Generates up to `depth` batches ahead of the learner, one after another on one producer thread: when
    the loop takes batch t, batches t+1..t+depth are queued on the weights the engines hold now (v >= t), so
    no batch lags the learner by more than `depth` versions. Each rollout carries its weight version and the
    learner corrects the lag (`learner.loss.is_correction`, TIS by default here). A redone step (after a
    restart) reads its plan file, so it trains on the same problems."""

    name = "async"

    def __init__(self, produce: Produce, lookahead_ok: Callable[[int], bool], depth: int = 2):
        super().__init__(produce, lookahead_ok)
        self.depth, self.pool = depth, ThreadPoolExecutor(1)
        self.ahead: dict[int, Future] = {}

    def next(self, step: int) -> RolloutBatch:
        if step in self.ahead:
            batch = self.ahead.pop(step).result()
        else:
            self.drain()
            batch = self.produce(step)
        for s in range(step + 1, step + self.depth + 1):
            if not self.lookahead_ok(s):  # a new phase (other max_tokens, prefilter) starts on fresh weights
                break
            if s not in self.ahead:
                self.ahead[s] = self.pool.submit(self.produce, s)
        return batch

    def drain(self) -> None:
        """Wait out the batches ahead (discarded; their plan files make the redo identical)."""
        for fut in self.ahead.values():
            try:
                fut.result()
            except Exception:  # noqa: BLE001 (it is being thrown away)
                pass
        self.ahead = {}

    def close(self) -> None:
        self.drain()
        self.pool.shutdown()


class OneStepOffSource(AsyncSource):
    """Batch t+1 is generated on the current weights while the learner trains on batch t (staleness 1)."""

    name = "one-step-off"

    def __init__(self, produce: Produce, lookahead_ok: Callable[[int], bool], depth: int = 1):
        super().__init__(produce, lookahead_ok, depth=1)


BATCH_SOURCES: dict[str, type[BatchSource]] = {"sync": SyncSource, "one-step-off": OneStepOffSource,
                                               "async": AsyncSource}
