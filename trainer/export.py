"""`ssp export RUN_DIR [--step N | --best] --out DIR`: one of a run's kept checkpoints as an HF folder with a model
card (README.md) and the run's config.yaml.

RUN_DIR is an `ssp rl` run directory or an `ssp pipeline` one (whose RL run is RUN_DIR/rl). The checkpoints are
the loadable folders RUN_DIR/checkpoints/step-N listed in checkpoints/index.json (trainer/checkpoints.py). The
card's eval table is the run's held-out evals (eval.jsonl, else summary.json), the exported step's row marked.
Nothing is written unless all of it is: the folder is built beside `--out`, then renamed into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from ssp.io import DataError, building, check_output_dir
from trainer import checkpoints as ckpts

MARK = "**exported**"
KEY_CONFIG = ("model.path", "model.source", "seed", "rl.mode", "rl.batch_problems", "rl.group_size",
              "rl.phases", "rl.eval_k", "rl.eval_every", "learner.lr", "learner.zero_stage",
              "learner.loss.mgpo_lambda", "learner.loss.kl_coef", "sampling.temperature", "engine.max_model_len")
SFT_CONFIG = ("sft.steps", "sft.lr", "sft.batch_size", "spectrum.probe_k")


def find_rl_run(run_dir: Path) -> Path:
    """The RL run directory: RUN_DIR itself (`ssp rl`) or RUN_DIR/rl (`ssp pipeline`, ssp/pipeline.py)."""
    for d in (run_dir, run_dir / "rl"):
        if (d / "checkpoints" / ckpts.INDEX).exists():
            return d
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    raise DataError(f"{run_dir}: no checkpoints/{ckpts.INDEX} here or in {run_dir / 'rl'}; is it an `ssp rl` or "
                    "`ssp pipeline` run directory? (runs before checkpoint indexes have only final-model/)")


def pick(rl_dir: Path, entries: list[dict], step: int | None, best: bool) -> dict:
    """The index entry of --step N, --best (highest held-out Pass@1) or, by default, the last checkpoint."""
    steps = ", ".join(str(e["step"]) for e in entries) or "none"
    if step is not None:
        hit = [e for e in entries if e["step"] == step]
        if not hit:
            raise DataError(f"{rl_dir}: no checkpoint at step {step}; available steps: {steps}")
        entry = hit[0]
    elif best:
        entry = ckpts.best(entries)
        if entry is None:
            raise DataError(f"{rl_dir}: no evaluated checkpoint (none of steps {steps} has a held-out Pass@1 in "
                            f"checkpoints/{ckpts.INDEX}); use --step N or leave --best out for the last one")
    elif entries:
        entry = entries[-1]
    else:
        raise DataError(f"{rl_dir}: checkpoints/{ckpts.INDEX} lists no checkpoint")
    if not (rl_dir / entry["path"] / "config.json").exists():
        raise DataError(f"{rl_dir / entry['path']}: the checkpoint of step {entry['step']} is missing on disk")
    return entry


def eval_records(rl_dir: Path) -> list[dict]:
    """The run's held-out evals by step (a redone step's last one): eval.jsonl, else summary.json's two."""
    path = rl_dir / "eval.jsonl"
    if path.exists():
        by_step = {r["step"]: r for r in map(json.loads, filter(str.strip, path.read_text().splitlines()))}
        return [by_step[s] for s in sorted(by_step)]
    path = rl_dir / "summary.json"
    if path.exists():
        s = json.loads(path.read_text())
        return [{"step": 0, **s["eval_before"]}, {"step": s["steps"], **s["eval_after"]}]
    return []


def eval_table(records: list[dict], step: int) -> list[str]:
    if not records:
        return ["No held-out evaluation was recorded for this run."]
    k = records[-1].get("k", 1)
    lines = [f"Held-out Pass@1 (mean over {k} samples per problem, ± its standard error) and Pass@{k}, per RL step "
             "(step 0 is the model RL started from).", "",
             f"| step | Pass@1 | ± SE | Pass@{k} | problems | |", "|---:|---:|---:|---:|---:|---|"]
    for r in records:
        cells = [str(r["step"]), f"{r['pass1']:.4f}", _num(r.get("pass1_se")), _num(r.get(f"pass{k}")),
                 str(r.get("problems", "")), MARK if r["step"] == step else ""]
        lines.append("| " + " | ".join(cells) + " |")
    if step not in {r["step"] for r in records}:
        lines += ["", f"Step {step} (exported) was not evaluated."]
    return lines


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _get(conf: dict, key: str):
    for part in key.split("."):
        if not isinstance(conf, dict) or part not in conf:
            return None
        conf = conf[part]
    return conf


