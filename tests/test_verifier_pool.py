"""The Ray verifier pool: order, mixed kinds, actor kills mid-batch, retries, and the `verify` CLI."""

from __future__ import annotations

import json
import threading
import time
from functools import partial

import psutil
import pytest

from actors.config import VerifierConfig
from actors.verifier.pool import VerifierPool

# each item its own program ({i}), so that none takes another's verdict (verifier.reuse_verdicts)
SLOW = "```python\nimport time\ntime.sleep({s})\ndef f():\n    return 1  # {i}\n```"


def _items(n: int, sleep: float = 0.0) -> list[dict]:
    out = []
    for i in range(n):
        if i % 2:
            out.append({"id": f"m{i}", "kind": "math", "response": f"<think>.</think>\\boxed{{{i}}}", "gold": str(i)})
        else:
            out.append({"id": f"c{i}", "kind": "code", "response": SLOW.format(s=sleep, i=i),
                        "tests": {"asserts": ["assert f() == 1"]}})
    return out


def _sandboxed(*uids: int) -> list[psutil.Process]:
    """The live programs run under these sandbox uids (a killed actor's may linger as zombies)."""
    return [q for q in psutil.process_iter(["uids", "status"]) if q.info["uids"]
            and q.info["uids"].real in uids and q.info["status"] != psutil.STATUS_ZOMBIE]


@pytest.fixture(scope="module")
def pool(ray_cluster):
    p = VerifierPool(VerifierConfig(num_workers=2, max_concurrency=2, uid_base=63300, code_timeout_s=2.0))
    yield p
    p.shutdown()


def test_mixed_batch_keeps_order(pool):
    batch = _items(12) + [
        {"id": "wrong", "kind": "math", "response": "<think>.</think>\\boxed{3}", "gold": "4"},
        {"id": "miss", "kind": "math", "response": "<think>.</think>no box", "gold": "4"},
        {"id": "loop", "kind": "code", "response": "while True: pass", "tests": {"asserts": ["assert True"]}},
    ]
    results = pool.verify(batch)
    assert [r.id for r in results] == [b["id"] for b in batch]
    assert all(r.reward == 1.0 for r in results[:12])
    assert [r.reason for r in results[12:]] == ["wrong_answer", "format_miss", "timeout"]
    assert results[0].stdout == "" and results[1].answer == "1"
    assert pool.stats["timeouts"] >= 1


def test_two_pools_with_default_settings_do_not_kill_each_others_programs(ray_cluster):
    """`ssp verify` while `ssp rl` runs: two pools, default uid_base, at once; every slow program survives."""
    a, b = VerifierPool(VerifierConfig()), VerifierPool(VerifierConfig())
    try:
        out: dict[str, list] = {}
        batch = [{**x, "response": SLOW.format(s=1.0, i=x["id"])} for x in _items(8) if x["kind"] == "code"]
        threads = [threading.Thread(target=lambda k=k, p=p: out.__setitem__(k, p.verify(batch)))
                   for k, p in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.reason for r in out["a"] + out["b"]] == ["correct"] * 8
        assert a.stats["errors"] == b.stats["errors"] == 0
    finally:
        a.shutdown()
        b.shutdown()


def test_killed_actor_mid_batch_loses_nothing(ray_cluster):
    import ray

    p = VerifierPool(VerifierConfig(num_workers=2, max_concurrency=2, uid_base=63400))
    try:
        batch = _items(16, sleep=1.0)

        def kill_when_busy():  # actor 0 is killed while one of its items runs (not on a timer: CI load varies)
            deadline = time.monotonic() + 60
            while not _sandboxed(63400, 63401) and time.monotonic() < deadline:
                time.sleep(0.02)
            ray.kill(p.actors[0], no_restart=False)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        results = p.verify(batch)
        killer.join(timeout=5)
        assert [r.id for r in results] == [b["id"] for b in batch]
        assert p.stats["errors"] >= 1 and p.stats["retries"] >= 1  # the killed actor's items were retried
        assert all(r.reward == 1.0 for r in results), [(r.id, r.reason, r.detail) for r in results if r.reward != 1]
        assert ray.get(p.actors[0].ping.remote())  # restarted
    finally:
        p.shutdown()


