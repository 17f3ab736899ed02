"""Problems in, one schema out: our JSONL (../shared/data) and verl-style parquet.

Malformed input raises `DataError` naming the file, the line (or row) and the field. Nothing is
silently skipped. Ids are taken from the record, or derived from the problem text, so they are stable
across runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actors.code_grader import InvalidTests, check_tests, with_problem_code


class DataError(ValueError):
    """Malformed input; the message says `file:line: field ...`."""


@dataclass
class Problem:
    id: str
    prompt: str
    kind: str  # "math" | "code"
    answer: str | None = None  # math gold
    tests: dict[str, Any] | None = None  # code tests, in the verifier's format
    subdomain: str = "unknown"
    level: int | None = None
    solutions: list[str] = field(default_factory=list)  # SFT traces, when the source has them
    source: str = ""
    starter_code: str = ""  # code problems: the signature a solution must fill in (LiveCodeBench)
    choices: dict[str, str] | None = None  # multiple-choice math: letter -> option text (the gold is a letter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _need(rec: dict, key: str, typ: type | tuple, where: str) -> Any:
    if key not in rec:
        raise DataError(f"{where}: missing field '{key}'")
    val = rec[key]
    if not isinstance(val, typ):
        raise DataError(f"{where}: field '{key}' must be {getattr(typ, '__name__', typ)}, got {type(val).__name__}")
    return val


def check_choices(choices: Any, gold: Any) -> dict[str, str]:
    """A multiple-choice problem's options as letter -> text: a JSON object keyed by single capital letters, or a
    list of option texts (lettered A, B, ...); the gold must be one of the letters. Raises ValueError."""
    from trainer.math_answer import gold_letter

    if isinstance(choices, list):
        if not 2 <= len(choices) <= 26:
            raise ValueError(f"a list of 2 to 26 options, got {len(choices)}")
        choices = {chr(65 + i): c for i, c in enumerate(choices)}
    if not isinstance(choices, dict) or len(choices) < 2:
        raise ValueError("must be an object of 2 or more options (letter -> text) or a list of option texts")
    for k, v in choices.items():
        if not (isinstance(k, str) and len(k) == 1 and k.isupper() and k.isascii()):
            raise ValueError(f"option keys must be single capital letters, got {k!r}")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ValueError(f"option {k}: text must be a string or number, got {type(v).__name__}")
    letter = gold_letter(str(gold))
    if letter is None or letter not in choices:
        raise ValueError(f"the gold answer {str(gold)!r} must be one of the option letters {sorted(choices)}")
    return {k: str(v) for k, v in choices.items()}


def from_record(rec: Any, where: str, prefix: str) -> Problem:
    """One JSONL record (math `problem/answer` or code `prompt/tests`) as a Problem."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    level = rec.get("level")
    if level is not None and not isinstance(level, int):
        raise DataError(f"{where}: field 'level' must be int or null, got {level!r}")
    common = {"subdomain": rec.get("subdomain") or "unknown", "level": level,
              "solutions": rec.get("solutions") or [], "source": rec.get("source", "")}
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
        return Problem(id=str(pid), prompt=prompt, kind="code", tests=tests,
                       **{**common, "subdomain": rec.get("subdomain") or "code"})
    prompt = _need(rec, "problem", str, where)
    answer = _need(rec, "answer", (str, int, float), where)
    pid = rec.get("id") or stable_id(prefix, prompt)
    choices = None
    if rec.get("choices") is not None:
        try:
            choices = check_choices(rec["choices"], answer)
        except ValueError as e:
            raise DataError(f"{where}: field 'choices': {e}") from None
    return Problem(id=str(pid), prompt=prompt, kind="math", answer=str(answer), choices=choices, **common)


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`file:line`, object) for every non-blank line; bad JSON or a non-object raises DataError naming both."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSONL file")
    if not p.exists():
        raise DataError(f"{path}: no such file")
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (binary input? byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            if "\x00" in line:
                raise DataError(f"{path}:{n}: contains NUL bytes (binary input?)")
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{n}: JSON nested too deeply") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            yield f"{path}:{n}", rec


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
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return load_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return load_jsonl(path)
    raise DataError(f"{path}: unknown dataset format '{path.suffix}' (expected .jsonl or .parquet)")


def build_prompt(tokenizer: Any, problem: Problem, instruction: str = "") -> str:
    """The chat-formatted prompt text (generation prompt included) for one problem."""
    content = f"{problem.prompt}\n{instruction}".strip() if instruction else problem.prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                         tokenize=False, add_generation_prompt=True)
