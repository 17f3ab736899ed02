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


def test_bad_input_is_a_message_not_a_traceback(tmp_path):
    """Each bad input exits 2 with a message naming the file (and line) or the key, before any work starts."""
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "kind": "math", "response": "\\\\boxed{1}", "gold": "1"}\n')
    dup = tmp_path / "dup.jsonl"
    dup.write_text(ok.read_text() * 2)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(ok.read_bytes() + b"\xff\xfe\x00garbage\n")
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"a": ' * 50000 + "1" + "}" * 50000 + "\n")
    empty_tests = tmp_path / "code.jsonl"
    empty_tests.write_text('{"id": "c", "kind": "code", "response": "x", "tests": {"asserts": []}}\n')
    alias = tmp_path / "alias.yaml"
    alias.write_text('a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n')
    cases = [
        (["verify", "--input", str(ok), "--output", str(ok)], "would overwrite the input"),
        (["verify", "--input", str(ok), "--output", str(tmp_path / "no/such/dir/out.jsonl")], "does not exist"),
        (["verify", "--input", str(ok), "--output", str(tmp_path)], "is a directory"),
        (["verify", "--input", str(dup)], f"{dup}:2: duplicate id 'a'"),
        (["verify", "--input", str(binary)], f"{binary}:2: not UTF-8"),
        (["verify", "--input", str(deep)], f"{deep}:1: JSON nested too deeply"),
        (["verify", "--input", str(empty_tests)], f"{empty_tests}:1: field 'tests'"),
        (["verify", "--input", str(ok), "--config", str(tmp_path)], "not a file"),
        (["verify", "--input", str(ok), "num_workers=["], "not valid YAML"),
        (["verify", "--input", str(ok), "num_workers=0"], "'num_workers': must be >= 1, got 0"),
        (["verify", "--input", str(ok), "max_concurrency=0"], "'max_concurrency': must be >= 1"),
        (["verify", "--input", str(ok), "memory_mb=8"], "'memory_mb': must be >= 64"),
        (["config", "--config", str(alias)], "aliases/anchors are not allowed"),
        (["config", "--config", "configs/tiny-cpu.yaml", "learner.lr=nan"], "'learner.lr': must be a finite number"),
        (["config", "--config", "configs/tiny-cpu.yaml", "learner.lr=-1"], "'learner.lr': must be > 0"),
        (["config", "--config", "configs/tiny-cpu.yaml", "rl.group_size=1"], "'rl.group_size': must be >= 2"),
        (["config", "--config", "configs/tiny-cpu.yaml", "rl.batch_problems=0"], "'rl.batch_problems': must be >= 1"),
        (["config", "--config", "configs/tiny-cpu.yaml", "verifier.code_timeout_s=-1"], "must be > 0"),
        (["decontaminate", "--train", str(ok), "--eval", str(ok), "--out", str(ok)], "would overwrite the input"),
        (["decontaminate", "--train", str(ok), "--eval", str(ok), "--n", "0"], "must be >= 1"),
    ]
    for argv, message in cases:
        out = run(*argv)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (argv, out.stderr[-500:])
    long = run("config", "--config", "configs/tiny-cpu.yaml", f"sampling.temperature={'x' * 5000}")
    assert long.returncode == 2 and len(long.stderr) < 400, long.stderr  # long values are cut in messages


def test_bad_choices_fail_fast_naming_the_key_and_the_valid_values():
    """Each typed choice is refused by `ssp config` and by `ssp rl` before Ray, vLLM or DeepSpeed start."""
    cases = {"rl.mode=offline": ("rl.mode", "'sync', 'one-step-off', 'async'"),
             "learner.dtype=bf16": ("learner.dtype", "'float32', 'bfloat16'"),
             "learner.loss.advantage=grpoo": ("learner.loss.advantage", "'grpo', 'drgrpo'"),
             "learner.loss.aggregation=mean": ("learner.loss.aggregation", "'token-mean'"),
             "learner.loss.kl_estimator=k4": ("learner.loss.kl_estimator", "'k1', 'k2', 'k3'"),
             "learner.device=tpu": ("learner.device", "'cpu', 'cuda'"),
             "learner.logprobs_source=x": ("learner.logprobs_source", "'learner', 'engine'"),
             "rollout.sampling_mode=x": ("rollout.sampling_mode", "'n', 'repeat'"),
             "engine.dtype=fp8": ("engine.dtype", "'bfloat16'"),
             "data.toy.subdomains=[add,geometry]": ("data.toy.subdomains[1]", "'mod', 'code'"),
             "scheduler.priority=x": ("scheduler.priority", "'mgpo'"),
             "rl.phases=[{max_tokens: 300}]": ("rl.phases[0].max_tokens", "engine.max_model_len=256"),
             "learner.device=cuda": ("learner.device", "cluster.num_gpus")}
    for command in ("config", "rl"):  # how fast they fail: benchmarks/config_check.py
        for override, (key, valid) in cases.items():
            out = run(command, "--config", "configs/tiny-cpu.yaml", override)
            assert out.returncode == 2 and key in out.stderr and valid in out.stderr, (command, override, out.stderr)
            assert "Traceback" not in out.stderr
