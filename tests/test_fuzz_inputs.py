"""Property-based tests (Hypothesis) over everything that reads a user's input: the config loader (YAML files
and key=value overrides) and every data loader (problem pools in JSONL, CSV and parquet, SFT files, `ssp verify`
input, scheduler exports, eval samples, eval suites). Arbitrary text, JSON and YAML in gives a valid result or
the project's own error (ConfigError / DataError, which the CLI prints as one line) — never another exception,
never a hang: each example has a deadline and each test a timeout.

Sized for `make test`: EXAMPLES (150) examples per test, 50 for the two read through `datasets`: 1,300 in all,
about 20 s on the 2-core CI machine."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssp.config import ConfigError, describe, load_config
from ssp.io import DataError

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FUZZ_DATASETS = settings(FUZZ, max_examples=EXAMPLES // 3)  # CSV / parquet go through `datasets` (~0.15 s each)
OURS = (ConfigError, DataError)

# JSON values, and records over the field names our schemas use (so the loaders get past "missing field")
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ["id", "problem", "answer", "prompt", "tests", "test_imports", "entry_point", "solutions", "subdomain",
          "level", "choices", "starter_code", "source", "messages", "completion", "response", "kind", "gold",
          "grader", "type", "dataset", "attempts", "correct", "last_step", "band", "ema", "counters", "role",
          "content", "asserts", "test_code", "inputs", "outputs", "fn_name", "samples", "scores"]
records = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
lines = st.lists(st.one_of(records.map(json.dumps), st.text(max_size=40), json_values.map(json.dumps)),
                 max_size=5).map(lambda ls: "\n".join(ls) + "\n")
raw = st.one_of(lines, st.binary(max_size=200), lines.map(lambda t: t.encode() + b"\xff\xfe\n"))  # bytes: not UTF-8


def _file(text: str | bytes, name: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="ssp-fuzz-"))
    p = d / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return p


def _accepts_or_refuses(fn, *args):
    """Call fn: a result, or one of our errors with a message; anything else fails the property."""
    try:
        return fn(*args)
    except OURS as e:
        assert str(e), "an error without a message"
        return None


# ---------------------------------------------------------------- config: YAML files and overrides

from ssp.tree import SSPConfig  # noqa: E402

KEYS = [k for k, _, _ in describe(SSPConfig)]
yaml_trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                          st.dictionaries(st.sampled_from(KEYS + [k.split(".")[0] for k in KEYS] + ["x"]), inner,
                                          max_size=4), max_leaves=10)


@pytest.mark.timeout(300)
@FUZZ
@given(st.one_of(yaml_trees.map(lambda t: yaml.safe_dump(t, allow_unicode=True)), st.text(max_size=200)))
def test_config_file_loader_gives_a_config_or_a_config_error(text):
    _accepts_or_refuses(load_config, SSPConfig, _file(text, "c.yaml"), [])


value_texts = st.one_of(st.text(max_size=30), scalars.map(lambda v: yaml.safe_dump(v).split("\n...")[0].strip()),
                        st.sampled_from(["[", "{a: 1", "[1, 2]", "{}", "null", "~", "nan", "-inf", "1e999", "0x10",
                                         "''", "[[]]", "&a 1", "*a", "!!python/object:os.system ls"]))


@pytest.mark.timeout(300)
@FUZZ
@given(st.lists(st.one_of(st.tuples(st.sampled_from(KEYS), value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"),
                          st.text(max_size=30)), max_size=4))
def test_override_parser_gives_a_config_or_a_config_error(overrides):
    conf = _accepts_or_refuses(load_config, SSPConfig, None, overrides)
    assert conf is None or isinstance(conf, SSPConfig)


# ---------------------------------------------------------------- data loaders


@pytest.mark.timeout(300)
@FUZZ
@given(raw)
def test_problem_jsonl_loader(text):
    from trainer.data.sources import load_source

    out = _accepts_or_refuses(load_source, str(_file(text, "pool.jsonl")))
    assert out is None or all(p.id and p.kind in ("math", "code") for p in out)


@pytest.mark.timeout(300)
@FUZZ_DATASETS
@given(st.lists(st.lists(st.text(max_size=12), min_size=1, max_size=4), max_size=5), st.sampled_from(
    [["problem", "answer"], ["prompt", "tests"], ["id", "problem", "answer", "level"], ["a", "b"]]))
def test_problem_csv_loader(rows, header):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    from trainer.data.sources import load_source

    _accepts_or_refuses(load_source, str(_file(buf.getvalue(), "pool.csv")))


@pytest.mark.timeout(300)
@FUZZ_DATASETS
@given(st.lists(st.fixed_dictionaries({"problem": st.one_of(st.text(max_size=20), st.none()),
                                        "answer": st.one_of(st.text(max_size=8), st.none())}), max_size=5),
       st.binary(max_size=64))
def test_problem_parquet_loader(rows, junk):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.data.sources import load_source

    p = _file(b"", "pool.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("problem", pa.string()), ("answer", pa.string())])), p)
    _accepts_or_refuses(load_source, str(p))
    p.write_bytes(junk)  # a file that only says it is parquet
    _accepts_or_refuses(load_source, str(p))


def _sft(path):
    from trainer.spectrum.sft import load_chat_pairs

    out = load_chat_pairs(path)
    assert all(m[-1]["role"] == "assistant" for m in out)
    return out


def _verify(path):
    from actors.verifier.cli import read_requests

    return read_requests(path)


def _scheduler_export(path):
    from cluster.scheduler_io import _parse_export

    return _parse_export(path)


def _eval_samples(path):
    from trainer.eval.run import read_samples

    return read_samples(path)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("loader", [_sft, _verify, _scheduler_export, _eval_samples],
                         ids=["sft-file", "verify-input", "scheduler-export", "eval-samples"])
@FUZZ
@given(text=raw)
def test_jsonl_loaders(loader, text):
    _accepts_or_refuses(loader, _file(text, "in.jsonl"))


@pytest.mark.timeout(300)
@FUZZ
@given(st.one_of(st.dictionaries(st.sampled_from(["name", "datasets", "primary", "math_graders", "n", "max_tokens",
                                                  "temperature", "top_p", "x"]), json_values, max_size=5)
                 .map(yaml.safe_dump), st.text(max_size=100)))
def test_eval_suite_loader(text):
    from trainer.eval.suites import load_suite

    _accepts_or_refuses(load_suite, str(_file(text, "suite.yaml")))


# ---------------------------------------------------------------- the CLI as a whole

@pytest.mark.timeout(300)
@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["--config", "configs/tiny-cpu.yaml", "--keys", "--", "-x", "=", "a=",
                                           "run_dir=007", "/dev/null", "configs"]),
                          st.tuples(st.sampled_from(KEYS), value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"),
                          st.text(max_size=12)), max_size=5))
def test_cli_exits_0_or_2_with_one_line_never_a_traceback(argv):
    import contextlib
    import io

    from ssp.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(["config", *argv])
        except SystemExit as e:  # argparse's own usage errors
            rc = e.code
    assert rc in (0, 2), (argv, rc, err.getvalue()[-400:])
    assert "Traceback" not in err.getvalue() and "this is a bug" not in err.getvalue(), (argv, err.getvalue())
    assert rc == 0 or err.getvalue().strip(), argv
