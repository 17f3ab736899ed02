"""What `ssp eval` leaves behind: the printed tables, results.json, disagreements.jsonl, VibeThinker's CSV
rows, a lighteval-shaped results_<timestamp>.json and a bar chart."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def tables(results: dict, show_published: bool) -> str:
    """Per-dataset figures, then the paper's Table 2 layout (datasets as columns, models as rows)."""
    rows, pub = results["datasets"], results["published"] if show_published else {}
    n = results["protocol"]["n"]
    ks = sorted({int(k[5:]) for r in rows.values() for k in r if k.startswith("pass@") and int(k[5:]) > 1})
    modes = sorted({k[6:-1] for r in rows.values() for k in r if k.startswith("pass1[")})
    head = (f"{'dataset':12s} {'probs':>5s} {'Pass@1':>7s} {f'Pass@{n}':>8s} {f'cons@{n}':>8s} "
            + "".join(f"{f'p@{k}':>7s}" for k in ks) + "".join(f" {f'P@1 {m[:11]}':>15s}" for m in modes)
            + f" {'trunc':>6s} {'tokens':>8s} {'disagree':>8s}")
    lines = [f"eval {results['suite']} ({results['protocol']['model']}), % of problems; figures by "
             f"{results['primary']}", head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:12s} {r['problems']:5d} {_pct(r['pass1']):>7s} {_pct(r[f'pass{n}']):>8s} "
                     f"{_pct(r.get(f'cons{n}')):>8s} " + "".join(f"{_pct(r.get(f'pass@{k}')):>7s}" for k in ks)
                     + "".join(f" {_pct(r.get(f'pass1[{m}]')):>15s}" for m in modes)
                     + f" {_pct(r['truncation']):>6s} {r['mean_tokens']:8.1f} {r.get('disagreements', '-')!s:>8s}")
    names = list(rows)
    lines += ["", "Table 2 layout (Pass@1, %)", f"{'model':28s}" + "".join(f"{x:>10s}" for x in names),
              f"{Path(results['protocol']['model']).name[:28]:28s}" + "".join(f"{_pct(rows[x]['pass1']):>10s}" for x in names)]
    if pub:
        lines.append(f"{'VibeThinker-1.5B (published)':28s}" + "".join(f"{pub.get(x, '-')!s:>10s}" for x in names))
        lines.append(f"  published: {results['published_source']}")
    return "\n".join(lines)


def write_csv(out: Path, results: dict) -> Path:
    """VibeThinker's row format (its main_evaluation.py: one row per dataset, its column names kept as-is)."""
    n, hours = results["protocol"]["n"], results["seconds"] / 3600
    path = out / f"pass_{hours:.2f}h.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["model_path", "dataset", "pass@1", f"pass@{n}", f"cons@{n}", "cutoff_raio",
                                          "mean_response_tokens", "run_hours"])
        w.writeheader()
        for name, r in results["datasets"].items():
            w.writerow({"model_path": results["protocol"]["model"], "dataset": name, "pass@1": r["pass1"],
                        f"pass@{n}": r[f"pass{n}"], f"cons@{n}": r.get(f"cons{n}", ""), "cutoff_raio": r["truncation"],
                        "mean_response_tokens": r["mean_tokens"], "run_hours": hours})
    return path


def write_lighteval(out: Path, results: dict) -> Path:
    """A lighteval-shaped results file (config_general / results / versions), readable by HF tooling."""
    n = results["protocol"]["n"]
    res = {}
    for name, r in results["datasets"].items():
        metrics = {f"pass@1:{n}_samples": r["pass1"],
                   f"pass@1:{n}_samples_stderr": math.sqrt(r["pass1"] * (1 - r["pass1"]) / max(r["problems"], 1))}
        metrics.update({f"{k}:{n}_samples": v for k, v in r.items() if k.startswith(("pass@", "cons"))})
        res[f"custom|{name.lower()}|0"] = metrics
    keys = {k for m in res.values() for k in m}
    res["all"] = {k: sum(m[k] for m in res.values() if k in m) / sum(k in m for m in res.values()) for k in keys}
    ts = time.strftime("%Y-%m-%dT%H-%M-%S")
    doc = {"config_general": {"model_name": results["protocol"]["model"], "job_id": results["suite"],
                              "total_evaluation_time_secondes": str(results["seconds"]),
                              "generation_parameters": {k: results["protocol"][k] for k in
                                                        ("temperature", "top_p", "top_k", "max_tokens")}},
           "results": res, "versions": {k: 0 for k in res if k != "all"},
           "config_tasks": {k: {"name": k.split("|")[1], "num_samples": [n]} for k in res if k != "all"}}
    path = out / f"results_{ts}.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def bar_chart(out: Path, results: dict, show_published: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, pub = results["datasets"], results["published"] if show_published else {}
    names, n = list(rows), results["protocol"]["n"]
    series = [(f"Pass@1 ({Path(results['protocol']['model']).name})", [100 * rows[x]["pass1"] for x in names]),
              (f"Pass@{n}", [100 * rows[x][f"pass{n}"] for x in names])]
    if any(x in pub for x in names):
        series.append(("VibeThinker-1.5B Pass@1 (published)", [pub.get(x, 0) for x in names]))
    fig, ax = plt.subplots(figsize=(2 + 1.4 * len(names), 3.6))
    w = 0.8 / len(series)
    for i, (label, ys) in enumerate(series):
        ax.bar([j + i * w for j in range(len(names))], ys, w, label=label)
    ax.set_xticks([j + w * (len(series) - 1) / 2 for j in range(len(names))], names)
    ax.set_ylabel("% of problems")
    ax.set_ylim(0, 100)
    ax.set_title(f"ssp eval {results['suite']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "results.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(out: Path, results: dict, suite, show_published: bool = True) -> None:
    with (out / "disagreements.jsonl").open("w") as f:
        for d in results["disagreements"]:
            f.write(json.dumps(d) + "\n")
    slim = {k: v for k, v in results.items() if k != "disagreements"}
    (out / "results.json").write_text(json.dumps(slim, indent=1))
    text = tables(results, show_published)
    (out / "results.md").write_text(text + "\n")
    files = [write_csv(out, results), write_lighteval(out, results), bar_chart(out, results, show_published)]
    print(text)
    print(f"generated {results['generated_problems']} problems, {results['resumed_problems']} resumed; "
          f"wrote {out}/results.json, samples.jsonl, disagreements.jsonl ({len(results['disagreements'])}), "
          + ", ".join(p.name for p in files))
