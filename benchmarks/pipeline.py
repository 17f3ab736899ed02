"""The pipelined RL step (rl.pipeline=true: each group verified as soon as its engine finishes it) against the
sequential one (generate all, then verify all), side by side in one run: same start model, problems, seed
and settings, arms alternated `--rounds` times so the machine's drift hits both.

Per arm: median s/step, samples/s, the step split (generate, verify left after generation, train, sync,
other = orchestration) and each part's share of the step. Last line, JSON: `pipeline_samples_per_s_vs_seq`,
`verify_exposed_fraction`, `sync_fraction`, `other_fraction` (of the pipelined arm) and the sequential
arm's `verify_fraction_seq`.

Usage: python benchmarks/pipeline.py [--steps 20] [--rounds 2] [--start HF_DIR] [--out runs/bench-pipeline]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ARMS = {"sequential": ["rl.pipeline=false"], "pipelined": ["rl.pipeline=true"]}
PARTS = ("generate", "verify", "train", "sync")


def figures(run: Path) -> dict:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "step_wall_s" in r and r["step"] > 0]  # step 0 warms the engines up
    wall = sum(r["step_wall_s"] for r in steps)
    out = {"s_per_step": statistics.median(r["step_wall_s"] for r in steps),
           "samples_per_s": sum(r["samples"] for r in steps) / wall}
    for p in PARTS:
        out[f"{p}_s"] = statistics.median(r.get(f"time_{p}", 0.0) for r in steps)
        out[f"{p}_fraction"] = sum(r.get(f"time_{p}", 0.0) for r in steps) / wall
    out["other_fraction"] = 1 - sum(out[f"{p}_fraction"] for p in PARTS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-pipeline")
    ap.add_argument("--start", help="HF model both arms start from (default: a Spectrum stage run into OUT/spectrum)")
    args = ap.parse_args()

    from ablate import start_model

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main

    out = Path(args.out)
    base = [f"rl.phases=[{{name: mixed, steps: {args.steps}, max_tokens: 64, subdomains: []}}]",
            "rl.eval_every=0", "rl.checkpoint_every=0", "cluster.dashboard=false", "rl.eval_max_problems=32"]
    start = start_model(args.start, out, base)  # benchmarks/ablate.py's
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for rnd in range(args.rounds):
        for arm, extra in (ARMS.items() if rnd % 2 == 0 else reversed(ARMS.items())):
            run = out / f"{arm}-{rnd}"
            if not (run / "summary.json").exists():
                t0 = time.time()
                rl_main(load_config(SSPConfig, "configs/tiny-cpu.yaml", [f"run_dir={run}", *base, *extra]),
                        policy=start)
                print(f"{arm} round {rnd}: {(time.time() - t0) / 60:.1f} min", flush=True)
            runs[arm].append(figures(run))

    mean = {arm: {k: statistics.mean(f[k] for f in fs) for k in fs[0]} for arm, fs in runs.items()}
    print(f"\n{'arm':12s} {'s/step':>7s} {'samples/s':>10s}" + "".join(f" {p + ' s (%)':>17s}" for p in PARTS)
          + f" {'other %':>8s}")
    for arm, m in mean.items():
        print(f"{arm:12s} {m['s_per_step']:7.2f} {m['samples_per_s']:10.1f}"
              + "".join(f" {m[p + '_s']:9.2f} ({m[p + '_fraction'] * 100:4.1f})" for p in PARTS)
              + f" {m['other_fraction'] * 100:8.1f}")
    seq, pipe = mean["sequential"], mean["pipelined"]
    print(json.dumps({"pipeline_samples_per_s_vs_seq": round(pipe["samples_per_s"] / seq["samples_per_s"], 3),
                      "verify_exposed_fraction": round(pipe["verify_fraction"], 3),
                      "sync_fraction": round(pipe["sync_fraction"], 3),
                      "other_fraction": round(pipe["other_fraction"], 3),
                      "verify_fraction_seq": round(seq["verify_fraction"], 3),
                      "s_per_step_seq": round(seq["s_per_step"], 3), "s_per_step_pipe": round(pipe["s_per_step"], 3)}))


if __name__ == "__main__":
    main()