def test_items_failing_twice_score_verifier_error(ray_cluster):

    p = VerifierPool(VerifierConfig(num_workers=1, max_concurrency=2, max_restarts=-1, uid_base=63500,
                                    code_timeout_s=120))  # items end only by being killed
    stop = threading.Event()
    sandboxed = partial(_sandboxed, 63500, 63501)

    def keep_killing():  # SIGKILL the actor whenever an item runs in its sandbox (not on a timer: CI load varies)
        while not stop.is_set():
            # Only this pool's actor, the one above its sandboxed programs: the module's `pool` has VerifierActors
            # too (killing them all exhausted its restarts). SIGKILL, as ray.kill may stop the actor's children
            # first, and the item then returns a result.
            actors = set()
            for q in sandboxed():
                try:
                    actors |= {a for a in q.parents() if " ".join(a.cmdline()).startswith("ray::VerifierActor")}
                except psutil.Error:  # it ended meanwhile
                    pass
            if actors:
                for a in actors:
                    a.kill()
                while sandboxed() and not stop.is_set():  # the killed actor's programs die with it
                    time.sleep(0.05)
            stop.wait(0.05)

    t = threading.Thread(target=keep_killing)
    t.start()
    try:
        batch = [b for b in _items(4, sleep=30) if b["kind"] == "code"]
        results = p.verify(batch)
    finally:
        stop.set()
        t.join()
        p.shutdown()
    assert [r.id for r in results] == [b["id"] for b in batch]
    assert all(r.reason == "verifier_error" and r.reward == 0 for r in results), [(r.reason, r.detail) for r in results]
    assert p.stats["errors"] == 2 * len(batch) and p.stats["verifier_errors"] == len(batch)


def _cli(argv: list[str]) -> int:
    from ssp.cli import main

    return main(argv)  # the CLI's one error boundary turns bad input into `ssp verify: ...`, exit 2


