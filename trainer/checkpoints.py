"""The checkpoints a user keeps: loadable HF folders RUN_DIR/checkpoints/step-N/ of an RL run, their index and the
keep policy (`rl.keep_last`, `rl.keep_best`; the Spectrum stage applies the same policy to its SFT checkpoints).

    checkpoints/index.json   {"policy": ..., "checkpoints": [{"step", "path", "pass1", "time"}, ...]}

`path` is relative to the run directory; `pass1` is the held-out Pass@1 of the eval at that step (null when
none ran there). The DeepSpeed resume state is not here: RUN_DIR/checkpoint/ holds only the latest one.
The policy is pure (`keep`, `best`, `due`); the rest reads and writes the folder, each write atomic (a
temporary sibling, then a rename), so a kill leaves the previous index or folder in place.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

from ssp.io import building, writing

INDEX = "index.json"


# ---- the policy (pure) ---------------------------------------------------------------------------------

def due(step: int, total: int, every: int, eval_every: int, keep_best: bool) -> bool:
    """Whether a checkpoint is saved after `step` steps: every `every` steps, at the end, and, with keep_best,
    at each intermediate eval step (so every eval has a checkpoint to keep)."""
    return (step == total or bool(every and step % every == 0)
            or bool(keep_best and eval_every and step % eval_every == 0))


def best(entries: list[dict]) -> dict | None:
    """The evaluated entry with the highest Pass@1 (ties: the later step); None if none was evaluated."""
    scored = [e for e in entries if e.get("pass1") is not None]
    return max(scored, key=lambda e: (e["pass1"], e["step"])) if scored else None


def keep(steps: list[int], keep_last: int, also: set[int] = frozenset()) -> set[int]:
    """The steps to keep: the newest `keep_last` (0 = all) plus `also` (the best or the specialists)."""
    newest = sorted(steps)[-keep_last:] if keep_last else steps
    return set(newest) | (set(also) & set(steps))


def kept_entries(entries: list[dict], keep_last: int, keep_best: bool) -> list[dict]:
    b = best(entries) if keep_best else None
    kept = keep([e["step"] for e in entries], keep_last, {b["step"]} if b else set())
    return [e for e in entries if e["step"] in kept]


# ---- the folder ----------------------------------------------------------------------------------------

def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step}"


def read_index(root: Path) -> dict:
    path = root / INDEX
    return json.loads(path.read_text()) if path.exists() else {"checkpoints": []}


def write_json(path: Path, data) -> None:
    with writing(path) as f:  # a temporary sibling, renamed into place
        f.write(json.dumps(data, indent=1))


def staging(root: Path, step: int) -> Path:
    """A fresh temporary folder beside step-N for the learner to write into (`add` renames it into place)."""
    root.mkdir(parents=True, exist_ok=True)
    return root / f".step-{step}.tmp-{uuid.uuid4().hex[:8]}"


def _commit(root: Path, index: dict) -> dict:
    """Write the index, then delete the step folders it does not list (a kill in between leaves only an unlisted
    folder, which the next commit removes)."""
    write_json(root / INDEX, index)
    listed = {Path(e["path"]).name for e in index["checkpoints"]}
    for d in root.glob("step-*"):
        if d.name not in listed:
            shutil.rmtree(d, ignore_errors=True)
    return index


def _apply(root: Path, index: dict, keep_last: int, keep_best: bool) -> dict:
    index["checkpoints"] = kept_entries(sorted(index["checkpoints"], key=lambda e: e["step"]), keep_last, keep_best)
    return _commit(root, index)


def add(root: Path, step: int, staged: Path, keep_last: int, keep_best: bool, **meta) -> dict:
    """Move the folder the learner wrote (`staged`) to step-N (replacing one a redone step left), list it in the
    index (with `meta` at the top: the policy, the data sizes) and apply the keep policy; returns the index."""
    final = step_dir(root, step)
    if final.exists():
        shutil.rmtree(final)
    staged.rename(final)
    index = read_index(root)
    index.update(meta)
    index["checkpoints"] = [e for e in index["checkpoints"] if e["step"] != step] + [
        {"step": step, "path": f"{root.name}/{final.name}", "pass1": None, "time": time.time()}]
    return _apply(root, index, keep_last, keep_best)


def record_eval(root: Path, step: int, pass1: float, keep_last: int, keep_best: bool) -> None:
    """Note the held-out Pass@1 of step N's checkpoint (if there is one) and apply the policy again: the best may
    have changed."""
    index = read_index(root)
    hit = [e for e in index["checkpoints"] if e["step"] == step]
    if hit:
        hit[0]["pass1"] = pass1
        _apply(root, index, keep_last, keep_best)


def prune_after(root: Path, step: int) -> None:
    """A resumed (or restarted) run continues from `step`: checkpoints of later steps, and temporary folders a
    kill left, belong to steps it will redo; drop them."""
    if not root.exists():
        return
    for tmp in root.glob(".step-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    index = read_index(root)
    index["checkpoints"] = [e for e in index["checkpoints"] if e["step"] <= step]
    _commit(root, index)


def copy_model(src: Path, dst: Path) -> Path:
    """Copy an HF folder to `dst` through a temporary sibling (replacing what `dst` held)."""
    with building(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return dst
