"""The trainer room's config: the RL loop and its phases, the Spectrum stage (SFT, probing, merging), `ssp eval`,
and the models and toy tasks the pipeline builds.

Plain dataclasses (no Ray, torch or vLLM), so `ssp config` and `ssp --help` import none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ssp.config import cfg


@dataclass
class TinyModelConfig:
    vocab_size: int = cfg(512, "BPE vocabulary size to train (ignored with tokenizer_from)", ge=64)
    hidden_size: int = cfg(128, "model width", ge=8)
    num_layers: int = cfg(4, "decoder layers", ge=1)
    num_heads: int = cfg(4, "attention heads (head_dim = hidden_size / num_heads)", ge=1)
    num_kv_heads: int = cfg(2, "key/value heads (GQA)", ge=1)
    intermediate_size: int = cfg(384, "MLP width", ge=1)
    max_position_embeddings: int = cfg(1024, "longest sequence the model accepts", ge=16)
    seed: int = cfg(0, "seed for tokenizer corpus and weight init")
    tokenizer_from: str | None = cfg(None, "use this HF tokenizer dir instead of training one "
                                           "(e.g. a downloaded Qwen2.5 tokenizer folder)")

    def __post_init__(self) -> None:
        from ssp.config import ConfigError

        if self.hidden_size % self.num_heads:
            raise ConfigError(f"config key 'model.tiny.hidden_size': {self.hidden_size} must be a multiple of "
                              f"model.tiny.num_heads={self.num_heads} (head_dim = hidden_size / num_heads)")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"config key 'model.tiny.num_kv_heads': {self.num_kv_heads} must divide "
                              f"model.tiny.num_heads={self.num_heads} (grouped-query attention)")


@dataclass
class ToyTaskConfig:
    preset: Literal["classic", "graded"] = cfg(
        "classic", "classic = one operation on 1-3 digit operands per problem (level = digits; all-or-nothing for "
        "the tiny model once trained) | graded = several operations and difficulty knobs per subdomain, levels 1-6 "
        "from trivially easy to beyond the tiny model (trainer/data/graded_tasks.py)")
    subdomains: list[Literal["add", "sub", "mul", "mod", "code"]] = cfg(["add", "sub", "mul", "mod", "code"], "subdomains to generate: add, sub, mul, mod, code")
    levels: list[int] = cfg([1, 2], "difficulty levels (classic: digit count of the operands; graded: 1-6)", ge=1)
    per_cell: int = cfg(200, "problems per (subdomain, level) cell (at most 5000: more than most cells hold, and "
                             "a cell that holds fewer is searched per_cell x 50 times)", ge=1, le=5000)
    seed: int = cfg(0, "random seed; the same seed gives the same problems and ids")

    def __post_init__(self) -> None:
        from ssp.config import ConfigError

        for key in ("subdomains", "levels"):
            if not getattr(self, key):
                raise ConfigError(f"config key 'data.toy.{key}': must not be empty")
        if self.preset == "graded" and (bad := [lv for lv in self.levels if lv > 6]):
            raise ConfigError(f"config key 'data.toy.levels': the graded preset has levels 1-6, got {bad}")


@dataclass
class SpectrumConfig:
    probe_subdomains: list[str] = cfg(["add", "sub", "mul", "mod"], "the subdomains to find a specialist for (N=4 in "
                                                                     "the paper)")
    probe_files: list[str] = cfg([], "probe problem files (.jsonl/.parquet, split by their `subdomain`); empty = "
                                     "toy problems carved out of the toy training split")
    probe_problems: int = cfg(32, "problems per subdomain probe set (toy: at most a quarter of the subdomain's "
                                  "training problems)", ge=1)
    probe_n: int = cfg(16, "samples per probe problem (n >= K, for the unbiased Pass@K)", ge=1)
    probe_k: int = cfg(8, "K of the Pass@K that picks each subdomain's specialist", ge=1)
    probe_seed: int = cfg(1, "seed that picks the probe problems")
    merge_weights: list[float] = cfg([], "weight of each specialist in the merge, in probe_subdomains order "
                                         "(empty = 1/N each, as the paper)")


@dataclass
class SFTConfig:
    steps: int = cfg(600, "optimizer steps (0 = skip SFT)", ge=0)
    batch_size: int = cfg(64, "sequences per optimizer step, over all ranks", ge=1)
    lr: float = cfg(2e-3, "peak AdamW learning rate", gt=0)
    weight_decay: float = cfg(0.0, "AdamW weight decay", ge=0)
    warmup_ratio: float = cfg(0.05, "share of the steps with a linear LR warm-up (the 3B report: 5%)", ge=0, le=1)
    min_lr_ratio: float = cfg(0.1, "cosine decay floor, as a share of the peak LR", ge=0, le=1)
    save_every: int = cfg(100, "save an HF checkpoint every k steps (and at the end)", ge=1)
    num_workers: int = cfg(2, "Ray Train workers (data-parallel ranks); device, ZeRO stage and dtype come "
                              "from the learner section", ge=1)
    micro_batch_tokens: int = cfg(16384, "padded tokens (rows x longest row) per micro-batch", ge=1)
    files: list[str] = cfg([], "chat-pair files (.jsonl/.parquet: `messages`, or `prompt`/`response`); "
                              "empty = the training problems' solution traces")
    decontam_ngram: int = cfg(10, "n of the n-gram rule that drops SFT examples sharing an n-gram with an eval or "
                                   "probe problem (the paper: 10)", ge=1)
    keep_last: int = cfg(0, "SFT checkpoints to keep, newest first, once the Spectrum stage has probed them; 0 = all",
                         ge=0)
    keep_best: bool = cfg(True, "also keep each subdomain's specialist (best probe Pass@K) among the SFT checkpoints")
    storage_path: str = cfg("", "where Ray Train keeps checkpoints (a path or URI); empty = RUN_DIR/sft")
    max_failures: int = cfg(1, "Ray Train restarts after a worker failure (FailureConfig)", ge=0)
    seed: int = cfg(0, "init/shuffle seed")


@dataclass
class PhaseConfig:
    name: str = cfg("math", "phase name (also the scheduler namespace of the phase)")
    steps: int = cfg(30, "RL steps in this phase", ge=0)
    max_tokens: int = cfg(64, "max response tokens in this phase (the paper: 16K, then 32K)", ge=1)
    subdomains: list[str] = cfg([], "train only on problems of these subdomains (empty = all)")
    prefilter: bool = cfg(False, "drop problems already at pass rate exactly 0 or 1 when the phase starts")


@dataclass
class RLConfig:
    batch_problems: int = cfg(32, "problems (groups) per step", ge=1)
    group_size: int = cfg(8, "G: samples per problem", ge=2)
    mode: Literal["sync", "one-step-off", "async"] = cfg(
        "sync", "sync (on-policy) | one-step-off (generate t+1 while training t; staleness 1) | async (up to "
                "rl.max_staleness batches generated ahead of the learner)")
    max_staleness: int = cfg(2, "async: how many weight versions a batch may lag the learner (batches in flight)",
                             ge=1)
    pipeline: bool = cfg(True, "verify each problem's group as soon as the engines finish it, while the rest of "
                               "the batch generates (same policy, same samples; only when the work happens)")
    verify_threads: int = cfg(4, "driver threads sending finished groups to the verifier pool (rl.pipeline)", ge=1)
    dynamic_sampling_rounds: int = cfg(0, "DAPO dynamic sampling: extra rounds to top up informative groups", ge=0)
    phases: list[PhaseConfig] = cfg([PhaseConfig()], "the curriculum, run in order")
    eval_every: int = cfg(10, "evaluate on held-out problems every N steps (0 = only before and after)", ge=0)
    eval_k: int = cfg(8, "samples per held-out problem (Pass@1 of k)", ge=1)
    eval_max_problems: int = cfg(0, "cap on held-out problems (0 = all)", ge=0)
    checkpoint_every: int = cfg(10, "save learner + driver state every N steps (0 = only at the end)", ge=0)
    max_learner_restarts: int = cfg(2, "automatic restarts from the last checkpoint after a learner failure", ge=0)
    keep_last: int = cfg(0, "loadable HF checkpoints (RUN_DIR/checkpoints/step-N) to keep, newest first; 0 = all",
                         ge=0)
    keep_best: bool = cfg(True, "also keep the checkpoint with the best held-out Pass@1 (from the eval_every evals)")


@dataclass
class EvalConfig:
    suite: str = cfg("toy", "suite: a name in configs/eval/ (math, code, toy) or a YAML path")
    out_dir: str = cfg("", "where samples.jsonl and the results go ('' = RUN_DIR/eval/<suite>-<model dir name>)")
    limit: int = cfg(0, "first N problems of each dataset (0 = all)", ge=0)
    n: int = cfg(0, "samples per problem (0 = the suite's n)", ge=0)
    max_tokens: int = cfg(0, "response token limit (0 = the suite's)", ge=0)
    max_model_len: int = cfg(0, "engine context (prompt + response) for the eval (0 = engine.max_model_len)", ge=0)
    published: bool = cfg(True, "show VibeThinker-1.5B's published numbers beside ours")
    verify_threads: int = cfg(4, "problems being scored at once while the engines generate", ge=1)


@dataclass
class DataSourceConfig:
    path: str = cfg("", "a .jsonl/.json/.parquet/.csv file, a `datasets` save_to_disk folder, or hf:<dataset id> "
                        "(a Hugging Face hub dataset, where there is network); loaded with the `datasets` library")
    split: str = cfg("train", "split of a hub dataset or of a saved DatasetDict")
    name: str = cfg("", "the hub dataset's configuration name ('' = its default)")
    fields: dict[str, str] = cfg({}, "our field -> the dataset's column (OpenRLHF's input_key/label_key): problem, "
                                     "answer, prompt, tests, solutions, subdomain, level, id; e.g. {problem: question, "
                                     "answer: final_answer, solutions: solution} (a worked solution as an SFT trace)")

    def __post_init__(self) -> None:
        from ssp.config import ConfigError

        if not self.path:
            raise ConfigError("config key 'data.train[].path': a data source needs a path (a file, a folder or "
                              "hf:<dataset id>)")
        known = {"problem", "answer", "prompt", "tests", "solutions", "subdomain", "level", "id", "choices",
                 "entry_point", "test_imports", "source"}
        if bad := sorted(set(self.fields) - known):
            raise ConfigError(f"config key 'data.train[].fields': unknown field(s) {bad} (known: {sorted(known)})")


@dataclass
class TrackingConfig:
    backends: list[Literal["mlflow", "wandb", "tensorboard"]] = cfg(
        [], "experiment trackers to log to besides metrics.jsonl and the Ray dashboard: mlflow, wandb, tensorboard "
            "(config, every step metric, eval tables, the PNGs as artifacts)")
    experiment: str = cfg("ssp", "MLflow experiment / W&B project")
    run_name: str = cfg("", "run name ('' = the run directory's name)")
    mlflow_uri: str = cfg("", "MLflow tracking URI ('' = a local file store in RUN_DIR/mlruns; http://host:5000 for "
                              "a tracking server)")
    wandb_mode: Literal["offline", "online"] = cfg("offline", "W&B mode: offline writes RUN_DIR/wandb (upload later "
                                                              "with `wandb sync`); online needs WANDB_API_KEY")
    wandb_entity: str = cfg("", "W&B entity (team or user; '' = the API key's default)")
