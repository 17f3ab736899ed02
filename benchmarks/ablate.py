"""What each part of the recipe buys, on the graded toy pool: named RL arms over one start and one problem set,
N seeds each, with 95% intervals (bootstrap over held-out problems and seeds).

Arms (every one trains the same steps from the same Spectrum stage, seeds 0..N-1):
- the 2x2: MGPO (lambda=1) or GRPO (lambda=0) x the scheduler (configs/tiny-cpu.yaml's: Thompson, fitted prior,
  per-level cells) or uniform sampling, all from the merged model;
- the start: MGPO + scheduler from the last SFT checkpoint and from the checkpoint with the best probe Pass@1
  (the merged start is the mgpo_scheduler arm; a start equal to another's reuses its runs).
And the Spectrum claim itself: the merged model vs the best single checkpoint on mean probe Pass@K.

Figures (the last line, one JSON object): per arm final held-out Pass@1 / Pass@K and the zero-advantage
share; `zero_adv_scheduler`, `zero_adv_uniform`; `mgpo_scheduler_samples_vs_grpo_uniform` (samples MGPO +
scheduler needs for its seed-mean eval curve to reach uniform GRPO's final seed-mean Pass@1, over the samples
GRPO used; null if it never does); `merged_minus_best_single_passk`; `rl_from_merged_minus_from_last` and
`..._from_best_pass1` (final Pass@1); the start pool's pass-rate histogram (`start_pass_hist`, the uniform arms'
first step: what a run samples before it has learned anything) and `start_frac_between` (share strictly
between 0.1 and 0.9); each interval as `_lo`/`_hi`. Also a table and OUT/ablate.png (error bars).

The Spectrum stage is run once into OUT/spectrum, or taken from --spectrum (a `make demo` run's spectrum/);
finished RL runs are kept, so a rerun only recomputes the figures.

Usage: python benchmarks/ablate.py [--seeds 3] [--steps 40] [--spectrum runs/demo-X/spectrum] [--out DIR]
       [--arms ...] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

SCHED = ["scheduler.priority=mgpo"]
UNIFORM = ["scheduler.priority=uniform"]
MGPO, GRPO = ["learner.loss.mgpo_lambda=1.0"], ["learner.loss.mgpo_lambda=0.0"]
ARMS = {  # name: (start, overrides)
    "mgpo_scheduler": ("merged", MGPO + SCHED), "grpo_scheduler": ("merged", GRPO + SCHED),
    "mgpo_uniform": ("merged", MGPO + UNIFORM), "grpo_uniform": ("merged", GRPO + UNIFORM),
    "from_last": ("last", MGPO + SCHED), "from_best_pass1": ("best_pass1", MGPO + SCHED),
}
B = 2000  # bootstrap replicates


def load_run(run: Path) -> dict:
    """Per eval: (samples seen before it, {problem: correct of k}); per step: zero-adv share, group counts."""
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "samples" in r]
    total = sum(r["samples"] for r in steps)
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    seen = [sum(x["samples"] for x in steps if x["step"] < e["step"]) for e in evals]  # eval at s: after s steps
    return {"evals": [(n, e["per_problem"]) for n, e in zip(seen, evals)], "k": evals[-1]["k"],
            "zero_adv": [r["zero_adv_frac"] for r in steps], "first_groups": steps[0].get("group_correct", []),
            "group": steps[0]["samples"] // max(len(steps[0].get("group_correct", [])), 1), "samples": total}


def passk(c: np.ndarray, n: int, k: int) -> np.ndarray:
    return 1.0 - np.array([math.comb(n - x, k) / math.comb(n, k) for x in c])


def matrix(runs: list[dict], ids: list[str]) -> np.ndarray:
    """[seed, eval, problem] correct counts."""
    return np.array([[[ev[i] for i in ids] for _, ev in r["evals"]] for r in runs], dtype=float)


def ci(samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval; no interpolation, so a replicate that never reached a target (inf) stays inf."""
    return float(np.percentile(samples, 2.5, method="lower")), float(np.percentile(samples, 97.5, method="higher"))


def crossing(curve: np.ndarray, samples: list[int], target: float) -> float:
    hit = np.nonzero(curve >= target)[0]
    return float(samples[hit[0]]) if len(hit) else math.inf


def start_model(start: str | None, out: Path, overrides: list[str], sft_step: int | None = None) -> str:
    """`start`; else a Spectrum stage run once into OUT/spectrum (kept for reruns): its merged model, or its
    SFT checkpoint at `sft_step` (an earlier, weaker model). The other benchmarks' start (vs_trl, pipeline)."""
    if start:
        return start
    spec = spectrum(out / "spectrum", "configs/tiny-cpu.yaml", overrides)
    return str(spec / "sft" / "ray-train" / f"checkpoint-{sft_step:06d}") if sft_step else str(spec / "merged")


