"""The learner: a Ray placement group of DeepSpeed ZeRO-2/3 actors taking MGPO steps on rollout samples.

The per-rank DeepSpeed code is actors/train_engine.py (shared with SFT under Ray Train); this file is the
RL driver of it. `collate` turns samples into padded tensors (pure, unit-tested); `plan_micro_batches` splits the samples
that need training into token-budget micro-batches, the same count on every rank (ZeRO all-gathers and
reduce-scatters are collective, so idle ranks run one zero-weight micro-batch). Loss weights are computed
over the whole batch (actors/losses.py), so micro-batches, ranks and skipped groups add up exactly.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from torch import Tensor

from actors.config import LearnerConfig, LossConfig
from actors.efficiency import model_flops, peak_flops
from actors.losses import policy_loss, token_weights
from actors.records import Rollout
from actors.train_engine import TrainEngine, lr_lambda, plan_micro_batches, token_logprobs
from cluster.env import learner_env

TOKEN_METRICS = ("clip_frac", "approx_kl", "entropy", "is_frac")  # token-weighted sums, ranks -> driver


@dataclass
class Batch:
    """Padded tensors, right-padded, token tensors aligned with `input_ids` ([N, T]); per-sample ones [N]."""

    input_ids: Tensor
    attention_mask: Tensor
    loss_mask: Tensor  # 1 where input_ids[t] is a response token (its logprob comes from logits[t-1])
    rollout_logp: Tensor
    weights: Tensor  # aggregation weights (zero off the response tokens)
    advantages: Tensor
    mgpo_w: Tensor
    group_idx: Tensor
    keep: list[int] = field(default_factory=list)  # samples to train (groups not all-zero advantage)


def collate(rollouts: list[Rollout], loss: LossConfig, pad_id: int) -> Batch:
    """Scored rollouts (their reward, advantage and mgpo_w set by actors/losses.py `score`) -> a `Batch`."""
    n = len(rollouts)
    seqs = [list(r.prompt_ids) + list(r.response_ids) for r in rollouts]
    t = max(len(x) for x in seqs)
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    attn, lmask, rlp = (torch.zeros(n, t, dtype=torch.long), torch.zeros(n, t), torch.zeros(n, t))
    for i, (r, x) in enumerate(zip(rollouts, seqs)):
        p, k = len(r.prompt_ids), len(r.response_ids)
        ids[i, : len(x)] = torch.tensor(x)
        attn[i, : len(x)] = 1
        lmask[i, p: p + k] = 1
        rlp[i, p: p + k] = torch.tensor(r.logprobs, dtype=torch.float)
    groups = [r.problem_id for r in rollouts]
    gidx = torch.tensor([list(dict.fromkeys(groups)).index(g) for g in groups])
    adv = torch.tensor([r.advantage for r in rollouts], dtype=torch.float)
    w = torch.tensor([r.mgpo_w for r in rollouts], dtype=torch.float)
    train_all = loss.kl_coef != 0 or loss.entropy_coef != 0
    live = {int(g) for g in gidx[adv != 0]}
    keep = [i for i in range(n) if train_all or int(gidx[i]) in live]
    return Batch(ids, attn, lmask, rlp, token_weights(lmask, gidx, loss), adv, w, gidx, keep)


class LearnerWorker:
    """One data-parallel rank: an HF causal LM wrapped by a DeepSpeed engine."""

    def __init__(self, config: LearnerConfig, model_path: str, rank: int, world: int) -> None:
        self.c, self.model_path, self.rank, self.world = config, model_path, rank, world

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def setup(self, master_addr: str, master_port: int) -> None:
        from actors.ds_config import init_process_group

        c = self.c
        init_process_group(c.device, self.rank, self.world, master_addr, master_port)
        self.engine = TrainEngine(self.model_path, device=c.device, zero_stage=c.zero_stage, dtype=c.dtype,
                                  grad_clip=c.grad_clip, lr=c.lr, weight_decay=c.weight_decay,
                                  schedule=lr_lambda(c.warmup_steps), seed=c.seed, rank=self.rank,
                                  world=self.world, gradient_checkpointing=c.gradient_checkpointing)
        self.device = self.engine.torch_device
        self.peak = peak_flops(c.device, c.dtype)[0]  # MFU's denominator, measured once
        self.ref = None
        if c.loss.kl_coef:  # reference model only when the KL term is on
            from transformers import AutoModelForCausalLM

            dt = torch.bfloat16 if c.dtype == "bfloat16" else torch.float32
            self.ref = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dt).to(self.device).eval()

    def _micro(self, b: Batch, idx: list[int]) -> dict[str, Tensor]:
        dummy = idx == [-1]
        rows = torch.tensor([0] if dummy else idx)
        t = int(b.attention_mask[rows].sum(1).max())
        out = {k: getattr(b, k)[rows, :t].to(self.device) for k in
               ("input_ids", "attention_mask", "loss_mask", "rollout_logp", "weights")}
        out["advantages"] = b.advantages[rows].to(self.device)
        if dummy:
            out["weights"] = out["weights"] * 0
        return out

    def train(self, b: Batch, plan: list[list[int]]) -> dict[str, float]:
        """`ppo_epochs` optimizer steps on this rank's micro-batches; sums for the driver to combine."""
        c, eng, t0 = self.c, self.engine, time.perf_counter()
        mbs = [self._micro(b, idx) for idx in plan]
        old: list[Tensor | None] = [None] * len(mbs)
        real = float(sum(int(m["attention_mask"].sum()) for m in mbs))  # tokens through the model, per pass
        recompute_old = c.logprobs_source == "learner" and c.ppo_epochs > 1
        if recompute_old:
            with torch.no_grad():
                old = [token_logprobs(eng, m["input_ids"], m["attention_mask"], False,
                                      chunk=c.logprob_chunk_tokens)[0] for m in mbs]
        sums: dict[str, float] = {}
        for _ in range(c.ppo_epochs):
            for m, old_m in zip(mbs, old):
                logp, ent = token_logprobs(eng, m["input_ids"], m["attention_mask"], True,
                                           entropy_grad=c.loss.entropy_coef != 0,
                                           chunk=c.logprob_chunk_tokens)
                if c.logprobs_source == "engine":
                    old_m = m["rollout_logp"]
                elif old_m is None:  # strictly on-policy: pi_old is the current policy, ratio = 1
                    old_m = logp.detach()
                ref = None
                if self.ref is not None:
                    with torch.no_grad():
                        ref = token_logprobs(self.ref, m["input_ids"], m["attention_mask"], False,
                                             chunk=c.logprob_chunk_tokens)[0]
                loss, met = policy_loss(logp, old_m, m["advantages"], m["weights"], c.loss, ref_logp=ref,
                                        rollout_logp=m["rollout_logp"], entropy=ent)
                eng.backward(loss)
                sums["loss"] = sums.get("loss", 0.0) + loss.item() / c.ppo_epochs
                for k in TOKEN_METRICS:
                    sums[k] = sums.get(k, 0.0) + met[k] * met["tokens"] / c.ppo_epochs
                sums["tokens"] = sums.get("tokens", 0.0) + met["tokens"] / c.ppo_epochs
            sums.update(eng.step())
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        sums.update(train_s=time.perf_counter() - t0, real_tokens=real, peak_flops=self.peak,
                    positions=float(sum(m["attention_mask"].numel() for m in mbs)),
                    flops=model_flops(eng.params, real, c.ppo_epochs, int(recompute_old) + c.ppo_epochs * (
                        self.ref is not None)))
        return sums

    def state_dict(self) -> dict[str, Tensor] | None:
        return self.engine.state_dict()

    def publish_weights(self, sync_name: str) -> list | None:
        """Gather the full weights (a collective) and, on rank 0, publish them through WeightSync; returns
        [handle, bytes of the weights] (in a list, so Ray hands the caller the ObjectRef itself, not the blob)."""
        from actors.weight_sync import make

        sd = self.engine.state_dict()
        if sd is None:
            return None
        return [make(sync_name).publish(sd), sum(t.numel() * t.element_size() for t in sd.values())]

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def save_hf(self, path: str) -> None:
        self.engine.save_hf(path)

    def save_checkpoint(self, path: str) -> None:
        self.engine.save_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        self.engine.load_checkpoint(path)


