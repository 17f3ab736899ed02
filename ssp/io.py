"""Ground I/O and errors every room may use: the bad-input error (`DataError`, whose message names the file, line
and field), the JSONL reader that raises it, and the output check every writing command makes first."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class DataError(ValueError):
    """Malformed input; the message says `file:line: field ...`."""


class Unavailable(RuntimeError):
    """A resource the command needs is not there or refused it (a cluster, a server, a port); the message says
    which and what to do."""


def regular_file(path: str | Path, what: str = "a file") -> Path:
    """`path` as a Path if it is a regular file; a DataError naming it otherwise (a FIFO or a device would block
    or never end, a folder cannot be read as one)."""
    import stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory, expected {what}")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise DataError(f"{path}: is {kind}, expected {what} (a regular file)")
    return p


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`file:line`, object) for every non-blank line; bad JSON or a non-object raises DataError naming both."""
    p = regular_file(path, "a JSONL file")
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


def check_output(out: str | None, inputs: list[str], overwrite: bool = False) -> None:
    """Refuse, before any work starts, an output file that is an input, cannot be written, or (without
    `overwrite`) already holds something: a file of yours is never replaced unasked."""
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
    if o.exists() and not overwrite and (not o.is_file() or o.stat().st_size > 0):
        raise DataError(f"{out}: already exists; choose a new file name (or pass --overwrite to replace it)")


@contextmanager
def writing(out: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `out` for writing; it becomes `out` (atomically) only when the block ends
    without an error, so an interrupted write never leaves half a file where a whole one was."""
    o = Path(out)
    tmp = o.with_name(f".{o.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, o)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def building(out: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside `out` to build an output in; when the block ends without an error it
    replaces `out` (an earlier output, checked by check_output_dir first), else it is removed."""
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    tmp = o.with_name(f".{o.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, o)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_dir(out: str | Path, inputs: list[str | Path], marker: str, what: str) -> None:
    """Refuse, before any work starts, an output folder that would destroy something: an input or a folder that
    holds an input, a regular file, or an existing non-empty folder this command did not write (it has no
    `marker` file). A folder with the marker is this command's earlier output and may be replaced."""
    o = Path(out).resolve()
    for i in inputs:
        ip = Path(i).resolve()
        if o == ip or o in ip.parents:
            raise DataError(f"{out}: the output folder is (or holds) the input {i}; choose a new folder")
    if o.exists() and not o.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if o.is_dir() and any(o.iterdir()) and not (o / marker).is_file():
        raise DataError(f"{out}: exists, is not empty and was not written by {what} (no {marker}); choose a new "
                        "or empty folder")


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing an earlier output there (checked by check_output_dir)
    only once the new one is complete."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
