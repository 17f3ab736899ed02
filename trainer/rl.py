"""The Signal stage: `ssp rl`. One driver, one loop, read top to bottom (`run_rl`):

    sample -> generate -> verify -> advantages -> train -> publish weights -> record outcomes -> log

The first three are the BatchSource (trainer/batch_source.py; `rl.mode` picks sync, one-step-off or async),
the advantages are a pure function (actors/losses.py), training runs on the DeepSpeed learner ranks,
weights go learner -> engines through the WeightSync seam (never through this process), outcomes go to
the Redis scheduler. The driver does no tensor math and no Redis commands of its own. It owns the run
directory: config.yaml, metrics.jsonl, plans/ (the problem ids of each step, so a redone step records
the same (step, problem, sample) keys and the scheduler never double-counts), checkpoint/, eval.jsonl,
summary.json and curves.png.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import yaml
from tqdm import tqdm

from ssp.config import to_dict
from trainer import checkpoints as ckpts
from trainer.batch_source import BATCH_SOURCES, RolloutBatch, Timer
from trainer.config import PhaseConfig
from trainer.data.problems import Problem
from trainer.eval.metrics import paired_gain
from trainer.eval.score import evaluate, stratified_subset
from trainer.recovery import RECOVERABLE, describe, placement, recover, watch
from trainer.run_log import RunLog, step_totals, summary_table


class Run:
    """The actors and state of one RL run."""

    def __init__(self, conf, run_dir: Path, train: list[Problem], held: list[Problem], policy: str):
        from actors.learner import LearnerGroup
        from actors.losses import correction_name
        from actors.rollout import RolloutPool
        from actors.verifier.pool import VerifierPool

        self.conf, self.dir, self.rl, self.policy = conf, run_dir, conf.rl, policy
        self.train_problems = {p.id: p for p in train}
        self.held = stratified_subset(held, self.rl.eval_max_problems)
        self.log = RunLog(run_dir, conf.tracking, config=to_dict(conf))
        self.stack = ExitStack()
        self.verifier = VerifierPool(conf.verifier)
        self.rollout = RolloutPool(policy, conf.rollout, conf.engine, conf.sampling, conf.data.instruction)
        # is_correction auto -> tis | off for this run's mode, in the run's own copy (the config is never written)
        self.loss = replace(conf.learner.loss, is_correction=correction_name(conf.learner.loss, self.rl.mode))
        self.learner_conf = replace(conf.learner, loss=self.loss)
        self.learner = LearnerGroup(self.learner_conf, policy)
        self.schedulers = {}
        for ph in self.rl.phases:  # phases with the same problem pool share one scheduler (and its pass rates)
            if self.pool(ph) not in self.schedulers:
                self.schedulers[self.pool(ph)] = self._scheduler(ph)
        self.restarts, self.recoveries, self.placement = 0, [], {}

    def pool(self, phase: PhaseConfig) -> str:
        """The name of a phase's problem pool: the first phase with the same subdomains."""
        return next(p.name for p in self.rl.phases if sorted(p.subdomains) == sorted(phase.subdomains))

    def scheduler(self, step: int):
        return self.schedulers[self.pool(self.phase(step))]

    def _scheduler(self, phase: PhaseConfig):
        from cluster.scheduler import open_scheduler

        data_dir = self.dir / "redis"
        name = f"{self.conf.scheduler.namespace or self.dir.name}-{self.pool(phase)}"
        s = self.stack.enter_context(open_scheduler(name, self.conf.scheduler, data_dir, own_server=True,
                                                    cluster_dir=self.conf.cluster.state_dir))
        pool = [p for p in self.train_problems.values() if not phase.subdomains or p.subdomain in phase.subdomains]
        if not pool:
            raise ValueError(f"rl.phases '{phase.name}': no training problems in subdomains {phase.subdomains}")
        s.register(pool)
        return s

    def phase(self, step: int) -> PhaseConfig:
        end = 0
        for ph in self.rl.phases:
            end += ph.steps
            if step < end:
                return ph
        return self.rl.phases[-1]

    def prefilter(self, step: int) -> int | None:
        """At the first step of a phase with `prefilter`, drop its pool's problems at pass rate 0 or 1."""
        starts = [sum(p.steps for p in self.rl.phases[:i]) for i in range(len(self.rl.phases))]
        if step in starts and self.phase(step).prefilter:
            return self.scheduler(step).prefilter()
        return None

    @property
    def total_steps(self) -> int:
        return sum(ph.steps for ph in self.rl.phases)

    # ---- one step, as data ------------------------------------------------------------------------
    def plan(self, step: int, round_: int, n: int, exclude: set[str]) -> list[str]:
        """The problem ids of (step, round): read back if this step ran before, else sampled and saved."""
        path = self.dir / "plans" / f"step-{step:06d}-{round_}.json"
        if path.exists():
            return json.loads(path.read_text())
        sched = self.scheduler(step)
        ids = [i for i in sched.sample(n + len(exclude), step=step * 100 + round_) if i not in exclude][:n]
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(ids))
        return ids

    def produce(self, step: int) -> RolloutBatch:
        """sample -> generate -> verify: the batch for `step` (plus dynamic-sampling rounds)."""
        b = RolloutBatch(step, {}, [], [], Timer())
        phase = self.phase(step)
        for round_ in range(self.rl.dynamic_sampling_rounds + 1):
            informative = {r.problem_id for r, v in zip(b.rollouts, b.verdicts) if v.reward > 0} & \
                          {r.problem_id for r, v in zip(b.rollouts, b.verdicts) if v.reward <= 0}
            need = self.rl.batch_problems - (len(informative) if round_ else 0)
            if need <= 0:
                break
            problems = [self.train_problems[i] for i in self.plan(step, round_, need, set(b.problems))]
            b.problems.update((p.id, p) for p in problems)
            rs, vs = self.generate_and_verify(problems, {"max_tokens": phase.max_tokens}, b.timer)
            b.rollouts += rs
            b.verdicts += vs
        return b

    def generate_and_verify(self, problems: list[Problem], overrides: dict, timer: Timer) -> tuple[list, list]:
        """G rollouts per problem and their verdicts, in problem order. With rl.pipeline, a problem's group
        goes to the verifier pool as soon as its engine finishes it; `time_verify` is then the verification
        left after the last rollout (the part generation did not hide)."""
        from actors.verifier.pool import requests_for

        G = self.rl.group_size
        if not self.rl.pipeline:
            with timer("generate"):
                rs = self.rollout.generate(problems, G, overrides)
            with timer("verify"):
                return rs, self.verifier.verify(requests_for({p.id: p for p in problems}, rs))
        rollouts, verdicts = {}, {}
        with ThreadPoolExecutor(self.rl.verify_threads) as pool:
            with timer("generate"):
                for p, rs in self.rollout.stream(problems, G, overrides):
                    rollouts[p.id], verdicts[p.id] = rs, pool.submit(self.verifier.verify, requests_for({p.id: p}, rs))
            with timer("verify"):
                verdicts = {i: f.result() for i, f in verdicts.items()}
        return [r for p in problems for r in rollouts[p.id]], [v for p in problems for v in verdicts[p.id]]

    def score(self, b: RolloutBatch) -> None:
        """Each rollout's training reward (a truncated response: 0), MGPO-weighted group advantage A' = w*A and w
        (the pure function, once)."""
        from actors.losses import score

        b.rollouts = score(b.rollouts, [v.reward for v in b.verdicts], self.loss, self.phase(b.step).max_tokens)

    def train(self, b: RolloutBatch) -> dict:
        """One learner step on the scored rollouts (groups whose advantages are all zero are skipped)."""
        with b.timer("train"):
            return self.learner.step(b.rollouts)

    def publish_weights(self, version: int, timer: Timer | None = None) -> None:
        """learner rank 0 -> object store -> engines (WeightSync); this process holds only the handle."""
        with (timer or Timer())("sync"):
            self.rollout.update_weights(self.learner.publish_weights(self.conf.rollout.weight_sync), version)

    def record_outcomes(self, b: RolloutBatch) -> None:
        """Each sample's training outcome to the scheduler (idempotent per (step, problem, sample))."""
        self.scheduler(b.step).record(b.step, [(r.problem_id, r.sample_idx, r.reward > 0) for r in b.rollouts])

    def log_step(self, b: RolloutBatch, m: dict, wall_s: float) -> dict:
        """metrics.jsonl (with a wall-clock time), Ray gauges, TensorBoard; every learner metric included."""
        lens = [len(r.response_ids) for r in b.rollouts]
        rec = {"step": b.step, "time": time.time(), "phase": self.phase(b.step).name, "samples": len(b.rollouts),
               "reward_mean": sum(r.reward for r in b.rollouts) / len(b.rollouts),
               "pass_rate": sum(v.reward > 0 for v in b.verdicts) / len(b.verdicts),
               **m, "zero_adv_frac": zero_adv_frac(b.rollouts),
               "len_mean": sum(lens) / len(lens), "len_max": max(lens),
               "trunc_frac": sum(r.finish_reason == "length" for r in b.rollouts) / len(b.rollouts),
               "staleness": b.step - min(r.weight_version for r in b.rollouts),
               "group_correct": group_correct(b.rollouts, b.verdicts),
               "step_wall_s": wall_s, "tokens_per_s": sum(lens) / max(wall_s, 1e-9),
               "sync_mb": self.learner.publish_bytes / 2**20, **b.timer}
        self.log.log(rec)
        return rec

    # ---- checkpoints and failures -----------------------------------------------------------------
    def checkpoint(self, step: int, resume_state: bool = True) -> None:
        """A loadable HF folder checkpoints/step-N (kept by rl.keep_last / rl.keep_best; trainer/checkpoints.py),
        then, at rl.checkpoint_every and the end, the DeepSpeed resume state checkpoint/ (the latest only; an
        eval step's checkpoint for keep_best is the HF folder alone); listed in the index once saved."""
        root = self.dir / "checkpoints"
        staged = ckpts.staging(root, step)
        self.learner.save_hf(staged)
        if resume_state:
            self.learner.save_checkpoint(self.dir / "checkpoint", extra={"step": step, "restarts": self.restarts})
        ckpts.add(root, step, staged, self.rl.keep_last, self.rl.keep_best, policy=str(self.policy),
                  train_problems=len(self.train_problems), held_out_problems=len(self.held))

    def maybe_checkpoint(self, step: int) -> None:
        """After `step` steps: the HF folder when due (trainer/checkpoints.py `due`), the resume state with it at
        rl.checkpoint_every and at the end."""
        every = self.rl.checkpoint_every
        if ckpts.due(step, self.total_steps, every, self.rl.eval_every, self.rl.keep_best):
            self.checkpoint(step, resume_state=step == self.total_steps or bool(every and step % every == 0))

    def record_eval(self, step: int, pass1: float) -> None:
        """The held-out Pass@1 of step N into the checkpoint index (the keep policy may now pick another best)."""
        ckpts.record_eval(self.dir / "checkpoints", step, pass1, self.rl.keep_last, self.rl.keep_best)

    def restore(self) -> int:
        """Load the last checkpoint into the learner and the engines; returns the step to run next."""
        from actors.learner import find_checkpoint

        ckpt = find_checkpoint(self.dir / "checkpoint")
        step = self.learner.load_checkpoint(ckpt)["step"] if ckpt else 0
        ckpts.prune_after(self.dir / "checkpoints", step)  # HF folders of steps this run redoes
        self.publish_weights(step)
        self.redone = self.log.truncate(step)  # logged steps after the checkpoint, trained again
        self.restored_from = ckpt
        return step

    def evaluate(self, step: int) -> dict:
        t0 = time.perf_counter()
        res = evaluate(self.rollout, self.verifier, self.held, self.rl.eval_k,
                       {"max_tokens": self.phase(max(step - 1, 0)).max_tokens})
        res.update(time=time.time(), duration_s=time.perf_counter() - t0)
        with (self.dir / "eval.jsonl").open("a") as f:
            f.write(json.dumps({"step": step, **res}) + "\n")
        return res

    def close(self) -> None:
        self.stack.close()
        for part in (self.rollout, self.learner, self.verifier):
            try:
                part.shutdown()
            except Exception:
                pass
        self.log.close(ok=False)  # trackers still open here: the run stopped before finish() closed them


