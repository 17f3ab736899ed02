import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.data.problems import DataError, load_problems

EVAL = ["aime24", "aime25", "amc23", "gsm8k_test", "hmmt25", "math500"]


@pytest.mark.parametrize("name", EVAL)
def test_shared_math_eval_loads(shared_dir, name):
    path = shared_dir / "data" / "math" / "eval" / f"{name}.jsonl"
    problems = load_problems(path)
    n_lines = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert len(problems) == n_lines and all(p.kind == "math" and p.answer for p in problems)


def test_shared_code_loads(shared_dir):
    problems = load_problems(shared_dir / "data" / "code" / "mbpp_sanitized.jsonl")
    assert len(problems) == 427
    p = problems[0]
    assert p.kind == "code" and p.tests["asserts"] and p.subdomain == "code"


def test_shared_math_train_has_subdomains(shared_dir):
    problems = load_problems(shared_dir / "data" / "math" / "train" / "math_train.jsonl")
    assert len(problems) == 7063
    assert len({p.subdomain for p in problems}) == 7


def test_malformed_json_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "problem": \n')
    with pytest.raises(DataError, match=rf"{f}:2: not valid JSON"):
        load_problems(f)


def test_missing_field_names_file_line_and_field(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n\n{"id": "b", "problem": "2+2"}\n')
    with pytest.raises(DataError, match=rf"{f}:3: missing field 'answer'"):
        load_problems(f)


def test_wrong_type_names_field(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "problem": ["x"], "answer": "2"}\n')
    with pytest.raises(DataError, match=r":1: field 'problem' must be str"):
        load_problems(f)


def test_duplicate_ids_fail(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text(json.dumps({"id": "a", "problem": "x", "answer": "1"}) * 1 + "\n"
                 + json.dumps({"id": "a", "problem": "y", "answer": "2"}) + "\n")
    with pytest.raises(DataError, match="duplicate problem id 'a'"):
        load_problems(f)


def test_ids_without_id_field_are_stable(tmp_path):
    f = tmp_path / "noid.jsonl"
    f.write_text(json.dumps({"problem": "What is 2+2?", "answer": "4"}) + "\n")
    assert load_problems(f)[0].id == load_problems(f)[0].id == "noid-" + load_problems(f)[0].id.split("-")[1]


def _verl_rows():
    return [
        {"data_source": "toy", "prompt": [{"role": "user", "content": "What is 1+1?"}], "ability": "math",
         "reward_model": {"style": "rule", "ground_truth": "2"}, "extra_info": {"index": 0, "split": "train"}},
        {"data_source": "toy", "prompt": [{"role": "user", "content": "What is 2+2?"}], "ability": "math",
         "reward_model": {"style": "rule", "ground_truth": "4"}, "extra_info": {"index": 1, "split": "train"}},
    ]


def test_verl_parquet_loads(tmp_path):
    f = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(_verl_rows()), f)
    problems = load_problems(f)
    assert [(p.id, p.prompt, p.answer) for p in problems] == [
        ("train-0", "What is 1+1?", "2"), ("train-1", "What is 2+2?", "4")]


def test_verl_parquet_error_names_row_and_field(tmp_path):
    rows = _verl_rows()
    rows[1]["reward_model"] = {"style": "rule", "ground_truth": None}
    f = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), f)
    with pytest.raises(DataError, match=rf"{f}: row 1: missing field 'reward_model.ground_truth'"):
        load_problems(f)


def test_unknown_extension(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n")
    with pytest.raises(DataError, match="unknown dataset format"):
        load_problems(f)


def test_code_problem_without_tests_is_refused_at_load(tmp_path):
    """An empty test list would give reward 1 to anything that runs."""
    for tests, why in (([], "non-empty list"), ({"stdin_stdout": []}, "non-empty list"),
                       ({"test_code": "assert True", "entry_point": "f"}, "def check")):
        f = tmp_path / "code.jsonl"
        f.write_text(json.dumps({"id": "c1", "prompt": "write f", "tests": tests}) + "\n")
        with pytest.raises(DataError, match=f"{f}:1: field 'tests': .*{why}"):
            load_problems(f)
    f.write_text(json.dumps({"id": "c1", "prompt": "write f", "tests": ["assert f(1) == 2"], "entry_point": "f"}) + "\n")
    assert load_problems(f)[0].tests == {"asserts": ["assert f(1) == 2"], "imports": [], "entry_point": "f"}
