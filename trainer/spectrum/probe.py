"""`ssp probe`: score every SFT checkpoint by Pass@K on each subdomain's probe set, and pick the specialists.

The checkpoints go into the running rollout engines in place (`WeightSync.from_checkpoint`: vLLM reloads
the weights, no engine restart); the samples are verified by the verifier pool; the scores come from the
one evaluator (trainer/eval/score.py `evaluate`, the same Pass@k the RL loop's held-out eval reports).
Probe sets are files (problems with a `subdomain` field), or, on the toy tasks, problems carved out of
the training split (so train / probe / held-out are disjoint for SFT, RL and eval alike).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from trainer.data.problems import Problem


def probe(conf, rollout, verifier, models: list[tuple[str, str]], sets: dict[str, list[Problem]], out: Path,
          version0: int = 1000) -> dict[str, dict[str, dict[str, float]]]:
    """{model name: {subdomain: {"pass1", "passK"}}} for each (name, HF dir), pushed in turn into the engines.

    Results are appended to out/probe.jsonl as each model finishes; a model already there is not probed again.
    """
    from tqdm import tqdm

    from actors.weight_sync import WeightSync
    from trainer.eval.score import evaluate

    s = conf.spectrum
    log = out / "probe.jsonl"
    table = {}
    if log.exists():
        table = {r["model"]: r["scores"] for r in map(json.loads, log.read_text().splitlines())}
    problems = [p for ps in sets.values() for p in ps]
    for i, (name, path) in enumerate(tqdm(models, desc="probe", dynamic_ncols=True)):
        if name in table:
            continue
        rollout.update_weights(WeightSync.from_checkpoint(path), version0 + i)  # in place, no engine restart
        res = evaluate(rollout, verifier, problems, s.probe_n, None, ks=(s.probe_k,))
        table[name] = {sub: {"pass1": res[f"pass1/{sub}"], "passK": res[f"pass{s.probe_k}/{sub}"]} for sub in sets}
        with log.open("a") as f:
            f.write(json.dumps({"model": name, "path": str(path), "scores": table[name], "n": s.probe_n,
                                "per_problem": res["per_problem"]}) + "\n")  # for intervals (ablate.py)
    return {name: table[name] for name, _ in models}


def specialists(table: dict[str, dict[str, dict[str, float]]], subdomains: list[str]) -> dict[str, str]:
    """Each subdomain's specialist: argmax over models of Pass@K (ties: the earlier model)."""
    names = list(table)
    return {sub: max(names, key=lambda n: (table[n][sub]["passK"], -names.index(n))) for sub in subdomains}


def mean_over(table_row: dict[str, dict[str, float]], metric: str) -> float:
    return sum(v[metric] for v in table_row.values()) / max(len(table_row), 1)


def write_table(table: dict[str, dict[str, dict[str, float]]], k: int, out: Path) -> str:
    """probe.csv, probe.png (heatmaps of Pass@1 and Pass@K) and the printed table; returns the text."""
    subs = list(next(iter(table.values())))
    with (out / "probe.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", *[f"pass1/{s}" for s in subs], *[f"pass{k}/{s}" for s in subs],
                    "mean_pass1", f"mean_pass{k}"])
        for name, row in table.items():
            w.writerow([name, *[f"{row[s]['pass1']:.4f}" for s in subs], *[f"{row[s]['passK']:.4f}" for s in subs],
                        f"{mean_over(row, 'pass1'):.4f}", f"{mean_over(row, 'passK'):.4f}"])
    heatmap(table, subs, k, out / "probe.png")
    head = f"{'model':18s}" + "".join(f"{s:>14s}" for s in subs) + f"{'mean':>14s}"
    lines = [f"Pass@1 / Pass@{k} per subdomain", head]
    for name, row in table.items():
        cells = "".join(f"{row[s]['pass1']:6.3f}/{row[s]['passK']:6.3f} " for s in subs)
        lines.append(f"{name:18s}{cells}{mean_over(row, 'pass1'):6.3f}/{mean_over(row, 'passK'):6.3f}")
    return "\n".join(lines)


def heatmap(table: dict, subs: list[str], k: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(subs), 1.2 + 0.4 * len(names)), squeeze=False)
    for ax, metric, title in zip(axes[0], ("pass1", "passK"), ("Pass@1", f"Pass@{k}")):
        data = [[table[n][s][metric] for s in subs] for n in names]
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(subs)), subs)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(title)
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
