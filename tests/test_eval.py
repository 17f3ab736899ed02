"""`ssp eval`: the metrics and graders against hand-computed values, the datasets and prompts of the protocol,
scoring through the real verifier pool, and the CLI end to end on the tiny model (killed and resumed)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.verifier.protocols import grade_vibethinker, hendrycks_normalize, last_box, lcb_extract_code
from trainer.data.problems import DataError, Problem
from trainer.eval.metrics import cons_at_n, paired_gain, pass1_se, pass_at_k, summarize

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- metrics

def test_metrics_by_hand():
    scores = [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0]]
    answers = [["5", "7", "7", "5"],  # two modes tied (5 and 7), one correct: mean over all four = 0.5
               ["3", None, "3", "4"],  # mode 3, wrong: 0
               ["2", "2", "9", None],  # mode 2, both correct: 1
               [None, None, None, None]]  # nothing boxed: no vote, 0 (though one sample was scored correct)
    f = summarize(scores, [1, 2, 4], answers, truncated=[[True, False, False, False]] + [[False] * 4] * 3,
                  tokens=[[10, 20, 30, 40]] * 4)
    assert f["pass1"] == pytest.approx(5 / 16)
    assert f["pass4"] == pytest.approx(3 / 4)
    assert f["cons4"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    # unbiased pass@2 = 1 - C(n-c, 2) / C(4, 2) per problem: c=2 -> 5/6, c=0 -> 0, c=2 -> 5/6, c=1 -> 1/2
    assert f["pass@2"] == pytest.approx((5 / 6 + 0 + 5 / 6 + 1 / 2) / 4)
    assert f["pass@1"] == pytest.approx(f["pass1"]) and f["pass@4"] == pytest.approx(f["pass4"])
    assert f["truncation"] == pytest.approx(1 / 16) and f["mean_tokens"] == pytest.approx(25)
    assert "pass@8" not in summarize(scores, [8])  # k > n is not reported


def test_cons_ties_and_raw_strings():
    assert cons_at_n(["1/2", "0.5", "0.5"], [1, 1, 1]) == 1.0  # "0.5" wins 2:1 as a raw string
    assert cons_at_n(["a", "b"], [0, 1]) == 0.5  # tie: mean correctness of both
    assert cons_at_n(["a", "b", "c", "a", "b"], [0, 0, 1, 0, 0]) == 0.0  # the only correct one is not a mode
    assert cons_at_n([None, "x"], [1, 0]) == 0.0  # the unboxed correct response does not vote
    assert pass_at_k(64, 1, 64) == 1.0 and pass_at_k(64, 0, 1) == 0.0


# ---------------------------------------------------------------- graders

def test_vibethinker_think_tag_and_last_box_rules():
    assert grade_vibethinker("\\boxed{5}", "5") == (0.0, "no_think_end", None)  # no </think>: 0, even if right
    assert grade_vibethinker("<think>\\boxed{5}</think> so \\boxed{4}", "5")[:2] == (0.0, "wrong_answer")
    assert grade_vibethinker("<think>try 4</think>\\boxed{5}", "5") == (1.0, "correct", "5")
    assert grade_vibethinker("<think>try 4</think>\\boxed{3} no, \\boxed{5}", "5") == (0.0, "hedged", "5")
    assert grade_vibethinker("<think>x</think>\\fbox{7}", "7")[0] == 0.0  # not a box in VibeThinker's extractor
    assert grade_vibethinker("<think>x</think>so $\\boxed 7$.", "7")[0] == 0.0
    assert grade_vibethinker("<think>x</think> the answer is 5", "5") == (0.0, "format_miss", None)
    # only the text between the first </think> and the next counts
    assert grade_vibethinker("a</think>\\boxed{5}</think>\\boxed{6}", "5")[0] == 1.0
    assert grade_vibethinker("a</think>\\boxed{5}", "\\boxed{5}")[0] == 1.0  # a boxed gold is unboxed
    assert last_box("\\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}" and last_box("\\boxed{3") is None


def test_mathd_and_sympy_paths():
    def ok(answer, gold):
        return grade_vibethinker(f"<think>.</think>\\boxed{{{answer}}}", gold)[0] == 1.0

    # Hendrycks normalisation alone decides these
    assert hendrycks_normalize("\\dfrac12") == hendrycks_normalize("\\frac{1}{2}") == hendrycks_normalize("0.5")
    assert hendrycks_normalize("x = 5") == "5" and hendrycks_normalize("90^\\circ") == "90"
    assert hendrycks_normalize("\\left( 1, 2 \\right)") == "(1,2)" and hendrycks_normalize("3/4") == "\\frac{3}{4}"
    assert ok("\\dfrac12", "\\frac{1}{2}") and ok("k=5", "5") and ok("10\\%", "10") and ok("(1, 2)", "(1,2)")
    # only sympy sees these as equal
    assert hendrycks_normalize("\\frac{\\sqrt{8}}{2}") != hendrycks_normalize("\\sqrt{2}")
    assert ok("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}") and ok("\\pi \\cdot 2", "2\\pi") and ok("\\frac{1}{2}x", "\\frac{x}{2}")
    # and these are wrong: an unreduced fraction, an integer gold answered by a non-integer, a wrong tuple
    assert not ok("\\frac{2}{4}", "\\frac{1}{2}") and not ok("\\sqrt{25}", "5") and not ok("(1,3)", "(1,2)")
    assert not ok("6", "5")


def test_sympy_timeout_kills_the_helper():
    from actors.verifier.math_checker import MathChecker

    c = MathChecker(timeout_s=2)
    try:
        t0 = time.perf_counter()
        res = c.check("<think>.</think>\\boxed{9^{9^{9}}}", "\\sqrt{2}", "vibethinker")  # a 10^8-digit power
        assert res.reason == "timeout" and res.reward == 0 and time.perf_counter() - t0 < 10
        assert c.check("<think>.</think>\\boxed{\\frac{\\sqrt{8}}{2}}", "\\sqrt{2}", "vibethinker").reward == 1
        with pytest.raises(ValueError, match="valid: \\['math-verify', 'strict', 'vibethinker'\\]"):
            c.check("x", "1", "vibe")
    finally:
        c.close()


def test_lcb_code_extraction():
    assert lcb_extract_code("Here:\n```python\nprint(1)\n```\nDone.") == "print(1)"
    assert lcb_extract_code("a\n```python\nx=1\n```\nthen\n```python\ny=2\nprint(y)\n```") == "y=2\nprint(y)"
    assert lcb_extract_code("```python\nprint(1)") == ""  # one fence line: no code
    assert lcb_extract_code("use ``` fences\n```\nz=3\n```") == "z=3"  # any line holding a fence counts


def test_lcb_grading_in_the_sandbox():
    from actors.verifier.code_grader import grade_code
    from actors.verifier.sandbox import Sandbox, SandboxLimits

    sb = Sandbox(SandboxLimits(timeout_s=2), uids=[63120])
    stdin = {"stdin_stdout": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]}
    good = "Reasoning.\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n"
    assert grade_code(good, stdin, sb, lcb=True).reward == 1
    assert grade_code(good.replace("a + b", "a * b"), stdin, sb, lcb=True).reason == "wrong_answer"
    assert grade_code("print(5)", stdin, sb, lcb=True).reason == "format_miss"  # no fences: no code
    fn = {"functional": [{"input": "[1, 2]\n3", "output": "[1, 2, 3]"}] * 3, "fn_name": "push"}
    slow = "```python\nimport time\nclass Solution:\n    def push(self, xs, x):\n        time.sleep(1.2)\n        return xs + [x]\n```"
    res = grade_code(slow, fn, sb, lcb=True)  # 3 tests x 1.2 s: within 2 s per test, not within 2 s in all
    assert res.reward == 1, res
    assert grade_code(slow.replace("1.2", "7"), fn, sb, lcb=True).reason == "timeout"


# ---------------------------------------------------------------- suites, datasets, prompts

def test_suites_load_and_render_the_protocol_prompts(tmp_path):
    from ssp.config import ConfigError
    from trainer.eval.suites import LCB_SYSTEM, MATH_SUFFIX, load_dataset, load_suite, user_content

    math, f = load_suite("math")
    assert [d.name for d in math.datasets] == ["AIME24", "AIME25", "HMMT25", "MATH-500", "AMC23", "GSM8K"]
    assert (math.temperature, math.top_p, math.top_k, math.n) == (1.0, 0.95, -1, 64)
    aime = load_dataset(math.datasets[0], f, None)
    assert len(aime) == 30 and aime[0].answer
    assert user_content(aime[0], math.datasets[0], math, "") == aime[0].prompt + MATH_SUFFIX
    code, f = load_suite("code")
    assert (code.temperature, code.n, code.code_timeout_s) == (0.6, 8, 6.0)
    mbpp = load_dataset(code.datasets[0], f, None)
    text = user_content(mbpp[0], code.datasets[0], code, "")
    assert text.startswith(LCB_SYSTEM + "\n\n### Question:\n") and "def remove_Occ(" in text  # MBPP test split: task 11 first
    assert text.endswith("### Answer: (use the provided format with backticks)\n\n")
    with pytest.raises(ConfigError, match=r"unknown eval suite 'maths'.*\['code', 'math', 'toy'\]"):
        load_suite("maths")


def test_lcb_jsonl_and_bad_rows(tmp_path):
    import base64
    import pickle
    import zlib

    from trainer.eval.suites import DatasetSpec, SuiteConfig, load_dataset, user_content

    private = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(
        [{"input": "4\n", "output": "16\n", "testtype": "stdin"}])))).decode()
    rows = [{"question_id": "q1", "question_content": "Square n.", "starter_code": "",
             "public_test_cases": json.dumps([{"input": "3\n", "output": "9\n", "testtype": "stdin"}]),
             "private_test_cases": private, "metadata": "{}"},
            {"question_id": "q2", "question_content": "Add.", "starter_code": "class Solution:\n    def add(self, a, b):\n        ",
             "public_test_cases": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
             "private_test_cases": "[]", "metadata": json.dumps({"func_name": "add"})}]
    f = tmp_path / "lcb.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec, suite = DatasetSpec("LCB", str(f), "lcb"), SuiteConfig(name="x", datasets=[])
    q1, q2 = load_dataset(spec, tmp_path / "suite.yaml", None)
    assert q1.tests == {"stdin_stdout": [{"input": "3\n", "output": "9\n"}, {"input": "4\n", "output": "16\n"}]}
    assert q2.tests == {"functional": [{"input": "1\n2", "output": "3"}], "fn_name": "add"}
    assert "# YOUR CODE HERE" in user_content(q1, spec, suite, "") and "def add(self, a, b)" in user_content(q2, spec, suite, "")
    evil = base64.b64encode(zlib.compress(pickle.dumps(Path("/")))).decode()  # a class reference: refused
    bad = [({**rows[0], "public_test_cases": "[]", "private_test_cases": "[]"}, "lcb", "no test cases"),
           ({**rows[0], "private_test_cases": evil}, "lcb", "neither JSON nor"),
           ({"id": "m1", "problem": "1+1?"}, "math", "missing field 'answer'"),
           ({"id": "c1", "prompt": "Write f."}, "mbpp", "missing field 'tests'")]
    first = {"math": {"id": "ok", "problem": "2+2?", "answer": "4"}, "lcb": rows[0],
             "mbpp": {"id": "ok", "prompt": "Write f.", "tests": ["assert f(1) == 1"], "entry_point": "f"}}
    for i, (rec, fmt, msg) in enumerate(bad):
        g = tmp_path / f"bad-{i}.jsonl"
        g.write_text(json.dumps(first[fmt]) + "\n" + json.dumps(rec) + "\n")
        with pytest.raises(DataError, match=f"{g}:2: .*{msg}"):
            load_dataset(DatasetSpec("B", str(g), fmt), tmp_path / "suite.yaml", None)


def test_model_folder_checks(tmp_path, tiny_model_dir):
    import shutil

    from trainer.models.ensure import check_model

    assert check_model(str(tiny_model_dir)).chat_template
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(DataError, match=f"{bare}: no tokenizer"):
        check_model(str(bare))
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(DataError, match=f"{plain}: the tokenizer has no chat template"):
        check_model(str(plain))


# ---------------------------------------------------------------- scoring through the real verifier pool

class KnownResponses:
    """A rollout pool whose responses are fixed (the evaluator and the verifiers are what is under test)."""

    def __init__(self, texts: dict[str, list[str]]):
        self.texts = texts

    def stream(self, problems, n, overrides=None, instruction=None):
        from actors.rollout import Rollout

        for p in reversed(problems):  # finishing order differs from the input order
            yield p, [Rollout(p.id, i, [1], [2] * (i + 1), [], t, "length" if i == 0 else "stop", 0)
                      for i, t in enumerate(self.texts[p.id][:n])]


def test_score_stream_runs_every_grader_on_every_sample(ray_cluster):
    from actors.config import VerifierConfig
    from actors.verifier.pool import VerifierPool
    from trainer.eval.score import figures, score_stream

    math = Problem("m", "2+3?", "math", answer="5")
    code = Problem("c", "add", "code", tests={"stdin_stdout": [{"input": "2 3\n", "output": "5\n"}]})
    texts = {"m": ["<think>.</think>\\boxed{5}", "\\boxed{5}", "<think>.</think>\\boxed{4}", "no answer"],
             "c": ["```python\na, b = map(int, input().split())\nprint(a + b)\n```", "```python\nprint(4)\n```",
                   "print(5)", "```python\nprint(5)\n```"]}
    pool = VerifierPool(VerifierConfig(num_workers=1, max_concurrency=2))
    try:
        got = {s.problem.id: s for s in score_stream(KnownResponses(texts), pool, [math, code], 4,
                                                     {"math": ["vibethinker", "math-verify"], "code": ["lcb"]})}
    finally:
        pool.shutdown()
    assert got["m"].scores == {"vibethinker": [1, 0, 0, 0], "math-verify": [1, 1, 0, 0]}
    assert got["m"].reasons["vibethinker"][1] == "no_think_end"
    assert got["c"].scores == {"lcb": [1, 0, 0, 1]}  # "print(5)" has no fences: not code under LCB's rule
    f = figures([got["m"]], [2], {"math": "math-verify"})
    assert (f["pass1"], f["cons4"], f["truncation"], f["mean_tokens"]) == (0.5, 1.0, 0.25, 2.5)
    assert figures([got["m"]], [], {"math": "vibethinker"})["pass1"] == 0.25


def test_summary_of_a_mixed_dataset_counts_disagreements_on_math_only():
    from trainer.eval.run import record_to_scored, summarize_run, to_record
    from trainer.eval.score import Scored
    from trainer.eval.suites import DatasetSpec, SuiteConfig

    m = Scored(Problem("m", "q", "math", answer="5"), ["<think>.</think>\\boxed{5}", "\\boxed{5}"], [3, 4],
               [False, True], {"math-verify": [1.0, 1.0], "vibethinker": [1.0, 0.0]},
               {"math-verify": ["correct"] * 2, "vibethinker": ["correct", "no_think_end"]})
    c = Scored(Problem("c", "q", "code"), ["a", "b"], [5, 6], [False, False], {"sandbox": [0.0, 1.0]},
               {"sandbox": ["wrong_answer", "correct"]})
    done = {("toy", s.problem.id): to_record("toy", s, s.problem.id) for s in (m, c)}
    assert record_to_scored(done[("toy", "m")]).scores == m.scores
    suite = SuiteConfig(name="toy", datasets=[DatasetSpec("toy", "", "toy")], ks=[1, 2], code_grader="sandbox")
    graders = {"math": ["math-verify", "vibethinker"], "code": ["sandbox"]}
    res = summarize_run(suite, [(suite.datasets[0], [m.problem, c.problem])], done, 2, graders, {})
    row = res["datasets"]["toy"]
    assert res["primary"] == {"math": "vibethinker", "code": "sandbox"}  # a response closed a think block
    assert row["pass1"] == pytest.approx((1 + 0 + 0 + 1) / 4) and row["pass1[math-verify]"] == 1.0
    assert row["disagreements"] == 1 and res["disagreements"][0]["sample"] == 1


# ---------------------------------------------------------------- the CLI on the tiny model

def _eval(args: list[str], env: dict, **kw):
    cmd = [sys.executable, "-m", "ssp.cli", "eval", "--config", "configs/tiny-cpu.yaml", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.timeout(900)
def test_ssp_eval_toy_killed_and_resumed(tiny_model_dir, tmp_path):
    out = tmp_path / "toy"
    args = ["--model", str(tiny_model_dir), "--suite", "toy", "--limit", "48", "--k", "4", f"eval.out_dir={out}",
            "eval.max_tokens=48", "engine.max_num_seqs=8", "verifier.num_workers=1"]  # 8 seqs: problems finish in turn
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = _eval(args, env, start_new_session=True)
    samples = out / "samples.jsonl"
    deadline = time.time() + 400
    while (not samples.exists() or samples.read_text().count("\n") < 8) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the eval ended before it could be killed:\n" + proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    before = samples.read_bytes()
    finished = before[: before.rfind(b"\n") + 1]
    n_before = finished.count(b"\n")
    assert 8 <= n_before < 48
    res = _eval(args, env)
    log = res.communicate(timeout=600)[0]
    assert res.returncode == 0, log[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert (results["generated_problems"], results["resumed_problems"]) == (48 - n_before, n_before)
    after = samples.read_bytes()
    assert after.startswith(finished)  # nothing recorded was lost or rewritten
    recs = [json.loads(x) for x in after.splitlines()]
    assert len(recs) == len({r["id"] for r in recs}) == 48 and all(len(r["samples"]) == 4 for r in recs)
    row = results["datasets"]["toy"]
    assert row["problems"] == 48 and row["n"] == 4
    assert row["pass1"] == pytest.approx(sum(s["scores"]["math-verify" if r["kind"] == "math" else "sandbox"]
                                             for r in recs for s in r["samples"]) / (48 * 4))
    assert {"pass@2", "pass4", "cons4", "truncation", "mean_tokens", "pass1[vibethinker]"} <= set(row)
    for name in ("results.png", "results.md", "disagreements.jsonl", "protocol.json"):
        assert (out / name).exists(), name
    assert list(out.glob("results_*.json")) and list(out.glob("pass_*h.csv"))
    # another protocol into the same folder is refused, and the samples stay
    bad = _eval([a if a != "4" else "2" for a in args], env)  # --k 2
    msg = bad.communicate(timeout=300)[0]
    assert bad.returncode == 2 and "another protocol" in msg and "n: 4 -> 2" in msg
    assert samples.read_bytes() == after


@pytest.mark.timeout(900)
@pytest.mark.parametrize("suite,rows,grader", [("math", 6, "vibethinker"), ("code", 1, "lcb")])
def test_ssp_eval_real_datasets_on_the_tiny_model(ray_cluster, tiny_model_dir, tmp_path, suite, rows, grader):
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.eval.run import run_eval

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       [f"eval.suite={suite}", "eval.limit=2", "eval.n=2", "eval.max_tokens=64",
                        f"eval.out_dir={tmp_path}", "verifier.num_workers=1"])
    results = run_eval(conf, str(tiny_model_dir))
    assert len(results["datasets"]) == rows and all(r["problems"] == 2 and r["n"] == 2
                                                    for r in results["datasets"].values())
    recs = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * rows and all(grader in s["scores"] for r in recs for s in r["samples"])
    from trainer.eval.suites import LCB_SYSTEM, MATH_SUFFIX

    assert all(r["prompt"].endswith(MATH_SUFFIX) if suite == "math" else r["prompt"].startswith(LCB_SYSTEM)
               for r in recs)
    assert all(0 < s["tokens"] <= 64 for r in recs for s in r["samples"])


def test_pass1_standard_error_over_problems():
    # per-problem means 1, 0.5, 0, 0.5: sd 0.408, over sqrt(4)
    samples = [[1, 1], [1, 0], [0, 0], [0, 1]]
    assert pass1_se(samples) == pytest.approx(math.sqrt(1 / 6) / 2)
    assert summarize(samples)["pass1_se"] == pass1_se(samples)
    assert pass1_se([[1, 1], [1, 1], [1, 1]]) == 0.0 and pass1_se([[1, 0]]) == 0.0


def test_paired_gain_over_the_problems_both_evals_saw():
    before = {"a": 2, "b": 4, "c": 0, "d": 8, "gone": 8}
    after = {"a": 4, "b": 6, "c": 2, "d": 8, "new": 0}  # differences 0.25, 0.25, 0.25, 0 over a-d
    gain, se = paired_gain(before, after, 8, 8)
    assert gain == pytest.approx(0.1875) and se == pytest.approx(0.125 / 2)
    # the same shift, unpaired, would drown in the spread of the problems' difficulty: pairing is tighter
    assert se < pass1_se([[1] * a + [0] * (8 - a) for a in after.values()])
    assert paired_gain({"a": 1, "b": 1}, {"a": 1, "b": 1}, 2, 2) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least two problems"):
        paired_gain({"a": 1}, {"b": 1}, 2, 2)


def test_shipped_suites_read_only_files_inside_the_repository():
    """A clone has nothing beside it: every dataset of configs/eval/ is in data/eval/ with its SOURCE.md, and
    loads (the published eval sets' row counts)."""
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.eval.suites import load_dataset, load_suite

    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml")
    rows = {}
    for name in ("math", "code"):
        suite, path = load_suite(name)
        for spec in suite.datasets:
            f = (path.parent / spec.path).resolve()
            assert f.is_relative_to(REPO / "data" / "eval") and (f.parent / "SOURCE.md").exists(), f
            rows[spec.name] = len(load_dataset(spec, path, conf))
    assert rows == {"AIME24": 30, "AIME25": 30, "HMMT25": 30, "MATH-500": 500, "AMC23": 40, "GSM8K": 1319,
                    "MBPP": 257}, rows  # MBPP sanitized, its test split
