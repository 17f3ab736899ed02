from trainer.data.decontam import decontaminate, ngrams, normalise
from trainer.data.problems import Problem


def P(pid, text):
    return Problem(id=pid, prompt=text, kind="math", answer="1")


EVAL = [P("e1", "Let $x$ be the number of apples that Alice has, and let y be the number of pears she buys.")]


def test_normalise_drops_case_and_punctuation():
    assert normalise("Hello, World! $x^2$") == ["hello", "world", "x", "2"]


def test_shared_10gram_drops_item_even_with_other_case_and_punctuation():
    train = [P("t1", "LET x BE the number of apples, that alice has; and then compute it."),  # 10-gram shared
             P("t2", "Let x be the number of apples that Bob has and compute it."),  # 9 words shared only
             P("t3", "A totally different problem about triangles and circles in the plane today.")]
    report = decontaminate(train, EVAL)
    assert [p.id for p, _, _ in report.dropped] == ["t1"]
    assert [p.id for p in report.kept] == ["t2", "t3"]
    assert report.dropped[0][1] == "e1"
    assert report.counts() == {"kept": 2, "dropped": 1}


def test_short_texts_have_no_10grams():
    assert ngrams("one two three four five six seven eight nine") == set()
    assert len(ngrams("one two three four five six seven eight nine ten eleven")) == 2


def test_shared_gsm8k_train_is_already_clean(shared_dir):
    from trainer.data.problems import load_problems

    train = load_problems(shared_dir / "data/math/train/gsm8k_train.jsonl")[:1500]
    evals = load_problems(shared_dir / "data/math/eval/gsm8k_test.jsonl")
    assert decontaminate(train, evals).counts()["dropped"] == 0


def test_reinstated_contaminated_item_is_dropped(shared_dir):
    """An item the shared pass dropped (listed in decontam_dropped.jsonl) is caught again by our rule."""
    import json

    from trainer.data.problems import load_problems

    dropped = [json.loads(line) for line in (shared_dir / "data/math/train/decontam_dropped.jsonl").open()]
    d = next(r for r in dropped if r["train_set"] == "gsm8k_train")
    evals = load_problems(shared_dir / "data/math/eval/gsm8k_test.jsonl")
    text = "Some new framing. " + d["example_ngram"].upper() + ", and a different question?"
    report = decontaminate([P("x", text)], evals)
    assert report.counts() == {"kept": 0, "dropped": 1}
    assert report.dropped[0][1] == d["eval_hits"][0].split(":")[1]
