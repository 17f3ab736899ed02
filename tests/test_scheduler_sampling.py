"""The priority sampler concentrates on p~0.5 and lowers the zero-advantage group share (simulated); the
thompson sampler lowers it further when the policy learns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cluster.redis_server import RedisServer
from cluster.scheduler import (
    ProblemScheduler,
    SchedulerConfig,
    band_weights,
    fit_prior,
    priority,
    unseen_prior,
    unseen_weight,
)
from cluster.scheduler_sim import simulate
from ssp.config import ConfigError, load_config
from ssp.mgpo import kl_to_half
from ssp.tree import SSPConfig


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("sampling") / "redis", appendfsync="everysec") as srv:
        yield srv


def test_priorities_by_hand():
    assert kl_to_half(0.5) == 0 and math.isclose(kl_to_half(0.0), math.log(2))
    assert math.isclose(kl_to_half(0.25), 0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert priority(0.5, "mgpo", 6.0) == 1.0 and math.isclose(priority(1.0, "mgpo", 1.0), 0.5)
    assert priority(0.5, "p1mp", 0) == 1.0 and priority(0.1, "p1mp", 0) == pytest.approx(0.36)
    w = band_weights(SchedulerConfig(bands=10, lam=6.0, reprobe=0.02))
    assert w[:3] == [0.02, 0.02, 0.0] and math.isclose(w[3 + 4], w[3 + 5]) and math.isclose(w[3 + 5], max(w[3:]))
    assert band_weights(SchedulerConfig(priority="uniform"))[3:] == [1.0] * 10
    c = SchedulerConfig(alpha=1.0, beta=1.0, cell_prior_attempts=64)
    assert unseen_prior(c, 63, 0) == (1.0, 1.0)
    a0, b0 = unseen_prior(c, 80, 0)  # subdomain p^ = 1/82, strength alpha+beta = 2
    assert math.isclose(a0, 2 / 82) and math.isclose(b0, 2 * 81 / 82)


def test_band_frequencies_follow_weight_times_count(server):
    cfg = SchedulerConfig(bands=10, lam=6.0)
    s = ProblemScheduler(server.url, "freq", cfg)
    s.register([{"id": f"q{i}", "subdomain": ""} for i in range(1000)])
    # q0..q499 at 5/8 -> p^=0.6 (band 6); q500..q999 at 1/8 -> p^=0.2 (band 2)
    s.record(0, [(f"q{i}", g, g < (5 if i < 500 else 1)) for i in range(1000) for g in range(8)])
    picks = [s.sample(50, seed=k) for k in range(200)]
    assert all(len(set(p)) == 50 for p in picks)
    share_mid = np.mean([int(pid[1:]) < 500 for p in picks for pid in p])
    w = band_weights(cfg)
    expect = w[3 + 6] / (w[3 + 6] + w[3 + 2])
    assert abs(share_mid - expect) < 0.03, (share_mid, expect)


def test_scheduler_concentrates_near_half_and_lowers_zero_advantage(server):
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(2000)]
    true_p = {pid: float(p) for pid, p in zip(ids, rng.beta(0.5, 0.5, size=len(ids)))}  # U-shaped spread
    results = {}
    for kind in ("uniform", "mgpo"):
        s = ProblemScheduler(server.url, f"sim-{kind}", SchedulerConfig(priority=kind))
        s.register([{"id": pid, "subdomain": ""} for pid in ids])
        results[kind] = simulate(s, true_p, steps=30, batch=256, group=8, seed=1)
    print("zero-advantage share G=8:", {k: round(v["zero_adv_frac"], 3) for k, v in results.items()},
          "mean |p-0.5| of sampled:", {k: round(v["mean_dist_from_half"], 3) for k, v in results.items()})
    u, m = results["uniform"], results["mgpo"]
    assert m["mean_dist_from_half"] < u["mean_dist_from_half"] - 0.05
    assert m["zero_adv_frac"] < u["zero_adv_frac"] - 0.1


def test_unseen_problems_take_their_subdomains_pass_rate(server):
    """Cell prior: once a subdomain has cell_prior_attempts, its unseen problems weigh priority(its p-hat)."""
    shares = {}
    for attempts in (64, 0):
        cfg = SchedulerConfig(lam=6.0, cell_prior_attempts=attempts)
        s = ProblemScheduler(server.url, f"cells-{attempts}", cfg)
        s.register([{"id": f"{sub}{i}", "subdomain": sub} for sub in ("hard", "mid") for i in range(300)])
        # 10 seen problems per subdomain, 8 samples each: hard 0/80 correct, mid 40/80
        s.record(0, [(f"{sub}{i}", g, sub == "mid" and g < 4) for sub in ("hard", "mid") for i in range(10)
                     for g in range(8)])
        assert s.cells() == {"hard": (80, 0), "mid": (80, 40)}
        unseen = [pid for k in range(100) for pid in s.sample(20, seed=k) if int(pid.lstrip("hardmi")) >= 10]
        shares[attempts] = np.mean([pid.startswith("hard") for pid in unseen])
    expect = unseen_weight(SchedulerConfig(lam=6.0), 80, 0)  # p^=1/82: ~0.02 against 1.0 for mid
    assert expect < 0.03 and shares[64] < 0.06, shares
    assert abs(shares[0] - 0.5) < 0.05, shares  # off: every unseen problem weighs unseen_weight


@pytest.mark.parametrize("sampler", ["bands", "thompson"])
def test_cell_prior_lowers_zero_advantage_when_problems_are_seen_once(server, sampler):
    """A short run sees most problems once: per-problem estimates are all prior, the subdomain's is not."""
    rng = np.random.default_rng(0)
    subs = {"s0": 0.02, "s1": 0.05, "s2": 0.1, "s3": 0.5, "s4": 0.97}
    ids = {f"{sub}-{i}": sub for sub in subs for i in range(400)}
    true_p = {pid: float(np.clip(subs[sub] + rng.normal(0, 0.03), 0, 1)) for pid, sub in ids.items()}
    zero = {}
    for attempts in (0, 64):
        s = ProblemScheduler(server.url, f"cells-sim-{sampler}-{attempts}",
                             SchedulerConfig(sampler=sampler, cell_prior_attempts=attempts))
        s.register([{"id": pid, "subdomain": sub} for pid, sub in ids.items()])
        zero[attempts] = simulate(s, true_p, steps=20, batch=64, group=8, seed=1)["zero_adv_frac"]
    print(f"zero-advantage share ({sampler}), cell prior off/on:", zero)
    assert zero[64] < zero[0] - 0.2, zero


