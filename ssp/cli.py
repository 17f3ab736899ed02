"""`ssp <command>`: one CLI, one command per pipeline. `ssp --help` lists them."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from ssp.config import ConfigError, describe, int_at_least, load_config, positive_int, to_dict
from ssp.io import DataError, Unavailable, building, check_output, check_output_dir, writing
from ssp.tree import add_config_args, load_tree
from trainer.preflight import preflight, require

# Errors a library raises for an input it cannot use (not our bugs): missing/unreadable paths, paths through a
# regular file, undecodable text, malformed JSON/YAML, a file of the wrong format (safetensors, parquet). Only
# modules the command imported can have raised theirs, so nothing is imported here.
_LIBRARY_INPUT_ERRORS = (("yaml", "YAMLError"), ("safetensors", "SafetensorError"), ("pyarrow", "ArrowInvalid"))


# The project's errors for what a user can fix (a config, a file, a path, a server that is not there): one line.
EXPECTED = (ConfigError, DataError, Unavailable)

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def input_errors() -> tuple[type[BaseException], ...]:
    extra = [getattr(sys.modules[m], n) for m, n in _LIBRARY_INPUT_ERRORS if hasattr(sys.modules.get(m), n)]
    return (OSError, UnicodeError, json.JSONDecodeError, *extra)




def cmd_config(args: argparse.Namespace) -> int:
    from ssp.tree import SSPConfig

    if args.keys:
        for key, default, help_ in describe(SSPConfig):
            print(f"{key:40s} {default:24s} {help_}")
        return 0
    print(json.dumps(to_dict(load_tree(args)), indent=2))
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from trainer.models.tiny import MARKER, build

    conf = load_tree(args)
    out = build(conf.model.tiny, args.out or conf.model.path)
    info = json.loads((out / MARKER).read_text())
    print(f"tiny model: {out}  params={info['params']:,}  vocab={info['vocab']}")
    return 0


def cmd_toy_data(args: argparse.Namespace) -> int:
    from trainer.data import toy_tasks

    conf = load_tree(args)
    out = Path(args.out)
    check_output_dir(out, [], "toy_data.json", "ssp toy-data")  # a folder of yours is never written into
    train, held = toy_tasks.split(toy_tasks.generate(conf.data.toy), seed=conf.data.toy.seed)
    with building(out) as tmp:
        toy_tasks.write_jsonl(train, tmp / "train.jsonl")
        toy_tasks.write_jsonl(held, tmp / "eval.jsonl")
        (tmp / "toy_data.json").write_text(json.dumps({"toy": to_dict(conf)["data"]["toy"]}, indent=1))
    print(f"toy data: {len(train)} train, {len(held)} held-out problems in {out}")
    return 0


def cmd_decontaminate(args: argparse.Namespace) -> int:
    from trainer.data.decontam import decontaminate
    from trainer.data.problems import to_record
    from trainer.data.sources import load_all, load_source
    check_output(args.out, args.train + args.eval, args.overwrite)
    train = load_all(args.train)  # kept items are written by id: two train files must not share one
    evals = [p for f in args.eval for p in load_source(f)]
    report = decontaminate(train, evals, n=args.n)
    print(f"train={len(train)} eval={len(evals)} kept={len(report.kept)} dropped={len(report.dropped)}")
    for p, eid, gram in report.dropped[: args.show]:
        print(f"  drop {p.id}  (hits {eid}: '{gram}')")
    if args.out:
        with writing(args.out) as f:
            f.writelines(json.dumps(to_record(p)) + "\n" for p in report.kept)
        print(f"wrote {args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from trainer.models.generate import generate_demo

    generate_demo(load_tree(args), n_problems=args.n)
    return 0


def _differ(a, b) -> list[str]:
    """The dotted keys whose values differ between two configs."""
    from trainer.tracking import flatten

    x, y = flatten(to_dict(a)), flatten(to_dict(b))
    return [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]


def cmd_rl(args: argparse.Namespace) -> int:
    if args.auto_resume:  # what a retried job does: start the run, continue it, or find it finished
        asked = load_tree(args)
        run_dir = Path(asked.run_dir)
        if (run_dir / "summary.json").exists():
            from ssp.tree import SSPConfig

            if diff := _differ(asked, load_config(SSPConfig, run_dir / "config.yaml", [f"run_dir={asked.run_dir}"])):
                raise ConfigError(f"rl --auto-resume: {run_dir} holds a finished run whose config differs from this "
                                  f"one in {diff[:8]}{' ...' if len(diff) > 8 else ''}; set run_dir=... for a new run")
            print(f"rl --auto-resume: {run_dir} finished already (summary.json); nothing to do")
            return 0
        if (run_dir / "metrics.jsonl").exists():
            print(f"rl --auto-resume: continuing the run in {run_dir} from its last checkpoint", flush=True)
            args.resume = str(run_dir)
    if args.resume:
        from ssp.tree import SSPConfig

        saved = Path(args.resume) / "config.yaml"
        conf = load_config(SSPConfig, saved, [f"run_dir={args.resume}", *args.overrides])
        if args.config:  # a resumed run keeps its config: a --config that says otherwise is refused, not ignored
            if diff := _differ(load_config(SSPConfig, args.config, [f"run_dir={args.resume}", *args.overrides]), conf):
                raise ConfigError(f"rl --resume {args.resume}: --config {args.config} differs from the run's saved "
                                  f"{saved} in {diff[:8]}{' ...' if len(diff) > 8 else ''}; a resumed run keeps its "
                                  "config (drop --config, or give key=value overrides for what may change)")
        if args.overrides:
            print(f"rl --resume: the saved config with {' '.join(args.overrides)}")
    else:
        conf = load_tree(args)  # a bad config fails here, before Ray, vLLM or DeepSpeed are imported
    require(conf, "rl")
    from trainer.rl import main as rl_main

    summary = rl_main(conf, resume=bool(args.resume))
    return 0 if summary else 1


def cmd_sft(args: argparse.Namespace) -> int:
    conf = load_tree(args)
    require(conf, "sft")
    from cluster.ray_cluster import connect
    from trainer.data.splits import load_problems_for
    from trainer.models.ensure import ensure_model
    from trainer.spectrum.sft import run_sft

    base = ensure_model(conf)
    held = load_problems_for(conf)[1]
    connect(conf.cluster)
    saved = run_sft(conf, base, Path(conf.run_dir) / "sft", evals=held)
    print("checkpoints:\n" + "\n".join(f"  step {st:6d}  {p}" for st, p in saved))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    conf = load_tree(args)
    from actors.rollout import RolloutPool
    from actors.verifier.pool import VerifierPool
    from cluster.ray_cluster import connect
    from trainer.data.splits import probe_sets
    from trainer.spectrum.probe import probe, specialists, write_table
    from trainer.spectrum.sft import checkpoints

    paths = args.models or [str(p) for _, p in checkpoints(Path(conf.run_dir) / "sft")]
    if not paths:
        raise DataError(f"probe: no checkpoints given (--models) and none under {conf.run_dir}/sft")
    for p in paths:
        if not (Path(p) / "config.json").exists():
            raise DataError(f"{p}: not an HF model directory (no config.json)")
    out = Path(conf.run_dir) / "probe"
    out.mkdir(parents=True, exist_ok=True)
    sets = probe_sets(conf)
    connect(conf.cluster)
    rollout = RolloutPool(paths[0], conf.rollout, conf.engine, conf.sampling, conf.data.instruction)
    verifier = VerifierPool(conf.verifier)
    try:
        table = probe(conf, rollout, verifier, [(Path(p).name, p) for p in paths], sets, out)
    finally:
        rollout.shutdown()
        verifier.shutdown()
    print(write_table(table, conf.spectrum.probe_k, out))
    spec = specialists(table, list(sets))
    (out / "specialists.json").write_text(json.dumps({s: dict((Path(p).name, p) for p in paths)[n]
                                                      for s, n in spec.items()}, indent=1))
    print(f"specialists (argmax Pass@{conf.spectrum.probe_k}): {spec}\nwrote {out}/probe.csv, probe.png, "
          "specialists.json")
    return 0


def cmd_spectrum(args: argparse.Namespace) -> int:
    conf = load_tree(args)
    require(conf, "spectrum")
    from trainer.spectrum.stage import run_spectrum

    run_spectrum(conf, Path(conf.run_dir))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    conf = load_tree(args)
    require(conf, "all")
    from ssp.pipeline import StageFailed, run_pipeline

    try:
        run_pipeline(conf)
    except StageFailed as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    extra = [f"eval.suite={args.suite}"] + ([f"eval.limit={args.limit}"] if args.limit else []) + \
        ([f"eval.n={args.k}"] if args.k else []) + ([f"model.path={args.model}", "model.source=path"] if args.model else [])  # that folder, as it is
    args.overrides = [*args.overrides, *extra]
    conf = load_tree(args)
    require(conf, "eval")
    from trainer.eval.run import run_eval
    from trainer.models.ensure import ensure_model

    run_eval(conf, args.model or ensure_model(conf))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    conf = load_tree(args)

    return 0 if preflight(conf, args.stage, print_table=True).ok else 2


def cmd_cluster(args: argparse.Namespace) -> int:
    from cluster import local

    conf = load_tree(args)
    if args.action == "up":
        local.up(conf.cluster, conf.scheduler)
    elif args.action == "down":
        local.down(conf.cluster)
    else:
        return 0 if local.status(conf.cluster) else 1
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ssp-rl")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "(source tree, not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Every command and its arguments, as one table (one piece: it reads as the CLI's reference)."""
    parser = argparse.ArgumentParser(prog="ssp", description="ssp-rl: Spectrum-to-Signal RL post-training")
    parser.add_argument("--version", action="version", version=f"ssp-rl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    from trainer.cli import export_cli, merge_cli

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
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--n", type=positive_int, default=10, help="n-gram length (>= 1)")
    p.add_argument("--show", type=int_at_least(0), default=10, help="dropped items to list (>= 0)")
    p.set_defaults(func=cmd_decontaminate)

    p = sub.add_parser("generate", help="sample answers to toy problems from model.path with vLLM")
    add_config_args(p)
    p.add_argument("--n", type=positive_int, default=8, help="problems to answer")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("rl", help="the Signal stage: MGPO on Ray (scheduler, vLLM rollouts, verifiers, DeepSpeed)")
    add_config_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    g.add_argument("--auto-resume", action="store_true",
                   help="continue the run in run_dir if it holds one (its config must match), do nothing if it "
                        "finished, else start it: for jobs that are retried (a RayJob's backoffLimit)")
    p.set_defaults(func=cmd_rl)

    p = sub.add_parser("sft", help="Spectrum: SFT on Ray Train + DeepSpeed, an HF checkpoint every sft.save_every steps")
    add_config_args(p)
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("probe", help="Spectrum: Pass@1 / Pass@K of each checkpoint per subdomain, and the specialists")
    add_config_args(p)
    p.add_argument("--models", nargs="+", help="HF checkpoint dirs (default: RUN_DIR/sft's checkpoints)")
    p.set_defaults(func=cmd_probe)

    merge_cli(sub)  # merge (trainer/cli.py)

    p = sub.add_parser("spectrum", help="the Spectrum stage: sft -> probe -> merge -> probe merged, with a report")
    add_config_args(p)
    p.set_defaults(func=cmd_spectrum)

    p = sub.add_parser("pipeline", help="all of SSP: Spectrum then Signal (rl from the merged model), with a summary")
    add_config_args(p)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("eval", help="the official eval protocol (VibeThinker math, LiveCodeBench code) on the cluster")
    add_config_args(p)
    p.add_argument("--model", help="HF model dir (default: model.path)")
    p.add_argument("--suite", default="toy", help="configs/eval/SUITE.yaml (math, code, toy) or a YAML path")
    p.add_argument("--limit", type=positive_int, help="first N problems of each dataset")
    p.add_argument("--k", type=positive_int, help="samples per problem (the suite's n otherwise)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("check", help="preflight: model, data, SFT/probe data, eval suites, resources, disk and "
                                     "memory per device, checked against the config before anything starts")
    add_config_args(p)
    p.add_argument("--stage", default="all", choices=["all", "sft", "spectrum", "rl", "eval", "serve"],
                   help="check what this stage needs (all = the pipeline's stages)")
    p.set_defaults(func=cmd_check)

    export_cli(sub)  # export (trainer/cli.py)

    p = sub.add_parser("cluster", help="a local Ray head + the scheduler's Redis for every other command to attach to")
    p.add_argument("action", choices=["up", "status", "down"], help="up: start (or show); status: what runs; "
                   "down: stop by PID, keep the data")
    add_config_args(p)
    p.set_defaults(func=cmd_cluster)

    from actors.verifier.cli import register_cli as verify_cli  # commands owned by their rooms
    from cluster.scheduler_cli import register_cli as scheduler_cli
    from serve.cli import register_cli as serve_cli
    from trainer.models.gguf import register_cli as gguf_cli

    gguf_cli(sub)
    verify_cli(sub)
    scheduler_cli(sub)
    serve_cli(sub)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a Namespace (argparse's usage error, exit 2, otherwise); key=value overrides may stand
    on either side of an option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides after an option (`--config F a=1 --k 2 b=2`): argparse leaves the later ones over
        if hasattr(args, "overrides") and all(OVERRIDE.match(x) for x in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from cluster.env import apply

    apply()  # the process env every command's workers inherit (cluster/env.py)
    args = parse(argv)
    try:
        return int(args.func(args) or 0)
    except EXPECTED as e:  # the project's own errors for bad input or a missing resource name what and why
        print(f"ssp {args.command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ssp config --keys | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"ssp {args.command}: interrupted; what finished is kept (rerun the command to continue)",
              file=sys.stderr)
        return 130
    except Exception as e:
        if isinstance(e, input_errors()):  # a library refused an input (a path, a file's bytes or format)
            print(f"ssp {args.command}: {type(e).__name__}: {e} — check the files and options given", file=sys.stderr)
            return 2
        import traceback  # anything else is a bug of ours: the traceback, and a line that says so

        traceback.print_exc()
        print(f"ssp {args.command}: this is a bug in ssp-rl, not a problem with your input; please report it with "
              "the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
