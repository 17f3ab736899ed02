"""Export and import of a scheduler's per-problem counts (JSONL): carry pass rates from one run or cluster
to another. `ssp scheduler export|import` calls these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from cluster.scheduler import ProblemScheduler
from ssp.io import DataError, iter_jsonl


def export(sched: ProblemScheduler, out: str | Path | IO[str]) -> int:
    """Write a meta line and one JSON line per problem to a path or an open text file; returns the number of
    problems."""
    if not hasattr(out, "write"):
        with open(out, "w") as f:
            return export(sched, f)
    meta = sched._call(lambda: sched.client.hgetall(sched._prefix() + "M"))
    n = 0
    out.write(json.dumps({"type": "meta", "dataset": sched.fingerprint, "counters": {
        k: int(v) for k, v in meta.items() if k != "layout"}}) + "\n")
    for row in sched.problems():
        out.write(json.dumps({"type": "problem", "dataset": sched.fingerprint, **row}) + "\n")
        n += 1
    return n


def import_(sched: ProblemScheduler, path: str | Path, chunk: int = 2000) -> dict[str, int]:
    """Restore an export. Every line is validated before anything is written; rows never lower counts."""
    metas, rows = _parse_export(Path(path))
    written = kept = 0
    prev = sched.fingerprint
    for fp in sorted({r["dataset"] for r in rows} | {m["dataset"] for m in metas}):
        sched.fingerprint = fp
        sched._call(lambda fp=fp: sched.client.sadd(sched._datasets_key(), fp))
        mine = [r for r in rows if r["dataset"] == fp]
        c = sched.config
        for s in range(0, len(mine), chunk):
            args: list[Any] = [sched._layout(), c.bands, c.alpha, c.beta, c.min_attempts]
            for r in mine[s:s + chunk]:
                args += [r["id"], r["subdomain"], r["attempts"], r["correct"],
                         "" if r.get("ema") is None else f"{r['ema']:.6f}", r["last_step"],
                         int(r["band"] == "x")]
            w, k = sched._call(lambda args=args: sched._run("import", args))
            written, kept = written + int(w), kept + int(k)
        for m in metas:
            if m["dataset"] == fp and m["counters"]:
                args = [x for kv in m["counters"].items() for x in kv]
                sched._call(lambda args=args: sched._run("meta_max", args))
    sched.fingerprint = prev or sched.fingerprint
    return {"written": written, "kept": kept}


_FIELDS: dict[str, tuple[type, ...]] = {"id": (str,), "subdomain": (str,), "attempts": (int,),
                                        "correct": (int,), "last_step": (int,), "band": (str,),
                                        "dataset": (str,)}


def _parse_export(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse and check every line of an export; raise DataError naming file, line and field."""
    metas, rows = [], []
    for where, d in iter_jsonl(path):
        if d.get("type") == "meta":
            if not isinstance(d.get("dataset"), str) or not isinstance(d.get("counters"), dict) or not all(
                    isinstance(v, int) and v >= 0 for v in d["counters"].values()):
                raise DataError(f"{where}: field 'counters'/'dataset' of the meta line is malformed")
            metas.append(d)
            continue
        for key, types in _FIELDS.items():
            v = d.get(key)
            if not isinstance(v, types) or isinstance(v, bool):
                raise DataError(f"{where}: field '{key}' must be {types[0].__name__}, got {v!r}")
        if d["attempts"] < 0 or not 0 <= d["correct"] <= d["attempts"]:
            raise DataError(f"{where}: field 'correct' must be in 0..attempts, got {d['correct']!r}")
        ema = d.get("ema")
        if ema is not None and (not isinstance(ema, int | float) or isinstance(ema, bool) or not 0 <= ema <= 1):
            raise DataError(f"{where}: field 'ema' must be a pass rate in [0, 1] or null, got {ema!r}")
        rows.append(d)
    return metas, rows
