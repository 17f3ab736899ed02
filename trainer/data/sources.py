"""`data.train` / `data.eval` entries as problems: a path, or a source `{path, split, name, fields}`.

- Our JSONL (`.jsonl`/`.json`) and verl parquet are read by trainer/data/problems.py (errors name the line).
- Everything else goes through the `datasets` library: `.jsonl.gz`/`.csv`/other parquet files, `save_to_disk`
  folders (a Dataset, or a DatasetDict and its `split`), and hub ids `hf:<org>/<name>` where there is network.
- `fields` maps our field names to the dataset's columns (OpenRLHF's `input_key`/`label_key`), for every row, from
  any of those; e.g. `{problem: question, answer: final_answer, solutions: solution}`.

Malformed rows raise `DataError` naming the source, the row and the field, like the JSONL loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.records import Problem
from ssp.io import DataError, iter_jsonl, regular_file
from trainer.config import DataSourceConfig
from trainer.data.problems import _unique, from_record, load_problems

HUB = "hf:"
_BUILDERS = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet", ".csv": "csv"}


def as_source(entry: str | DataSourceConfig) -> DataSourceConfig:
    return entry if isinstance(entry, DataSourceConfig) else DataSourceConfig(path=entry)


def label(entry: str | DataSourceConfig) -> str:
    """How errors and tables name a source."""
    src = as_source(entry)
    return src.path + (f" [{src.split}]" if is_hub(src) or Path(src.path).is_dir() else "")


def is_hub(src: DataSourceConfig) -> bool:
    return src.path.startswith(HUB)


def _builder(path: Path) -> str:
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz" and len(suffixes) >= 2:
        return _BUILDERS.get(suffixes[-2], "")
    return _BUILDERS.get(path.suffix, "")


def _ours(src: DataSourceConfig) -> bool:
    """Read by our own loaders (line numbers in errors): unmapped JSONL, and parquet in verl's shape."""
    p = Path(src.path)
    if src.fields or is_hub(src) or not p.is_file():
        return False
    if p.suffix in (".jsonl", ".json"):
        return True
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return "reward_model" in pq.read_schema(p).names
        except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a file that is not parquet)
            raise DataError(f"{p}: not a readable parquet file ({type(e).__name__}: {e})") from None
    return False


def load_source(entry: str | DataSourceConfig) -> list[Problem]:
    """Every problem of one `data.train`/`data.eval` entry."""
    src = as_source(entry)
    if _ours(src):
        return load_problems(src.path)
    p = Path(src.path)
    if not is_hub(src) and not p.exists():
        raise DataError(f"{src.path}: no such file or folder")
    if not is_hub(src) and not p.is_dir():
        regular_file(p, "a dataset file or a save_to_disk folder")  # a FIFO or device would block the reader
    if not is_hub(src) and p.is_file() and p.suffix in (".jsonl", ".json"):  # mapped JSONL: keep line numbers
        rows = ((where, rename(rec, src.fields, where)) for where, rec in iter_jsonl(p))
    else:
        rows = ((f"{label(src)}: row {i}", rename(rec, src.fields, f"{label(src)}: row {i}"))
                for i, rec in enumerate(_dataset(src)))
    prefix = (p.name.split(".")[0] if not is_hub(src) else src.path[len(HUB):].replace("/", "-"))
    return _unique([from_record(rec, where, prefix) for where, rec in rows], Path(label(src)))


def rename(rec: dict[str, Any], fields: dict[str, str], where: str) -> dict[str, Any]:
    """The row with our field names: `fields` is {ours: theirs}; their column must be there."""
    if not fields:
        return rec
    out = dict(rec)
    for ours, theirs in fields.items():
        if theirs not in rec:
            raise DataError(f"{where}: missing column '{theirs}' (mapped to '{ours}' by the source's fields; "
                            f"columns: {sorted(rec)[:20]})")
        out[ours] = rec[theirs]
    return out


def _dataset(src: DataSourceConfig):
    """The rows of a source read with `datasets` (an iterable of dicts)."""
    import datasets

    datasets.disable_progress_bars()
    p = Path(src.path)
    try:
        if is_hub(src):
            return datasets.load_dataset(src.path[len(HUB):], src.name or None, split=src.split)
        if p.is_dir():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise DataError(f"{src.path}: no split '{src.split}' in the saved DatasetDict (splits: "
                                    f"{sorted(ds)})")
                ds = ds[src.split]
            return ds
        builder = _builder(p)
        if not builder:
            raise DataError(f"{src.path}: unknown dataset format (expected .jsonl, .json, .parquet, .csv, one of them "
                            ".gz, a save_to_disk folder, or hf:<dataset id>)")
        return datasets.load_dataset(builder, data_files=str(p), split="train")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (datasets/pyarrow/fsspec raise many types for unreadable input)
        hint = " (no network? the hub is unreachable from here)" if is_hub(src) else ""
        raise DataError(f"{label(src)}: cannot load with the datasets library{hint}: {type(e).__name__}: "
                        f"{str(e)[:300]}") from None


def load_all(entries: list) -> list[Problem]:
    """The problems of several entries, in order; one id must not appear in two entries."""
    out: list[Problem] = []
    seen: dict[str, str] = {}
    for e in entries:
        for prob in load_source(e):
            if seen.setdefault(prob.id, label(e)) != label(e):
                raise DataError(f"{label(e)}: problem id '{prob.id}' is also in {seen[prob.id]}")
            out.append(prob)
    return out
