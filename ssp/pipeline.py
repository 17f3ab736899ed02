"""`ssp pipeline` (what `make demo` runs): the whole Spectrum-to-Signal Principle, stage by stage.

    model (built or converted, model.source)
               -> Spectrum (SFT on Ray Train, probe, merge; held-out eval of the base and merged model)
               -> Signal (`ssp rl` from the merged model; held-out eval before and after)
               -> the final checkpoint served (`ssp serve`'s app) for one held-out question
               -> summary.json, summary.png, a table per stage

Each stage keeps what it finished in RUN_DIR (spectrum/, rl/); a failed stage says which and why, and
rerunning the same command with the same run_dir continues from there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path


class StageFailed(RuntimeError):
    pass


def _stage(name: str, fn, times: dict, path: Path):
    print(f"\n=== pipeline stage: {name} ===", flush=True)
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as e:
        raise StageFailed(f"pipeline: stage '{name}' failed: {type(e).__name__}: {e}\n"
                          f"what finished is kept in {path.parent}; rerun the same command to continue") from e
    times[name] = times.get(name, 0.0) + time.perf_counter() - t0
    return result


def run_pipeline(conf) -> dict:
    from trainer.rl import main as rl_main
    from trainer.rl import save_config
    from trainer.spectrum.stage import run_spectrum

    run_dir = Path(conf.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(conf, run_dir)
    times_path = run_dir / "stage_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    from trainer.models.ensure import ensure_model

    _stage("model", lambda: ensure_model(conf), times, run_dir)  # built or converted at first use (model.source)
    spec = _stage("spectrum", lambda: run_spectrum(conf, run_dir / "spectrum"), times, run_dir / "spectrum")
    times_path.write_text(json.dumps(times))
    name = conf.tracking.run_name or run_dir.resolve().name  # the RL stage's tracker run: "<run>/rl"
    rl_conf = dataclasses.replace(conf, run_dir=str(run_dir / "rl"),
                                  tracking=dataclasses.replace(conf.tracking, run_name=f"{name}/rl"))
    rl_done = (run_dir / "rl" / "summary.json").exists()
    if rl_done:
        rl = json.loads((run_dir / "rl" / "summary.json").read_text())
    else:
        resume = (run_dir / "rl" / "metrics.jsonl").exists()
        rl = _stage("rl", lambda: rl_main(rl_conf, resume=resume, policy=str(run_dir / "spectrum" / "merged")),
                    times, run_dir / "rl")
    times_path.write_text(json.dumps(times))
    served = _stage("serve", lambda: serve_demo(conf, run_dir / "rl" / "final-model"), times, run_dir / "rl")
    times_path.write_text(json.dumps(times))
    summary = summarise(spec, rl, times)
    summary["served"] = served
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(summary, run_dir / "summary.png")
    track(conf, run_dir, summary)
    print(table(summary))
    print(f"summary: {run_dir / 'summary.json'}  plots: {run_dir / 'summary.png'}, {run_dir / 'spectrum'}/*.png, "
          f"{run_dir / 'rl' / 'curves.png'}")
    return summary


def track(conf, run_dir: Path, summary: dict) -> None:
    """The pipeline's own tracker run (tracking.backends), beside the RL stage's "<run>/rl": the config, the
    summary's figures, its table and every PNG of the run (summary, the Spectrum stage's, the RL curves)."""
    if not conf.tracking.backends:
        return
    from ssp.config import to_dict
    from trainer.tracking import make_trackers

    tconf = dataclasses.replace(conf.tracking, run_name=conf.tracking.run_name or run_dir.resolve().name)
    trackers = make_trackers(tconf, run_dir, to_dict(conf))
    figures = {k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    pngs = [run_dir / "summary.png", *sorted((run_dir / "spectrum").glob("*.png")), run_dir / "rl" / "curves.png"]
    for t in trackers:
        try:
            t.log_metrics(figures, step=0)
            t.log_table("summary", [{"figure": k, "value": v} for k, v in figures.items()])
            for png in (p for p in pngs if p.exists()):
                t.log_artifact(png)
        finally:
            t.close()


def serve_demo(conf, model: Path) -> dict:
    """The final checkpoint behind `ssp serve`'s endpoint for one held-out question, then shut down."""
    from serve.app import ask_once
    from trainer.data.splits import load_problems_for

    question = load_problems_for(conf)[1][0]
    out = ask_once(str(model), conf, f"{question.prompt}\n{conf.data.instruction}".strip())
    print(f"served {model} at {out['url']} (ready in {out['ready_s']:.0f} s), asked one held-out question:\n"
          f"  Q: {question.prompt}\n  A: {out['answer']!r}  (reasoning {out['reasoning']!r}; gold {question.answer})")
    return {**out, "gold": question.answer}


