"""`ssp rl` against HF TRL's `GRPOTrainer`, side by side in one run: same start model, toy problems, prompts,
held-out set, reward code, batch (32 problems x G=8), max tokens (64), T=1.0, lr, clip (0.2 / 0.28), no KL,
per-sequence token means, group-std advantages. TRL uses its default HF generation (no vLLM), gradient
checkpointing off, one process with this machine's 2 threads; it scores with this project's own reward code
called from 4 threads in its process (math-verify helpers and the bwrap sandbox: no Ray in the way).

Arms, one after the other on a quiet machine: `ssp` (configs/tiny-cpu.yaml as shipped: sync, MGPO + the
scheduler), `ssp-async` (the same with rl.mode=async, k=2, TIS) and `trl` (GRPO, uniform sampling: TRL has
no MGPO or scheduler). Held-out Pass@1 (k=8, the same 160 problems, the same evaluator: this project's vLLM
engine and verifier pool) every `--eval-every` steps: in-run for ours, on checkpoints saved by a callback for
TRL (saving time is left off TRL's clock, as evaluation is left off ours). Time to a target = training clock
(the sum of step times) at the first evaluation at or above start + gain, where start is the mean of the
arms' step-0 evaluations of the shared start model.

The start model: the Spectrum stage's SFT checkpoint at step --start-step (default 300; held-out Pass@1
about 0.1, as in the issue's table) of one Spectrum run into OUT/spectrum, or --start.
TRL comes from the optional extra: `pip install -e .[bench]` (never a runtime dependency).

Last line, JSON: rl_samples_per_s_vs_trl, time_to_target_vs_trl (the worse of the +5 and +10 point ratios),
and the per-target and async figures.

Usage: python benchmarks/vs_trl.py [--steps 80] [--eval-every 10] [--arms ssp trl ssp-async] [--start HF_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "configs/tiny-cpu.yaml"
ARMS = {"ssp": [], "ssp-async": ["rl.mode=async", "rl.max_staleness=2"], "trl": None,
        "ssp-bands": ["scheduler.sampler=bands"]}  # the scheduler before thompson (not run by default)
GAINS = (0.05, 0.10)


def overrides(steps: int, eval_every: int) -> list[str]:
    return [f"rl.phases=[{{name: mixed, steps: {steps}, max_tokens: 64, subdomains: []}}]",
            f"rl.eval_every={eval_every}", "rl.checkpoint_every=0", "cluster.dashboard=false"]


# ---- our arms: `ssp rl`, its own in-run evaluations -------------------------------------------------------

def run_ssp(run: Path, start: str, base: list[str], extra: list[str]) -> dict:
    import ray

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.rl import main as rl_main

    if not (run / "summary.json").exists():
        rl_main(load_config(SSPConfig, CONFIG, [f"run_dir={run}", *base, *extra]), policy=start)
        ray.shutdown()
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in recs if "samples" in r}
    clock = [0.0]  # training seconds after n steps
    for n in range(len(steps)):
        clock.append(clock[-1] + steps[n]["step_wall_s"])
    # periodic evals are logged at the step before them, the last one at the step count
    evals = [(min(r["step"] + 1, len(steps)), r["eval_pass1"]) for r in recs if "eval_pass1" in r]
    split = {p: statistics.median(r.get(f"time_{p}", 0.0) for r in steps.values()) for p in
             ("generate", "verify", "train", "sync")}
    return {"step_s": [steps[n]["step_wall_s"] for n in range(len(steps))], "clock": clock,
            "samples_per_step": steps[0]["samples"], "evals": evals, "split": split,
            "zero_adv": statistics.mean(r["zero_adv_frac"] for r in steps.values())}


# ---- TRL: a child process trains and saves checkpoints; this process evaluates them -----------------------

class InProcessVerifier:
    """This project's reward code (math-verify helpers, the bwrap sandbox) called in-process from threads."""

    def __init__(self, c, threads: int):
        import queue
        from concurrent.futures import ThreadPoolExecutor

        from actors.verifier.math_checker import MathChecker
        from actors.verifier.pool import make_sandbox

        self.sandbox = make_sandbox(c, threads)
        self.think, self.unboxed = c.math_think, c.math_unboxed  # the training reward's options, as ssp rl's
        self.checkers = queue.Queue()
        for _ in range(threads):
            self.checkers.put(MathChecker(c.math_timeout_s, c.math_memory_mb))
        self.pool = ThreadPoolExecutor(threads)

    def _one(self, p, text: str) -> float:
        from actors.verifier.code_grader import grade_code

        if p.kind == "code":
            return grade_code(text, p.tests or {}, self.sandbox).reward
        checker = self.checkers.get()
        try:
            return checker.check(text, p.answer or "", "strict", think=self.think, unboxed=self.unboxed,
                                 choices=p.choices).reward
        finally:
            self.checkers.put(checker)

    def rewards(self, problems: list, texts: list[str]) -> list[float]:
        return list(self.pool.map(self._one, problems, texts))


