"""`ssp eval --model PATH --suite SUITE`: the official protocol on the cluster's engines and verifier pool.

Each finished problem (its n samples, every grader's score) is appended to OUT/samples.jsonl as it
completes, so a killed eval continues where it stopped: problems already there are never generated again.
OUT/protocol.json pins what the samples mean (model, suite, n, sampling, graders); a rerun with another
protocol into the same folder is refused rather than mixed in.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from actors.verifier.protocols import THINK_END, vote_answer
from trainer.data.problems import DataError, Problem
from trainer.eval.score import Scored, figures, score_stream
from trainer.eval.suites import SuiteConfig, load_dataset, load_suite, user_content
from trainer.models.ensure import check_model


def to_record(dataset: str, s: Scored, key: str) -> dict:
    p = s.problem
    return {"dataset": dataset, "id": key, "kind": p.kind, "subdomain": p.subdomain, "gold": p.answer,
            "prompt": p.prompt, "samples": [{"text": t, "tokens": n, "truncated": tr, "vote": vote_answer(t),
                         "scores": {m: s.scores[m][i] for m in s.scores},
                         "reasons": {m: s.reasons[m][i] for m in s.reasons}}
                        for i, (t, n, tr) in enumerate(zip(s.texts, s.tokens, s.truncated))]}


def record_to_scored(rec: dict) -> Scored:
    sm = rec["samples"]
    modes = list(sm[0]["scores"]) if sm else []
    return Scored(Problem(rec["id"], "", rec["kind"], rec.get("gold"), subdomain=rec.get("subdomain", "")),
                  [x["text"] for x in sm], [x["tokens"] for x in sm], [x["truncated"] for x in sm],
                  {m: [x["scores"][m] for x in sm] for m in modes}, {m: [x["reasons"][m] for x in sm] for m in modes})


def read_samples(path: Path) -> dict[tuple[str, str], dict]:
    """Finished problems by (dataset, id). A last line cut short by a kill is dropped (and cut off the file,
    so appends start on a fresh line); any other bad line is an error naming it."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        print(f"eval: {path}: dropping an unfinished last line ({len(raw) - cut} bytes) left by a stopped run")
        with path.open("r+b") as f:
            f.truncate(cut)
        raw = raw[:cut]
    done = {}
    for n, line in enumerate(raw.split(b"\n")[:-1] if raw else [], 1):
        try:
            rec = json.loads(line.decode("utf-8"))
            done[(rec["dataset"], rec["id"])] = rec
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, IndexError) as e:
            raise DataError(f"{path}:{n}: not a samples record ({type(e).__name__}); move the file away to start "
                            "over") from None
    return done


def pin_protocol(out: Path, protocol: dict) -> None:
    """Write OUT/protocol.json, or check a previous run's matches (a different one is refused)."""
    f = out / "protocol.json"
    if f.exists():
        old = json.loads(f.read_text())
        diff = {k: (old.get(k), v) for k, v in protocol.items() if old.get(k) != v}
        if diff:
            raise DataError(f"{f}: {out} holds an eval with another protocol ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                            "set eval.out_dir=... for a new one")
        return
    out.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(protocol, indent=1))


