"""Eval suites (configs/eval/*.yaml): which datasets, how they are prompted, sampled and graded.

The prompts are the official ones. Math: one user turn, the problem plus VibeThinker's instruction, through
the checkpoint's own chat template. Code: LiveCodeBench's generic system message and question template in one
user turn. Dataset formats: `math` (our JSONL: problem/answer), `mbpp` (shared/data/code), `lcb` (a
LiveCodeBench `code_generation_lite` JSONL export), `toy` (the held-out toy problems, prompted as in RL).
"""

from __future__ import annotations

import base64
import json
import pickle
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ssp.config import ConfigError, cfg, load_config
from trainer.data.problems import DataError, Problem, from_record, iter_jsonl

SUITES_DIR = Path(__file__).resolve().parents[2] / "configs" / "eval"
MATH_SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."
LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
              "generate a correct Python program that matches the specification and passes all tests.")
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                    "code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                       "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                       "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")


@dataclass
class DatasetSpec:
    name: str = cfg("", "row name in the results (e.g. AIME24)")
    path: str = cfg("", "data file, relative to the suite file (unused for format toy)")
    format: Literal["math", "mbpp", "lcb", "toy"] = cfg("math", "math: JSONL problem/answer; mbpp: shared code "
                                                                "set; lcb: LiveCodeBench JSONL; toy: held-out toy")


@dataclass
class SuiteConfig:
    name: str = cfg("", "suite name (the results' title)")
    datasets: list[DatasetSpec] = cfg([], "datasets, in table order")
    math_suffix: str = cfg(MATH_SUFFIX, "appended to every math problem (VibeThinker's instruction)")
    code_prompt: Literal["lcb", "plain"] = cfg("lcb", "lcb: LiveCodeBench's system message + question template; "
                                                      "plain: the problem text (as RL prompts it)")
    temperature: float = cfg(1.0, "sampling temperature", ge=0)
    top_p: float = cfg(0.95, "nucleus mass", gt=0, le=1)
    top_k: int = cfg(-1, "top-k (-1 = off)", ge=-1)
    n: int = cfg(64, "samples per problem", ge=1)
    max_tokens: int = cfg(40960, "response token limit (eval.max_tokens overrides it)", ge=1)
    ks: list[int] = cfg([1, 2, 4, 8, 16, 32, 64], "unbiased pass@k reported for each k <= n")
    math_graders: list[Literal["vibethinker", "math-verify"]] = cfg(
        ["vibethinker", "math-verify"], "math graders run on every sample (disagreements are written)")
    primary: Literal["auto", "vibethinker", "math-verify"] = cfg(
        "auto", "the math grader the figures use; auto: vibethinker when the model's responses close a think "
                "block (`</think>`), else math-verify (the protocol for models without think tags)")
    code_grader: Literal["lcb", "sandbox"] = cfg("lcb", "lcb: code between the last two fence lines, a time "
                                                        "limit per test; sandbox: RL's extraction")
    code_timeout_s: float = cfg(6.0, "time limit per code test (LiveCodeBench: 6 s)", gt=0)
    published: dict[str, float] = cfg({}, "VibeThinker-1.5B's published Pass@1 (%) per dataset name")
    published_source: str = cfg("", "where the published numbers come from")


def suite_path(name: str) -> Path:
    """A suite by name (configs/eval/NAME.yaml) or path; unknown names fail listing the valid ones."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    p = SUITES_DIR / f"{name}.yaml"
    if not p.exists():
        valid = sorted(x.stem for x in SUITES_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown eval suite {name!r}: valid suites are {valid} (configs/eval/), or a YAML path")
    return p


def load_suite(name: str) -> tuple[SuiteConfig, Path]:
    path = suite_path(name)
    suite = load_config(SuiteConfig, path)
    if not suite.datasets:
        raise ConfigError(f"{path}: the suite lists no datasets")
    if suite.primary == "auto" and set(suite.math_graders) != {"vibethinker", "math-verify"}:
        raise ConfigError(f"{path}: primary: auto picks vibethinker or math-verify after generation, so "
                          "math_graders must list both")
    if suite.primary != "auto" and suite.primary not in suite.math_graders:
        raise ConfigError(f"{path}: primary {suite.primary!r} is not among math_graders {suite.math_graders}")
    for i, d in enumerate(suite.datasets):
        if not d.name or (d.format != "toy" and not d.path):
            raise ConfigError(f"{path}: datasets[{i}] needs a name and (unless format: toy) a path")
    return suite, path


# ---------------------------------------------------------------- datasets

def _lcb_cases(raw, where: str) -> list[dict]:
    """LiveCodeBench test cases: a JSON list, or the lite release's base64(zlib(pickle(json))) string."""
    if isinstance(raw, list):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        pass
    try:
        blob = zlib.decompress(base64.b64decode(raw))
        return json.loads(_StrOnly(blob).load())
    except Exception as e:
        raise DataError(f"{where}: test cases are neither JSON nor LiveCodeBench's compressed form ({e})") from None


