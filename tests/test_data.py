import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ssp.config import ConfigError
from tests.conftest import REPO
from trainer.data.problems import DataError, load_problems
from trainer.data.sources import load_all

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


def test_math_train_has_subdomains_and_the_mirrors_empty_answers_are_refused(shared_dir):
    """The mirror's MATH train has 2 rows whose gold is empty (an empty \\boxed{}): refused naming the line; the
    shipped copy leaves them out (data/train/math/SOURCE.md)."""
    with pytest.raises(DataError, match=r"math_train.jsonl:5202: field 'answer' is empty"):
        load_problems(shared_dir / "data" / "math" / "train" / "math_train.jsonl")
    problems = load_all([str(REPO / "data/train/math/math_train.jsonl.gz")])
    assert len(problems) == 7061
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
    f = tmp_path / "x.xml"
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


# ---- sources read with the `datasets` library, through a field mapping ---------------------------

def _rows():
    return [{"uid": f"q{i}", "question": f"What is {i} + {i}?", "final": str(2 * i), "worked": f"{i}+{i}={2 * i}",
             "topic": "add", "difficulty": 1} for i in range(6)]


FIELDS = {"problem": "question", "answer": "final", "solutions": "worked", "subdomain": "topic",
          "level": "difficulty", "id": "uid"}


def test_parquet_csv_gz_and_save_to_disk_sources_map_their_columns_to_ours(tmp_path):
    import gzip

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.config import DataSourceConfig
    from trainer.data.sources import load_source

    pq.write_table(pa.Table.from_pylist(_rows()), tmp_path / "a.parquet")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows()[:4]),
                          "test": datasets.Dataset.from_list(_rows()[4:])}).save_to_disk(str(tmp_path / "dd"))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in _rows())
    for src, n in ((DataSourceConfig(path=str(tmp_path / "a.parquet"), fields=FIELDS), 6),
                   (DataSourceConfig(path=str(tmp_path / "dd"), split="test", fields=FIELDS), 2),
                   (DataSourceConfig(path=str(tmp_path / "c.jsonl.gz"), fields=FIELDS), 6)):
        probs = load_source(src)
        assert len(probs) == n, src
        p = probs[0]
        assert (p.kind, p.subdomain, p.level, p.solutions) == ("math", "add", 1, [p.prompt[8:].split(" +")[0] + "+"
                                                                                 + p.prompt[8:].split(" +")[0] + "="
                                                                                 + p.answer])
        assert p.id.startswith("q") and p.answer == str(2 * int(p.id[1:]))


def test_mapped_sources_fail_naming_the_row_and_the_missing_column(tmp_path):
    import datasets

    from trainer.config import DataSourceConfig
    from trainer.data.sources import load_source

    rows = _rows()
    del rows[3]["final"]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"m.jsonl:4: missing column 'final' \(mapped to 'answer'"):
        load_source(DataSourceConfig(path=str(tmp_path / "m.jsonl"), fields=FIELDS))
    datasets.Dataset.from_list(_rows()).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"ds \[train\]: row 0: missing field 'problem'"):
        load_source(str(tmp_path / "ds"))  # a plain path: no mapping, so our field names are required
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows())}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"no split 'validation' in the saved DatasetDict \(splits: \['train'\]\)"):
        load_source(DataSourceConfig(path=str(tmp_path / "dd"), split="validation", fields=FIELDS))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match=r"x.txt: unknown dataset format"):
        load_source(str(tmp_path / "x.txt"))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['question'\]"):
        DataSourceConfig(path="a.jsonl", fields={"question": "q"})


def test_a_hub_source_without_network_is_a_data_error_naming_it(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    from trainer.config import DataSourceConfig
    from trainer.data.sources import load_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # read at import: where an earlier test imported `datasets`, the env alone left it retrying the network (~22 s)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"hf:nobody/no-such-dataset \[train\]: cannot load with the datasets library"):
        load_source(DataSourceConfig(path="hf:nobody/no-such-dataset"))


def test_the_shipped_pools_load_with_worked_solutions_mapped_as_sft_traces():
    from ssp.config import load_config
    from ssp.tree import SSPConfig
    from trainer.data.splits import load_problems_for

    conf = load_config(SSPConfig, REPO / "configs" / "qwen2.5-math-1.5b-gpu.yaml")
    train, held = load_problems_for(conf)
    math = [p for p in train if p.kind == "math"]
    code = [p for p in train if p.kind == "code"]
    assert (len(math), len(code), len(held)) == (7061, 170, 60)
    assert all(len(p.solutions) == 1 for p in train) and "\\boxed{" in math[0].solutions[0]
    from trainer.eval.suites import load_dataset, load_suite

    suite, path = load_suite("code")
    test_ids = {p.id for d in suite.datasets for p in load_dataset(d, path, conf)}
    assert len(test_ids) == 257 and not test_ids & {p.id for p in code}  # MBPP's test split is not trained on


@pytest.mark.parametrize("row, message", [
    ({"problem": "p", "answer": True}, "field 'answer' must be a string or a finite number"),
    ({"problem": "p", "answer": float("nan")}, "field 'answer' must be a string or a finite number"),
    ({"id": False, "problem": "p", "answer": "1"}, "field 'id' must be a non-empty string or an integer"),
    ({"id": ["x"], "problem": "p", "answer": "1"}, "field 'id'"),
    ({"problem": "p", "answer": "1", "level": True}, "field 'level' must be int or null"),
    ({"prompt": "p", "tests": ["assert f(1) == 1"], "test_imports": "import os"}, "field 'test_imports' must be a list"),
    ({"prompt": "p", "tests": ["assert f(1) == 1"], "entry_point": 3}, "field 'entry_point' must be a string"),
    ({"problem": "p", "answer": "1", "solutions": [1, 2]}, "field 'solutions' must be a string or a list of strings"),
])
def test_rows_with_fields_of_the_wrong_type_are_refused_naming_the_field(tmp_path, row, message):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"problem": "ok", "answer": "1"}) + "\n" + json.dumps(row, allow_nan=True) + "\n")
    with pytest.raises(DataError, match=rf"rows.jsonl:2: {re.escape(message)}"):
        load_problems(f)


def test_non_regular_files_are_refused_by_name_not_read(tmp_path):
    import os

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe.jsonl: is a FIFO, expected"):
        load_problems(fifo)
    with pytest.raises(DataError, match=r"is a directory"):
        load_problems(tmp_path)
    from trainer.data.sources import load_source

    with pytest.raises(DataError, match=r"pipe.jsonl: is a FIFO"):
        load_source(str(fifo))
    with pytest.raises(ConfigError, match=r"pipe.jsonl: is a FIFO"):
        from ssp.config import load_config
        from ssp.tree import SSPConfig

        load_config(SSPConfig, fifo)
