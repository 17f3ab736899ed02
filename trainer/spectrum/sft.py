"""`ssp sft`: supervised fine-tuning on Ray Train, the first step of the Spectrum stage.

Ray Train's `TorchTrainer` starts the ranks and their (gloo / NCCL) process group; each rank runs
`train_loop` below on the one training engine (actors/train_engine.py, the same DeepSpeed code the RL
learner actors run), reading its shard of a Ray Data dataset. The loss is on response tokens only,
token-mean over the global batch (`sft_loss` beside `policy_loss` in actors/losses.py). Every
`save_every` steps all ranks report a checkpoint: an HF model directory (loadable by vLLM and
transformers as it is) with the DeepSpeed state under `ds/` (in the newest checkpoint only: a callback in the
Train controller drops it from the older ones); Ray Train's `CheckpointConfig` keeps them under `storage_path`, and
a restarted rank (`FailureConfig`) or a rerun resumes from the last one.

Data: the problems' solution traces (the toy tasks' several styles per problem), or JSONL/parquet files of
chat pairs (`messages` lists as TRL/OpenRLHF SFT data, TRL's `prompt`/`completion`, or `prompt`/`response`),
rendered through the
model's own chat template, decontaminated against the eval sets before training.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from trainer.data.problems import DataError, Problem, iter_jsonl, regular_file

# ---- data: chat pairs -> token ids --------------------------------------------------------------------

def _turns(value: Any, role: str, where: str, key: str) -> list[dict]:
    """A text (one `role` turn) or a list of {role, content} turns, checked."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field '{key}' must be a string or a non-empty list of turns")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: field '{key}[{i}]' must be an object with string 'role' and 'content'")
    return list(value)


def _messages(rec: dict, where: str) -> list[dict]:
    """A record's conversation: `messages` as given (TRL/OpenRLHF), TRL's `prompt`/`completion` (each a text or
    a list of turns), or `prompt`/`response` as one user and one assistant turn."""
    if "messages" in rec:
        msgs = _turns(rec["messages"], "", where, "messages") if not isinstance(rec["messages"], str) else None
        if not msgs:
            raise DataError(f"{where}: field 'messages' must be a non-empty list")
    elif "completion" in rec:
        msgs = _turns(rec.get("prompt"), "user", where, "prompt") + _turns(rec["completion"], "assistant", where,
                                                                            "completion")
    else:
        for key in ("prompt", "response"):
            if not isinstance(rec.get(key), str):
                raise DataError(f"{where}: need field 'messages', or fields 'prompt' and 'completion' (TRL), or "
                                f"string fields 'prompt' and 'response' (field '{key}' is "
                                f"{type(rec.get(key)).__name__})")
        msgs = [{"role": "user", "content": rec["prompt"]}, {"role": "assistant", "content": rec["response"]}]
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last turn must be the assistant's, got {msgs[-1]['role']!r}")
    return msgs