def test_thompson_beats_bands_when_the_policy_learns(server):
    """True pass rates drift up (+4 in logit over the run, like a learning policy): a per-problem posterior,
    with old evidence decayed, keeps finding the problems now near 0.5; band weights of stale p-hats don't."""
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(2000)]
    true_p = {pid: float(p) for pid, p in zip(ids, rng.beta(0.5, 0.5, size=len(ids)))}
    zero = {}
    for name, kw in (("bands", {}), ("thompson-nodecay", {"sampler": "thompson", "thompson_decay": 1.0}),
                     ("thompson", {"sampler": "thompson"})):
        s = ProblemScheduler(server.url, f"drift-{name}", SchedulerConfig(**kw))
        s.register([{"id": pid, "subdomain": ""} for pid in ids])
        zero[name] = simulate(s, true_p, steps=100, batch=256, group=8, seed=1, drift=0.04)["zero_adv_frac"]
    print("zero-advantage share G=8, drifting policy:", {k: round(v, 3) for k, v in zero.items()})
    assert zero["thompson"] < 0.20 and zero["bands"] > zero["thompson"] + 0.08, zero
    assert zero["thompson"] < zero["thompson-nodecay"] - 0.01, zero


def _thompson_run(server, run: str, n: int = 200, **kw) -> ProblemScheduler:
    s = ProblemScheduler(server.url, run, SchedulerConfig(sampler="thompson", **kw))
    s.register([{"id": f"q{i}", "subdomain": "alg"} for i in range(n)])
    return s


def test_decayed_counts_and_posteriors(server):
    s = _thompson_run(server, "decay", n=3, thompson_decay=0.5, cell_prior_attempts=16)
    s.record(0, [("q0", g, g < 6) for g in range(8)])
    s.record(1, [("q0", g, g < 2) for g in range(4)])
    s.record(1, [("q0", g, g < 2) for g in range(4, 8)])  # same step, second part: no second decay
    assert s.client.hget(s._prefix() + "P:q0", "a") == "16"   # raw counts intact
    assert s.client.hget(s._prefix() + "T", "q0") == "12 5"   # 8 * 0.5 + 8, 6 * 0.5 + 2
    ids, al, be = s.posteriors()
    assert ids == ["q0", "q1", "q2"]
    assert (al[0], be[0]) == (1 + 5, 1 + 7)
    assert np.allclose([al[1], be[1]], [2 * 9 / 18, 2 * 9 / 18])  # unseen: the subdomain's 8/16, strength 2


def test_thompson_is_reproducible_per_seed_and_step(server):
    s = _thompson_run(server, "repro")
    s.record(0, [(f"q{i}", g, g < i % 9) for i in range(0, 200, 2) for g in range(8)])
    a = s.sample(32, step=5)
    assert len(set(a)) == 32
    assert ProblemScheduler(server.url, "repro", s.config).sample(32, step=5) == a
    assert s.sample(32, step=6) != a
    uniform = _thompson_run(server, "repro-uniform", priority="uniform")
    assert uniform.sample(32, step=5) == uniform.sample(32, step=5) != uniform.sample(32, step=6)


