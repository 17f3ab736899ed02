"""Problems in, one schema out: our JSONL (the schema of data/eval/, see its SOURCE.md files) and verl-style
parquet.

Malformed input raises `DataError` naming the file, the line (or row) and the field. Nothing is
silently skipped. Ids are taken from the record, or derived from the problem text, so they are stable
across runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from actors.prompts import build_prompt  # noqa: F401  (re-exported)
from actors.records import Problem
from actors.verifier.code_grader import InvalidTests, check_tests, with_problem_code
from actors.verifier.math_answer import check_choices
from ssp.io import DataError, iter_jsonl, regular_file  # noqa: F401  (re-exported: the loaders' errors and reader)


def stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _need(rec: dict, key: str, typ: type | tuple, where: str) -> Any:
    if key not in rec:
        raise DataError(f"{where}: missing field '{key}'")
    val = rec[key]
    if not isinstance(val, typ):
        names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise DataError(f"{where}: field '{key}' must be {names}, got {type(val).__name__}")
    return val


def _check_row_types(rec: dict, where: str) -> None:
    """Field types every schema shares: ids, gold answers, test imports and entry points (a wrong type is refused,
    never rewritten or iterated character by character)."""
    import math

    pid = rec.get("id")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, str | int) or pid == ""):
        raise DataError(f"{where}: field 'id' must be a non-empty string or an integer, got {pid!r}")
    ans = rec.get("answer")
    if isinstance(ans, bool) or (isinstance(ans, float) and not math.isfinite(ans)):
        raise DataError(f"{where}: field 'answer' must be a string or a finite number, got {ans!r}")
    imports = rec.get("test_imports")
    if imports is not None and (not isinstance(imports, list) or not all(isinstance(x, str) for x in imports)):
        raise DataError(f"{where}: field 'test_imports' must be a list of strings")
    entry = rec.get("entry_point")
    if entry is not None and not isinstance(entry, str):
        raise DataError(f"{where}: field 'entry_point' must be a string")


def from_record(rec: Any, where: str, prefix: str) -> Problem:
    """One JSONL record (math `problem/answer` or code `prompt/tests`) as a Problem."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    _check_row_types(rec, where)
    level = rec.get("level")
    if level is not None and (not isinstance(level, int) or isinstance(level, bool)):
        raise DataError(f"{where}: field 'level' must be int or null, got {level!r}")
    sols = rec.get("solutions") or []
    sols = [sols] if isinstance(sols, str) else sols  # one worked solution (e.g. MATH's, mapped by `fields`)
    if not isinstance(sols, list) or not all(isinstance(x, str) for x in sols):
        raise DataError(f"{where}: field 'solutions' must be a string or a list of strings")
    common = {"subdomain": str(rec.get("subdomain") or "unknown"), "level": level,
              "solutions": sols, "source": str(rec.get("source") or "")}
    if "tests" in rec:
        prompt = _need(rec, "prompt", str, where)
        tests = _need(rec, "tests", (list, dict), where)
        if isinstance(tests, list):
            tests = {"asserts": tests, "imports": rec.get("test_imports") or [],
                     **({"entry_point": rec["entry_point"]} if rec.get("entry_point") else {})}
        try:
            tests = with_problem_code(tests, prompt) if check_tests(tests) == "test_code" else tests
        except InvalidTests as e:
            raise DataError(f"{where}: field 'tests': {e}") from None
        pid = rec.get("id") or stable_id(prefix, prompt)
        starter = rec.get("starter_code") or ""
        if not isinstance(starter, str):
            raise DataError(f"{where}: field 'starter_code' must be a string")
        return Problem(id=str(pid), prompt=prompt, kind="code", tests=tests, starter_code=starter,
                       **{**common, "subdomain": rec.get("subdomain") or "code"})
    prompt = _need(rec, "problem", str, where)
    answer = _need(rec, "answer", (str, int, float), where)
    if isinstance(answer, str) and not answer.strip():
        raise DataError(f"{where}: field 'answer' is empty (no response could be graded right against it)")
    pid = rec.get("id") or stable_id(prefix, prompt)
    choices = None
    if rec.get("choices") is not None:
        try:
            choices = check_choices(rec["choices"], answer)
        except ValueError as e:
            raise DataError(f"{where}: field 'choices': {e}") from None
    return Problem(id=str(pid), prompt=prompt, kind="math", answer=str(answer), choices=choices, **common)