def spectrum(spec: Path, config: str, overrides: list[str]) -> Path:
    """The Spectrum stage in `spec`, run unless its report is there."""
    if not (spec / "report.json").exists():
        from ssp.config import load_config
        from ssp.tree import SSPConfig
        from trainer.spectrum.stage import run_spectrum

        run_spectrum(load_config(SSPConfig, config, [f"run_dir={spec}", *overrides]), spec)
    return spec


def run_arms(args, starts: dict[str, str]) -> dict[str, list[dict]]:
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main

    base = [f"rl.phases=[{{name: mixed, steps: {args.steps}, max_tokens: 64, subdomains: []}}]",
            f"rl.eval_every={args.eval_every}", "rl.checkpoint_every=0", "cluster.dashboard=false", *args.set]
    out, runs = Path(args.out), {}
    for arm in args.arms:
        start, extra = ARMS[arm]
        same = next(a for a in args.arms if ARMS[a][1] == extra and starts[ARMS[a][0]] == starts[start])
        if same != arm:
            print(f"{arm}: the same start and settings as {same}; its runs are reused")
            runs[arm] = runs[same]
            continue
        runs[arm] = []
        for seed in range(args.seeds):
            run = out / f"{arm}-seed{seed}"
            if not (run / "summary.json").exists():
                conf = load_config(SSPConfig, args.config, [f"run_dir={run}", f"learner.seed={seed}",
                                                            f"scheduler.seed={seed}", f"engine.seed={seed}",
                                                            *base, *extra])
                t0 = time.time()
                rl_main(conf, resume=(run / "metrics.jsonl").exists(), policy=starts[start])
                print(f"{arm} seed {seed}: {(time.time() - t0) / 60:.1f} min", flush=True)
            runs[arm].append(load_run(run))
    return runs


def probe_figures(spec: Path, rng: np.random.Generator) -> dict:
    """Merged minus the best single checkpoint (by the report) on mean probe Pass@K, bootstrap over problems."""
    report = json.loads((spec / "report.json").read_text())
    rows = {r["model"]: r for r in map(json.loads, (spec / "probe.jsonl").read_text().splitlines())}
    k, best = report["k"], report["best_single"]
    if "per_problem" not in rows["merged"]:
        return {"merged_minus_best_single_passk": report["merged_mean_pass_at_k"] - report["best_single_mean_pass_at_k"]}
    ids = sorted(rows["merged"]["per_problem"])
    n = rows["merged"]["n"]
    m, b = (passk(np.array([rows[x]["per_problem"][i] for i in ids]), n, k) for x in ("merged", best))
    subs = {s: [j for j, i in enumerate(ids) if i.startswith(f"toy-{s}-")] for s in report["pass_at_k"]["merged"]}
    subs = {s: js for s, js in subs.items() if js} or {"all": list(range(len(ids)))}

    def diff(idx: dict[str, np.ndarray]) -> float:
        return float(np.mean([m[j].mean() - b[j].mean() for j in idx.values()]))

    point = diff({s: np.array(js) for s, js in subs.items()})
    boot = np.array([diff({s: rng.choice(js, len(js)) for s, js in subs.items()}) for _ in range(B)])
    lo, hi = ci(boot)
    return {"merged_minus_best_single_passk": point, "merged_minus_best_single_passk_lo": lo,
            "merged_minus_best_single_passk_hi": hi, "best_single": best, "probe_k": k}


