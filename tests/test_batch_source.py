"""The BatchSource seam alone (no Ray): which weight version each batch is generated on, under a loop that
trains and publishes like trainer/rl.py's. The engines here are one counter; the real loop is tested in
tests/test_rl.py."""

from __future__ import annotations

import threading
import time

import pytest

from trainer.batch_source import BATCH_SOURCES, RolloutBatch


def run_loop(mode: str, steps: int, depth: int, phase_len: int = 100, gen_s: float = 0.01,
             train_s: float = 0.05) -> tuple[list[int], list[int]]:
    """Returns (the steps produced, in order of production) and each step's staleness (step - version)."""
    version, lock, produced = [0], threading.Lock(), []

    def produce(step: int) -> RolloutBatch:
        with lock:
            v = version[0]
            produced.append(step)
        time.sleep(gen_s)
        return RolloutBatch(step, {}, [v], [])

    source = BATCH_SOURCES[mode](produce, lambda s: s < steps and s // phase_len == (s - 1) // phase_len, depth)
    stale = []
    try:
        for step in range(steps):
            b = source.next(step)
            stale.append(step - b.rollouts[0])
            time.sleep(train_s)  # the learner step
            with lock:
                version[0] = step + 1  # publish
    finally:
        source.close()
    return produced, stale


@pytest.mark.parametrize("mode,depth,expect", [
    ("sync", 2, [0] * 8),
    ("one-step-off", 5, [0] + [1] * 7),  # depth is fixed at 1
    ("async", 1, [0] + [1] * 7),
    ("async", 3, [0, 1, 2, 3, 3, 3, 3, 3]),  # generation is fast: the queue fills up to the bound
])
def test_staleness_is_bounded_and_reached(mode: str, depth: int, expect: list[int]):
    produced, stale = run_loop(mode, 8, depth)
    assert stale == expect
    assert produced == list(range(8))  # each step once, in order


def test_async_waits_when_generation_is_slow():
    # generation slower than training: the producer never gets ahead, so batches lag by one version at most
    _, stale = run_loop("async", 6, 3, gen_s=0.08, train_s=0.01)
    assert stale[0] == 0 and max(stale) == 1


def test_no_batch_crosses_a_phase_boundary():
    produced, stale = run_loop("async", 8, 3, phase_len=4)
    assert stale == [0, 1, 2, 3, 0, 1, 2, 3] and produced == list(range(8))
