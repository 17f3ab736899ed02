"""The 2x2 ablation: MGPO (λ=1) or GRPO (λ=0), with the scheduler or uniform sampling; same start, same
budget, N seeds.

Every arm starts from one model (--start, or a Spectrum stage run once into OUT/spectrum: its merged model, or
its SFT checkpoint at --sft-step), trains one mixed phase (all toy subdomains, as configs/tiny-cpu.yaml) and
differs only in `learner.loss.mgpo_lambda` and the `scheduler` settings. Reported
per arm: samples used to reach each target held-out Pass@1 (the first eval at or above it; None if never;
several targets side by side, so none is picked after the fact), final Pass@1, and the mean
zero-advantage group fraction; and `mgpo_samples_vs_grpo`: the samples MGPO + scheduler needs to reach uniform
GRPO's best held-out Pass@1 over those GRPO needed for it, summed over seeds (None unless every seed reaches
it). Finished runs are kept, so a rerun only recomputes the table.

Usage: python benchmarks/rl_compare.py [--seeds 3] [--steps 40] [--sft-step N | --start HF_DIR] [--arms ...]
       [--target-gains 0.05 0.08 0.10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

SCHEDULER = ["scheduler.priority=mgpo"]
ARMS = {  # the 2x2 ablation: loss (MGPO lambda=1 | GRPO lambda=0) x sampling (the scheduler | uniform)
    "mgpo_scheduler": ["learner.loss.mgpo_lambda=1.0", *SCHEDULER],
    "mgpo_uniform": ["learner.loss.mgpo_lambda=1.0", "scheduler.priority=uniform"],
    "grpo_scheduler": ["learner.loss.mgpo_lambda=0.0", *SCHEDULER],
    "grpo_uniform": ["learner.loss.mgpo_lambda=0.0", "scheduler.priority=uniform"],
}


def evals(run_dir: Path) -> list[tuple[int, float]]:
    """(samples seen, held-out Pass@1) at each evaluation after step 0."""
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seen, out = 0, []
    for r in sorted(recs, key=lambda r: (r["step"], "samples" not in r)):
        seen += r.get("samples", 0)
        if "eval_pass1" in r and r["step"] >= 0:
            out.append((seen, r["eval_pass1"]))
    return out


def samples_to_best(run: Path, ref: Path) -> tuple[int | None, int]:
    """Samples `run` needs to reach `ref`'s best held-out Pass@1, and the samples `ref` needed for it."""
    ref_evals = evals(ref)
    best = max(p for _, p in ref_evals)
    ref_n = next(n for n, p in ref_evals if p == best)
    return next((n for n, p in evals(run) if p >= best), None), ref_n


def samples_to_target(run_dir: Path, target: float) -> int | None:
    return next((n for n, p in evals(run_dir) if p >= target), None)


def start_model(start: str | None, out: Path, overrides: list[str], sft_step: int | None = None) -> str:
    """`start`; else a Spectrum stage run once into OUT/spectrum (kept for reruns): its merged model, or its
    SFT checkpoint at `sft_step` (an earlier, weaker model with more room to improve)."""
    if start:
        return start
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.spectrum.stage import run_spectrum

    spec = out / "spectrum"
    if not (spec / "report.json").exists():
        run_spectrum(load_config(SSPConfig, "configs/tiny-cpu.yaml", [f"run_dir={spec}", *overrides]), spec)
    if sft_step:
        return str(spec / "sft" / "ray-train" / f"checkpoint-{sft_step:06d}")
    return str(spec / "merged")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--target-gains", type=float, nargs="+", default=[0.05, 0.08, 0.10],
                    help="targets = Pass@1 before + each of these (reported side by side)")
    ap.add_argument("--out", default="runs/bench-rl-compare")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--sft-step", type=int, help="start from this SFT checkpoint of the Spectrum run, not the merge")
    ap.add_argument("--start", help="the HF model both arms start from (default: a Spectrum stage run into OUT/spectrum)")
    args = ap.parse_args()

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main

    out = Path(args.out)
    base = [f"rl.phases=[{{name: mixed, steps: {args.steps}, max_tokens: 64, subdomains: []}}]",
            "rl.eval_every=5", "rl.checkpoint_every=0", "cluster.dashboard=false", "rl.eval_max_problems=96"]
    start = start_model(args.start, out, base, args.sft_step)
    arms = {a: ARMS[a] for a in args.arms}
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in range(args.seeds):
        for arm, extra in arms.items():
            run = out / f"{arm}-seed{seed}"
            if not (run / "summary.json").exists():
                conf = load_config(SSPConfig, "configs/tiny-cpu.yaml",
                                   [f"run_dir={run}", f"learner.seed={seed}", f"scheduler.seed={seed}",
                                    f"engine.seed={seed}", *base, *extra])
                t0 = time.time()
                rl_main(conf, policy=start)
                print(f"{arm} seed {seed}: {(time.time() - t0) / 60:.1f} min")
            s = json.loads((run / "summary.json").read_text())
            s["to_target"] = {g: samples_to_target(run, s["pass1_before"] + g) for g in args.target_gains}
            results[arm].append(s)

    figures = {}
    heads = "".join(f"{'+' + str(round(g * 100)) + ' pts: n / mean samples':>28s}" for g in args.target_gains)
    print(f"\n{'arm':16s} {'pass1 before':>12s} {'pass1 after':>12s} {'gain':>7s} {'zero-adv':>9s}{heads}")
    for arm, runs in results.items():
        row = {"pass1_before": statistics.mean(r["pass1_before"] for r in runs),
               "pass1_after": statistics.mean(r["pass1_after"] for r in runs),
               "zero_adv_frac": statistics.mean(r["zero_adv_frac_mean"] for r in runs)}
        cells = ""
        for g in args.target_gains:
            reached = [r["to_target"][g] for r in runs if r["to_target"][g] is not None]
            tag = f"{round(g * 100)}pts"
            row[f"reached_{tag}"] = len(reached)
            row[f"samples_to_target_{tag}"] = statistics.mean(reached) if reached else None
            cells += f"{f'{len(reached)}/{len(runs)} / ' + (f'{statistics.mean(reached):.0f}' if reached else '-'):>28s}"
        print(f"{arm:16s} {row['pass1_before']:12.3f} {row['pass1_after']:12.3f} "
              f"{row['pass1_after'] - row['pass1_before']:7.3f} {row['zero_adv_frac']:9.3f}{cells}")
        print(f"{'':16s} per seed: " + "; ".join(str([r["to_target"][g] for r in runs]) for g in args.target_gains))
        figures.update({f"{arm}_{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    if {"mgpo_scheduler", "grpo_uniform"} <= set(arms):  # MGPO + scheduler vs uniform GRPO's best, per seed
        pairs = [samples_to_best(out / f"mgpo_scheduler-seed{i}", out / f"grpo_uniform-seed{i}")
                 for i in range(args.seeds)]
        print(f"samples to uniform GRPO's best held-out Pass@1, per seed (MGPO + scheduler, GRPO): {pairs}")
        reached = [(m, g) for m, g in pairs if m is not None]
        figures["mgpo_reached_grpo_best"] = len(reached)
        figures["mgpo_samples_vs_grpo"] = (round(sum(m for m, _ in reached) / sum(g for _, g in reached), 3)
                                           if len(reached) == len(pairs) else None)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
