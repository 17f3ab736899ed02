"""Experiment tracking (trainer/tracking.py through trainer/run_log.py): one short real RL run on the tiny
model logs to MLflow and W&B (offline) at once, and each library's own reader finds the config, one point per
step of a step metric, the eval table and the curves PNG. Unit tests for the pieces around it."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from ssp.config import load_config
from ssp.tree import SSPConfig
from trainer.config import TrackingConfig
from trainer.run_log import eval_rows
from trainer.tracking import TRACKERS, flatten, is_file_store, make_trackers, param_text

REPO = Path(__file__).resolve().parents[1]
STEPS = 3


def short(run_dir: Path, model: Path) -> list[str]:
    return [f"run_dir={run_dir}", f"model.path={model}", "cluster.dashboard=false", "data.toy.per_cell=20",
            "rl.batch_problems=2", "rl.group_size=2", "rl.eval_every=0", "rl.eval_k=1",
            "rl.eval_max_problems=4", "rl.checkpoint_every=0", "learner.lr=1e-3",
            "rollout.num_cpus_per_engine=1", "engine.max_model_len=128",
            f"rl.phases=[{{name: math, steps: {STEPS}, max_tokens: 16, subdomains: [add, sub]}}]",
            "tracking.backends=[mlflow, wandb]", "tracking.experiment=ssp-test"]


def wandb_records(run_folder: Path, cwd: Path) -> list[dict]:
    """The records of a run's .wandb transaction log, read by wandb's own reader (`wandb leet inspect`)."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_folder)],
                         cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_one_run_logs_to_mlflow_and_wandb(ray_cluster, tiny_model_dir, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainer.rl import main

    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # W&B's staging and caches too
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    run_dir = tmp_path / "tracked"
    summary = main(load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", short(run_dir, tiny_model_dir)))
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reward = {r["step"]: r["reward_mean"] for r in recs if "samples" in r}
    assert sorted(reward) == list(range(STEPS))

    # MLflow: the default store RUN_DIR/mlruns, read with MlflowClient
    client = MlflowClient((run_dir / "mlruns").resolve().as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("ssp-test").experiment_id])
    run = client.get_run(found.info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    params = run.data.params
    assert params["rl.group_size"] == "2" and params["learner.lr"] == "0.001"
    assert json.loads(params["tracking.backends"]) == ["mlflow", "wandb"]
    assert json.loads(params["rl.phases"])[0]["subdomains"] == ["add", "sub"]
    hist = client.get_metric_history(run.info.run_id, "reward_mean")
    assert {m.step: m.value for m in hist} == pytest.approx(reward) and len(hist) == STEPS
    assert {m.step for m in client.get_metric_history(run.info.run_id, "eval_pass1")} == {-1, STEPS}
    run_id = run.info.run_id
    assert {"curves.png", "eval.json", "summary.json"} <= {a.path for a in client.list_artifacts(run_id)}
    table = json.loads(Path(client.download_artifacts(run_id, "eval.json", str(tmp_path))).read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert rows[0]["subdomain"] == "all" and len(rows) >= 2
    assert rows[0]["pass1_before"] == pytest.approx(summary["pass1_before"])
    assert rows[0]["pass1_after"] == pytest.approx(summary["pass1_after"])

    # W&B offline: the run folder in RUN_DIR/wandb, its transaction log read by wandb
    [folder] = (run_dir / "wandb").glob("offline-run-*")
    log = wandb_records(folder, tmp_path)
    config: dict = {}
    for r in log:
        if r["type"] in ("run", "config"):
            config.update(r[r["type"]].get("config", r[r["type"]]).get("update", {}))
    assert config["rl"]["group_size"] == 2 and config["tracking"]["backends"] == ["mlflow", "wandb"]
    history = [r["history"]["item"] for r in log if r["type"] == "history"]
    assert {h["step"]: h["reward_mean"] for h in history if "reward_mean" in h} == pytest.approx(reward)
    assert sum("reward_mean" in h for h in history) == STEPS
    assert [r["exit"].get("exit_code", 0) for r in log if r["type"] == "exit"] == [0]
    [png] = (folder / "files" / "media" / "images").glob("curves_*.png")
    assert png.stat().st_size > 10_000
    [wb_table] = (folder / "files" / "media" / "table").glob("eval_*.table.json")
    assert json.loads(wb_table.read_text())["columns"][:2] == ["subdomain", "pass1_before"]


def test_config_flattens_to_dotted_params():
    conf = {"rl": {"group_size": 8, "phases": [{"name": "a", "steps": 2}]},
            "data": {"toy": {"levels": [1, 2]}}, "extra": {}, "seed": None, "flag": True}
    flat = flatten(conf)
    assert flat == {"rl.group_size": 8, "rl.phases": [{"name": "a", "steps": 2}], "data.toy.levels": [1, 2],
                    "extra": {}, "seed": None, "flag": True}
    assert [param_text(flat[k]) for k in ("rl.group_size", "rl.phases", "extra", "seed", "flag")] == \
        ["8", '[{"name": "a", "steps": 2}]', "{}", "None", "True"]
    long = param_text(list(range(3000)))
    assert len(long) == 6000 and long.endswith("...")


def test_online_wandb_without_api_key_fails_before_any_tracker_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    conf = TrackingConfig(backends=["mlflow", "wandb"], wandb_mode="online")
    with pytest.raises(RuntimeError, match="WANDB_API_KEY"):
        make_trackers(conf, tmp_path, {"rl": {"group_size": 2}})
    assert list(tmp_path.iterdir()) == []  # not even the MLflow run was started


def test_missing_package_names_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(RuntimeError, match="pip install wandb"):
        make_trackers(TrackingConfig(backends=["wandb"]), tmp_path, {})


def test_registry_covers_the_config_choices_and_file_stores_are_told_apart(tmp_path):
    choices = typing.get_args(typing.get_args(typing.get_type_hints(TrackingConfig)["backends"])[0])
    assert set(TRACKERS) == set(choices)
    assert all(is_file_store(u) for u in ("file:///tmp/mlruns", "runs/x/mlruns", "/abs/mlruns"))
    assert not is_file_store("http://host:5000") and not is_file_store("sqlite:///mlflow.db")


def test_eval_rows_all_then_per_subdomain():
    before = {"pass1": 0.25, "pass2": 0.5, "pass1/add": 0.5, "pass2/add": 1.0, "pass1/sub": 0.0,
              "pass2/sub": 0.0, "k": 2, "problems": 4, "cons2": 0.25, "per_problem": {"a": 1}}
    after = {**before, "pass1": 0.5, "pass1/sub": 0.5}
    rows = eval_rows(before, after)
    assert [r["subdomain"] for r in rows] == ["all", "add", "sub"]
    assert list(rows[0]) == ["subdomain", "pass1_before", "pass1_after", "pass1_gain",
                             "pass2_before", "pass2_after", "pass2_gain"]
    assert rows[0]["pass1_gain"] == 0.25 and rows[2]["pass1_after"] == 0.5 and rows[1]["pass2_gain"] == 0.0


def test_runs_without_tracking_never_import_the_trackers(tmp_path):
    code = ("import sys\nfrom pathlib import Path\nfrom trainer.config import TrackingConfig\n"
            "from trainer.run_log import RunLog\n"
            f"log = RunLog(Path({str(tmp_path)!r}), TrackingConfig(), config={{'a': 1}})\n"
            "log.close()\n"
            "print('LOADED', sorted(m for m in ('mlflow', 'wandb') if m in sys.modules), log.trackers)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "LOADED [] []" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])


def test_the_pipeline_logs_its_summary_and_every_png_to_its_own_tracker_run(tmp_path):
    """ssp/pipeline.py `track`: one run named after the run folder, beside the RL stage's "<run>/rl"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    from ssp.pipeline import track

    run_dir = tmp_path / "demo-x"
    (run_dir / "spectrum").mkdir(parents=True)
    (run_dir / "rl").mkdir()
    for png in (run_dir / "summary.png", run_dir / "spectrum" / "probe.png", run_dir / "rl" / "curves.png"):
        plt.figure().savefig(png)
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", [f"run_dir={run_dir}",
                                                                         "tracking.backends=[mlflow]"])
    track(conf, run_dir, {"signal_pass1": 0.163, "rl_start_pass1": 0.123, "served": {"ok": True}})
    client = MlflowClient((run_dir / "mlruns").resolve().as_uri())
    [found] = client.search_runs([client.get_experiment_by_name("ssp").experiment_id])
    assert found.info.run_name == "demo-x" and found.info.status == "FINISHED"
    assert found.data.metrics == {"signal_pass1": 0.163, "rl_start_pass1": 0.123}
    assert {"summary.png", "probe.png", "curves.png", "summary.json"} <= {
        a.path for a in client.list_artifacts(found.info.run_id)}
