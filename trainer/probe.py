"""`ssp probe`: score every SFT checkpoint by Pass@K on each subdomain's probe set, and pick the specialists.

The checkpoints go into the running rollout engines in place (`WeightSync.from_checkpoint`: vLLM reloads
the weights, no engine restart); the samples are verified by the verifier pool; the scores come from the
one evaluator (trainer/eval.py `evaluate`, the same Pass@k the RL loop's held-out eval reports).
Probe sets are files (problems with a `subdomain` field), or, on the toy tasks, problems carved out of
the training split (so train / probe / held-out are disjoint for SFT, RL and eval alike).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from trainer.data import DataError, Problem


def carve_probe(conf, train: list[Problem]) -> tuple[list[Problem], dict[str, list[Problem]]]:
    """Toy data: (train without the probe problems, {subdomain: probe problems}), `probe_problems` per
    subdomain (at most a quarter of its training problems) taken from the training split, spread over
    levels, seeded. With probe files: (train, {})."""
    s = conf.spectrum
    if s.probe_files or conf.data.train:
        return train, {}
    sets: dict[str, list[Problem]] = {}
    for sub in s.probe_subdomains:
        by_level: dict = {}
        for p in sorted((p for p in train if p.subdomain == sub), key=lambda p: p.id):
            by_level.setdefault(p.level, []).append(p)
        if not by_level:
            raise DataError(f"spectrum.probe_subdomains: no training problems in toy subdomain {sub!r} to probe "
                            f"(data.toy.subdomains: {list(conf.data.toy.subdomains)}; or give spectrum.probe_files)")
        rng = random.Random(s.probe_seed)
        for ps in by_level.values():
            rng.shuffle(ps)
        levels = sorted(by_level, key=str)
        picked = [by_level[lv][i] for i in range(max(map(len, by_level.values()))) for lv in levels
                  if i < len(by_level[lv])]  # round robin over levels
        sets[sub] = picked[: min(s.probe_problems, len(picked) // 4)]  # never more than a quarter of train
        if not sets[sub]:
            raise DataError(f"spectrum.probe_subdomains: toy subdomain {sub!r} has {len(picked)} training problems, "
                            "too few to give a quarter to a probe set (raise data.toy.per_cell)")
    taken = {p.id for ps in sets.values() for p in ps}
    return [p for p in train if p.id not in taken], sets


def probe_sets(conf) -> dict[str, list[Problem]]:
    """{subdomain: probe problems}, disjoint from the training and held-out problems: carved from the toy
    training split, or read from `spectrum.probe_files` (problems whose text is a train or held-out problem's
    are dropped)."""
    from trainer.data import load_problems
    from trainer.rl import load_problems_for, toy_split

    s = conf.spectrum
    if not s.probe_files:
        if conf.data.train:
            raise DataError("spectrum.probe_files: needed when data.train is set (probe sets for your own data)")
        return carve_probe(conf, toy_split(conf)[0])[1]
    train, held = load_problems_for(conf)
    pool = [p for f in s.probe_files for p in load_problems(f)]
    seen = {" ".join(p.prompt.lower().split()) for p in train + held}
    out = {}
    for sub in s.probe_subdomains:
        cands = [p for p in pool if p.subdomain == sub and " ".join(p.prompt.lower().split()) not in seen]
        if not cands:
            raise DataError(f"spectrum.probe_subdomains: no probe problems for subdomain '{sub}' in "
                            f"spectrum.probe_files {s.probe_files} (outside the train and held-out sets)")
        random.Random(s.probe_seed).shuffle(cands)
        out[sub] = cands[: s.probe_problems]
    return out


def probe(conf, rollout, verifier, models: list[tuple[str, str]], sets: dict[str, list[Problem]], out: Path,
          version0: int = 1000) -> dict[str, dict[str, dict[str, float]]]:
    """{model name: {subdomain: {"pass1", "passK"}}} for each (name, HF dir), pushed in turn into the engines.

    Results are appended to out/probe.jsonl as each model finishes; a model already there is not probed again.
    """
    from tqdm import tqdm

    from actors.weight_sync import WeightSync
    from trainer.eval import evaluate

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
            f.write(json.dumps({"model": name, "path": str(path), "scores": table[name]}) + "\n")
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
