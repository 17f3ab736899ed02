"""Every custom metric the project exports to Ray's metrics agent (Prometheus names get Ray's `ray_` prefix),
named once here: the components create them through `metric()`, docs/metrics.md's table and the Grafana dashboard
(cluster/grafana/ssp.json) are checked against this list, and a test scrapes every one from a live run.

`python -m cluster.telemetry` prints the Markdown table docs/metrics.md carries."""

from __future__ import annotations

import sys
from dataclasses import dataclass

# name -> description; the Ray gauge is `ssp_rl_<name>` with '/' turned into '_'
STEP_METRICS = {
    "reward_mean": "mean reward of the step's samples",
    "pass_rate": "share of samples verified correct",
    "zero_adv_frac": "share of groups whose rewards were all equal (zero advantage, skipped)",
    "w_mean": "mean MGPO weight w over groups",
    "entropy": "mean token entropy of the policy",
    "clip_frac": "share of tokens with a clipped ratio",
    "approx_kl": "approx KL(pi_old || pi)",
    "is_frac": "share of tokens the train/inference correction capped (TIS) or dropped (ICEPOP)",
    "loss": "policy loss",
    "len_mean": "mean response length (tokens)",
    "len_max": "max response length (tokens)",
    "trunc_frac": "share of responses cut at max_tokens",
    "time_generate": "seconds generating",
    "time_verify": "seconds verifying (rl.pipeline: only what was left after generation ended)",
    "time_train": "seconds in the learner step",
    "time_sync": "seconds pushing weights to the engines",
    "sync_mb": "MiB of weights published to the engines per step (learner rank 0 -> object store -> each "
               "engine's node)",
    "tokens_per_s": "generated tokens per second of step wall time",
    "staleness": "learner version minus the version that generated the batch",
    "step_wall_s": "seconds of the whole step (one-step-off, async: its generation overlapped earlier steps)",
    "w_std": "std of the MGPO weight w over samples",
    "adv_abs_mean": "mean |advantage| over samples",
    "grad_norm": "global gradient norm before clipping",
    "lr": "learning rate",
    "tokens": "response tokens trained on",
    "stepped": "1 if the optimizer stepped (0: every group had zero advantage)",
    "skipped_frac": "share of samples skipped (zero-advantage groups)",
    "weight_version_min": "oldest weight version in the batch",
    "samples": "rollouts in the step's batch",
    "learner_tok_s": "tokens (prompt and response) through the learner per second of its slowest rank",
    "pad_frac": "share of the learner's micro-batch positions that are padding",
    "mfu": "model FLOPs utilisation of the learner: 6 x params x tokens per trained pass over time x peak "
           "(actors/efficiency.py)",
    "eval_pass1": "held-out Pass@1 (mean over k samples per problem), set at each evaluation",
}


def gauge_name(metric: str) -> str:
    return "ssp_rl_" + metric.replace("/", "_")


@dataclass(frozen=True)
class Metric:
    type: str  # gauge | counter | histogram
    labels: tuple[str, ...]
    help: str
    component: str


_LATENCY_BOUNDS = [0.005, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30]
VERIFIER_OUTCOMES = ("correct", "wrong", "timeout", "error")

METRICS: dict[str, Metric] = {
    **{gauge_name(k): Metric("gauge", (), help_, "RL driver (trainer/rl.py, per step)") for k, help_ in STEP_METRICS.items()},
    "ssp_rollout_tokens_per_s": Metric("gauge", (), "generated tokens/s of the engine's last batch", "rollout actor"),
    "ssp_rollout_requests_in_flight": Metric("gauge", (), "requests in the engine now", "rollout actor"),
    "ssp_rollout_weight_version": Metric("gauge", (), "weight version the engine holds", "rollout actor"),
    "ssp_rollout_weight_update_s": Metric("gauge", (), "seconds of the engine's last weight update", "rollout actor"),
    "ssp_verifier_checks": Metric("counter", ("kind", "outcome"),
                                  f"checks done, by kind (math/code) and outcome ({'/'.join(VERIFIER_OUTCOMES)})",
                                  "verifier actor"),
    "ssp_verifier_in_flight": Metric("gauge", ("kind",), "checks running in the actor now (its queue)",
                                     "verifier actor"),
    "ssp_verifier_latency_s": Metric("histogram", ("kind",), "seconds per check", "verifier actor"),
    "ssp_scheduler_band_problems": Metric("gauge", ("run", "band"), "problems per pass-rate band",
                                          "problem scheduler (in the RL driver)"),
    "ssp_scheduler_zero_adv_frac": Metric("gauge", ("run",), "share of all-correct/all-wrong groups recorded",
                                          "problem scheduler (in the RL driver)"),
    "ssp_scheduler_updates_per_s": Metric("gauge", ("run",), "scheduler outcome updates per second",
                                          "problem scheduler (in the RL driver)"),
}


def metric(name: str):
    """The ray.util.metrics object for a name of METRICS (call inside a Ray worker or a connected driver)."""
    from ray.util import metrics

    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; add it to cluster/telemetry.py METRICS (known: {sorted(METRICS)})")
    m = METRICS[name]
    if m.type == "histogram":
        return metrics.Histogram(name, m.help, boundaries=_LATENCY_BOUNDS, tag_keys=m.labels)
    return (metrics.Counter if m.type == "counter" else metrics.Gauge)(name, m.help, tag_keys=m.labels)


def table() -> str:
    rows = ["| metric (Prometheus: `ray_` + name) | type | labels | meaning | emitted by |", "|---|---|---|---|---|"]
    rows += [f"| `{n}` | {m.type} | {', '.join(m.labels) or '-'} | {m.help} | {m.component} |"
             for n, m in METRICS.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    sys.exit(0)
