"""Where a run's numbers go: a JSONL file, Ray dashboard gauges, TensorBoard (optional), PNG plots and a
summary table. Every step metric is named once, in cluster/telemetry.py, and used by all of them and by the tests."""

from __future__ import annotations

import json
from pathlib import Path

from cluster.telemetry import STEP_METRICS, gauge_name, metric

PLOTS = ("reward_mean", "pass_rate", "zero_adv_frac", "len_mean", "trunc_frac", "eval_pass1")


class RunLog:
    def __init__(self, run_dir: Path, tracking=None, config: dict | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.gauges: dict = {}
        self.tb = None
        if tracking is not None and "tensorboard" in tracking.backends:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("tracking.backends: [tensorboard] needs the 'tensorboard' package: pip install tensorboard") from e
            self.tb = SummaryWriter(str(run_dir / "tb"))

    def truncate(self, before_step: int) -> None:
        """Drop records of steps >= before_step (a resumed run redoes them)."""
        if self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] < before_step]
            self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict) -> None:
        """Append one JSON line; every line carries a wall-clock `time` (time-to-target from a finished run)."""
        import time

        record.setdefault("time", time.time())
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self._gauges(record)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("step", "time"):
                    self.tb.add_scalar(k, v, record["step"])

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
        return out

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def summary_table(summary: dict) -> str:
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in summary.items()
            if not isinstance(v, dict | list)]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 20)
    return "\n".join([line, *(f"{k:<{width}}  {v}" for k, v in rows), line])