def efficiency(parts: list[dict[str, float]]) -> dict[str, float]:
    """The step's learner tokens/s (tokens through the model, prompt and response, over the slowest rank's time),
    padding fraction (padded positions of its micro-batches) and MFU (actors/efficiency.py) from the ranks' sums."""
    wall = max(p["train_s"] for p in parts)
    real, positions = sum(p["real_tokens"] for p in parts), sum(p["positions"] for p in parts)
    return {"learner_tok_s": real / max(wall, 1e-9), "pad_frac": 1 - real / max(positions, 1.0),
            "mfu": sum(p["flops"] for p in parts) / max(wall * sum(p["peak_flops"] for p in parts), 1e-9)}


def gather(refs: list) -> list:
    """ray.get that fails as soon as one rank fails, instead of waiting on peers stuck in a collective."""
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        ray.get(done)
    return ray.get(refs)


def find_checkpoint(path: str | Path) -> Path | None:
    """`path` if it holds a checkpoint; else the previous one that a kill between `save_checkpoint`'s two
    renames left aside as `.NAME.old-*` (moved back into place); else None."""
    final = Path(path)
    if final.exists():
        return final
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return None
    olds[-1].rename(final)
    return final


class LearnerUnavailable(RuntimeError):
    """The learner's placement group could not be placed in time (no node with its resources)."""


