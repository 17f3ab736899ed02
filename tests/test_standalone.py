"""The repository stands alone: a copy of it in a folder with no `shared/` beside it checks every shipped config,
runs the math eval suite on the tiny model, trains `ssp rl` on data read with the `datasets` library through a
field mapping (a parquet file and a save_to_disk folder with renamed columns) and `ssp sft` on a TRL
prompt/completion file. Everything runs in subprocesses whose working directory and PYTHONPATH are the copy, so
its own code and data are what run (Ray's workers inherit the PYTHONPATH)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SSP = [sys.executable, "-m", "ssp.cli"]
SMALL = ["cluster.dashboard=false", "rollout.num_cpus_per_engine=1", "engine.max_model_len=128",
         "verifier.num_workers=1"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The working tree's files (tracked, and untracked but not ignored: what a commit of it would hold)."""
    dst = tmp_path_factory.mktemp("standalone") / "ssp-rl"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    assert not (dst.parent / "shared").exists() and (dst / "configs" / "tiny-cpu.yaml").is_file()
    return dst


def run(clone: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(clone), "RAY_ADDRESS": "", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(clone / "artifacts" / "hf-datasets")}
    return subprocess.run([*SSP, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_copy_runs_its_own_code_and_reads_nothing_outside_it(clone):
    out = subprocess.run([sys.executable, "-c", "import ssp.cli, trainer.preflight; print(ssp.cli.__file__)"],
                         cwd=clone, env={**os.environ, "PYTHONPATH": str(clone)}, capture_output=True, text=True)
    assert Path(out.stdout.strip()).is_relative_to(clone), out.stderr
    shipped = [p for p in clone.rglob("*") if p.is_file() and p.suffix in (".yaml", ".py", ".md") or p.name ==
               "Dockerfile"]
    offenders = [str(p.relative_to(clone)) for p in shipped if "../shared" in p.read_text(errors="replace")
                 and p.relative_to(clone).parts[0] not in ("tests", "benchmarks")
                 and p.name not in ("BENCHMARKS.md",)]
    assert offenders == []


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_ssp_check_passes_on_every_shipped_config(clone, config):
    """Every check passes, but the disk one may fail on a machine short of disk (CI shares one): then its figures
    must be true, the free space it names within rounding of what this disk has and less than the need."""
    out = run(clone, "check", "--config", f"configs/{config}")
    failed = [ln for ln in out.stdout.splitlines() if " fail " in ln]
    if out.returncode != 0 and len(failed) == 1 and failed[0].split()[0] == "disk":
        m = re.search(r"needs about ([\d.]+) GiB .*?, ([\d.]+) GiB free", failed[0])
        assert m, failed[0]
        need, free = float(m[1]), float(m[2])
        assert free < need and abs(free - shutil.disk_usage(clone).free / 2**30) < 0.5, failed[0]
        return
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert failed == [] and "0 failed" in out.stdout


def test_math_eval_suite_on_the_tiny_model(clone):
    out = run(clone, "eval", "--suite", "math", "--limit", "2", "--k", "2", "--config", "configs/tiny-cpu.yaml",
              "cluster.dashboard=false", "rollout.num_cpus_per_engine=1", "eval.max_tokens=16")
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(next((clone / "runs").rglob("results.json")).read_text())
    text = json.dumps(res)
    for name in ("AIME24", "AIME25", "HMMT25", "MATH-500", "AMC23"):
        assert name in text


def _toy_rows(per: int) -> list[dict]:
    """Toy problems in another dataset's column names: question / final / topic / difficulty / uid."""
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.data import toy_tasks

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml", ["data.toy.subdomains=[add, sub]",
                                                                         "data.toy.levels=[1]", f"data.toy.per_cell={per}"])
    return [{"uid": r["id"], "question": r["problem"], "final": str(r["answer"]), "topic": r["subdomain"],
             "difficulty": r["level"]} for r in toy_tasks.generate(conf.data.toy)]


def test_rl_trains_on_parquet_and_save_to_disk_sources_through_a_field_mapping(clone, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _toy_rows(40)
    train_a, train_b, held = rows[:30], rows[30:60], rows[60:72]
    pq.write_table(pa.Table.from_pylist(train_a), tmp_path / "a.parquet")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(train_b)}).save_to_disk(str(tmp_path / "b"))
    (tmp_path / "held.jsonl").write_text("".join(json.dumps({"id": r["uid"], "problem": r["question"],
                                                             "answer": r["final"], "subdomain": r["topic"]}) + "\n"
                                                 for r in held))
    fields = "{problem: question, answer: final, subdomain: topic, level: difficulty, id: uid}"
    out = run(clone, "rl", "--config", "configs/tiny-cpu.yaml", "run_dir=runs/rl-sources", *SMALL,
              f"data.train=[{{path: {tmp_path / 'a.parquet'}, fields: {fields}}}, "
              f"{{path: {tmp_path / 'b'}, split: train, fields: {fields}}}]",
              f"data.eval=[{tmp_path / 'held.jsonl'}]", "scheduler.cells=subdomain",
              "rl.phases=[{name: m, steps: 2, max_tokens: 16, subdomains: []}]", "rl.batch_problems=4",
              "rl.group_size=2", "rl.eval_every=0", "rl.eval_k=1", "rl.checkpoint_every=0")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = clone / "runs" / "rl-sources"
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "samples" in r]
    assert [r["step"] for r in steps] == [0, 1] and all(r["samples"] == 8 for r in steps)
    ids = {r["uid"] for r in train_a + train_b}
    plans = sorted((run_dir / "plans").glob("step-*.json"))
    assert plans and all(set(json.loads(p.read_text())) <= ids for p in plans)  # the mapped ids of the sources


def test_sft_trains_on_a_trl_prompt_completion_file(clone, tmp_path):
    rows = _toy_rows(20)[:32]
    f = tmp_path / "trl.jsonl"
    f.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": r["question"]}],
                                     "completion": [{"role": "assistant",
                                                     "content": f"\\boxed{{{r['final']}}}"}]}) + "\n" for r in rows))
    out = run(clone, "sft", "--config", "configs/tiny-cpu.yaml", "run_dir=runs/sft-trl", "cluster.dashboard=false",
              f"sft.files=[{f}]", "sft.steps=4", "sft.save_every=4", "sft.batch_size=8", "sft.num_workers=1")
    assert out.returncode == 0, out.stderr[-3000:]
    recs = [json.loads(x) for x in (clone / "runs" / "sft-trl" / "sft" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (clone / "runs" / "sft-trl" / "sft").rglob("config.json")
