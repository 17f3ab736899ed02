"""Where a run's numbers go: a JSONL file, Ray dashboard gauges, the experiment trackers of
`tracking.backends` (MLflow, W&B, TensorBoard: trainer/tracking.py), PNG plots and a summary table. Every step
metric is named once, in cluster/telemetry.py, and used by all of them and by the tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cluster.telemetry import STEP_METRICS, gauge_name, metric
from trainer.tracking import Tracker, make_trackers

PLOTS = ("reward_mean", "pass_rate", "zero_adv_frac", "len_mean", "trunc_frac", "eval_pass1")


class RunLog:
    def __init__(self, run_dir: Path, tracking=None, config: dict | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.gauges: dict = {}
        # the trackers of tracking.backends, each sent the config once, here
        self.trackers: list[Tracker] = []
        if tracking is not None:
            self.trackers = make_trackers(tracking, run_dir, config or {})

    def truncate(self, before_step: int) -> int:
        """Drop records of steps >= before_step (a resumed run redoes them); returns how many training steps were
        dropped. Only here: the trackers keep what they were sent. A redone step is sent to them again at the
        same step, and a resumed run (a new RunLog) starts a new tracker run beside the first. That is fine:
        metrics.jsonl is the record."""
        if not self.path.exists():
            return 0
        recs = [(line, json.loads(line)) for line in self.path.read_text().splitlines()]
        self.path.write_text("".join(line + "\n" for line, r in recs if r["step"] < before_step))
        return sum(r["step"] >= before_step and "samples" in r for _, r in recs)

    def log(self, record: dict) -> None:
        """Append one JSON line; every line carries a wall-clock `time` (time-to-target from a finished run)."""
        import time

        record.setdefault("time", time.time())
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self._gauges(record)
        numbers = {k: v for k, v in record.items()
                   if isinstance(v, int | float) and k not in ("step", "time")}
        for t in self.trackers:
            t.log_metrics(numbers, record["step"])

    def _gauges(self, record: dict) -> None:
        import ray

        if not ray.is_initialized():
            return
        for k, v in record.items():  # the named metrics only (cluster/telemetry.py); the rest is in the JSONL
            if k not in STEP_METRICS or not isinstance(v, int | float):
                continue
            if k not in self.gauges:
                self.gauges[k] = metric(gauge_name(k))
            self.gauges[k].set(float(v))

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def plot(self, out: Path) -> Path:
        """One PNG with a panel per curve in PLOTS, over steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        recs = self.records()
        fig, axes = plt.subplots(1, len(PLOTS), figsize=(4 * len(PLOTS), 3.2))
        for ax, key in zip(axes, PLOTS):
            pts = [(r["step"], r[key]) for r in recs if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o" if key.startswith("eval") else None, markersize=3)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=90)
        plt.close(fig)
        self.log_artifact(out)
        return out

    def log_table(self, name: str, rows: list[dict]) -> None:
        for t in self.trackers:
            t.log_table(name, rows)

    def log_artifact(self, path: Path) -> None:
        for t in self.trackers:
            t.log_artifact(path)

    def close(self, ok: bool = True) -> None:
        """End every tracker's run (finished, or failed with ok=False); a second call does nothing. Every
        tracker is closed even if one fails to; the first error is raised after."""
        trackers, self.trackers, err = self.trackers, [], None
        for t in trackers:
            try:
                t.close(ok)
            except Exception as e:
                err = err or e
        if err is not None:
            raise err


def step_totals(recs: list[dict]) -> dict:
    """The run's time per phase of the step (seconds, summed) and the learner's efficiency per step (means over
    the steps that trained): learner tokens/s, padding fraction of its micro-batches, MFU."""
    out = {k: sum(r.get(k, 0.0) for r in recs) for k in ("time_generate", "time_verify", "time_train", "time_sync")}
    for k in ("learner_tok_s", "pad_frac", "mfu"):
        vals = [r[k] for r in recs if k in r]
        if vals:
            out[f"{k}_mean"] = sum(vals) / len(vals)
    return out


def summary_table(summary: dict) -> str:
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in summary.items()
            if not isinstance(v, dict | list)]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 20)
    return "\n".join([line, *(f"{k:<{width}}  {v}" for k, v in rows), line])


def eval_rows(before: dict, after: dict) -> list[dict]:
    """The held-out eval before and after training as table rows (trainer/eval/score.evaluate's figures): one
    for all problems, then one per subdomain; columns pass{j}_before, pass{j}_after, pass{j}_gain."""
    passes = sorted((k for k in after if re.fullmatch(r"pass\d+", k) and k in before),
                    key=lambda k: int(k[4:]))
    subs = sorted({k.partition("/")[2] for k in after
                   if "/" in k and k.partition("/")[0] in passes and k in before})
    rows = []
    for sub in ("all", *subs):
        row: dict = {"subdomain": sub}
        for p in passes:
            key = p if sub == "all" else f"{p}/{sub}"
            b, a = before.get(key), after.get(key)
            gain = None if a is None or b is None else a - b
            row.update({f"{p}_before": b, f"{p}_after": a, f"{p}_gain": gain})
        rows.append(row)
    return rows
