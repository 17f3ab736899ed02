"""`ssp scheduler {stats,export,import}`: inspect, dump and restore a run's problem-scheduler state."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from cluster.config import SchedulerConfig
from cluster.scheduler import ProblemScheduler, open_scheduler, p_hat
from cluster.scheduler_io import _parse_export, export, import_
from ssp.io import DataError, check_output, regular_file, writing


def register_cli(sub: Any) -> None:
    """Add `scheduler {stats,export,import}` to an argparse subparsers object."""
    p = sub.add_parser("scheduler", help="inspect, export and import the problem scheduler's state")
    cmds = p.add_subparsers(dest="scheduler_cmd", required=True)
    for name, text in [("stats", "print band counts and write a p-hat histogram PNG"),
                       ("export", "dump the run's state as JSONL"), ("import", "restore a JSONL dump")]:
        c = cmds.add_parser(name, help=text)
        c.add_argument("--run", required=True, help="run name")
        where = c.add_mutually_exclusive_group()
        where.add_argument("--redis-url", help="Redis URL (default: the Redis of `ssp cluster up` if it runs, "
                                               "else the run's embedded server)")
        where.add_argument("--data-dir", help="embedded server data dir (default runs/<run>/redis)")
        if name == "stats":
            c.add_argument("--png", help="histogram path (default <run>_scheduler_hist.png)")
        if name == "export":
            c.add_argument("--out", required=True, help="JSONL file to write")
            c.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
        if name == "import":
            c.add_argument("--in", dest="inp", required=True, help="JSONL file to read")
        c.set_defaults(func=_cli)


RUN_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,127}$")


def _check_args(args: argparse.Namespace, config: SchedulerConfig, up_dir: str | None) -> None:
    """Everything the command needs, checked before a server starts or a file is written."""
    from cluster.local import live_redis_url

    if not RUN_NAME.match(args.run):
        raise DataError(f"--run {args.run!r}: a run name is letters, digits, '.', '_' and '-' (no '/', not empty), "
                        "as the run directory's name")
    if args.scheduler_cmd == "export":
        check_output(args.out, [], args.overwrite)
    if args.scheduler_cmd == "import":
        _parse_export(regular_file(args.inp, "a scheduler export (JSONL)"))
    if config.redis_url or (up_dir and live_redis_url(up_dir)):
        return
    data_dir = Path(args.data_dir or config.data_dir.format(run=args.run))
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"{data_dir}: is not a folder (the embedded Redis server's data dir)")
    if args.scheduler_cmd != "import" and not data_dir.is_dir():
        raise DataError(f"{data_dir}: no scheduler state for run {args.run!r} here (no Redis of `ssp cluster up` "
                        "runs either); give --data-dir or --redis-url of the run's Redis")


def _cli(args: argparse.Namespace) -> int:
    from cluster.state import default_state_dir

    config = SchedulerConfig(redis_url=args.redis_url, retries=4)  # a command fails in ~2 s; a run waits longer
    up_dir = None if args.data_dir else default_state_dir()
    _check_args(args, config, up_dir)
    with open_scheduler(args.run, config, data_dir=args.data_dir, cluster_dir=up_dir) as s:
        if args.scheduler_cmd != "import":
            fps = s.datasets()
            if len(fps) != 1:
                raise DataError(f"run {args.run!r}: {'no scheduler state' if not fps else f'{len(fps)} datasets'} "
                                f"in the Redis at {s.url.split('@')[-1]}" + ("" if not fps else f" ({fps}); not one to show"))
            s.fingerprint = fps[0]
        if args.scheduler_cmd == "export":
            with writing(args.out) as f:
                n = export(s, f)
            print(f"exported {n} problems to {args.out}")
        elif args.scheduler_cmd == "import":
            r = import_(s, args.inp)
            print(f"imported {args.inp}: {r['written']} written, {r['kept']} kept (stored state had more attempts)")
        else:
            _print_stats(s, args.png or f"{args.run}_scheduler_hist.png")
    return 0


def _print_stats(s: ProblemScheduler, png: str) -> None:
    st = s.stats()
    print(f"run {st['run']}  dataset {st['dataset']}  problems {st['problems']}  updates {st['updates']}")
    print(f"{'band':<16}{'problems':>10}")
    for label, n in st["bands"].items():
        print(f"{label:<16}{n:>10}")
    print(f"zero-advantage groups: {st['zero_adv_groups']}/{st['groups']} = {st['zero_adv_frac']:.3f} "
          f"(all correct {st['all_correct']}, all wrong {st['all_wrong']})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ph = [p_hat(s.config, r["attempts"], r["correct"]) for r in s.problems() if r["attempts"] > 0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(ph, bins=20, range=(0, 1))
    ax.set(xlabel="smoothed pass rate p^", ylabel="problems", title=f"{st['run']}: {len(ph)} seen problems")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    print(f"histogram: {png}")