def test_thompson_reprobes_parked_and_never_returns_dropped(server):
    s = _thompson_run(server, "drop", n=20, min_attempts=8)
    # q0..q9 parked at 0/8, q10..q19 at 4/8
    s.record(0, [(f"q{i}", g, i >= 10 and g < 4) for i in range(20) for g in range(8)])
    picks = [pid for k in range(200) for pid in s.sample(5, step=k)]
    parked = sum(int(pid[1:]) < 10 for pid in picks)
    assert 0 < parked < 0.1 * len(picks), parked  # re-probed by the posterior, rarely
    assert s.prefilter() == 10
    assert all(int(pid[1:]) >= 10 for k in range(200) for pid in s.sample(5, step=k))
    with pytest.raises(ValueError, match="only 10 are eligible"):
        s.sample(11, step=0)


def test_sampler_choice_is_checked_at_load():
    conf = load_config(SSPConfig, None, ["scheduler.sampler=thompson", "scheduler.thompson_decay=0.5"])
    assert (conf.scheduler.sampler, conf.scheduler.thompson_decay) == ("thompson", 0.5)
    with pytest.raises(ConfigError, match=r"'scheduler\.sampler': must be one of \['bands', 'thompson'\]"):
        load_config(SSPConfig, None, ["scheduler.sampler=ucb"])
    with pytest.raises(ConfigError, match=r"'scheduler\.thompson_decay': must be > 0 and <= 1"):
        load_config(SSPConfig, None, ["scheduler.thompson_decay=0"])


def test_fit_prior_recovers_the_pool_and_falls_back():
    rng = np.random.default_rng(0)
    for a, b in ((2.0, 5.0), (0.1, 0.3)):
        c = rng.binomial(8, rng.beta(a, b, size=3000))
        fa, fb = fit_prior(np.stack([np.full(3000, 8.0), c], 1), (1.0, 1.0))
        assert abs(fa - a) < 0.2 * a + 0.02 and abs(fb - b) < 0.2 * b + 0.02, (a, b, fa, fb)
    few = np.array([[8.0, 3.0]] * 31)
    assert fit_prior(few, (1.0, 1.0)) == (1.0, 1.0)  # fewer than 32 problems seen
    assert fit_prior(np.array([[8.0, 0.0]] * 40), (1.0, 1.0)) == (1.0, 1.0)  # all at 0: nothing to fit


def test_fitted_prior_skips_never_and_always_solved_problems(server):
    """A pool like the toy one from a weak policy (measured: 577 of 904 problems never solved, 204 always):
    a fitted, U-shaped prior rules a problem out after one all-equal group; a flat prior keeps drawing them."""
    rng = np.random.default_rng(0)
    kind = rng.choice(3, size=905, p=[0.64, 0.22, 0.14])
    p = np.where(kind == 0, 0.005, np.where(kind == 1, 0.995, rng.uniform(0.05, 0.95, size=905)))
    true_p = {f"b{i}": float(x) for i, x in enumerate(p)}
    zero = {}
    for prior in ("fixed", "fitted"):
        s = ProblemScheduler(server.url, f"bimodal-{prior}", SchedulerConfig(sampler="thompson", thompson_prior=prior))
        s.register([{"id": pid, "subdomain": ["add", "mul", "code"][i % 3]} for i, pid in enumerate(true_p)])
        zero[prior] = simulate(s, true_p, steps=80, batch=32, group=8, seed=1, drift=0.02)["zero_adv_frac"]
    print("zero-advantage share, bimodal pool:", {k: round(v, 3) for k, v in zero.items()})
    assert zero["fitted"] < 0.36 and zero["fixed"] > zero["fitted"] + 0.08, zero


def test_level_cells_find_the_levels_at_half_on_a_graded_pool(server):
    """A graded pool seen at most once per problem (the demo's ~20,000 problems): pass rates set by the level
    (0.99 at level 1 down to 0.01 at level 6), not the subdomain. Pooling the unseen problems' prior per
    (subdomain, level) steers to the levels in between; per subdomain it cannot tell the levels apart."""
    rng = np.random.default_rng(2)
    by_level = {1: 0.99, 2: 0.9, 3: 0.6, 4: 0.35, 5: 0.08, 6: 0.01}
    pool = [{"id": f"g{i}", "subdomain": ["add", "mul", "code"][i % 3], "level": 1 + i % 6} for i in range(12000)]
    true_p = {r["id"]: float(np.clip(rng.normal(by_level[r["level"]], 0.05), 0.005, 0.995)) for r in pool}
    zero = {}
    for cells in ("subdomain", "level"):
        s = ProblemScheduler(server.url, f"graded-{cells}", SchedulerConfig(sampler="thompson", cells=cells))
        s.register(pool)
        zero[cells] = simulate(s, true_p, steps=60, batch=32, group=8, seed=3)["zero_adv_frac"]
    print("zero-advantage share, graded pool:", {k: round(v, 3) for k, v in zero.items()})
    assert zero["level"] < 0.3 and zero["subdomain"] > zero["level"] + 0.15, zero
