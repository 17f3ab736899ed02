"""Verifier pool: Ray actors that score math (math-verify) and code (sandbox) responses.

`VerifierPool(cfg).verify(batch)` keeps order, bounds concurrency, retries the items of a crashed actor once
and then scores them 0 with reason "verifier_error". The items of an actor that was lost are judged when Ray
has restarted it (waiting up to verifier.restart_timeout_s): back on the same node, it crashed (maybe of an
item: a failure each); back on another node, its node was lost and the items go again, not counted. Counters and latency histograms go to
`ray.util.metrics`; `pool.stats` mirrors the counters for callers and tests.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections import Counter, OrderedDict
from typing import Any

import ray

from actors.config import VerifierConfig
from actors.verifier.code_grader import extract_code, grade_code
from actors.verifier.math_checker import MathChecker
from actors.verifier.protocols import lcb_extract_code
from actors.verifier.registry import GRADERS
from actors.verifier.sandbox import Sandbox, SandboxLimits
from actors.verifier.types import Result, VerifyRequest, as_request
from cluster.telemetry import metric

__all__ = ["VerifierPool", "VerifierActor", "VerifierUnavailable", "requests_for", "make_sandbox"]


class VerifierUnavailable(RuntimeError):
    """No verifier actor came back within verifier.restart_timeout_s."""


def _say(line: str) -> None:
    """A line for the run's log (stderr, which `ssp rl` and Ray jobs keep)."""
    print(line, file=sys.stderr, flush=True)


def _outcome(res: Result) -> str:
    if res.reason == "timeout":
        return "timeout"
    if res.reason.startswith("verifier_error"):
        return "error"
    return "correct" if res.reward > 0 else "wrong"


def make_sandbox(c: VerifierConfig, slots: int) -> Sandbox:
    """The code sandbox with `verifier.*`'s limits and `slots` concurrent runs."""
    limits = SandboxLimits(c.code_timeout_s, c.memory_mb, c.max_output_bytes, c.nproc, c.nofile, c.scratch_mb, c.cpus)
    return Sandbox(limits, allow_weak_isolation=c.allow_weak_isolation, slots=slots, uid_base=c.uid_base)


@ray.remote
class VerifierActor:
    """Thin actor: one MathChecker helper and one sandbox uid slot per concurrent thread."""

    def __init__(self, config: VerifierConfig, index: int):
        import queue

        self.config = c = config
        self.sandbox = make_sandbox(c, c.max_concurrency)
        self.checkers: queue.Queue[MathChecker] = queue.Queue()
        for _ in range(c.max_concurrency):
            self.checkers.put(MathChecker(c.math_timeout_s, c.math_memory_mb))
        self.m_checks, self.m_latency = metric("ssp_verifier_checks"), metric("ssp_verifier_latency_s")
        self.m_in_flight, self.in_flight, self.lock = metric("ssp_verifier_in_flight"), Counter(), threading.Lock()

    def ping(self) -> str:
        """Alive: the Ray node it runs on."""
        return ray.get_runtime_context().get_node_id()

    def verify_many(self, reqs: list[VerifyRequest]) -> list[Result]:
        """Several checks in this thread, one after another (the pool sends cheap math checks in chunks)."""
        return [self.verify_one(r) for r in reqs]

    def verify_one(self, req: VerifyRequest) -> Result:
        t0 = time.perf_counter()
        self._count_in_flight(req.kind, +1)
        try:
            res = self._verify(req)
        except Exception as e:
            res = Result(req.id, req.kind, 0.0, "verifier_error", detail={"error": f"{type(e).__name__}: {e}"})
        finally:
            self._count_in_flight(req.kind, -1)
        res.id, res.kind, res.elapsed = req.id, req.kind, time.perf_counter() - t0
        self.m_checks.inc(tags={"kind": req.kind, "outcome": _outcome(res)})
        self.m_latency.observe(res.elapsed, tags={"kind": req.kind})
        return res

    def _count_in_flight(self, kind: str, delta: int) -> None:
        with self.lock:
            self.in_flight[kind] += delta
            self.m_in_flight.set(self.in_flight[kind], tags={"kind": kind})

    def _verify(self, req: VerifyRequest) -> Result:
        method = GRADERS.get((req.kind, req.grader))
        if method is None:
            raise ValueError(f"unknown (kind, grader) {(req.kind, req.grader)!r}; valid: {sorted(GRADERS)}")
        return getattr(self, method)(req)

    def grade_math(self, req: VerifyRequest) -> Result:
        checker = self.checkers.get()
        try:
            opts = {"think": self.config.math_think, "unboxed": self.config.math_unboxed, "choices": req.choices}
            return checker.check(req.response, req.gold or "", req.grader or "strict", **opts)
        finally:
            self.checkers.put(checker)

    def grade_code(self, req: VerifyRequest) -> Result:
        return grade_code(req.response, req.tests or {}, self.sandbox, lcb=req.grader == "lcb")