class _StrOnly(pickle.Unpickler):
    """Unpickles plain data only (LiveCodeBench pickles a JSON string): any class reference is refused."""

    def __init__(self, blob: bytes):
        import io

        super().__init__(io.BytesIO(blob))

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _lcb_problem(rec: dict, where: str) -> Problem:
    for key in ("question_content", "public_test_cases"):
        if key not in rec:
            raise DataError(f"{where}: missing field '{key}'")
    cases = _lcb_cases(rec["public_test_cases"], where) + _lcb_cases(rec.get("private_test_cases") or "[]", where)
    if not cases:
        raise DataError(f"{where}: no test cases (public_test_cases and private_test_cases are empty)")
    meta = rec.get("metadata") or {}
    meta = json.loads(meta) if isinstance(meta, str) else meta
    pairs = [{"input": c["input"], "output": c["output"]} for c in cases]
    functional = any(c.get("testtype") == "functional" for c in cases)
    if functional and not meta.get("func_name"):
        raise DataError(f"{where}: functional tests but no metadata.func_name")
    tests = {"functional": pairs, "fn_name": meta["func_name"]} if functional else {"stdin_stdout": pairs}
    pid = str(rec.get("question_id") or rec.get("id") or where)
    return Problem(id=pid, prompt=rec["question_content"], kind="code", tests=tests, subdomain="code",
                   source=str(rec.get("platform") or "livecodebench"), starter_code=str(rec.get("starter_code") or ""))


def _mbpp_starter(rec: dict) -> str:
    """The signature line of the reference solution, as LiveCodeBench's starter code (names the function)."""
    m = re.search(r"^def [^\n]*:", rec.get("reference_solution") or "", re.M)
    return f"{m.group(0)}\n    " if m else ""


def load_dataset(spec: DatasetSpec, suite_file: Path, conf) -> list[Problem]:
    """The dataset's problems; a bad row raises DataError naming the file and line."""
    if spec.format == "toy":
        from trainer.data.splits import toy_split

        return toy_split(conf)[1]
    path = (suite_file.parent / spec.path).resolve()
    problems, seen = [], set()
    for where, rec in iter_jsonl(path):
        if spec.format == "lcb":
            p = _lcb_problem(rec, where)
        else:
            if spec.format == "math" and "tests" in rec:
                raise DataError(f"{where}: a code row (has 'tests') in a math dataset")
            if spec.format == "mbpp" and "tests" not in rec:
                raise DataError(f"{where}: missing field 'tests'")
            p = from_record(rec, where, path.stem)
            if spec.format == "mbpp":
                p.starter_code = _mbpp_starter(rec)  # the first test is shown as an example
                p.prompt = f"{p.prompt}\nYour code should pass this test:\n{(p.tests or {}).get('asserts', [''])[0]}"
        if p.id in seen:
            raise DataError(f"{where}: duplicate problem id '{p.id}'")
        seen.add(p.id)
        problems.append(p)
    if not problems:
        raise DataError(f"{path}: no problems")
    return problems


def user_content(p: Problem, spec: DatasetSpec, suite: SuiteConfig, instruction: str) -> str:
    """The one user message for problem `p` (rendered by the model's chat template in the engine)."""
    if spec.format == "toy":
        return f"{p.prompt}\n{instruction}".strip() if instruction else p.prompt
    if p.kind == "math":
        return p.prompt + suite.math_suffix
    if suite.code_prompt == "plain":
        return p.prompt
    starter = p.starter_code
    fmt = (f"### Format: {LCB_WITH_STARTER}\n```python\n{starter}\n```\n\n" if starter
           else f"### Format: {LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n")
    return (f"{LCB_SYSTEM}\n\n### Question:\n{p.prompt}\n\n{fmt}"
            "### Answer: (use the provided format with backticks)\n\n")
