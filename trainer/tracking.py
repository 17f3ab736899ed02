"""Experiment trackers: where RunLog (trainer/run_log.py) sends a run's config, step metrics, tables and PNGs
besides metrics.jsonl and the Ray gauges. One small interface, one class per library, picked by name from
`tracking.backends` (TRACKERS). Each library is imported only when its tracker is made, so `ssp --help` and
runs without tracking never load mlflow or wandb."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def flatten(d: dict, prefix: str = "") -> dict:
    """{'rl': {'group_size': 8}} -> {'rl.group_size': 8}; an empty dict stays one key."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def param_text(v) -> str:
    """A config value as an MLflow param: lists and dicts as JSON text, the rest str; at most 6000 chars."""
    text = json.dumps(v) if isinstance(v, list | dict) else str(v)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def columns(rows: list[dict]) -> list[str]:
    """The keys of table rows, in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _require(package: str) -> None:
    """The backend of the same name needs this package importable."""
    try:
        importlib.import_module(package)
    except ImportError as e:
        raise RuntimeError(f"tracking.backends: [{package}] needs the '{package}' package: "
                           f"pip install {package}") from e


class Tracker:
    """One experiment tracker. `check` runs for every chosen backend before any tracker is made."""

    @classmethod
    def check(cls, conf) -> None:
        """Raise a clear error now if this tracker cannot run with `conf`."""

    def log_config(self, config: dict) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_table(self, name: str, rows: list[dict]) -> None:
        raise NotImplementedError

    def log_artifact(self, path: Path) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        """End the tracker's run, as finished (ok) or failed."""


def is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")  # a plain path or file://; not http(s)://, sqlite://, ...


class MLflowTracker(Tracker):
    """An MLflow run through MlflowClient (no global active run: a caller's own mlflow use is untouched)."""

    @classmethod
    def check(cls, conf) -> None:
        _require("mlflow")

    def __init__(self, conf, run_dir: Path, name: str):
        from mlflow.tracking import MlflowClient

        uri = conf.mlflow_uri or (run_dir / "mlruns").resolve().as_uri()
        if is_file_store(uri):
            # MLflow 3.x refuses its file store (in maintenance mode) unless this opt-out is set. The local
            # store in RUN_DIR/mlruns is our default, so opt out, and only for a file store URI.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(conf.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(conf.experiment)
        run = self.client.create_run(exp_id, run_name=name, tags={"ssp.run_dir": str(run_dir)})
        self.run_id = run.info.run_id

    def log_config(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, param_text(v)) for k, v in flatten(config).items()]
        self.client.log_batch(self.run_id, params=params)  # the client sends them in batches of 100

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ms = int(time.time() * 1000)
        batch = [Metric(k, float(v), ms, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_table(self, name: str, rows: list[dict]) -> None:
        cols = {k: [r.get(k) for r in rows] for k in columns(rows)}
        try:
            self.client.log_table(self.run_id, data=cols, artifact_file=f"{name}.json")
        except ImportError:  # log_table needs pandas; the same JSON shape without it
            data = [list(r) for r in zip(*cols.values())]
            self.client.log_dict(self.run_id, {"columns": list(cols), "data": data}, f"{name}.json")

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, ok: bool = True) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class WandbTracker(Tracker):
    """A W&B run in RUN_DIR/wandb. Steps go in a `step` field that every metric is plotted against (W&B's own
    step only rises, and a run logs step -1, the eval before training, and redoes steps after a restart)."""

    @classmethod
    def check(cls, conf) -> None:
        if conf.wandb_mode == "online" and not os.environ.get("WANDB_API_KEY"):
            raise RuntimeError("tracking.wandb_mode=online needs WANDB_API_KEY in the environment; or use "
                               "tracking.wandb_mode=offline and upload later with "
                               "`wandb sync RUN_DIR/wandb/offline-run-*`")
        _require("wandb")

    def __init__(self, conf, run_dir: Path, name: str):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(mode=conf.wandb_mode, dir=str(run_dir), project=conf.experiment, name=name,
                              entity=conf.wandb_entity or None, reinit="create_new")
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "step": step})

    def log_table(self, name: str, rows: list[dict]) -> None:
        cols = columns(rows)
        self.run.log({name: self.wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})

    def log_artifact(self, path: Path) -> None:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            self.run.log({path.stem: self.wandb.Image(str(path))})
        else:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, ok: bool = True) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class TensorBoardTracker(Tracker):
    """Event files in RUN_DIR/tb: scalars, the config and tables as Markdown text, PNGs as images."""

    @classmethod
    def check(cls, conf) -> None:
        _require("tensorboard")

    def __init__(self, conf, run_dir: Path, name: str):
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir / "tb"))

    def log_config(self, config: dict) -> None:
        self.log_table("config", [{"key": k, "value": param_text(v)} for k, v in flatten(config).items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.tb.add_scalar(k, v, step)

    def log_table(self, name: str, rows: list[dict]) -> None:
        cols = columns(rows)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
        self.tb.add_text(name, "\n".join(lines))

    def log_artifact(self, path: Path) -> None:
        if path.suffix.lower() == ".png":  # TensorBoard keeps no files: a PNG goes in as an image, only that
            from matplotlib.image import imread

            self.tb.add_image(path.stem, imread(str(path))[..., :3], dataformats="HWC")

    def close(self, ok: bool = True) -> None:
        self.tb.close()


TRACKERS: dict[str, type[Tracker]] = {
    "mlflow": MLflowTracker, "wandb": WandbTracker, "tensorboard": TensorBoardTracker}


def make_trackers(conf, run_dir: Path, config: dict) -> list[Tracker]:
    """A tracker per name in `conf.backends` (a TrackingConfig), each sent the run's config once. Every
    backend is checked before any tracker run starts: a missing package or API key stops the run before it
    begins."""
    names = list(dict.fromkeys(conf.backends))
    for n in names:
        TRACKERS[n].check(conf)
    name = conf.run_name or run_dir.resolve().name
    made: list[Tracker] = []
    try:
        for n in names:
            made.append(TRACKERS[n](conf, run_dir, name))
            made[-1].log_config(config)
    except BaseException:
        for t in made:
            t.close(ok=False)
        raise
    return made
