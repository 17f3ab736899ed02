"""Ground I/O and errors every room may use: the bad-input error (`DataError`, whose message names the file, line
and field), the JSONL reader that raises it, and the output check every writing command makes first."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Malformed input; the message says `file:line: field ...`."""


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


def check_output(out: str | None, inputs: list[str]) -> None:
    """Refuse, before any work starts, an output that is an input or cannot be written."""
    if not out:
        return
    o = Path(out)
    for i in inputs:
        if o.resolve() == Path(i).resolve() or (o.exists() and Path(i).exists() and o.samefile(i)):
            raise DataError(f"{out}: the output would overwrite the input {i}")
    if o.is_dir():
        raise DataError(f"{out}: is a directory, expected a file path")
    parent = o.resolve().parent
    if not parent.is_dir():
        raise DataError(f"{out}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (o.exists() and not os.access(o, os.W_OK)):
        raise DataError(f"{out}: not writable")