def count_problems(path: str) -> str:
    """Problems (records) in a data file, or a word saying why not."""
    p = Path(path)
    if path.startswith("hf:") or p.is_dir():
        return "(dataset; not counted)"
    if not p.exists():
        return "(not found here)"
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return str(pq.ParquetFile(p).metadata.num_rows)
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        return str(len(data)) if isinstance(data, list) else "1"
    lines = sum(1 for line in p.open("rb") if line.strip())
    return str(lines - 1 if p.suffix == ".csv" else lines)


def data_lines(conf: dict, index: dict, pipeline: bool) -> list[str]:
    rows = []
    for src in _get(conf, "data.train") or []:
        path = src["path"] if isinstance(src, dict) else src
        rows.append((f"`{path}`" + (f" (split {src['split']})" if isinstance(src, dict) and src.get("split") else ""),
                     count_problems(path)))
    if not rows:
        toy = _get(conf, "data.toy") or {}
        per = toy.get("per_cell", 0) * len(toy.get("subdomains", [])) * len(toy.get("levels", []))
        rows.append((f"toy tasks (preset {toy.get('preset')}; subdomains {', '.join(toy.get('subdomains', []))}; "
                     f"levels {', '.join(map(str, toy.get('levels', [])))})", f"{per} generated"))
    if pipeline:
        rows += [(f"`{f}` (SFT, Spectrum stage)", count_problems(f)) for f in _get(conf, "sft.files") or []]
    lines = ["| training data | problems |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)]
    if "train_problems" in index:
        lines += ["", f"RL drew from {index['train_problems']} training problems after the splits; the held-out eval "
                      f"used {index['held_out_problems']} problems."]
    return lines


def model_card(rl_dir: Path, conf: dict, index: dict, entry: dict, pipeline: bool) -> str:
    base = str(_get(conf, "model.path") or index.get("policy", "unknown"))
    policy = index.get("policy", base)
    tags = ["ssp-rl", "reinforcement-learning", "grpo", "mgpo", "text-generation"]
    keys = KEY_CONFIG + (SFT_CONFIG if pipeline else ())
    config_rows = [f"| `{k}` | `{json.dumps(_get(conf, k))}` |" for k in keys if _get(conf, k) is not None]
    origin = (f"RL started from `{policy}`, the Spectrum stage's merged model (SFT of `{base}`, then the "
              "specialist checkpoints averaged)." if pipeline else f"RL started from `{policy}`.")
    pass1 = f" (held-out Pass@1 {entry['pass1']:.4f})" if entry.get("pass1") is not None else ""
    return "\n".join([
        "---", yaml.safe_dump({"base_model": base, "library_name": "transformers", "tags": tags},
                              sort_keys=False).strip(), "---", "",
        f"# {rl_dir.resolve().parent.name if pipeline else rl_dir.resolve().name} — RL step {entry['step']}", "",
        f"The step-{entry['step']} checkpoint of the {'`ssp pipeline`' if pipeline else '`ssp rl`'} run "
        f"`{rl_dir}`{pass1}. Post-trained with ssp-rl (the Spectrum-to-Signal Principle): MGPO, i.e. GRPO on "
        "verifiable rewards with each group's advantage weighted by exp(-λ·KL(Bernoulli(p) ‖ Bernoulli(0.5))) of "
        "its pass rate p. Load it with `transformers.AutoModelForCausalLM.from_pretrained` or serve it with vLLM; "
        "`config.yaml` is the run's whole configuration.", "",
        "## Base model", "", f"- base model: `{base}` (model.source: {_get(conf, 'model.source')})", f"- {origin}", "",
        "## Training data", "", *data_lines(conf, index, pipeline), "",
        "## Training configuration", "", "| key | value |", "|---|---|", *config_rows, "",
        "## Held-out evaluation", "", *eval_table(eval_records(rl_dir), entry["step"]), ""])


def export(run_dir: Path, out: Path, step: int | None = None, best: bool = False) -> Path:
    """Write the chosen checkpoint of `run_dir` to `out` (new or empty) with README.md and config.yaml."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; export writes a new folder")
    check_output_dir(out, [run_dir], "-", "ssp export")  # never the run folder (or one holding it)
    rl_dir = find_rl_run(run_dir)
    index = ckpts.read_index(rl_dir / "checkpoints")
    entry = pick(rl_dir, sorted(index["checkpoints"], key=lambda e: e["step"]), step, best)
    conf_path = rl_dir / "config.yaml"
    conf = yaml.safe_load(conf_path.read_text()) if conf_path.exists() else {}
    pipeline = rl_dir != run_dir and (run_dir / "spectrum").is_dir()
    with building(out) as tmp:
        shutil.copytree(rl_dir / entry["path"], tmp, dirs_exist_ok=True)
        (tmp / "README.md").write_text(model_card(rl_dir, conf, index, entry, pipeline))
        if conf_path.exists():
            shutil.copyfile(conf_path, tmp / "config.yaml")
    return out