def requests_for(problems: dict[str, Any], rollouts: list, graders: dict[str, str] | None = None) -> list[VerifyRequest]:
    """One request per rollout: its text against its Problem's gold answer or tests, graded by
    `graders[kind]` (absent: the training reward)."""
    out = []
    for r in rollouts:
        p = problems[r.problem_id]
        out.append(VerifyRequest(f"{r.problem_id}#{r.sample_idx}", p.kind, r.text, p.answer, p.tests,
                                 (graders or {}).get(p.kind, ""), p.choices))
    return out


# Verdicts that depend on the program and the tests alone. Not reused: timeout and memory_limit (the machine's
# load can decide them), verifier_error (the infrastructure's fault).
REUSABLE = frozenset({"correct", "wrong_answer", "runtime_error", "syntax_error", "format_miss", "output_limit"})


def program_key(req: VerifyRequest) -> str | None:
    """What a code verdict depends on: the grader, the tests and the program the grader will extract (the same
    extraction as grade_code). None for other kinds."""
    if req.kind != "code":
        return None
    code = lcb_extract_code(req.response) if req.grader == "lcb" else extract_code(req.response)
    return json.dumps([req.grader, req.tests, code], sort_keys=True, default=str)


def chunks(reqs: list[VerifyRequest], cap: int, most: int = 8) -> list[list[int]]:
    """Item indexes grouped into units of work: math checks (milliseconds each, time-limited) in chunks that
    spread them over the `cap` slots, up to `most` per call, to save a Ray call per check; code checks (a
    sandboxed run each) one per unit."""
    math = [i for i, r in enumerate(reqs) if r.kind == "math"]
    size = max(1, min(most, -(-len(math) // max(cap, 1))))
    units = [math[j:j + size] for j in range(0, len(math), size)]
    return units + [[i] for i, r in enumerate(reqs) if r.kind != "math"]


class VerifierPool:
    """A fixed set of VerifierActors. Call `verify(batch)` from any driver-side code."""

    def __init__(self, config: VerifierConfig | None = None):
        self.config = c = config or VerifierConfig()
        opts = {"num_cpus": c.num_cpus, "resources": c.resources, "max_restarts": c.max_restarts, "max_task_retries": 0,
                "max_concurrency": c.max_concurrency}
        self.actors = [VerifierActor.options(**opts).remote(c, i) for i in range(c.num_workers)]
        try:  # surfaces IsolationError at start
            self.node_of = ray.get([a.ping.remote() for a in self.actors], timeout=c.restart_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise VerifierUnavailable(
                f"verifier: {c.num_workers} actors not started within {c.restart_timeout_s:g}s "
                f"(verifier.restart_timeout_s); does a node offer {c.num_cpus:g} CPUs and "
                f"verifier.resources={c.resources} free for each?") from None
        self.stats: Counter[str] = Counter()
        self.m_checks = metric("ssp_verifier_checks")  # checks lost with a crashed actor count as errors here
        self.seen: OrderedDict[str, Result] = OrderedDict()  # program_key -> a reusable verdict (LRU)
        self.lock = threading.Lock()  # verify() is called from several driver threads (rl.pipeline)
        self.lost: dict[int, float] = {}  # actor -> when a call first found it lost (for the log lines)
        self.lost_node: dict[int, str] = {}  # actor -> the node it was lost on

    def verify(self, batch: list[VerifyRequest | dict[str, Any]]) -> list[Result]:
        """Results in input order. A code response whose program was judged already (verifier.reuse_verdicts)
        gets a copy of that verdict, marked detail["reused"]; every other one is checked by `check`."""
        reqs = [as_request(x) for x in batch]
        if not self.config.reuse_verdicts:
            return self.check(reqs)
        keys = [program_key(r) for r in reqs]
        out: list[Result | None] = [None] * len(reqs)
        src: dict[int, Result] = {}  # item -> the verdict it takes (from an earlier batch or this batch's first)
        first: dict[str, int] = {}  # key -> the item checked for it in this batch
        with self.lock:
            for i, k in enumerate(keys):
                if k is not None and k in self.seen:
                    self.seen.move_to_end(k)
                    src[i] = self.seen[k]
                elif k is not None:
                    first.setdefault(k, i)
        todo = [i for i, k in enumerate(keys) if i not in src and (k is None or first[k] == i)]
        for i, res in zip(todo, self.check([reqs[i] for i in todo])):
            out[i] = res
            if keys[i] is not None and res.reason in REUSABLE:
                with self.lock:
                    self.seen[keys[i]] = res
                    while len(self.seen) > self.config.reuse_cache:
                        self.seen.popitem(last=False)
        dups = [i for i, k in enumerate(keys) if out[i] is None and i not in src]
        again = [i for i in dups if out[first[keys[i]]].reason not in REUSABLE]  # first run not conclusive
        for i, res in zip(again, self.check([reqs[i] for i in again])):
            out[i] = res
        for i in dups:
            if out[i] is None:
                src[i] = out[first[keys[i]]]
        for i, res in src.items():
            out[i] = dataclasses.replace(res, id=reqs[i].id, elapsed=0.0, detail={**res.detail, "reused": True})
        self.stats["reused"] += len(src)
        return out

    def check(self, reqs: list[VerifyRequest]) -> list[Result]:
        """Results in input order; at most num_workers * max_concurrency checks in flight.

        An actor whose call failed gets no new work until a `ping` to it (i.e. its restart) returns;
        a failed item is retried once on another actor when there is one.

        One piece: a single event loop over the calls and pings in flight, whose bookkeeping (loads, the actor
        each item failed on, actors down since when) is shared by every branch; split up, that state would
        travel between functions and the order of its updates would be harder to see.
        """
        c = self.config
        results: list[Result | None] = [None] * len(reqs)
        failed_on: dict[int, int] = {}
        cap = len(self.actors) * self.config.max_concurrency
        todo = chunks(reqs, cap)[::-1]  # units of work: lists of item indexes
        inflight: dict[ray.ObjectRef, tuple[list[int], int, str]] = {}  # ref -> (items, actor, its node then)
        pings: dict[ray.ObjectRef, int] = {}  # ref -> actor being waited on to come back
        suspects: dict[int, list[tuple[list[int], str, Exception]]] = {}  # actor -> units lost with it
        down_since: dict[int, float] = {}  # actor -> when it was found down
        load = [0] * len(self.actors)

        def judge(unit: list[int], a: int, got: list, crash: Exception | None) -> None:
            for i, res in zip(unit, got):
                if res is not None and (i in failed_on or not res.reason.startswith("verifier_error")):
                    results[i] = res
                    continue
                # a failure: counted once (a verifier_error the actor returned is in its own counter),
                # retried once on another actor, then scored 0
                self.stats["errors"] += 1
                if res is None:
                    self.m_checks.inc(tags={"kind": reqs[i].kind, "outcome": "error"})
                if i not in failed_on:
                    failed_on[i] = a
                    self.stats["retries"] += 1
                    todo.append([i])
                else:
                    r = reqs[i]
                    results[i] = Result(r.id, r.kind, 0.0, "verifier_error",
                                        detail={"error": f"{type(crash).__name__}: {crash}"[:500]})

        while todo or inflight or suspects:
            down = set(pings.values())
            while todo and len(inflight) < cap:
                unit = todo[-1]
                ok = [a for a in range(len(self.actors)) if a not in down and a != failed_on.get(unit[0])]
                ok = ok or [a for a in range(len(self.actors)) if a not in down]
                if not ok:
                    break
                todo.pop()
                a = min(ok, key=load.__getitem__)
                inflight[self.actors[a].verify_many.remote([reqs[i] for i in unit])] = (unit, a, self.node_of[a])
                load[a] += 1
            done, _ = ray.wait(list(inflight) + list(pings), num_returns=1, timeout=5.0)
            if not done and not inflight:  # every actor with work left is down: bounded by restart_timeout_s
                waited = time.monotonic() - min(down_since.values(), default=time.monotonic())
                if waited > self.config.restart_timeout_s:
                    raise VerifierUnavailable(
                        f"verifier: actors {sorted(set(pings.values()))} lost and not back after {waited:.0f}s "
                        f"(verifier.restart_timeout_s); was their node lost with no replacement for "
                        f"verifier.resources={self.config.resources}?")
            for ref in done:
                if ref in pings:
                    a = pings.pop(ref)
                    try:
                        node = ray.get(ref)
                    except ray.exceptions.ActorDiedError:
                        raise  # restarts exhausted (verifier.max_restarts): nothing left to retry on
                    except Exception:  # restarting: ask again, after a pause, up to verifier.restart_timeout_s
                        self.stats["ping_errors"] += 1
                        if time.monotonic() - down_since.setdefault(a, time.monotonic()) > c.restart_timeout_s:
                            raise
                        time.sleep(0.2)
                        pings[self.actors[a].ping.remote()] = a
                        continue
                    down_since.pop(a, None)
                    self.node_of[a] = node
                    with self.lock:
                        if a in self.lost:  # said once per outage, whichever thread's call saw it
                            _say(f"verifier: actor {a} is back after {time.monotonic() - self.lost.pop(a):.1f}s"
                                 f"{' on another node' if node != self.lost_node.get(a, node) else ''}")
                    for unit, was, crash in suspects.pop(a, []):
                        if node != was:  # its node was lost: the items were not at fault; they go again
                            todo += [[i] for i in unit]
                            self.stats["requeued"] += len(unit)
                        else:  # the actor died on a live node, maybe of an item: a failure of each
                            judge(unit, a, [None] * len(unit), crash)
                    continue
                unit, a, was = inflight.pop(ref)
                load[a] -= 1
                try:
                    judge(unit, a, ray.get(ref), None)
                except ray.exceptions.RayActorError as e:  # the actor died (or its node): judged once it is back
                    suspects.setdefault(a, []).append((unit, was, e))
                    if a not in pings.values():
                        pings[self.actors[a].ping.remote()] = a
                    down_since.setdefault(a, time.monotonic())
                    with self.lock:
                        if a not in self.lost:
                            self.lost[a], self.lost_node[a] = time.monotonic(), was
                            _say(f"verifier: actor {a} lost ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                                 f"its checks wait up to {c.restart_timeout_s:g}s for its restart")
                except Exception as e:  # the call failed inside the actor: every item of the unit failed with it
                    if a not in pings.values():
                        pings[self.actors[a].ping.remote()] = a
                    judge(unit, a, [None] * len(unit), e)
        out = [r for r in results if r is not None]
        assert len(out) == len(reqs), "verifier pool lost an item"
        for r in out:
            self.stats["requests"] += 1
            self.stats["correct"] += r.reward > 0
            self.stats["timeouts"] += r.reason == "timeout"
            self.stats["verifier_errors"] += r.reason.startswith("verifier_error")
        return out

    def node_ids(self) -> list[str]:
        """The Ray node of each verifier actor."""
        return ray.get([a.ping.remote() for a in self.actors], timeout=self.config.restart_timeout_s)

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
