"""`ssp <command>`: one CLI, one command per pipeline. `ssp --help` lists them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ssp.config import ConfigError, describe, load_config, to_dict
from trainer.data import DataError


def check_output(out: str | None, inputs: list[str]) -> None:
    """Refuse, before any work starts, an output that is an input or cannot be written."""
    if not out:
        return
    o = Path(out)
    for i in inputs:
        if o.resolve() == Path(i).resolve() or (o.exists() and Path(i).exists() and o.samefile(i)):
            raise DataError(f"{out}: the output would overwrite the input {i}")
    if o.is_dir():
        raise DataError(f"{out}: is a directory, expected a file path")
    parent = o.resolve().parent
    if not parent.is_dir():
        raise DataError(f"{out}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (o.exists() and not os.access(o, os.W_OK)):
        raise DataError(f"{out}: not writable")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def add_config_args(p: argparse.ArgumentParser) -> None:
    """`--config FILE` plus trailing `key.sub=value` overrides, shared by every config-driven command."""
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def load_tree(args: argparse.Namespace):
    from ssp.tree import SSPConfig

    return load_config(SSPConfig, args.config, args.overrides)


def cmd_config(args: argparse.Namespace) -> int:
    from ssp.tree import SSPConfig

    if args.keys:
        for key, default, help_ in describe(SSPConfig):
            print(f"{key:40s} {default:24s} {help_}")
        return 0
    print(json.dumps(to_dict(load_tree(args)), indent=2))
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from trainer.tiny_model import MARKER, build

    conf = load_tree(args)
    out = build(conf.model.tiny, args.out or conf.model.path)
    info = json.loads((out / MARKER).read_text())
    print(f"tiny model: {out}  params={info['params']:,}  vocab={info['vocab']}")
    return 0


def cmd_toy_data(args: argparse.Namespace) -> int:
    from trainer import toy_tasks

    conf = load_tree(args)
    train, held = toy_tasks.split(toy_tasks.generate(conf.data.toy), seed=conf.data.toy.seed)
    out = Path(args.out)
    toy_tasks.write_jsonl(train, out / "train.jsonl")
    toy_tasks.write_jsonl(held, out / "eval.jsonl")
    print(f"toy data: {len(train)} train, {len(held)} held-out problems in {out}")
    return 0


def cmd_decontaminate(args: argparse.Namespace) -> int:
    from trainer.data import load_problems
    from trainer.decontam import decontaminate
    from trainer.toy_tasks import write_jsonl

    check_output(args.out, args.train + args.eval)
    train = [p for f in args.train for p in load_problems(f)]
    evals = [p for f in args.eval for p in load_problems(f)]
    seen: dict[str, str] = {}
    for f in args.train:  # kept items are written by id: two train files must not share one
        for p in load_problems(f):
            if seen.setdefault(p.id, f) != f:
                raise DataError(f"{f}: duplicate problem id '{p.id}' (also in {seen[p.id]})")
    report = decontaminate(train, evals, n=args.n)
    print(f"train={len(train)} eval={len(evals)} kept={len(report.kept)} dropped={len(report.dropped)}")
    for p, eid, gram in report.dropped[: args.show]:
        print(f"  drop {p.id}  (hits {eid}: '{gram}')")
    if args.out:
        write_jsonl([p.to_dict() for p in report.kept], args.out)
        print(f"wrote {args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from trainer.generate import generate_demo

    generate_demo(load_tree(args), n_problems=args.n)
    return 0


def cmd_rl(args: argparse.Namespace) -> int:
    if args.resume:
        from ssp.tree import SSPConfig

        conf = load_config(SSPConfig, Path(args.resume) / "config.yaml", [f"run_dir={args.resume}", *args.overrides])
    else:
        conf = load_tree(args)  # a bad config fails here, before Ray, vLLM or DeepSpeed are imported
    from trainer.rl import main as rl_main

    summary = rl_main(conf, resume=bool(args.resume))
    return 0 if summary else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssp", description="ssp-rl: Spectrum-to-Signal RL post-training")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser("config", help="print the resolved config tree (or every key with its help)")
    add_config_args(p)
    p.add_argument("--keys", action="store_true", help="list every key, default and help text")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("tiny-model", help="build the tiny tokenizer + random-init Qwen2 (no download)")
    add_config_args(p)
    p.add_argument("--out", help="output dir (default: model.path)")
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("toy-data", help="write the toy tasks as train/eval JSONL")
    add_config_args(p)
    p.add_argument("--out", default="artifacts/toy-data", help="output dir")
    p.set_defaults(func=cmd_toy_data)

    p = sub.add_parser("decontaminate", help="drop train items sharing a 10-gram with any eval set")
    p.add_argument("--train", nargs="+", required=True, help="train files (.jsonl/.parquet)")
    p.add_argument("--eval", nargs="+", required=True, help="eval files")
    p.add_argument("--out", help="write kept train items here (JSONL)")
    p.add_argument("--n", type=positive_int, default=10, help="n-gram length (>= 1)")
    p.add_argument("--show", type=int, default=10, help="dropped items to list")
    p.set_defaults(func=cmd_decontaminate)

    p = sub.add_parser("generate", help="sample answers to toy problems from model.path with vLLM")
    add_config_args(p)
    p.add_argument("--n", type=positive_int, default=8, help="problems to answer")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("rl", help="the Signal stage: MGPO on Ray (scheduler, vLLM rollouts, verifiers, DeepSpeed)")
    add_config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.set_defaults(func=cmd_rl)

    from actors.verifier import register_cli as verify_cli  # commands owned by their rooms
    from cluster.scheduler_cli import register_cli as scheduler_cli

    verify_cli(sub)
    scheduler_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cluster.env import apply

    apply()  # the process env every command's workers inherit (cluster/env.py)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"ssp {args.command}: {e}", file=sys.stderr)  # bad input: a message, never a traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
