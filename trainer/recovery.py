"""Where an RL run's actors are, and what the loop does when part of the cluster fails.

`placement(run)` asks every engine, learner rank and verifier for its Ray node and writes `placement.json`
(the driver's node too, and each node's resources), so a run says where it ran; `watch(run, step)` notices,
between steps, a node that left the cluster and says what it held.

`recover(run, err, step, trained)` is called by the loop when a step fails because an actor or an object
was lost (a killed process, a lost node: `RECOVERABLE`). Engines and verifiers come back by themselves (Ray
restarts them, on a replacement node if theirs died; their pools wait, bounded by rollout.startup_timeout_s
and verifier.restart_timeout_s). The learner decides the rest:
- its ranks all answer and the step had not trained: the step is redone from its saved plan (the same
  problems, so the scheduler's (step, problem, sample) keys are the same and nothing is counted twice);
- a rank is gone, or the step had trained but not finished: the learner is restarted (waiting up to
  learner.startup_timeout_s for a node with its resources) and the run goes back to the last checkpoint,
  redoing the steps after it from their plans (`steps_retrained`).
Each recovery is one line on stderr, one record in metrics.jsonl and one entry of the summary.
"""

from __future__ import annotations

import json
import re
import time

import ray
from tqdm import tqdm

RECOVERABLE = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)


def placement(run) -> dict:
    """{role: [node id per actor]}, the driver's node and each node's resources; written to placement.json."""
    nodes = {n["NodeID"]: {"alive": n["Alive"], "head": "node:__internal_head__" in n["Resources"],
                           "resources": {k: v for k, v in n["Resources"].items()
                                         if not k.startswith("node:") and "memory" not in k}}
             for n in ray.nodes() if n["Alive"]}
    out = {"driver": ray.get_runtime_context().get_node_id(), "engines": run.rollout.node_ids(),
           "learner": run.learner.node_ids(), "verifiers": run.verifier.node_ids(), "nodes": nodes,
           "time": time.time()}
    (run.dir / "placement.json").write_text(json.dumps(out, indent=1))
    return out


def describe(p: dict) -> str:
    """'engines on 3f2a1c (ssp_gpu), learner on 3f2a1c (ssp_gpu), verifiers on 91bc07 (ssp_cpu), driver on
    the head' for the run's log."""
    def where(ids: list[str]) -> str:
        parts = []
        for i in dict.fromkeys(ids):
            custom = sorted(k for k in p["nodes"].get(i, {}).get("resources", {}) if k not in ("CPU", "GPU"))
            parts.append(f"{i[:6]}" + (f" ({', '.join(custom)})" if custom else ""))
        return " + ".join(parts)

    head = p["nodes"].get(p["driver"], {}).get("head")
    return (f"engines on {where(p['engines'])}, learner on {where(p['learner'])}, verifiers on "
            f"{where(p['verifiers'])}, driver on {'the head' if head else p['driver'][:6]} "
            f"({len(p['nodes'])} node{'s' if len(p['nodes']) != 1 else ''})")


def watch(run, step: int) -> None:
    """Between steps: if a node the run's actors were on has left the cluster, say which and what it held, and
    record where they are now (Ray restarted them elsewhere, or their pools waited for a replacement)."""
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    before = run.placement
    lost = [i for i in before["nodes"] if i not in alive]
    if not lost:
        return
    for i in lost:
        held = [f"{role} {k}" for role in ("engines", "learner", "verifiers") for k, n in enumerate(before[role])
                if n == i]
        custom = ", ".join(k for k in before["nodes"][i]["resources"] if k not in ("CPU", "GPU"))
        tqdm.write(f"rl: step {step}: node {i[:6]} ({custom or 'no custom resources'}) left the cluster; it held "
                   f"{', '.join(held) or 'none of this run'}")
    run.placement = placement(run)
    run.log.log({"step": step, "nodes_lost": len(lost), "time": time.time()})
    tqdm.write(f"rl: placement now: {describe(run.placement)}")


def _what(err: Exception) -> str:
    """'OwnerDiedError: Failed to retrieve object ...' (a task's error by its cause, without terminal colours)."""
    e = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__


def recover(run, err: Exception, step: int, trained: bool) -> int:
    """Bring the run back after `err` lost part of it during `step`; returns the step to run next."""
    t0 = time.monotonic()
    what = _what(err)
    learner_ok = run.learner.alive()
    if learner_ok and not trained:
        action, nxt = f"learner intact: step {step} is redone from its plan", step
    else:
        run.restarts += 1
        if run.restarts > run.rl.max_learner_restarts:
            raise RuntimeError(f"rl: learner failed {run.restarts} times (rl.max_learner_restarts); "
                               f"continue with `ssp rl --resume {run.dir}`") from err
        why = "a learner rank was lost" if not learner_ok else f"step {step} had trained but not finished"
        tqdm.write(f"rl: step {step}: {what}; {why}: restart {run.restarts} of the learner from the last "
                   f"checkpoint (waiting up to {run.learner_conf.startup_timeout_s:g}s for its resources)")
        if not learner_ok:
            from actors.learner import LearnerGroup

            try:
                run.learner.shutdown()
            except Exception:  # the group is already broken; its actors are being killed anyway
                pass
            run.learner = LearnerGroup(run.learner_conf, run.policy)
        nxt = run.restore()
        action = (f"learner {'restarted' if not learner_ok else 'rolled back'}, back to checkpoint step {nxt}: "
                  f"{step - nxt} steps redone")
    rec = {"step": nxt, "recovered": what, "action": action, "steps_retrained": step - nxt,
           "recovery_s": time.monotonic() - t0, "time": time.time()}
    run.recoveries.append(rec)
    run.log.log(rec)
    run.placement = placement(run)
    where = describe(run.placement)
    tqdm.write(f"rl: recovered in {rec['recovery_s']:.1f}s from {what} ({action}); now {where}")
    return nxt
