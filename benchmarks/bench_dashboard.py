"""How long the dashboard takes, as the run grows.

For synthetic runs of several sizes (hybridnas.dashboard.testing), multi-trial
and one-shot (every subnet scored with inherited weights, the best few
retrained standalone), prints side by side in one run:
  - ``hybridnas.rundir.load_run`` of trials.parquet,
  - figure data only (all ``get_*_info`` but importance, as the page draws them),
  - the live rewrite the search calls (``write_dashboard``: 16-tree fANOVA),
  - the CLI page (``render_dashboard``: Optuna's default 64-tree fANOVA), and
    ``hybridnas dashboard RUN`` as a new process (its imports included),
  - the page without importance, the page size, the trials the page draws, and
  - (when Debian's chromium is installed) the time until the page has drawn
    every plot in headless Chromium.
Targets: the live rewrite stays under ~10 % of a proxy trial (seconds at 500
trials); at 20,000 evaluated subnets (issue 12 (e)) load_run, the live rewrite
and the CLI page each under 10 s and the page under 10 MB.

Timings in this process follow one warm-up page (plotly, optuna and sklearn
imported), as in a running search. Runs above ``--study-max`` trials are written without study.db (writing
tens of thousands of Optuna trials to SQLite takes minutes): the page never
opens the study of such a run, it fits importance on a sample of
trials.parquet (``hybridnas.dashboard._data.IMPORTANCE_MAX_TRIALS``).

    python benchmarks/bench_dashboard.py                 # sizes 50 200 500, both kinds
    python benchmarks/bench_dashboard.py --sizes 500 5000 20000 --no-browser
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cpu(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn``, CPU of this process and its children:
    on a shared machine wall time is CPU time stretched by everyone else's load."""
    import resource

    def used() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    c, t = used(), time.perf_counter()
    fn()
    return time.perf_counter() - t, used() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--kinds", nargs="+", choices=["trials", "oneshot"],
                        default=["trials", "oneshot"])
    parser.add_argument("--study-max", type=int, default=2000,
                        help="largest run written with an Optuna study.db (default 2000)")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    import optuna
    import torch

    torch.set_num_threads(2)
    from hybridnas import dashboard as dash
    from hybridnas import rundir
    from hybridnas.dashboard import _data
    from hybridnas.dashboard.testing import check_in_browser, write_example_run

    browser = None if args.no_browser else dash.find_browser()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start; "
          "'cpu': CPU seconds of the same call")
    print(f"{'kind':>7} {'trials':>7} {'study':>5} {'load s':>7} {'data s':>7} {'live s':>7} "
          f"{'cli s':>7} {'cli cpu':>7} {'cmd s':>7} {'cmd cpu':>7} {'no-imp s':>8} "
          f"{'page MB':>8} {'drawn':>6} {'browser s':>9}  plots/errors")
    command = [sys.executable, "-c",
               "import sys; from hybridnas.cli import main; sys.exit(main(sys.argv[1:]))",
               "dashboard"]
    with tempfile.TemporaryDirectory(prefix="bench_dash_") as tmp:
        warm = write_example_run(Path(tmp) / "warm", n_trials=30, seed=0)
        dash.write_dashboard(warm)
        dash.render_dashboard(warm, Path(tmp) / "warm.html")
        for kind in args.kinds:
            for n in args.sizes:
                study = n <= args.study_max
                run = write_example_run(Path(tmp) / f"{kind}_{n}", n_trials=n, seed=n,
                                        study=study, oneshot=kind == "oneshot")
                t_load = _timed(lambda run=run: rundir.load_run(run), repeats=3)

                def data_only(run=run):
                    runs = dash.load_runs([run])
                    x = _data.choose_x(runs)
                    dash.get_front_info(runs, x=x, max_shown=_data.MAX_SHOWN)
                    dash.get_hypervolume_info(runs, x=x)
                    dash.get_block_usage_info(runs, x=x)
                    dash.get_learning_curves_info(runs, max_shown=_data.MAX_SHOWN, x=x)
                    dash.get_latency_prediction_info(runs, max_shown=_data.MAX_SHOWN, x=x)
                    return dash.get_trials_table(runs, x=x, max_shown=_data.MAX_SHOWN)

                t_data = _timed(data_only, repeats=3)
                drawn = len(data_only())
                t_live = _timed(lambda run=run: dash.write_dashboard(run))
                out = Path(tmp) / f"cli_{kind}_{n}.html"
                t_cli, c_cli = _cpu(lambda run=run, out=out: dash.render_dashboard(
                    run, out, importance=optuna.importance.FanovaImportanceEvaluator(seed=0)))
                t_cmd, c_cmd = _cpu(lambda run=run: subprocess.run(
                    [*command, str(run), "--out", str(Path(tmp) / "cmd.html")], check=True,
                    stdout=subprocess.DEVNULL))
                t_noimp = _timed(lambda run=run: dash.render_dashboard(
                    run, Path(tmp) / "noimp.html", importance=False))
                size_mb = os.path.getsize(out) / 1e6
                t_browser, status = float("nan"), "-"
                if browser:
                    t = time.perf_counter()
                    report = check_in_browser(out, browser=browser)
                    t_browser = time.perf_counter() - t
                    status = f"{report['plots']} plots, {len(report['errors'])} errors"
                print(f"{kind:>7} {n:>7} {'yes' if study else 'no':>5} {t_load:>7.2f} "
                      f"{t_data:>7.2f} {t_live:>7.2f} {t_cli:>7.2f} {c_cli:>7.2f} {t_cmd:>7.2f} "
                      f"{c_cmd:>7.2f} {t_noimp:>8.2f} "
                      f"{size_mb:>8.2f} {drawn:>6} {t_browser:>9.2f}  {status}", flush=True)


if __name__ == "__main__":
    main()
