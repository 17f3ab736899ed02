"""Spectrum -> Signal ablation: RL from the Spectrum (merged) model vs from the last SFT checkpoint vs from
the SFT checkpoint with the best probe Pass@1, at equal SFT steps (one SFT run gives all three starts) and
equal RL steps, side by side in one run.

Reported per arm: held-out Pass@1 and Pass@K at the start (RL's eval before step 0), held-out Pass@1 at the
end, and the start's mean probe Pass@1 / Pass@K. The Spectrum stage is run once into OUT/spectrum (or taken
from --spectrum DIR, e.g. a `make demo` run's spectrum/); finished RL runs are kept, so a rerun only prints.

Usage: python benchmarks/ssp_ablation.py [--seeds 1] [--steps 60] [--spectrum runs/demo-X/spectrum]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60, help="RL steps per arm")
    ap.add_argument("--spectrum", help="an existing Spectrum stage directory (with report.json) to start from")
    ap.add_argument("--config", default="configs/tiny-cpu.yaml")
    ap.add_argument("--out", default="runs/bench-ssp-ablation")
    args = ap.parse_args()

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main
    from trainer.spectrum.stage import run_spectrum

    out = Path(args.out)
    common = [f"rl.phases=[{{name: mixed, steps: {args.steps}, max_tokens: 64, subdomains: []}}]",
              "rl.checkpoint_every=0", "rl.eval_every=0", "cluster.dashboard=false"]
    spec_dir = Path(args.spectrum) if args.spectrum else out / "spectrum"
    if not (spec_dir / "report.json").exists():
        run_spectrum(load_config(SSPConfig, args.config, [f"run_dir={spec_dir}", *common]), spec_dir)
    report = json.loads((spec_dir / "report.json").read_text())
    starts = {"spectrum": str(spec_dir / "merged"),
              "last_ckpt": report["checkpoints"][report["last_checkpoint"]],
              "best_pass1_ckpt": report["checkpoints"][report["best_pass1_checkpoint"]]}
    probe_name = {"spectrum": "merged", "last_ckpt": report["last_checkpoint"],
                  "best_pass1_ckpt": report["best_pass1_checkpoint"]}
    print(f"starts: {starts}")
    results: dict[str, list[dict]] = {arm: [] for arm in starts}
    for seed in range(args.seeds):
        for arm, start in starts.items():
            same = next(a for a in starts if starts[a] == start)  # an arm whose start equals an earlier one's
            if same != arm:                                        # is that run (same start, same seeds)
                print(f"{arm}: same start as {same} ({start}); its runs are reused")
                results[arm].append(results[same][seed])
                continue
            run = out / f"{arm}-seed{seed}"
            if not (run / "summary.json").exists():
                conf = load_config(SSPConfig, args.config, [f"run_dir={run}", f"learner.seed={seed}",
                                                            f"scheduler.seed={seed}", f"engine.seed={seed}", *common])
                t0 = time.time()
                rl_main(conf, resume=(run / "metrics.jsonl").exists(), policy=start)
                print(f"{arm} seed {seed}: {(time.time() - t0) / 60:.1f} min")
            results[arm].append(json.loads((run / "summary.json").read_text()))

    k = report["k"]
    figures: dict[str, float] = {}
    print(f"\n{'arm':16s} {'start':>18s} {'probe P@1':>9s} {f'probe P@{k}':>9s} {'held P@1':>9s} "
          f"{'held P@8':>9s} {'final P@1':>9s} {'gain':>7s}")
    for arm, runs in results.items():
        name = probe_name[arm]
        p1 = statistics.mean(report["pass_at_1"][name].values())
        pk = statistics.mean(report["pass_at_k"][name].values())
        before = statistics.mean(r["pass1_before"] for r in runs)
        before_k = statistics.mean(r["eval_before"][f"pass{r['eval_before']['k']}"] for r in runs)
        final = statistics.mean(r["pass1_after"] for r in runs)
        print(f"{arm:16s} {name:>18s} {p1:9.3f} {pk:9.3f} {before:9.3f} {before_k:9.3f} {final:9.3f} "
              f"{final - before:7.3f}   per seed: {[round(r['pass1_after'], 3) for r in runs]}")
        figures.update({f"pass1_final_{arm}": round(final, 4), f"pass1_start_{arm}": round(before, 4),
                        f"heldout_pass8_start_{arm}": round(before_k, 4),
                        f"probe_pass{k}_start_{arm}": round(pk, 4), f"probe_pass1_start_{arm}": round(p1, 4)})
    figures.update(seeds=args.seeds, rl_steps=args.steps)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
