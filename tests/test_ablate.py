"""benchmarks/ablate.py's figures on runs whose answers are known: intervals hold the point, the samples ratio
is read off the seed-mean curve, the start histogram counts the uniform arms' first groups."""

import importlib.util
import math

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate", REPO / "benchmarks" / "ablate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.B = 200
    return mod


def _run(rng, base, gain, zero, first):
    """5 evals 2,560 samples apart; problem i's correct count rises by `gain` (of 8) per eval."""
    evals = [(e * 2560, {f"p{i}": int(min(8, b + gain * e)) for i, b in enumerate(base)}) for e in range(5)]
    return {"evals": evals, "k": 8, "zero_adv": list(zero + rng.uniform(-0.02, 0.02, 40)), "first_groups": first,
            "group": 8, "samples": 40 * 256}


def test_figures_on_known_runs(ablate):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, 120)
    first = [0] * 10 + [4] * 12 + [8] * 10  # 12 of 32 strictly between 0.1 and 0.9
    runs = {"mgpo_scheduler": [_run(rng, base, 2, 0.2, first) for _ in range(3)],
            "grpo_uniform": [_run(rng, base, 1, 0.5, first) for _ in range(3)],
            "mgpo_uniform": [_run(rng, base, 1, 0.5, first) for _ in range(3)],
            "from_last": [_run(rng, base, 0, 0.3, first) for _ in range(3)]}
    table, out = ablate.figures(runs, rng)
    # GRPO ends 4 counts up; MGPO + scheduler, 2 per eval, is there at its third eval: 5,120 of 10,240 samples
    assert out["mgpo_scheduler_samples_vs_grpo_uniform"] == pytest.approx(0.5, abs=0.01)
    assert out["zero_adv_scheduler"] == pytest.approx(0.2, abs=0.01) and out["zero_adv_uniform"] > 0.45
    gain = out["rl_from_merged_minus_from_last"]
    assert gain > 0.5 and out["rl_from_merged_minus_from_last_lo"] <= gain <= out["rl_from_merged_minus_from_last_hi"]
    for arm in runs:
        assert table[arm]["pass1"][1] <= table[arm]["pass1"][0] <= table[arm]["pass1"][2]
    assert out["start_pass_hist"] == [60, 0, 0, 0, 72, 0, 0, 0, 60] and out["start_frac_between"] == 0.375


def test_a_run_that_never_reaches_the_target_reads_inf(ablate):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 4, 60)
    runs = {"mgpo_scheduler": [_run(rng, base, 0, 0.2, []) for _ in range(2)],
            "grpo_uniform": [_run(rng, base, 1, 0.5, []) for _ in range(2)]}
    _, out = ablate.figures(runs, rng)
    assert math.isinf(out["mgpo_scheduler_samples_vs_grpo_uniform"]) and "start_pass_hist" not in out
