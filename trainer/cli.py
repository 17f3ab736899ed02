"""`ssp merge` and `ssp export`: the trainer room's commands that need no config tree (they read and write HF
folders and run directories)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ssp.config import positive_int
from ssp.io import DataError


def cmd_merge(args: argparse.Namespace) -> int:
    from trainer.spectrum.merge import merge

    if Path(args.out).resolve() in [Path(m).resolve() for m in args.models]:
        raise DataError(f"{args.out}: the output would overwrite an input model")
    out = merge(args.models, args.out, args.weights)
    print(f"merged {len(args.models)} models -> {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.export import export

    out = export(Path(args.run_dir), Path(args.out), step=args.step, best=args.best)
    print(f"exported {out}")
    return 0


def merge_cli(sub: Any) -> None:
    """Add `merge` to an argparse subparsers object."""
    p = sub.add_parser("merge", help="Spectrum: parameter-wise weighted average of HF checkpoints (fp32 accumulate)")
    p.add_argument("--models", nargs="+", required=True, help="HF checkpoint dirs")
    p.add_argument("--out", required=True, help="output HF dir")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per model, summing to 1 (default 1/N)")
    p.set_defaults(func=cmd_merge)


def export_cli(sub: Any) -> None:
    """Add `export` to an argparse subparsers object."""
    p = sub.add_parser("export", help="write one of a run's checkpoints (--step N, --best, default the last) as an HF "
                                      "folder with a model card")
    p.add_argument("run_dir", metavar="RUN_DIR", help="an `ssp rl` or `ssp pipeline` run directory")
    p.add_argument("--out", required=True, help="output folder (must not exist, or be empty)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--step", type=positive_int, help="the checkpoint of this RL step")
    g.add_argument("--best", action="store_true", help="the checkpoint with the best held-out Pass@1")
    p.set_defaults(func=cmd_export)
