"""`ssp toy-data` and `ssp decontaminate`: write the toy tasks, drop train items that share an n-gram with an
eval set. Both write through a temporary sibling and never over a file or folder of yours."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ssp.config import int_at_least, positive_int, to_dict
from ssp.io import building, check_output, check_output_dir, writing
from ssp.tree import add_config_args, load_tree


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


def register_cli(sub: Any) -> None:
    """Add `toy-data` and `decontaminate` to an argparse subparsers object."""
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