def trl_child(out: Path, start: str, base: list[str], seed: int) -> None:
    """Runs in its own process: TRL GRPOTrainer for the configured steps; a checkpoint every eval_every."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.data.problems import build_prompt
    from trainer.data.splits import load_problems_for
    from trainer.models.tiny import load_tokenizer

    torch.set_num_threads(2)
    conf = load_config(SSPConfig, CONFIG, [f"run_dir={out}", *base])
    steps, every = conf.rl.phases[0].steps, conf.rl.eval_every
    train, _ = load_problems_for(conf)
    by_id = {p.id: p for p in train}
    tok = load_tokenizer(start)
    data = Dataset.from_list([{"prompt": build_prompt(tok, p, conf.data.instruction), "pid": p.id} for p in train])
    verifier = InProcessVerifier(conf.verifier, threads=4)
    timing = {"reward": [], "gen_score": [], "step_end": [], "save": []}

    def reward(prompts, completions, pid, **_):
        t0 = time.perf_counter()
        r = verifier.rewards([by_id[i] for i in pid], completions)
        timing["reward"].append(time.perf_counter() - t0)
        return r

    class Timed(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            outs = super()._generate_and_score_completions(inputs)
            timing["gen_score"].append(time.perf_counter() - t0)
            return outs

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            timing["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            timing["step_end"].append(time.perf_counter())
            if state.global_step % every == 0:
                t0 = time.perf_counter()
                model.save_pretrained(out / f"step-{state.global_step}")
                timing["save"].append(time.perf_counter() - t0)
            else:
                timing["save"].append(0.0)

    s = conf.sampling
    lc = conf.learner.loss
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=64, gradient_accumulation_steps=4,
        num_generations=conf.rl.group_size, max_completion_length=64, temperature=s.temperature, top_p=s.top_p,
        learning_rate=conf.learner.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=conf.learner.grad_clip, beta=0.0, epsilon=lc.clip_low, epsilon_high=lc.clip_high,
        loss_type="grpo", scale_rewards="group", num_iterations=1, gradient_checkpointing=False,
        use_cpu=True, bf16=False, seed=seed, logging_steps=10, save_strategy="no", report_to=[],
        dataloader_num_workers=0)
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
    trainer = Timed(model=model, processing_class=tok, reward_funcs=reward, args=args, train_dataset=data,
                    callbacks=[Clock()])
    trainer.train()
    ends, saves = timing["step_end"], timing["save"]
    step_s = [ends[0] - timing["start"]] + [ends[i] - ends[i - 1] - saves[i - 1] for i in range(1, len(ends))]
    (out / "timing.json").write_text(json.dumps({"step_s": step_s, "reward": timing["reward"],
                                                 "gen_score": timing["gen_score"]}))


def run_trl(run: Path, start: str, base: list[str], seed: int) -> dict:
    if not (run / "timing.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--trl-child", str(run), "--start", start, "--seed", str(seed), "--base",
               json.dumps(base)]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    t = json.loads((run / "timing.json").read_text())
    if not (run / "evals.json").exists():
        (run / "evals.json").write_text(json.dumps(eval_checkpoints(run, start, base)))
    clock = [0.0]
    for s in t["step_s"]:
        clock.append(clock[-1] + s)
    gen = statistics.median(t["gen_score"])
    rew = statistics.median(t["reward"])
    return {"step_s": t["step_s"], "clock": clock, "samples_per_step": 256, "zero_adv": None,
            "evals": [tuple(e) for e in json.loads((run / "evals.json").read_text())],
            "split": {"generate": gen - rew, "reward": rew, "logprobs+loss": statistics.median(t["step_s"]) - gen}}


def eval_checkpoints(run: Path, start: str, base: list[str]) -> list[tuple[int, float]]:
    """The start model and each saved TRL checkpoint through the evaluator `ssp rl` uses in-run."""
    from actors.rollout import RolloutPool
    from actors.verifier.pool import VerifierPool
    from actors.weight_sync import WeightSync
    from cluster.ray_cluster import connect
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.data.splits import load_problems_for
    from trainer.eval.score import evaluate, stratified_subset

    conf = load_config(SSPConfig, CONFIG, [f"run_dir={run}", *base])
    _, held = load_problems_for(conf)
    held = stratified_subset(held, conf.rl.eval_max_problems)
    connect(conf.cluster)
    pool = RolloutPool(start, conf.rollout, conf.engine, conf.sampling, conf.data.instruction)
    verifier = VerifierPool(conf.verifier)
    mt = {"max_tokens": conf.rl.phases[0].max_tokens}
    out = [(0, evaluate(pool, verifier, held, conf.rl.eval_k, mt)["pass1"])]
    for i, ckpt in enumerate(sorted(run.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))):
        pool.update_weights(WeightSync.from_checkpoint(ckpt), i + 1)
        out.append((int(ckpt.name.split("-")[1]), evaluate(pool, verifier, held, conf.rl.eval_k, mt)["pass1"]))
        print(f"trl {ckpt.name}: held-out Pass@1 {out[-1][1]:.3f}")
    pool.shutdown()
    verifier.shutdown()
    import ray

    ray.shutdown()
    return out


# ---- the comparison ---------------------------------------------------------------------------------------

def time_to(arm: dict, target: float) -> float | None:
    for step, p in arm["evals"]:
        if step > 0 and p >= target:
            return arm["clock"][step]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--arms", nargs="+", default=["ssp", "trl", "ssp-async"], choices=list(ARMS))
    ap.add_argument("--out", default="runs/bench-vs-trl")
    ap.add_argument("--start", help="the HF model every arm starts from")
    ap.add_argument("--start-step", type=int, default=300, help="SFT checkpoint of the Spectrum run to start from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trl-child", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trl_child:
        return trl_child(Path(args.trl_child), args.start, json.loads(args.base), args.seed)

    out = Path(args.out)
    base = overrides(args.steps, args.eval_every) + [f"learner.seed={args.seed}", f"scheduler.seed={args.seed}",
                                                     f"engine.seed={args.seed}"]
    from ablate import start_model

    start = start_model(args.start, out, base, sft_step=args.start_step)
    res = {}
    for arm in args.arms:
        t0 = time.time()
        run = out / arm
        res[arm] = run_trl(run, start, base, args.seed) if arm == "trl" else run_ssp(run, start, base, ARMS[arm])
        print(f"{arm}: done ({(time.time() - t0) / 60:.1f} min)")

    start_p1 = statistics.mean(a["evals"][0][1] for a in res.values())
    print(f"\nstart: {start}\nheld-out Pass@1 of the start (mean of the arms' step-0 evals): {start_p1:.3f}")
    print(f"{'arm':10s} {'s/step':>7s} {'samples/s':>10s} {'zero-adv':>9s} {'final Pass@1':>13s} "
          + "".join(f"{'to +' + str(round(g * 100)) + ' pts (s)':>16s}" for g in GAINS) + "  step split (median s)")
    fig: dict[str, dict] = {}
    for arm, a in res.items():
        f = fig[arm] = {"s_per_step": statistics.median(a["step_s"]),
                        "samples_per_s": a["samples_per_step"] * len(a["step_s"]) / a["clock"][-1],
                        "pass1_final": a["evals"][-1][1],
                        **{f"to_{round(g * 100)}pts_s": time_to(a, start_p1 + g) for g in GAINS}}
        cells = "".join(f"{(f'{v:.1f}' if v is not None else '-'):>16s}"
                        for v in (f[f"to_{round(g * 100)}pts_s"] for g in GAINS))
        split = ", ".join(f"{k} {v:.2f}" for k, v in a["split"].items())
        za = f"{a['zero_adv']:.3f}" if a["zero_adv"] is not None else "-"
        print(f"{arm:10s} {f['s_per_step']:7.2f} {f['samples_per_s']:10.1f} {za:>9s} {f['pass1_final']:13.3f}{cells}  {split}")
        print(f"{'':10s} Pass@1 curve: " + " ".join(f"{s}:{p:.3f}" for s, p in a["evals"]))

    def ratio(a: str, b: str, key: str) -> float | None:
        if a not in fig or b not in fig or fig[a][key] is None or fig[b][key] is None:
            return None
        return round(fig[a][key] / fig[b][key], 3)

    out_json = {"rl_samples_per_s_vs_trl": ratio("ssp", "trl", "samples_per_s")}
    per_target, bounds = {}, []
    for g in GAINS:
        key, tag = f"to_{round(g * 100)}pts_s", f"time_to_{round(g * 100)}pts_vs_trl"
        per_target[tag] = ratio("ssp", "trl", key)
        if per_target[tag] is None and "ssp" in fig and "trl" in fig and fig["ssp"][key] is not None:
            # TRL never got there: it would have needed more than its whole run, so ours/its whole clock bounds it
            per_target[tag] = round(fig["ssp"][key] / res["trl"]["clock"][-1], 3)
            bounds.append(tag)
    known = [v for v in per_target.values() if v is not None]
    out_json["time_to_target_vs_trl"] = max(known) if len(known) == len(per_target) else None  # the worse one
    out_json.update(per_target)
    out_json["upper_bounds"] = bounds
    out_json["async_samples_per_s_vs_trl"] = ratio("ssp-async", "trl", "samples_per_s")
    out_json["async_samples_per_s_vs_sync"] = ratio("ssp-async", "ssp", "samples_per_s")
    for g in GAINS:
        key = f"to_{round(g * 100)}pts_s"
        out_json[f"async_time_to_{round(g * 100)}pts_vs_sync"] = ratio("ssp-async", "ssp", key)
    out_json["start_pass1"] = round(start_p1, 4)
    out_json.update({f"{arm}_pass1_final": round(f["pass1_final"], 4) for arm, f in fig.items()})
    print(json.dumps(out_json))


if __name__ == "__main__":
    main()
