"""`ssp spectrum`: the Spectrum stage, sft -> probe -> merge -> probe the merged model, as one command.

Writes, in its directory: sft/ (Ray Train checkpoints, metrics), probe.jsonl/.csv/.png (checkpoint x
subdomain Pass@1 and Pass@K), merged/ (the fused model), heldout.json (held-out Pass@1 of the base and
the merged model), report.json, report.md and spectrum.png. Each part is kept as it finishes, so a rerun
continues where the last one stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from trainer.data.splits import probe_sets
from trainer.eval.score import stratified_subset
from trainer.spectrum.probe import mean_over, probe, specialists, write_table


def run_spectrum(conf, out: Path) -> dict:
    """The whole Spectrum stage into `out`; returns the report (also report.json)."""
    from actors.rollout import RolloutPool
    from actors.verifier.pool import VerifierPool
    from cluster.ray_cluster import connect
    from trainer.data.problems import DataError
    from trainer.data.splits import load_problems_for
    from trainer.models.ensure import ensure_model
    from trainer.spectrum.merge import merge
    from trainer.spectrum.sft import run_sft

    if conf.sft.steps == 0:
        raise DataError("config key 'sft.steps': 0, but the Spectrum stage needs SFT checkpoints to probe")
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    base = ensure_model(conf)
    train, held = load_problems_for(conf)
    sets = probe_sets(conf)
    print("spectrum: probe sets " + ", ".join(f"{s}={len(p)}" for s, p in sets.items()))
    connect(conf.cluster)
    t0 = time.perf_counter()
    ckpts = run_sft(conf, base, out / "sft", evals=held + [p for ps in sets.values() for p in ps])
    times["sft_s"] = time.perf_counter() - t0
    models = all_checkpoints(out / "sft", ckpts)  # pruned ones too: probe.jsonl holds their scores
    rollout = RolloutPool(str(ckpts[0][1]), conf.rollout, conf.engine, conf.sampling, conf.data.instruction)
    verifier = VerifierPool(conf.verifier)
    try:
        t0 = time.perf_counter()
        table = probe(conf, rollout, verifier, models, sets, out)
        times["probe_s"] = time.perf_counter() - t0
        subs = list(sets)
        spec = specialists(table, subs)
        merged = out / "merged"
        t0 = time.perf_counter()
        if not (merged / "config.json").exists():
            paths = [dict(models)[spec[s]] for s in subs]
            if gone := [p for p in paths if not (Path(p) / "config.json").exists()]:
                raise DataError(f"spectrum: merged/ is missing and the specialists {gone} were pruned "
                                "(sft.keep_best: false); run the stage in a new run_dir")
            merge(paths, merged, conf.spectrum.merge_weights or None)
        table.update(probe(conf, rollout, verifier, [("merged", str(merged))], sets, out))
        times["merge_and_probe_merged_s"] = time.perf_counter() - t0
        heldout = _heldout(conf, rollout, verifier, stratified_subset(held, conf.rl.eval_max_problems),
                           {"base": base, "merged": str(merged)}, out / "heldout.json")
    finally:
        rollout.shutdown()
        verifier.shutdown()
    report = make_report(table, spec, models, heldout, times, conf.spectrum.probe_k)
    report["pruned"] = prune_sft(conf.sft, models, spec)  # after the merge: nothing left in the stage needs them
    (out / "report.json").write_text(json.dumps(report, indent=1))
    text = write_table(table, conf.spectrum.probe_k, out)
    (out / "report.md").write_text(report_md(report, text))
    plot(report, out / "spectrum.png")
    print(text)
    print(f"specialists: {spec}\nmerged mean Pass@{conf.spectrum.probe_k} {report['merged_mean_pass_at_k']:.3f} vs "
          f"best single {report['best_single_mean_pass_at_k']:.3f} ({report['best_single']})\nreport: {out / 'report.md'}")
    return report


def all_checkpoints(sft_dir: Path, ckpts: list[tuple[int, Path]]) -> list[tuple[str, str]]:
    """("step-N", dir) of every SFT checkpoint saved (sft/checkpoints.json), those pruned since included, so a rerun
    sees the same probe table and picks the same specialists; `ckpts` are the ones on disk."""
    listed = sft_dir / "checkpoints.json"
    every = {e["step"]: e["path"] for e in json.loads(listed.read_text())} if listed.exists() else {}
    every.update((st, str(p)) for st, p in ckpts)
    return [(f"step-{st}", p) for st, p in sorted(every.items())]


def prune_sft(s, models: list[tuple[str, str]], spec: dict[str, str]) -> list[str]:
    """Apply sft.keep_last (the newest N; 0 = all) and sft.keep_best (each subdomain's specialist) to the SFT
    checkpoints once they are probed and merged; returns the names pruned. A pruned folder stays, emptied but for
    PRUNED.txt: Ray Train's run snapshot lists it, and a longer SFT run later resumes from the newest, always kept."""
    import shutil

    from trainer.checkpoints import keep

    on_disk = {int(n.split("-")[1]): Path(p) for n, p in models if (Path(p) / "config.json").exists()}
    also = {int(n.split("-")[1]) for n in spec.values()} if s.keep_best else set()
    pruned = sorted(set(on_disk) - keep(list(on_disk), s.keep_last, also))
    for st in pruned:
        d = on_disk[st]
        for name in ("sft_state.json", "config.json"):  # first: a kill midway leaves no half checkpoint listed
            (d / name).unlink()
        for child in d.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        (d / "PRUNED.txt").write_text(f"SFT step {st}: pruned after probing (sft.keep_last={s.keep_last}, "
                                      f"sft.keep_best={s.keep_best}); its probe scores are in probe.jsonl\n")
    if pruned:
        print(f"spectrum: pruned SFT checkpoints {pruned} (sft.keep_last / sft.keep_best)")
    return [f"step-{st}" for st in pruned]


def _heldout(conf, rollout, verifier, held, models: dict[str, str], path: Path) -> dict:
    """Held-out Pass@1 (rl.eval_k samples) of each model, pushed into the engines in turn; kept in `path`."""
    from actors.weight_sync import WeightSync
    from trainer.eval.score import evaluate

    done = json.loads(path.read_text()) if path.exists() else {}
    for i, (name, p) in enumerate(models.items()):
        if name not in done:
            rollout.update_weights(WeightSync.from_checkpoint(p), 5000 + i)
            done[name] = evaluate(rollout, verifier, held, conf.rl.eval_k, None)
            path.write_text(json.dumps(done, indent=1))
    return done


def make_report(table: dict, spec: dict, models: list, heldout: dict, times: dict, k: int) -> dict:
    singles = [n for n, _ in models]
    best = max(singles, key=lambda n: mean_over(table[n], "passK"))
    best_p1 = max(singles, key=lambda n: mean_over(table[n], "pass1"))
    return {
        "k": k,
        "pass_at_k": {n: {s: v["passK"] for s, v in row.items()} for n, row in table.items()},
        "pass_at_1": {n: {s: v["pass1"] for s, v in row.items()} for n, row in table.items()},
        "specialists": spec,
        "checkpoints": dict(models),
        "merged_mean_pass_at_k": mean_over(table["merged"], "passK"),
        "merged_mean_pass_at_1": mean_over(table["merged"], "pass1"),
        "best_single": best, "best_single_mean_pass_at_k": mean_over(table[best], "passK"),
        "best_pass1_checkpoint": best_p1, "best_single_mean_pass_at_1": mean_over(table[best_p1], "pass1"),
        "last_checkpoint": singles[-1],
        "fusion_holds": mean_over(table["merged"], "passK") >= mean_over(table[best], "passK"),
        "heldout_pass1": {n: r["pass1"] for n, r in heldout.items()},
        "heldout": heldout, "times": times,
    }


def report_md(r: dict, table_text: str) -> str:
    k = r["k"]
    lines = ["# Spectrum report", "", "```", table_text, "```", "",
             f"- specialists (argmax Pass@{k} per subdomain): " + ", ".join(f"{s}: {n}" for s, n in r["specialists"].items()),
             f"- merged mean Pass@{k}: {r['merged_mean_pass_at_k']:.3f}; best single checkpoint ({r['best_single']}): "
             f"{r['best_single_mean_pass_at_k']:.3f}; fusion claim {'holds' if r['fusion_holds'] else 'does not hold'}",
             f"- merged mean Pass@1: {r['merged_mean_pass_at_1']:.3f}; best Pass@1 checkpoint ({r['best_pass1_checkpoint']}): "
             f"{r['best_single_mean_pass_at_1']:.3f}",
             "- held-out Pass@1: " + ", ".join(f"{n} {v:.3f}" for n, v in r["heldout_pass1"].items()),
             "- seconds: " + ", ".join(f"{n} {v:.0f}" for n, v in r["times"].items()),
             "", "![probe](probe.png) ![spectrum](spectrum.png)", ""]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> Path:
    """Mean Pass@1 and Pass@K over the probe subdomains, per checkpoint, with the merged model as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["checkpoints"])
    steps = [int(n.split("-")[1]) for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label, color in (("pass_at_1", "Pass@1", "C0"), ("pass_at_k", f"Pass@{r['k']}", "C1")):
        ys = [sum(r[key][n].values()) / len(r[key][n]) for n in names]
        ax.plot(steps, ys, "o-", color=color, label=f"checkpoints {label}")
        merged = sum(r[key]["merged"].values()) / len(r[key]["merged"])
        ax.axhline(merged, color=color, ls="--", label=f"merged {label}")
    ax.set_xlabel("SFT step")
    ax.set_ylabel("mean over probe subdomains")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