def figures(runs: dict[str, list[dict]], rng: np.random.Generator) -> tuple[dict, dict]:
    ids = sorted(runs[next(iter(runs))][0]["evals"][-1][1])
    mats = {a: matrix(rs, ids) for a, rs in runs.items()}
    k = next(iter(runs.values()))[0]["k"]
    boot_p = [rng.choice(len(ids), len(ids)) for _ in range(B)]
    boot_s = {a: [rng.choice(len(rs), len(rs)) for _ in range(B)] for a, rs in runs.items()}

    def stat(fn):  # fn(arm -> [seed, eval, problem] matrix) -> float; point, lo, hi
        point = fn({a: m for a, m in mats.items()})
        boot = np.array([fn({a: m[boot_s[a][i]][:, :, boot_p[i]] for a, m in mats.items()}) for i in range(B)])
        return (point, *ci(boot))

    table, out = {}, {}
    for arm in runs:
        p1 = stat(lambda ms, a=arm: float(ms[a][:, -1].mean() / k))
        pk = stat(lambda ms, a=arm: float((ms[a][:, -1] > 0).mean()))
        z = [x for r in runs[arm] for x in r["zero_adv"]]
        zb = [np.mean([x for s in rng.choice(len(runs[arm]), len(runs[arm]))
                       for x in rng.choice(runs[arm][s]["zero_adv"], len(runs[arm][s]["zero_adv"]))])
              for _ in range(B)]
        table[arm] = {"pass1": p1, f"pass{k}": pk, "zero_adv": (float(np.mean(z)), *ci(np.array(zb))),
                      "start_pass1": float(mats[arm][:, 0].mean() / k)}
        for name, v in (("pass1", p1), (f"pass{k}", pk), ("zero_adv", table[arm]["zero_adv"])):
            out.update({f"{arm}_{name}": v[0], f"{arm}_{name}_lo": v[1], f"{arm}_{name}_hi": v[2]})
    for which, arm in (("scheduler", "mgpo_scheduler"), ("uniform", "mgpo_uniform")):
        if arm in table:
            out.update(dict(zip((f"zero_adv_{which}", f"zero_adv_{which}_lo", f"zero_adv_{which}_hi"),
                                table[arm]["zero_adv"])))
    if {"mgpo_scheduler", "grpo_uniform"} <= set(runs):
        seen = [n for n, _ in runs["mgpo_scheduler"][0]["evals"]]
        grpo_total = float(np.mean([r["samples"] for r in runs["grpo_uniform"]]))

        def ratio(ms) -> float:
            target = ms["grpo_uniform"][:, -1].mean() / k
            return crossing(ms["mgpo_scheduler"].mean(axis=(0, 2)) / k, seen, target) / grpo_total

        v = stat(ratio)
        out.update(mgpo_scheduler_samples_vs_grpo_uniform=v[0], mgpo_scheduler_samples_vs_grpo_uniform_lo=v[1],
                   mgpo_scheduler_samples_vs_grpo_uniform_hi=v[2])
    for other in ("from_last", "from_best_pass1"):
        if {"mgpo_scheduler", other} <= set(runs):
            v = stat(lambda ms, o=other: float((ms["mgpo_scheduler"][:, -1].mean() - ms[o][:, -1].mean()) / k))
            key = f"rl_from_merged_minus_{other}"
            out.update({key: v[0], f"{key}_lo": v[1], f"{key}_hi": v[2]})
    first = [c for a in ("mgpo_uniform", "grpo_uniform") if a in runs for r in runs[a] for c in r["first_groups"]]
    if first:
        g = next(iter(runs.values()))[0]["group"]
        hist = np.bincount(first, minlength=g + 1)
        out.update(start_pass_hist=hist.tolist(), start_groups=len(first),
                   start_frac_between=float(np.mean([0.1 < c / g < 0.9 for c in first])))
    return table, out


def plot(table: dict, runs: dict, k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(table)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in ((axes[0], "pass1", "final held-out Pass@1"), (axes[1], "zero_adv", "zero-advantage share")):
        v = np.array([table[a][key] for a in arms])
        ax.bar(range(len(arms)), v[:, 0], yerr=[v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], capsize=4, color="C0")
        if key == "pass1":
            ax.scatter(range(len(arms)), [table[a]["start_pass1"] for a in arms], color="k", marker="_", s=400,
                       label="start", zorder=3)
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title} (95% bootstrap interval)")
    for arm in arms:
        if not runs[arm]:
            continue
        xs = [n for n, _ in runs[arm][0]["evals"]]
        ys = np.mean([[np.mean(list(ev.values())) / k for _, ev in r["evals"]] for r in runs[arm]], axis=0)
        axes[2].plot(xs, ys, marker="o", label=arm)
    axes[2].set_xlabel("samples")
    axes[2].set_title("held-out Pass@1, mean over seeds")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="RL steps per run")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--spectrum", help="an existing Spectrum stage directory (with report.json) to start from")
    ap.add_argument("--config", default="configs/tiny-cpu.yaml")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run, e.g. data.toy.preset=classic data.toy.levels=[1,2]")
    ap.add_argument("--out", default="runs/bench-ablate")
    args = ap.parse_args()

    out = Path(args.out)
    spec = spectrum(Path(args.spectrum) if args.spectrum else out / "spectrum", args.config,
                    ["cluster.dashboard=false", *args.set])
    report = json.loads((spec / "report.json").read_text())
    starts = {"merged": str(spec / "merged"), "last": report["checkpoints"][report["last_checkpoint"]],
              "best_pass1": report["checkpoints"][report["best_pass1_checkpoint"]]}
    print(f"starts: {starts}", flush=True)
    runs = run_arms(args, starts)
    rng = np.random.default_rng(0)
    table, figs = figures(runs, rng)
    figs.update(probe_figures(spec, rng))
    k = next(iter(runs.values()))[0]["k"]
    print(f"\n{'arm':16s} {'start P@1':>9s} {'final Pass@1 [95%]':>24s} {f'final Pass@{k} [95%]':>24s} "
          f"{'zero-adv [95%]':>22s}")
    for arm, t in table.items():
        cell = "".join(f"{t[m][0]:8.3f} [{t[m][1]:.3f},{t[m][2]:.3f}]".rjust(24) for m in ("pass1", f"pass{k}"))
        z = t["zero_adv"]
        print(f"{arm:16s} {t['start_pass1']:9.3f} {cell} {z[0]:8.3f} [{z[1]:.3f},{z[2]:.3f}]")
    plot(table, runs, k, out / "ablate.png")
    figs.update(seeds=args.seeds, rl_steps=args.steps, plot=str(out / "ablate.png"))
    # JSON has no infinity: a target never reached is null
    print(json.dumps({key: (round(v, 4) if math.isfinite(v) else None) if isinstance(v, float) else v
                      for key, v in figs.items()}))


if __name__ == "__main__":
    main()