def run_rl(conf, run_dir: Path, train: list[Problem], held: list[Problem], policy: str, resume: bool) -> dict:
    """The loop. Returns the summary (also written to run_dir/summary.json)."""
    t_start = time.time()
    run = Run(conf, run_dir, train, held, policy)
    try:
        before_path = run_dir / "eval_before.json"
        step = run.restore() if resume else 0
        if resume:
            src = f"checkpoint {run.restored_from}" if run.restored_from else "no checkpoint yet: from the start"
            tqdm.write(f"rl: resumed at step {step} ({src}); {run.redone} step(s) logged after it are redone")
        run.placement = placement(run)
        tqdm.write(f"rl: placement: {describe(run.placement)}")
        if not before_path.exists():
            before_path.write_text(json.dumps(run.evaluate(0)))
        before = json.loads(before_path.read_text())
        if not resume:
            run.log.log({"step": -1, "eval_pass1": before["pass1"]})  # before step 0
        bar = tqdm(total=run.total_steps, initial=step, desc="rl", dynamic_ncols=True, mininterval=1)
        source = BATCH_SOURCES[run.rl.mode](
            run.produce, lambda s: s < run.total_steps and run.phase(s) is run.phase(s - 1), run.rl.max_staleness)
        run.stack.callback(source.close)
        while step < run.total_steps:
            dropped = run.prefilter(step)
            if dropped is not None:
                run.log.log({"step": step, "prefiltered": dropped})
                tqdm.write(f"rl: phase '{run.phase(step).name}' starts; prefilter dropped {dropped} problems at 0 or 1")
            watch(run, step)  # a node lost since the last step: what it held, where those actors are now
            t0, trained = time.perf_counter(), False
            try:
                batch = source.next(step)                      # sample -> generate -> verify
                run.score(batch)                               # rewards -> MGPO-weighted group advantages
                metrics = run.train(batch)                     # DeepSpeed step on the learner ranks
                trained = True
                run.publish_weights(step + 1, batch.timer)     # learner -> engines, in place
                run.record_outcomes(batch)                     # per-problem pass rates to the scheduler
                rec = run.log_step(batch, metrics, time.perf_counter() - t0)  # metrics.jsonl, gauges
                run.maybe_checkpoint(step + 1)  # a look-ahead batch in flight is fine: its plan makes a redo identical
            except RECOVERABLE as e:  # an actor or its node was lost: trainer/recovery.py says what happens
                source.drain()
                step = recover(run, e, step, trained)
                bar.n = step
                continue
            step += 1
            if run.rl.eval_every and step % run.rl.eval_every == 0 and step < run.total_steps:
                rec["eval_pass1"] = run.evaluate(step)["pass1"]
                run.log.log({"step": step - 1, "eval_pass1": rec["eval_pass1"], "time": time.time()})
                run.record_eval(step, rec["eval_pass1"])
            bar.update(1)
            bar.set_postfix(reward=f"{rec['reward_mean']:.2f}", zero_adv=f"{rec['zero_adv_frac']:.2f}",
                            len=f"{rec['len_mean']:.0f}", eval=f"{rec.get('eval_pass1', float('nan')):.2f}")
        bar.close()
        after = run.evaluate(step)
        run.log.log({"step": step, "eval_pass1": after["pass1"]})
        run.record_eval(step, after["pass1"])
        last = ckpts.step_dir(run_dir / "checkpoints", step)
        if last.is_dir():  # the last checkpoint holds the same weights: copied, not gathered again
            ckpts.copy_model(last, run_dir / "final-model")
        else:
            run.learner.save_hf(run_dir / "final-model")
        return finish(run, before, after, t_start)
    finally:
        run.close()