def test_cli_verify(ray_cluster, tmp_path, capsys):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(json.dumps(x) for x in _items(4)) + "\n")
    assert _cli(["verify", "--input", str(inp), "--output", str(out), "num_workers=1", "uid_base=63600"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["c0", "m1", "c2", "m3"]
    assert all(set(r) == {"id", "reward", "reason", "elapsed"} and r["reward"] == 1.0 for r in rows)
    summary = capsys.readouterr().out
    assert '"count": 4' in summary and '"correct": 4' in summary and '"timeouts": 0' in summary


def test_cli_malformed_line(tmp_path, capsys):
    inp = tmp_path / "bad.jsonl"
    inp.write_text(json.dumps(_items(2)[1]) + "\n" + json.dumps({"id": "x", "kind": "math", "response": "r"}) + "\n")
    assert _cli(["verify", "--input", str(inp)]) == 2
    assert f"{inp}:2: missing field 'gold'" in capsys.readouterr().err
    inp.write_text("{not json\n")
    assert _cli(["verify", "--input", str(inp)]) == 2
    assert f"{inp}:1: not valid JSON" in capsys.readouterr().err
    inp.write_text(json.dumps({**_items(2)[1], "grader": "vibe"}) + "\n")  # the one registry, before any actor
    assert _cli(["verify", "--input", str(inp)]) == 2
    assert f"{inp}:1: field 'grader': unknown math grader 'vibe'; valid: ['math-verify', 'strict', 'vibethinker']" \
        in capsys.readouterr().err


def test_metrics_counted_in_actor(pool):
    before = dict(pool.stats)
    res = pool.verify([{"id": "e", "kind": "nope", "response": ""}])
    assert pool.stats["verifier_errors"] == before.get("verifier_errors", 0) + 1
    assert res[0].reason == "verifier_error" and "valid: [('code', ''), ('code', 'lcb')" in res[0].detail["error"]
    # the first try's failure is retried (counted once, by the actor); the retry's result is final
    assert pool.stats["errors"] == before.get("errors", 0) + 1 and pool.stats["retries"] == before.get("retries", 0) + 1


def test_identical_programs_reuse_one_verdict(pool):
    """G samples of one problem often carry the same program: it runs once, the copies take its verdict, and an
    inconclusive verdict (timeout) is never reused."""
    tests = {"asserts": ["assert f(2) == 4"]}
    good, bad, slow = "def f(x):\n    return x * 2", "def f(x):\n    return x + 3", "def f(x):\n    while True: pass"
    say = ["Here it is:\n```python\n{}\n```", "```python\n{}\n```\nDone.", "Sure.\n```python\n{}\n```"]
    batch = ([{"id": f"g{j}", "kind": "code", "response": say[j].format(good), "tests": tests} for j in range(3)]
             + [{"id": f"b{j}", "kind": "code", "response": say[j].format(bad), "tests": tests} for j in range(2)]
             + [{"id": f"s{j}", "kind": "code", "response": say[j].format(slow), "tests": tests} for j in range(2)]
             + [{"id": "other", "kind": "code", "response": say[0].format(good), "tests": {"asserts": ["assert f(1) == 3"]}}])
    before = dict(pool.stats)
    res = pool.verify(batch)
    assert [r.id for r in res] == [b["id"] for b in batch]
    assert [r.reason for r in res] == ["correct"] * 3 + ["wrong_answer"] * 2 + ["timeout"] * 2 + ["wrong_answer"]
    assert [bool(r.detail.get("reused")) for r in res] == [False, True, True, False, True, False, False, False]
    checked = pool.stats["requests"] - before.get("requests", 0)
    assert checked == 5 and pool.stats["reused"] - before.get("reused", 0) == 3  # good, bad, slow twice, other
    again = pool.verify([{**batch[0], "id": "later"}])  # a later batch: remembered
    assert again[0].id == "later" and again[0].reward == 1.0 and again[0].detail["reused"]
    assert pool.stats["requests"] - before.get("requests", 0) == 5
    pool.config.reuse_verdicts = False
    try:
        off = pool.verify(batch[:5])
    finally:
        pool.config.reuse_verdicts = True
    assert [r.reason for r in off] == [r.reason for r in res[:5]] and not any(r.detail.get("reused") for r in off)
    assert pool.stats["requests"] - before.get("requests", 0) == 10


def test_math_reward_options_reach_the_checker(pool):
    """Through the pool (the path `ssp verify` and `ssp rl` use): a problem's choices travel with the request,
    verifier.math_think (default required) applies, and hedges score 0."""
    mc = {"A": "1", "B": "2", "C": "3"}
    batch = [{"id": "mc", "kind": "math", "response": "<think>.</think>\\boxed{B}", "gold": "B", "choices": mc},
             {"id": "mc2", "kind": "math", "response": "<think>.</think>\\boxed{B, C}", "gold": "B", "choices": mc},
             {"id": "mc3", "kind": "math", "response": "<think>.</think>B. 2", "gold": "B", "choices": mc},
             {"id": "or", "kind": "math", "response": "<think>.</think>\\boxed{3 \\text{ or } 4}", "gold": "4"},
             {"id": "open", "kind": "math", "response": "<think>it is \\boxed{4}", "gold": "4"},
             {"id": "bare", "kind": "math", "response": "\\boxed{4}", "gold": "4"}]
    got = [(r.reward, r.reason) for r in pool.verify(batch)]
    assert got == [(1.0, "correct"), (0.0, "format_miss"), (0.0, "format_miss"), (0.0, "hedged"),
                   (0.0, "no_think_end"), (0.0, "no_think_end")]
