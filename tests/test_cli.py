import subprocess
import sys

from tests.conftest import REPO

SSP = [sys.executable, "-m", "ssp.cli"]


def run(*args):
    return subprocess.run([*SSP, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_a_purpose():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("config", "tiny-model", "toy-data", "decontaminate", "generate", "verify", "scheduler"):
        assert cmd in out.stdout, cmd


def test_config_error_exits_2_naming_the_key():
    out = run("config", "--config", "configs/tiny-cpu.yaml", "sampling.temprature=0.3")
    assert out.returncode == 2
    assert "sampling.temprature" in out.stderr


def test_config_keys_lists_help():
    out = run("config", "--keys")
    assert out.returncode == 0 and "engine.max_model_len" in out.stdout and "prompt + response" in out.stdout


def test_toy_data_and_decontaminate_commands(tmp_path):
    assert run("toy-data", "--out", str(tmp_path), "data.toy.per_cell=10").returncode == 0
    train, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    assert train.exists() and held.exists()
    out = run("decontaminate", "--train", str(train), "--eval", str(held), "--out", str(tmp_path / "kept.jsonl"))
    assert out.returncode == 0 and "dropped=" in out.stdout


def test_loader_error_reaches_the_user_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "x"}\n')
    out = run("decontaminate", "--train", str(bad), "--eval", str(bad))
    assert out.returncode == 2 and f"{bad}:1: missing field 'answer'" in out.stderr
