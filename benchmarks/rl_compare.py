"""MGPO (λ=1) with the scheduler vs GRPO (λ=0) with uniform sampling: same start, same budget, N seeds.

Both arms start from one model (--start, or the Spectrum stage's merged model, run once into OUT/spectrum), train one mixed phase (all toy subdomains, as
configs/tiny-cpu.yaml) and differ only in `learner.loss.mgpo_lambda` and `scheduler.priority`. Reported
per arm: samples used to reach each target held-out Pass@1 (the first eval at or above it; None if never;
several targets side by side, so none is picked after the fact), final Pass@1, and the mean
zero-advantage group fraction. Finished runs are kept, so a rerun only recomputes the table.

Usage: python benchmarks/rl_compare.py [--seeds 3] [--steps 40] [--start HF_DIR] [--target-gains 0.05 0.08 0.10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ARMS = {
    "mgpo_scheduler": ["learner.loss.mgpo_lambda=1.0", "scheduler.priority=mgpo"],
    "mgpo_nocell": ["learner.loss.mgpo_lambda=1.0", "scheduler.priority=mgpo",
                    "scheduler.cell_prior_attempts=0"],
    "grpo_uniform": ["learner.loss.mgpo_lambda=0.0", "scheduler.priority=uniform"],
}


def samples_to_target(run_dir: Path, target: float) -> int | None:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seen = 0
    for r in sorted(recs, key=lambda r: (r["step"], "samples" not in r)):
        seen += r.get("samples", 0)
        if r.get("eval_pass1", -1) >= target and r["step"] > 0:
            return seen
    return None


def start_model(start: str | None, out: Path, overrides: list[str]) -> str:
    """`start`, or the merged model of a Spectrum stage run once into OUT/spectrum (kept for reruns)."""
    if start:
        return start
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.spectrum import run_spectrum

    spec = out / "spectrum"
    if not (spec / "report.json").exists():
        run_spectrum(load_config(SSPConfig, "configs/tiny-cpu.yaml", [f"run_dir={spec}", *overrides]), spec)
    return str(spec / "merged")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--target-gains", type=float, nargs="+", default=[0.05, 0.08, 0.10],
                    help="targets = Pass@1 before + each of these (reported side by side)")
    ap.add_argument("--out", default="runs/bench-rl-compare")
    ap.add_argument("--start", help="the HF model both arms start from (default: a Spectrum stage run into OUT/spectrum)")
    args = ap.parse_args()

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main

    out = Path(args.out)
    base = [f"rl.phases=[{{name: mixed, steps: {args.steps}, max_tokens: 64, subdomains: []}}]",
            "rl.eval_every=5", "rl.checkpoint_every=0", "cluster.dashboard=false", "rl.eval_max_problems=96"]
    start = start_model(args.start, out, base)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for seed in range(args.seeds):
        for arm, extra in ARMS.items():
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
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
