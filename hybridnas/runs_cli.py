"""``hybridnas runs``: the search runs under a folder, or one run's front."""
from __future__ import annotations

import argparse
import os

__all__ = ["register", "cmd_runs"]


def cmd_runs(args: argparse.Namespace) -> int:
    from .report import format_results, format_runs, list_runs, read_run

    if os.path.isfile(os.path.join(args.dir, "trials.parquet")) or \
            os.path.isfile(os.path.join(args.dir, "trials.csv")):
        trials, summary, config = read_run(args.dir)
        print(format_results(trials, summary, args.dir, dataset=config.get("dataset")))
        return 0
    runs = list_runs(args.dir)
    print(format_runs(runs))
    if runs:
        print(f"\n{len(runs)} run(s) under {args.dir}; `hybridnas runs {runs[0]['path']}` "
              f"shows one run's front and what to run next")
    return 0


def register(sub) -> None:
    p = sub.add_parser("runs", help="list the search runs under a folder (state, trials, budget, "
                                    "front, HV), or show one run's Pareto front")
    p.add_argument("dir", nargs="?", default="results",
                   help="a folder of runs (default results) or one run directory")
    p.set_defaults(func=cmd_runs)
