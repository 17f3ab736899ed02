"""`ssp scheduler {stats,export,import}`: inspect, dump and restore a run's problem-scheduler state."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.config import SchedulerConfig
from cluster.scheduler import ProblemScheduler, open_scheduler, p_hat
from cluster.scheduler_io import export, import_


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
        if name == "import":
            c.add_argument("--in", dest="inp", required=True, help="JSONL file to read")
        c.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from cluster.state import default_state_dir

    config = SchedulerConfig(redis_url=args.redis_url)
    up_dir = None if args.data_dir else default_state_dir()
    with open_scheduler(args.run, config, data_dir=args.data_dir, cluster_dir=up_dir) as s:
        if args.scheduler_cmd == "export":
            print(f"exported {export(s, args.out)} problems to {args.out}")
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
