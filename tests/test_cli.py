import re
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
        (["verify", "--input", str(ok), "--config", str(tmp_path)], "is a directory, expected a YAML config file"),
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


def test_outputs_never_destroy_inputs_or_folders_the_command_did_not_write(tmp_path, tiny_model_dir):
    """`ssp merge` and `ssp tiny-model` refuse an --out that holds their inputs, a folder of other files, or a
    real model they did not build; the refused folders are left byte for byte; NaN weights are refused."""
    import shutil

    models = tmp_path / "models"
    a, b = models / "a", models / "b"
    shutil.copytree(tiny_model_dir, a)
    shutil.copytree(tiny_model_dir, b)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    real = tmp_path / "real-model"
    shutil.copytree(tiny_model_dir, real)
    (real / "ssp_tiny_model.json").unlink(missing_ok=True)  # a model we did not build: no marker

    def snapshot(d):
        return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    before = {d: snapshot(d) for d in (models, other, real)}
    for argv, msg in ((["merge", "--models", str(a), str(b), "--out", str(models)], r"or holds\) the input"),
                      (["merge", "--models", str(a), str(b), "--out", str(other)], "not written by ssp merge"),
                      (["merge", "--models", str(a), str(b), "--out", str(tmp_path / "m"), "--weights", "nan",
                        "0.5"], "finite number in \\[0, 1\\]"),
                      (["merge", "--models", str(a), str(b), "--out", str(tmp_path / "m"), "--weights", "1.5",
                        "-0.5"], "finite number in \\[0, 1\\]"),
                      (["tiny-model", "--out", str(real)], "not written by ssp tiny-model"),
                      (["toy-data", "--out", str(other)], "not written by ssp toy-data")):
        out = run(*argv)
        assert out.returncode == 2 and re.search(msg, out.stderr), (argv, out.stderr)
    assert {d: snapshot(d) for d in (models, other, real)} == before
    assert not (tmp_path / "m").exists()
    ok = run(*["merge", "--models", str(a), str(b), "--out", str(tmp_path / "m")])
    again = run(*["merge", "--models", str(a), str(b), "--out", str(tmp_path / "m")])  # its own output: replaced
    assert ok.returncode == again.returncode == 0 and (tmp_path / "m" / "merge.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_one_error_boundary_a_message_for_bad_input_a_traceback_only_for_a_bug(tmp_path, tiny_model_dir, capsys,
                                                                              monkeypatch):
    import shutil

    import ssp.cli

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for argv, message in (
            (["merge", "--models", str(tiny_model_dir), str(corrupt), "--out", str(tmp_path / "m")], "corrupt"),
            (["merge", "--models", str(tiny_model_dir), str(tiny_model_dir), "--out", str(blocker / "m")],
             "a-file"),
            (["toy-data", "--config", "configs/tiny-cpu.yaml", "--out", str(blocker / "d")], "a-file")):
        out = run(*argv)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (argv, out.stderr)

    def broken(*a, **k):
        raise ZeroDivisionError("an internal mistake")

    monkeypatch.setattr(ssp.cli, "describe", broken)
    assert ssp.cli.main(["config", "--keys"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "this is a bug in ssp-rl" in err


def test_config_rules_at_load_and_overrides_on_either_side_of_an_option(tmp_path):
    import yaml

    dup = tmp_path / "dup.yaml"
    dup.write_text("rl:\n  group_size: 4\nseed: 1\nrl:\n  batch_problems: 2\n")
    for argv, message in (
            (["config", "--config", str(dup)], "line 4: key 'rl' is given twice"),
            (["config", "--config", "configs/tiny-cpu.yaml", "model.tiny.hidden_size=130"], "multiple of"),
            (["config", "--config", "configs/tiny-cpu.yaml", "model.tiny.num_kv_heads=3"], "must divide"),
            (["config", "--config", "configs/tiny-cpu.yaml", "rl.phases=[]"], "'rl.phases': must not be empty"),
            (["config", "--config", "configs/tiny-cpu.yaml", "learner.loss.icepop_low=9"], "must be below")):
        out = run(*argv)
        assert out.returncode == 2 and message in out.stderr, (argv, out.stderr)
    out = run("config", "rl.group_size=4", "--config", "configs/tiny-cpu.yaml", "rl.batch_problems=3")
    conf = yaml.safe_load(out.stdout)
    assert out.returncode == 0 and (conf["rl"]["group_size"], conf["rl"]["batch_problems"]) == (4, 3)
    assert run("config", "--config", "configs/tiny-cpu.yaml", "--bogus").returncode == 2
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(run("config", "--config", "configs/tiny-cpu.yaml").stdout)
    out = run("rl", "--resume", str(run_dir), "--config", "configs/smollm2-135m-cpu.yaml")
    assert out.returncode == 2 and "differs from the run's saved" in out.stderr and "data.toy.preset" in out.stderr, out.stderr
    # --auto-resume finds the run by run_dir and holds it to the same rule (before anything starts)
    (run_dir / "metrics.jsonl").write_text("")
    out = run("rl", "--config", "configs/smollm2-135m-cpu.yaml", f"run_dir={run_dir}", "--auto-resume")
    assert out.returncode == 2 and "differs from the run's saved" in out.stderr and "continuing the run" in out.stdout
    assert run("rl", "--resume", str(run_dir), "--auto-resume").returncode == 2  # one or the other
    (run_dir / "summary.json").write_text("{}")  # a finished run: the same config has nothing to do, another is refused
    out = run("rl", "--config", "configs/tiny-cpu.yaml", f"run_dir={run_dir}", "--auto-resume")
    assert out.returncode == 0 and "finished already" in out.stdout, out.stdout + out.stderr
    out = run("rl", "--config", "configs/tiny-cpu.yaml", f"run_dir={run_dir}", "rl.group_size=4", "--auto-resume")
    assert out.returncode == 2 and "holds a finished run" in out.stderr and "rl.group_size" in out.stderr, out.stderr


def test_valid_input_is_accepted_path_overrides_that_look_like_numbers_and_verify_with_the_whole_config(tmp_path):
    import json as _json

    import yaml

    out = run("config", "--config", "configs/tiny-cpu.yaml", "run_dir=007", "model.path=2024", "serve.app_name=yes")
    conf = yaml.safe_load(out.stdout)
    assert out.returncode == 0 and (conf["run_dir"], conf["model"]["path"], conf["serve"]["app_name"]) == (
        "007", "2024", "yes")
    f = tmp_path / "v.jsonl"
    f.write_text(_json.dumps({"id": "a", "kind": "math", "response": "</think> \\boxed{2}", "gold": "2"}) + "\n")
    out = run("verify", "--input", str(f), "--config", "configs/tiny-cpu.yaml", "verifier.num_workers=1",
              "verifier.math_think=optional")
    assert out.returncode == 0 and _json.loads(out.stdout.splitlines()[0])["reward"] == 1.0, out.stderr[-2000:]
