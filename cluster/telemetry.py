"""Every custom metric the project exports to Ray's metrics agent (Prometheus names get Ray's `ray_` prefix),
named once here: the components create them through `metric()`, README's table and the Grafana dashboard
(cluster/grafana/ssp.json) are checked against this list, and a test scrapes every one from a live run.

`python -m cluster.telemetry` prints the Markdown table README carries."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from trainer.run_log import STEP_METRICS, gauge_name


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