def run_eval(conf, model: str) -> dict:
    """Run (or continue) the eval of `model` under `conf.eval`; returns results.json's content. One piece: the
    run in the order it happens (the suite, what samples.jsonl already holds, engines and verifiers up, the
    stream scored and appended as it finishes, the figures), sharing the open pools and the file."""
    from tqdm import tqdm

    from actors.rollout import RolloutPool
    from actors.verifier.pool import VerifierPool
    from cluster.ray_cluster import connect
    from trainer.eval.report import write_results

    e, t0 = conf.eval, time.time()
    suite, suite_file = load_suite(e.suite)
    tok = check_model(model)
    n, max_tokens = e.n or suite.n, e.max_tokens or suite.max_tokens
    graders = {"math": list(suite.math_graders), "code": [suite.code_grader]}
    max_len = e.max_model_len or conf.engine.max_model_len
    datasets, todo, keys = [], [], {}
    out = Path(e.out_dir or Path(conf.run_dir) / "eval" / f"{suite.name}-{Path(model).name}")
    protocol = {"model": str(Path(model).resolve()), "suite": suite.name, "n": n, "max_tokens": max_tokens,
                "temperature": suite.temperature, "top_p": suite.top_p, "top_k": suite.top_k, "graders": graders,
                "max_model_len": max_len, "prompts": {"math_suffix": suite.math_suffix, "code": suite.code_prompt}}
    pin_protocol(out, protocol)
    done = read_samples(out / "samples.jsonl")
    for spec in suite.datasets:
        problems = load_dataset(spec, suite_file, conf)[: e.limit or None]
        datasets.append((spec, problems))
        for p in problems:
            if (spec.name, p.id) in done:
                continue
            q = replace(p, id=f"{spec.name}/{p.id}", prompt=user_content(p, spec, suite, conf.data.instruction))
            text = tok.apply_chat_template([{"role": "user", "content": q.prompt}], tokenize=False,
                                           add_generation_prompt=True)
            prompt_len = len(tok(text, add_special_tokens=False)["input_ids"])
            if prompt_len >= max_len:
                raise DataError(f"{spec.path or spec.name}: problem {p.id}: the prompt is {prompt_len} tokens, no room "
                                f"in the engine context of {max_len} (eval.max_model_len)")
            keys[q.id] = (spec.name, p.id)
            todo.append(q)
    resumed = sum(len(ps) for _, ps in datasets) - len(todo)
    print(f"eval {suite.name}: {model}; {sum(len(ps) for _, ps in datasets)} problems x {n} samples "
          f"({resumed} already in {out}/samples.jsonl); graders {graders}")
    if todo:
        connect(conf.cluster)
        engine = replace(conf.engine, max_model_len=max_len)
        verifier = VerifierPool(replace(conf.verifier, code_timeout_s=suite.code_timeout_s))
        rollout = RolloutPool(model, conf.rollout, engine, conf.sampling, "")
        overrides = {"temperature": suite.temperature, "top_p": suite.top_p, "top_k": suite.top_k,
                     "max_tokens": max_tokens, "seed": None}
        t_gen = time.time()
        try:
            with (out / "samples.jsonl").open("a") as f, tqdm(total=len(todo), desc="eval", unit="problem") as bar:
                for s in score_stream(rollout, verifier, todo, n, graders, overrides, instruction="",
                                      threads=e.verify_threads):
                    ds, pid = keys[s.problem.id]
                    rec = to_record(ds, s, pid)
                    done[(ds, pid)] = rec
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    bar.update()
            gen_seconds = time.time() - t_gen  # first request to last problem recorded (no startup)
        finally:
            rollout.shutdown()
            verifier.shutdown()
    results = summarize_run(suite, datasets, done, n, graders, protocol)
    results.update({"generated_problems": len(todo), "resumed_problems": resumed, "out_dir": str(out),
                    "gen_seconds": gen_seconds if todo else 0.0,
                    "seconds": time.time() - t0})
    write_results(out, results, suite, show_published=e.published)
    return results


def primary_math_grader(suite: SuiteConfig, scored: list[Scored]) -> str:
    """The grader the figures use for math. auto: `vibethinker` when the model thinks (some response closes
    a think block), else `math-verify`, the protocol for models without think tags."""
    if suite.primary != "auto":
        return suite.primary
    thinks = any(THINK_END in t for s in scored if s.problem.kind == "math" for t in s.texts)
    return "vibethinker" if thinks else "math-verify"


def summarize_run(suite: SuiteConfig, datasets: list, done: dict, n: int, graders: dict, protocol: dict) -> dict:
    """Per-dataset figures (primary grader), each grader's Pass@1, and where the math graders disagree."""
    every = {(spec.name, p.id): record_to_scored(done[(spec.name, p.id)]) for spec, ps in datasets for p in ps}
    primary = {"math": primary_math_grader(suite, list(every.values())), "code": suite.code_grader}
    rows, disagreements = {}, []
    for spec, problems in datasets:
        scored = [every[(spec.name, p.id)] for p in problems]
        if not scored:
            continue
        f = figures(scored, [k for k in suite.ks if k <= n], primary)
        kinds = {s.problem.kind for s in scored}
        for m in {m for s in scored for m in s.scores}:
            have = [s for s in scored if m in s.scores]
            f[f"pass1[{m}]"] = sum(sum(s.scores[m]) for s in have) / sum(len(s.scores[m]) for s in have)
        if "math" in kinds and len(graders["math"]) > 1:
            a, b = graders["math"][:2]
            for s in (s for s in scored if s.problem.kind == "math"):
                for i, (x, y) in enumerate(zip(s.scores[a], s.scores[b])):
                    if x != y:
                        disagreements.append({"dataset": spec.name, "id": s.problem.id, "sample": i, a: x, b: y,
                                              "reasons": {a: s.reasons[a][i], b: s.reasons[b][i]},
                                              "vote_answer": vote_answer(s.texts[i]), "gold": s.problem.answer,
                                              "tail": s.texts[i][-300:]})
            f["disagreements"] = sum(d["dataset"] == spec.name for d in disagreements)
        rows[spec.name] = f
    return {"suite": suite.name, "protocol": protocol, "primary": primary, "datasets": rows,
            "disagreements": disagreements,
            "published": suite.published, "published_source": suite.published_source, "config": asdict(suite)}