def finish(run: Run, before: dict, after: dict, t_start: float) -> dict:
    recs = [r for r in run.log.records() if "samples" in r]
    split = step_totals(recs)  # where the time went, and how well the learner used its devices
    summary = {
        "pass1_before": before["pass1"], "pass1_after": after["pass1"],
        "pass1_gain": after["pass1"] - before["pass1"], **paired(before, after),
        "wall_minutes": (time.time() - t_start) / 60, "steps": len(recs),
        "samples": sum(r["samples"] for r in recs),
        "zero_adv_frac_mean": sum(r["zero_adv_frac"] for r in recs) / max(len(recs), 1),
        "reward_first": recs[0]["reward_mean"] if recs else 0.0,
        "reward_last": recs[-1]["reward_mean"] if recs else 0.0,
        "truncated_after": recs[-1]["trunc_frac"] if recs else 0.0,
        "learner_restarts": run.restarts, "recoveries": len(run.recoveries),
        "steps_retrained": sum(r["steps_retrained"] for r in run.recoveries), **split,
        # this driver's verifier calls (evals included; since the resume, after one): checks run, verdicts reused
        "verifier_checks": run.verifier.stats["requests"], "verdicts_reused": run.verifier.stats["reused"],
        "eval_before": before, "eval_after": after,
    }
    (run.dir / "summary.json").write_text(json.dumps(summary, indent=2))
    from trainer.run_log import eval_rows

    run.log.log_table("eval", eval_rows(before, after))  # held-out Pass@j before/after: all, then per subdomain
    run.log.log_artifact(run.dir / "summary.json")
    png = run.log.plot(run.dir / "curves.png")  # also sent to the trackers
    show = run.held[:: max(1, len(run.held) // 4)][:4]
    for p, r in zip(show, run.rollout.generate(show, 1, {"temperature": 0.0})):
        tqdm.write(f"  {p.prompt[:48]!r:52s} gold={p.answer or 'tests'!s:8s} -> {r.text[:70]!r}")
    print(summary_table(summary))
    print(f"plots: {png}\nsummary: {run.dir / 'summary.json'}\nmetrics: {run.log.path}")
    run.log.close()  # the trackers' runs end as finished
    return summary


def zero_adv_frac(rollouts: list) -> float:
    """Share of the step's groups whose advantages are all 0 (every reward equal): no signal in them, whether
    the learner skips them (`skipped_frac`) or, with a KL term, still steps on them."""
    groups: dict[str, bool] = {}
    for r in rollouts:
        groups[r.problem_id] = groups.get(r.problem_id, True) and r.advantage == 0
    return sum(groups.values()) / max(len(groups), 1)


def group_correct(rollouts: list, verdicts: list) -> list[int]:
    """Correct samples in each problem's group, ascending: the step's pass-rate histogram."""
    counts: dict[str, int] = {}
    for r, v in zip(rollouts, verdicts, strict=True):
        counts[r.problem_id] = counts.get(r.problem_id, 0) + int(v.reward > 0)
    return sorted(counts.values())


def paired(before: dict, after: dict) -> dict:
    """The held-out gain over the same problems with its paired standard error, and the gain in those units
    (`pass1_gain_se`, the figure `make demo` is judged by); {} for evals without per-problem counts."""
    if "per_problem" not in before or "per_problem" not in after:
        return {}
    gain, se = paired_gain(before["per_problem"], after["per_problem"], before["k"], after["k"])
    return {"pass1_gain_paired": gain, "pass1_gain_paired_se": se, "pass1_gain_se": gain / se if se else 0.0}


def save_config(conf, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(conf), sort_keys=False))


def main(conf, resume: bool = False, policy: str | None = None) -> dict:
    """`ssp rl`: RL from `policy` (default: model.path, the tiny model built if missing), on Ray; prints the
    summary. `ssp pipeline` passes the Spectrum stage's merged model."""
    from cluster.ray_cluster import connect
    from trainer.data.splits import load_problems_for
    from trainer.models.ensure import ensure_model

    run_dir = Path(conf.run_dir)
    if resume and not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"rl --resume: {run_dir}/config.yaml not found; is {run_dir} a run directory?")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(f"rl: {run_dir} already holds a run; continue it with `ssp rl --resume {run_dir}` "
                              "or set run_dir=... to start a new one")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(conf, run_dir)
    train, held = load_problems_for(conf)
    policy = policy or ensure_model(conf)
    info = connect(conf.cluster)
    if info.get("dashboard_url"):
        print(f"Ray dashboard: http://{info['dashboard_url']}")
    summary = run_rl(conf, run_dir, train, held, policy, resume)
    if info.get("dashboard_url"):
        print(f"Ray dashboard was at http://{info['dashboard_url']} (metrics: ssp_rl_*)")
    return summary