def summarise(spec: dict, rl: dict, times: dict) -> dict:
    base, after = spec["heldout"]["base"], rl["eval_after"]
    k = after["k"]
    per_stage = {}
    for name, ev in (("base", base), ("spectrum", spec["heldout"]["merged"]), ("rl_start", rl["eval_before"]),
                     ("signal", after)):
        subs = sorted(key.split("/")[1] for key in ev if key.startswith("pass1/"))
        per_stage[name] = {"pass1": ev["pass1"], f"pass{k}": ev[f"pass{k}"],
                           **{f"pass1/{s}": ev[f"pass1/{s}"] for s in subs},
                           **{f"pass{k}/{s}": ev[f"pass{k}/{s}"] for s in subs}}
    return {
        "pass1_before": base["pass1"], "pass1_spectrum": spec["heldout"]["merged"]["pass1"],
        "pass1_rl_start": rl["pass1_before"], "pass1_after": rl["pass1_after"], "k": k,
        # the Signal stage's gain over the same held-out problems in units of its paired standard error
        "pass1_gain_se": rl.get("pass1_gain_se"), "pass1_gain_paired_se": rl.get("pass1_gain_paired_se"),
        f"pass{k}_rl_start": rl["eval_before"][f"pass{k}"], f"pass{k}_after": after[f"pass{k}"],
        # share of responses cut at max_tokens: the last training step's, and the final held-out eval's
        "truncated_after": rl["truncated_after"], "heldout_truncated_after": after.get("truncation"),
        # standard error of each Pass@1 over the held-out problems (the eval's own noise)
        "pass1_se": {name: ev.get("pass1_se") for name, ev in (("before", base), ("spectrum", spec["heldout"]["merged"]),
                                                               ("rl_start", rl["eval_before"]), ("after", after))},
        "spectrum": {key: spec[key] for key in ("specialists", "merged_mean_pass_at_k", "best_single",
                                                "best_single_mean_pass_at_k", "merged_mean_pass_at_1", "fusion_holds")},
        "heldout": per_stage, "pass1_by_level": {name: ev["pass1_by_level"] for name, ev in
                                                  (("rl_start", rl["eval_before"]), ("signal", after))
                                                  if "pass1_by_level" in ev},
        "stage_seconds": times, "spectrum_seconds": spec["times"],
        "rl_time_split_s": {key: rl[key] for key in ("time_generate", "time_verify", "time_train", "time_sync")},
        "total_minutes": sum(times.values()) / 60,
    }


def table(s: dict) -> str:
    k = s["k"]
    subs = sorted(key.split("/")[1] for key in s["heldout"]["base"] if key.startswith("pass1/"))
    lines = [f"{'held-out':12s}{'Pass@1':>8s}{f'Pass@{k}':>8s}  " + "  ".join(f"{x:>11s}" for x in subs)]
    for name, ev in s["heldout"].items():
        cells = "  ".join(f"{ev[f'pass1/{x}']:.2f}/{ev[f'pass{k}/{x}']:.2f}".rjust(11) for x in subs)
        lines.append(f"{name:12s}{ev['pass1']:8.3f}{ev[f'pass{k}']:8.3f}  {cells}")
    for name, by in s.get("pass1_by_level", {}).items():
        lines.append(f"{name:12s}Pass@1 by level: " + "  ".join(f"L{lv} {v:.2f}" for lv, v in by.items()))
    if s.get("pass1_gain_se") is not None:
        lines.append(f"Signal stage: Pass@1 {s['pass1_rl_start']:.3f} -> {s['pass1_after']:.3f} = "
                     f"{s['pass1_gain_se']:+.1f} paired standard errors; truncated at the end "
                     f"{s['truncated_after']:.2f} (train), {s['heldout_truncated_after'] or 0:.2f} (held-out)")
    lines.append("stage minutes: " + ", ".join(f"{n} {v / 60:.1f}" for n, v in s["stage_seconds"].items())
                 + f" (total {s['total_minutes']:.1f})")
    return "\n".join(lines)


def plot(s: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = s["k"]
    stages = list(s["heldout"])
    subs = ["all"] + sorted(key.split("/")[1] for key in s["heldout"]["base"] if key.startswith("pass1/"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, m in zip(axes, ("pass1", f"pass{k}")):
        width = 0.8 / len(stages)
        for i, st in enumerate(stages):
            ev = s["heldout"][st]
            ys = [ev[m] if x == "all" else ev[f"{m}/{x}"] for x in subs]
            ax.bar([j + i * width for j in range(len(subs))], ys, width, label=st)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(subs))], subs)
        ax.set_ylim(0, 1)
        ax.set_title(f"held-out {m.replace('pass', 'Pass@')} per stage")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