def load_chat_pairs(path: str | Path) -> list[list[dict]]:
    """Conversations from a JSONL or parquet SFT file; errors name the file and line (or row)."""
    path = regular_file(path, "an SFT file (.jsonl or .parquet)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [_messages(r, f"{path}: row {n}") for n, r in enumerate(pq.read_table(path).to_pylist())]
    if path.suffix in (".jsonl", ".json"):
        return [_messages(r, where) for where, r in iter_jsonl(path)]
    raise DataError(f"{path}: unknown SFT data format '{path.suffix}' (expected .jsonl or .parquet)")


def render(tokenizer: Any, messages: list[dict]) -> dict[str, list[int]]:
    """Prompt ids (every turn before the last, with the generation prompt) and response ids (+ eos),
    through the model's own chat template."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return {"prompt_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"],
            "response_ids": tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id]}


def _trace(p: Problem, trace: str) -> str:
    """A code problem's bare reference solution in a fenced block, the shape the code grader reads answers in."""
    return f"```python\n{trace.strip()}\n```" if p.kind == "code" and "```" not in trace else trace


def build_examples(tokenizer: Any, conf, evals: list[Problem]) -> tuple[list[dict], dict[str, int]]:
    """The SFT examples (token ids) after n-gram decontamination against `evals`, and the counts."""
    from trainer.data.decontam import decontaminate
    from trainer.data.splits import load_problems_for

    if conf.sft.files:
        convs = [msgs for f in conf.sft.files for msgs in load_chat_pairs(f)]
    else:  # each solution trace of each training problem, as a user turn (the RL prompt) and the trace
        instr = conf.data.instruction
        convs = [[{"role": "user", "content": f"{p.prompt}\n{instr}".strip() if instr else p.prompt},
                  {"role": "assistant", "content": _trace(p, trace)}]
                 for p in load_problems_for(conf)[0] for trace in p.solutions]
    items = [Problem(id=str(i), prompt="\n".join(m["content"] for m in c), kind="math") for i, c in enumerate(convs)]
    report = decontaminate(items, evals, n=conf.sft.decontam_ngram)
    examples = [render(tokenizer, convs[int(p.id)]) for p in report.kept]
    if not examples:
        raise DataError("sft: no training examples (no solution traces in the training problems, field 'solutions', "
                        "and no sft.files) after decontamination")
    return examples, {"examples": len(convs), "kept": len(examples), "dropped": len(report.dropped)}


def collate(rows: list[dict], pad_id: int, global_tokens: float) -> dict:
    """Right-padded ids and attention mask; `weights` = 1/global_tokens on response tokens, 0 elsewhere (the
    prompt and padding never enter the loss)."""
    import torch

    width = max(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    weights = torch.zeros((len(rows), width))
    for i, r in enumerate(rows):
        p, seq = len(r["prompt_ids"]), list(r["prompt_ids"]) + list(r["response_ids"])
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        weights[i, p: len(seq)] = 1.0 / global_tokens
    return {"input_ids": ids, "attention_mask": attn, "weights": weights}


# ---- the per-rank loop (runs in Ray Train workers) ---------------------------------------------------

def _rows(shard, per_rank: int, seed: int):
    """Endless batches of rows from this rank's Ray Data shard, reshuffled every epoch."""
    epoch = 0
    while True:
        got = False
        for batch in shard.iter_batches(batch_size=per_rank, batch_format="pandas", drop_last=False,
                                        local_shuffle_buffer_size=max(4 * per_rank, 1024), local_shuffle_seed=seed + epoch):
            got = True
            yield [{"prompt_ids": list(p), "response_ids": list(r)}
                   for p, r in zip(batch["prompt_ids"], batch["response_ids"])]
        if not got:
            raise RuntimeError("sft: this rank's data shard is empty")
        epoch += 1


def train_loop(c: dict) -> None:
    """One Ray Train worker: DeepSpeed ZeRO on the shared engine, `c['steps']` optimizer steps. One piece: it
    runs on a Train worker as a whole (the setup, the resume from Train's checkpoint, the step loop and each
    report share the engine and the data shard), read top to bottom like nano-aha-moment's loop."""
    import os

    os.environ.update(c["env"])
    import ray.train
    import torch
    import torch.distributed as dist

    from actors.ds_config import init_process_group
    from actors.losses import sft_loss
    from actors.train_engine import TrainEngine, lr_lambda, plan_micro_batches, token_logprobs

    torch.set_num_threads(int(c["env"].get("OMP_NUM_THREADS", "1")))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    init_process_group(c["device"], rank, world, None, None)  # Ray Train made the group; DeepSpeed joins it
    steps, s = c["steps"], c["sft"]
    eng = TrainEngine(c["model_path"], device=c["device"], zero_stage=c["zero_stage"], dtype=c["dtype"],
                      grad_clip=c["grad_clip"], lr=s["lr"], weight_decay=s["weight_decay"],
                      schedule=lr_lambda(round(s["warmup_ratio"] * steps), steps, s["min_lr_ratio"]),
                      seed=s["seed"] + rank, rank=rank, world=world,
                      gradient_checkpointing=c["gradient_checkpointing"])
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a restart (FailureConfig) or a rerun on the same storage: continue from it
        with ckpt.as_directory() as d:
            eng.load_checkpoint(Path(d) / "ds")
            start = json.loads((Path(d) / "sft_state.json").read_text())["step"]
    rows = _rows(ray.train.get_dataset_shard("train"), max(1, s["batch_size"] // world), s["seed"] + rank)
    log = Path(c["metrics_path"])
    dev = eng.torch_device
    for step in range(start, steps):
        t0 = time.perf_counter()
        batch = next(rows)
        tokens = torch.tensor([float(sum(len(r["response_ids"]) for r in batch))])
        dist.all_reduce(tokens)  # token-mean over the global batch: every rank divides by the same total
        b = collate(batch, c["pad_id"], float(tokens))
        lengths = b["attention_mask"].sum(1).tolist()
        plan = plan_micro_batches(lengths, list(range(len(batch))), s["micro_batch_tokens"], 1)[0]
        most = torch.tensor([len(plan)])
        dist.all_reduce(most, op=dist.ReduceOp.MAX)  # ZeRO's collectives need the same count on every rank
        plan += [[-1]] * (int(most) - len(plan))
        loss_sum = 0.0
        for idx in plan:
            rows_ = torch.tensor([0] if idx == [-1] else idx)
            t = int(b["attention_mask"][rows_].sum(1).max())
            ids, attn = b["input_ids"][rows_, :t].to(dev), b["attention_mask"][rows_, :t].to(dev)
            w = b["weights"][rows_, :t].to(dev) * (0 if idx == [-1] else 1)
            loss = sft_loss(token_logprobs(eng, ids, attn, False, chunk=c["logprob_chunk_tokens"])[0], w)
            eng.backward(loss)
            loss_sum += loss.item()
        m = eng.step()
        total = torch.tensor([loss_sum])
        dist.all_reduce(total)
        rec = {"step": step + 1, "loss": float(total), "lr": m["lr"], "grad_norm": m["grad_norm"],
               "tokens": float(tokens), "step_s": time.perf_counter() - t0, "time": time.time()}
        if rank == 0:
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        if (step + 1) % s["save_every"] == 0 or step + 1 == steps:
            with tempfile.TemporaryDirectory() as d:
                eng.save_hf(d)
                eng.save_checkpoint(Path(d) / "ds")
                if rank == 0:
                    (Path(d) / "sft_state.json").write_text(json.dumps({"step": step + 1, "loss": rec["loss"]}))
                ray.train.report(rec, checkpoint=ray.train.Checkpoint.from_directory(d),
                                 checkpoint_dir_name=f"checkpoint-{step + 1:06d}")


# ---- the driver ----------------------------------------------------------------------------------------

def drop_optimizer_state(fs, latest: str) -> list[str]:
    """Delete `ds/` (the DeepSpeed optimizer state: only a resume needs it, and a resume starts from the latest)
    from every other checkpoint of the run beside `latest`; `fs` is the checkpoints' pyarrow filesystem."""
    from pyarrow import fs as pafs

    latest = latest.rstrip("/")
    dropped = []
    for info in fs.get_file_info(pafs.FileSelector(latest.rsplit("/", 1)[0])):
        ds = f"{info.path.rstrip('/')}/ds"
        if info.base_name.startswith("checkpoint-") and info.path.rstrip("/") != latest and \
                fs.get_file_info(ds).type == pafs.FileType.Directory:
            fs.delete_dir(ds)
            dropped.append(ds)
    return dropped


def drop_older_optimizer_state_callback():
    """A Ray Train callback: it runs in the Train controller after every rank has reported a checkpoint and Train has
    recorded it as the one to resume from, and drops `ds/` from the older checkpoints."""
    import ray.train

    class DropOlderOptimizerState(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            if checkpoint is None:
                return
            try:
                drop_optimizer_state(checkpoint.filesystem, checkpoint.path)
            except OSError as e:  # disk space only: never fail the training run for it
                print(f"sft: could not drop the older checkpoints' optimizer state: {e}")

    return DropOlderOptimizerState()


def checkpoints(storage: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every saved SFT checkpoint under `storage`, in step order."""
    out = []
    for f in storage.glob("**/sft_state.json"):
        if (f.parent / "config.json").exists():
            out.append((json.loads(f.read_text())["step"], f.parent))
    return sorted(out)


def run_sft(conf, model_path: str, out: Path, evals: list[Problem]) -> list[tuple[int, Path]]:
    """SFT `model_path` on Ray Train; returns the saved checkpoints (step, HF dir). Resumes if `out` holds a run.
    One piece: the driver side of one Train run (data, decontamination, the trainer, the progress bar fed by
    its reports, the checkpoints), in the order they happen."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from tqdm import tqdm

    from cluster.env import learner_env
    from trainer.models.tiny import load_tokenizer

    s = conf.sft
    out.mkdir(parents=True, exist_ok=True)
    storage_root = s.storage_path or str(out.resolve())
    storage = Path(storage_root) / "ray-train"  # Ray Train's run name under its storage path
    done = checkpoints(storage)
    if done and done[-1][0] >= s.steps:
        print(f"sft: {len(done)} checkpoints already in {storage} (step {done[-1][0]}); nothing to do")
        return done
    tok = load_tokenizer(model_path)
    examples, counts = build_examples(tok, conf, evals)
    print(f"sft: decontamination ({s.decontam_ngram}-gram) against {len(evals)} eval problems: {counts['examples']} examples, "
          f"{counts['dropped']} dropped, {counts['kept']} kept")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    random.Random(s.seed).shuffle(examples)  # the source files are ordered by subdomain; batches must mix them
    ds = ray.data.from_items(examples)
    metrics_path = out / "metrics.jsonl"
    gpu = conf.learner.device == "cuda"
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "model_path": str(Path(model_path).resolve()), "device": conf.learner.device,
            "zero_stage": conf.learner.zero_stage, "dtype": conf.learner.dtype, "grad_clip": conf.learner.grad_clip,
            "logprob_chunk_tokens": conf.learner.logprob_chunk_tokens,
            "gradient_checkpointing": conf.learner.gradient_checkpointing,
            "steps": s.steps, "sft": {k: getattr(s, k) for k in ("batch_size", "lr", "weight_decay", "warmup_ratio",
                                                               "min_lr_ratio", "save_every", "micro_batch_tokens", "seed")},
            "pad_id": tok.pad_token_id or 0, "metrics_path": str(metrics_path.resolve()),
            "env": learner_env(conf.learner.device, conf.learner.threads_per_rank)},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=gpu,
                                               resources_per_worker={"CPU": conf.learner.threads_per_rank,
                                                                     **({"GPU": 1} if gpu else {}),
                                                                     **conf.learner.resources}),
        run_config=ray.train.RunConfig(
            name="ray-train", storage_path=storage_root,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None),
            callbacks=[drop_older_optimizer_state_callback()],  # ds/ only in the newest checkpoint
            failure_config=ray.train.FailureConfig(max_failures=s.max_failures)),
        datasets={"train": ds},
    )
    start = done[-1][0] if done else 0
    bar = tqdm(total=s.steps, initial=start, desc="sft (Ray Train)", dynamic_ncols=True, mininterval=1)
    stop = threading.Event()

    def follow() -> None:  # the ranks write metrics.jsonl; the driver shows them as a progress bar
        seen = 0
        while not stop.wait(1.0):
            if metrics_path.exists() and metrics_path.stat().st_size != seen:
                seen = metrics_path.stat().st_size
                with metrics_path.open("rb") as f:
                    f.seek(max(0, seen - 4096))
                    last = json.loads(f.read().decode().splitlines()[-1])
                bar.n = last["step"]
                bar.set_postfix(loss=f"{last['loss']:.3f}", lr=f"{last['lr']:.1e}")

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        t.join()
        bar.close()
    if result.error:
        raise RuntimeError(f"sft: Ray Train failed: {result.error}")
    saved = checkpoints(storage)
    listed = out / "checkpoints.json"  # every checkpoint saved, those the Spectrum stage pruned since included
    every = {e["step"]: e["path"] for e in json.loads(listed.read_text())} if listed.exists() else {}
    every.update((st, str(p)) for st, p in saved)
    listed.write_text(json.dumps([{"step": st, "path": p} for st, p in sorted(every.items())], indent=1))
    return saved
