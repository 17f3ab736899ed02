"""Rollout workers: Ray actors that each own one vLLM engine, and the pool that drives them.

Weights arrive in place through the `WeightSync` seam (actors/weight_sync.py): the pool gets a handle the
learner published (an ObjectRef to safetensors bytes by default, or a checkpoint directory) and every
engine loads it with vLLM's own `reload_weights`, then resets its prefix cache. No disk round trip, no
model rebuild, no copy through the driver. A version number travels with the weights; every rollout is
tagged with the version that produced it.

A dead engine is restarted by Ray; the pool notices (the actor reports a stale version or the call
fails), pushes the current weights to it before it serves again, and retries the shard.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import ray

from actors import weight_sync
from actors.config import EngineConfig, RolloutConfig, SamplingConfig
from actors.engine import make_llm, sampling_params, set_engine_env
from actors.prompts import build_prompt, load_tokenizer
from actors.records import Problem, Rollout


def as_problem(p):
    """A Problem as it is; a {"id", "prompt"} dict (tests, tools) as a Problem."""
    return p if isinstance(p, Problem) else Problem(id=str(p["id"]), prompt=p["prompt"], kind=p.get("kind", "math"))


class StaleWeights(RuntimeError):
    """The engine's weights are older than the pool's (e.g. it was restarted)."""


@ray.remote
class RolloutWorker:
    def __init__(self, model_path: str, engine: EngineConfig, sampling: SamplingConfig, instruction: str = "",
                 sync_name: str = "object-store"):
        set_engine_env(engine)
        from cluster.telemetry import metric

        self.llm = make_llm(model_path, engine)
        self.sync = weight_sync.make(sync_name)
        self.tokenizer = load_tokenizer(model_path)
        self.sampling, self.instruction, self.version, self.requests = sampling, instruction, 0, 0
        self.m_tok_s = metric("ssp_rollout_tokens_per_s")
        self.m_inflight = metric("ssp_rollout_requests_in_flight")
        self.m_version = metric("ssp_rollout_weight_version")
        self.m_update = metric("ssp_rollout_weight_update_s")

    def ready(self) -> int:
        return self.version

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def generate(self, problems: list, n: int, mode: str = "n", min_version: int | None = None,
                 overrides: dict | None = None, instruction: str | None = None) -> list[Rollout]:
        """G=`n` samples for each Problem, in problem order; tagged with this engine's weight version.
        `min_version` is the staleness bound: an engine on older weights refuses (the pool resyncs it and
        retries)."""
        done = dict(self._run(problems, n, mode, min_version, overrides, instruction))
        return [r for i in range(len(problems)) for r in done[i]]

    def stream(self, problems: list, n: int, mode: str = "n", min_version: int | None = None,
               overrides: dict | None = None, instruction: str | None = None):
        """As `generate`, but yields (problem index, its n rollouts) as each problem finishes (call with
        `num_returns="streaming"`): the caller scores early problems while the engine works on the rest."""
        yield from self._run(problems, n, mode, min_version, overrides, instruction)

    def _run(self, problems: list, n: int, mode: str, min_version: int | None, overrides: dict | None,
             instruction: str | None):
        """One continuous batch over every problem's requests; yields each problem once all its samples are
        done. `instruction` (None = this worker's) is appended to each user prompt."""
        if min_version is not None and self.version < min_version:
            raise StaleWeights(f"engine holds weights v{self.version}, the pool needs at least v{min_version}")
        from vllm.sampling_params import RequestOutputKind


        sampling = SamplingConfig(**{**asdict(self.sampling), **(overrides or {})})
        problems = [as_problem(p) for p in problems]
        instruction = self.instruction if instruction is None else instruction
        copies, per_request = (n, 1) if mode == "repeat" else (1, n)
        engine, owner, got = self.llm.llm_engine, {}, {}
        for i, p in enumerate(problems):
            prompt = build_prompt(self.tokenizer, p, instruction)
            for c in range(copies):
                params = sampling_params(sampling, n=per_request)
                params.output_kind = RequestOutputKind.FINAL_ONLY
                self.requests += 1
                rid = f"r{self.requests}"  # outputs carry this id (add_request returns an internal one)
                engine.add_request(rid, prompt, params)
                owner[rid] = (i, c)
            got[i] = []
        self.m_inflight.set(len(problems) * n)
        t0, n_tok = time.perf_counter(), 0
        try:
            while owner:
                for out in engine.step():
                    if not out.finished or out.request_id not in owner:
                        continue
                    i, c = owner.pop(out.request_id)
                    for j, comp in enumerate(out.outputs):
                        n_tok += len(comp.token_ids)
                        got[i].append(Rollout(
                            problem_id=problems[i].id, sample_idx=c + j, prompt_ids=list(out.prompt_token_ids),
                            response_ids=list(comp.token_ids),
                            logprobs=[lp[t].logprob for lp, t in zip(comp.logprobs, comp.token_ids)] if comp.logprobs else [],
                            text=comp.text, finish_reason=comp.finish_reason or "stop", weight_version=self.version))
                    if len(got[i]) == n:
                        yield i, sorted(got.pop(i), key=lambda r: r.sample_idx)
        finally:
            if owner:  # the caller went away (or a step failed): free the engine for the next call
                engine.abort_request(list(owner))
            self.m_inflight.set(0)
            self.m_tok_s.set(n_tok / max(time.perf_counter() - t0, 1e-9))

    def update_weights(self, handle, version: int) -> float:
        """Load the weights behind a WeightSync handle into the running engine; returns seconds taken."""
        t0 = time.perf_counter()
        self.sync.load(self.llm, handle)
        self.version = version
        dt = time.perf_counter() - t0
        self.m_version.set(version)
        self.m_update.set(dt)
        return dt


class RolloutPool:
    """Driver-side handle: spreads problems over the engines, keeps them on the current weights."""

    def __init__(self, model_path: str, config: RolloutConfig, engine: EngineConfig, sampling: SamplingConfig,
                 instruction: str = ""):
        self.config, self.version, self.weights_ref = config, 0, None
        actor = RolloutWorker.options(num_cpus=config.num_cpus_per_engine, num_gpus=config.num_gpus_per_engine,
                                      resources=config.resources, max_restarts=config.max_restarts, max_task_retries=0)
        self.workers = [actor.remote(model_path, engine, sampling, instruction, config.weight_sync)
                        for _ in range(config.num_engines)]
        self._wait_ready(self.workers)

    def _wait_ready(self, workers: list) -> None:
        """Block until every engine answers; a restarting actor is waited for, a dead one is an error."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        pending = list(workers)
        while pending:
            try:
                ray.get(pending[0].ready.remote(), timeout=max(deadline - time.monotonic(), 0.01))
                pending.pop(0)
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.5)  # restarting
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"rollout: engine not ready within {self.config.startup_timeout_s}s "
                                   "(rollout.startup_timeout_s)") from None
            except ray.exceptions.RayActorError as e:
                raise RuntimeError(f"rollout: engine failed to start:\n{e}") from None
            if time.monotonic() > deadline and pending:
                raise TimeoutError(f"rollout: engine not ready within {self.config.startup_timeout_s}s")

    def update_weights(self, handle, version: int) -> float:
        """Load the weights behind a WeightSync handle (`LearnerGroup.publish_weights()`, or
        `WeightSync.from_checkpoint(path)`) into every engine; returns the slowest engine's seconds. An engine
        that dies or is restarting meanwhile is waited for and resynced (a restart comes back on the base
        model). A plain state dict is accepted too (tests, benchmarks): it is published from here."""
        if isinstance(handle, dict):
            handle = weight_sync.make(self.config.weight_sync).publish(handle)
        self.weights_ref, self.version = handle, version
        refs = [w.update_weights.remote(self.weights_ref, version) for w in self.workers]
        t0, secs = time.perf_counter(), []
        for w, ref in zip(self.workers, refs):
            try:
                secs.append(ray.get(ref))
            except ray.exceptions.RayActorError:
                self._resync(w)
                secs.append(time.perf_counter() - t0)
        return max(secs)

    def _resync(self, worker) -> None:
        """Bring a (restarted) engine back to the current weights before it serves again (a lost engine is
        waited for up to rollout.startup_timeout_s: Ray restarts it, on a replacement node if its node died)."""
        t0 = time.monotonic()
        print(f"rollout: engine {self.workers.index(worker)} lost or behind; waiting up to "
              f"{self.config.startup_timeout_s:g}s for it (rollout.startup_timeout_s), then resyncing it to "
              f"weights v{self.version}", file=sys.stderr, flush=True)
        self._wait_ready([worker])
        if self.weights_ref is not None:
            ray.get(worker.update_weights.remote(self.weights_ref, self.version),
                    timeout=self.config.request_timeout_s)
        print(f"rollout: engine {self.workers.index(worker)} serving again on v{self.version} after "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)

    def node_ids(self) -> list[str]:
        """The Ray node of each engine."""
        return ray.get([w.node_id.remote() for w in self.workers], timeout=self.config.request_timeout_s)

    def generate(self, problems: list, n: int, overrides: dict | None = None) -> list[Rollout]:
        """G=`n` rollouts per Problem (dicts with `id` and `prompt` are accepted too), in problem order, all
        from the current weight version."""
        problems = [as_problem(p) for p in problems]
        k = len(self.workers)
        shards = [(i, problems[i::k]) for i in range(k) if problems[i::k]]
        results: dict[int, list[Rollout]] = {}
        for attempt in range(self.config.max_retries + 1):
            refs = {i: self.workers[(i + attempt) % k].generate.remote(
                        s, n, self.config.sampling_mode, self.version, overrides)
                    for i, s in shards if i not in results}
            for i, ref in refs.items():
                try:
                    results[i] = ray.get(ref, timeout=self.config.request_timeout_s)
                except ray.exceptions.GetTimeoutError:
                    raise TimeoutError(f"rollout: generate took longer than {self.config.request_timeout_s}s "
                                       "(rollout.request_timeout_s)") from None
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                    if isinstance(e, ray.exceptions.RayTaskError) and not isinstance(e.cause, StaleWeights):
                        raise
                    if attempt == self.config.max_retries:
                        raise RuntimeError(f"rollout: shard {i} failed after {attempt + 1} tries:\n{e}") from None
                    self._resync(self.workers[(i + attempt) % k])
            if len(results) == len(shards):
                break
        by_id: dict[str, list[Rollout]] = {}
        for i, _ in shards:
            for r in results[i]:
                by_id.setdefault(r.problem_id, []).append(r)
        return [r for p in problems for r in by_id[p.id]]

    def stream(self, problems: list, n: int, overrides: dict | None = None, instruction: str | None = None):
        """Yields (Problem, its n rollouts) as each problem finishes. Problems are dealt round-robin to the
        engines (neighbours in a dataset go to different engines) and each engine runs its share as one
        continuous batch, streaming results back (a Ray generator task). An engine that dies (or holds stale
        weights) is resynced and given the problems of its share it had not finished, up to
        rollout.max_retries times, as `generate` does."""
        problems = [as_problem(p) for p in problems]
        k = len(self.workers)
        live: dict = {}  # generator -> (engine, its problems, attempt, indexes already yielded)

        def start(w: int, share: list, attempt: int) -> None:
            gen = self.workers[w].stream.options(num_returns="streaming").remote(
                share, n, self.config.sampling_mode, self.version, overrides, instruction)
            live[gen] = (w, share, attempt, set())

        for w in range(k):
            if problems[w::k]:
                start(w, problems[w::k], 0)
        while live:
            ready, _ = ray.wait(list(live), num_returns=1, timeout=self.config.request_timeout_s)
            if not ready:
                raise TimeoutError(f"rollout: no problem finished within {self.config.request_timeout_s}s "
                                   "(rollout.request_timeout_s)")
            for gen in ready:
                w, share, attempt, sent = live[gen]
                try:
                    j, rollouts = ray.get(next(gen))
                except StopIteration:
                    del live[gen]
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
                    if isinstance(e, ray.exceptions.RayTaskError) and not isinstance(e.cause, StaleWeights):
                        raise
                    del live[gen]
                    if attempt == self.config.max_retries:
                        raise RuntimeError(f"rollout: engine {w} failed {attempt + 1} times:\n{e}") from None
                    self._resync(self.workers[w])
                    rest = [p for i, p in enumerate(share) if i not in sent]
                    if rest:
                        start(w, rest, attempt + 1)
                    continue
                sent.add(j)
                yield share[j], rollouts

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