def to_record(p: Problem) -> dict[str, Any]:
    """`p` as a JSONL record in the schema `from_record` reads (what `ssp decontaminate --out` writes): math as
    `problem/answer`, code as `prompt/tests`; empty optional fields left out."""
    rec: dict[str, Any] = {"id": p.id}
    if p.kind == "code":
        rec.update(prompt=p.prompt, tests=p.tests)
        if p.starter_code:
            rec["starter_code"] = p.starter_code
    else:
        rec.update(problem=p.prompt, answer=p.answer)
        if p.choices:
            rec["choices"] = p.choices
    rec.update(subdomain=p.subdomain, level=p.level, solutions=p.solutions, source=p.source)
    return {k: v for k, v in rec.items() if v not in (None, "", [])}


def load_jsonl(path: str | Path) -> list[Problem]:
    path = Path(path)
    return _unique([from_record(rec, where, path.stem) for where, rec in iter_jsonl(path)], path)


def load_parquet(path: str | Path) -> list[Problem]:
    """verl's RL parquet: `prompt` (chat messages), `reward_model.ground_truth`, `extra_info`."""
    import pyarrow.parquet as pq

    path = Path(path)
    out = []
    for n, row in enumerate(pq.read_table(path).to_pylist()):
        where = f"{path}: row {n}"
        msgs = _need(row, "prompt", list, where)
        user = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
        if not user or not isinstance(user[-1], str):
            raise DataError(f"{where}: field 'prompt' has no user message with string content")
        rm = _need(row, "reward_model", dict, where)
        if "ground_truth" not in rm or rm["ground_truth"] is None:
            raise DataError(f"{where}: missing field 'reward_model.ground_truth'")
        extra = row.get("extra_info") or {}
        pid = extra.get("id") or (f"{path.stem}-{extra['index']}" if "index" in extra else stable_id(path.stem, user[-1]))
        ability = str(row.get("ability") or "math")
        if ability == "code":
            gt = rm["ground_truth"]
            tests = json.loads(gt) if isinstance(gt, str) else gt
            try:
                tests = with_problem_code(tests, user[-1]) if check_tests(tests) == "test_code" else tests
            except InvalidTests as e:
                raise DataError(f"{where}: field 'reward_model.ground_truth': {e}") from None
            out.append(Problem(id=str(pid), prompt=user[-1], kind="code", tests=tests, subdomain="code",
                               source=str(row.get("data_source", ""))))
        else:
            out.append(Problem(id=str(pid), prompt=user[-1], kind="math", answer=str(rm["ground_truth"]),
                               subdomain=str(extra.get("subdomain") or row.get("data_source") or "math"),
                               source=str(row.get("data_source", ""))))
    return _unique(out, path)


def _unique(problems: list[Problem], path: Path) -> list[Problem]:
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DataError(f"{path}: duplicate problem id '{p.id}'")
        seen.add(p.id)
    return problems


def load_problems(path: str | Path) -> list[Problem]:
    """Load a dataset file by extension (.jsonl / .parquet)."""
    path = regular_file(path, "a .jsonl or .parquet file")
    if path.suffix == ".parquet":
        return load_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return load_jsonl(path)
    raise DataError(f"{path}: unknown dataset format '{path.suffix}' (expected .jsonl or .parquet here; other "
                    "formats load as data.train sources, trainer/data/sources.py)")