class LearnerGroup:
    """Driver-side handle on `num_actors` learner actors in one placement group."""

    def __init__(self, config: LearnerConfig, model_path: str, num_actors: int | None = None) -> None:
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        from transformers import AutoTokenizer

        self.c, self.model_path = config, str(model_path)
        n = num_actors or config.num_actors
        gpus = config.num_gpus_per_actor if config.device == "cuda" else 0
        cpus = config.threads_per_rank
        bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {}), **config.resources}
        self.pg = placement_group([bundle] * n, strategy="PACK")
        if not self.pg.wait(config.startup_timeout_s):
            remove_placement_group(self.pg)
            raise LearnerUnavailable(f"learner: {n} bundles of {bundle} not placed within {config.startup_timeout_s:g}s "
                                     "(learner.startup_timeout_s); does the cluster have a node with them free "
                                     "(learner.num_actors, threads_per_rank, num_gpus_per_actor, resources)?")
        self.publish_bytes = 0
        env = learner_env(config.device, cpus)
        actor = ray.remote(LearnerWorker)
        self.workers = [
            actor.options(num_cpus=cpus, num_gpus=gpus, runtime_env={"env_vars": env},
                          scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, i)
                          ).remote(config, self.model_path, i, n)
            for i in range(n)]
        addr, port = ray.get(self.workers[0].address.remote())
        ray.get([w.setup.remote(addr, port) for w in self.workers])
        self.pad_id = AutoTokenizer.from_pretrained(self.model_path).pad_token_id or 0
        self.lr = config.lr if config.warmup_steps == 0 else 0.0  # the learning rate of the last step

    def step(self, rollouts: list[Rollout]) -> dict[str, float]:
        """One batch of scored rollouts -> `ppo_epochs` optimizer steps. Groups with all-zero advantages are
        skipped."""
        b = collate(rollouts, self.c.loss, self.pad_id)
        lengths = b.attention_mask.sum(1).tolist()
        m: dict[str, float] = {"skipped_frac": 1 - len(b.keep) / len(rollouts),
                               "w_mean": b.mgpo_w.mean().item(), "w_std": b.mgpo_w.std(unbiased=False).item(),
                               "adv_abs_mean": b.advantages.abs().mean().item(),
                               "weight_version_min": float(min(r.weight_version for r in rollouts))}
        if not b.keep:  # nothing to learn from: no optimizer step, the lr stays where it was
            return {**m, "loss": 0.0, "tokens": 0.0, "grad_norm": 0.0, **dict.fromkeys(TOKEN_METRICS, 0.0),
                    "stepped": 0.0, "lr": self.lr}
        plan = plan_micro_batches(lengths, b.keep, self.c.micro_batch_tokens, len(self.workers))
        ref = ray.put(b)
        parts = gather([w.train.remote(ref, p) for w, p in zip(self.workers, plan)])
        tokens = sum(p["tokens"] for p in parts)
        self.lr = parts[0]["lr"]
        m.update(loss=sum(p["loss"] for p in parts), tokens=tokens, grad_norm=parts[0]["grad_norm"],
                 lr=self.lr, stepped=1.0, **efficiency(parts))
        for k in TOKEN_METRICS:
            m[k] = sum(p[k] for p in parts) / max(tokens, 1.0)
        return m

    def state_dict(self) -> dict[str, Tensor]:
        """Full (gathered) HF-named parameters as CPU tensors, from rank 0. Copies the model into this process:
        for tests and tools; the RL loop uses `publish_weights`."""
        return gather([w.state_dict.remote() for w in self.workers])[0]

    def publish_weights(self, sync_name: str = "object-store"):
        """A WeightSync handle for the current weights, published by rank 0 (the driver gets only the handle)."""
        handle, self.publish_bytes = gather([w.publish_weights.remote(sync_name) for w in self.workers])[0]
        return handle

    def node_ids(self, timeout_s: float | None = None) -> list[str]:
        """The Ray node of each rank (GetTimeoutError after `timeout_s`)."""
        return ray.get([w.node_id.remote() for w in self.workers], timeout=timeout_s)

    def alive(self, timeout_s: float = 10.0) -> bool:
        """Whether every rank answers (a rank on a lost node does not)."""
        try:
            self.node_ids(timeout_s)
            return True
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False

    def save_hf(self, path: str | Path) -> None:
        """`save_pretrained` safetensors + tokenizer, loadable by transformers and vLLM."""
        gather([w.save_hf.remote(str(path)) for w in self.workers])

    def save_checkpoint(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Model, optimizer, scheduler, step, RNG and `extra`; written to a temp dir, then renamed."""
        final = Path(path)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        gather([w.save_checkpoint.remote(str(tmp)) for w in self.workers])
        torch.save({"extra": extra or {}}, tmp / "extra.pt")
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        gather([w.load_checkpoint.remote(str(path)) for w in self.workers])
        return torch.load(Path(path) / "extra.pt", weights_only=False)["extra"]

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for w in self.workers:
            ray.kill(w)
        remove_placement_group(self.pg)
        self.workers = []
