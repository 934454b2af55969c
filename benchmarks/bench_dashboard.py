"""How long the dashboard takes, as the run grows.

For synthetic runs of several sizes (hybridnas.dashboard.testing), prints side
by side in one run:
  - figure data only (all ``get_*_info`` but importance),
  - the live rewrite the search calls (``write_dashboard``: 16-tree fANOVA),
  - the CLI page (``render_dashboard``: Optuna's default 64-tree fANOVA),
  - the page without importance, the page size, and
  - (when Debian's chromium is installed) the time until the page has drawn
    every plot in headless Chromium.
Target: the live rewrite stays under ~10 % of a proxy trial (a trial of a
proxy search takes minutes; the rewrite should take seconds at 500 trials).

    python benchmarks/bench_dashboard.py                 # sizes 50 200 500
    python benchmarks/bench_dashboard.py --sizes 50 1000 --no-browser
"""
from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    import optuna
    import torch

    torch.set_num_threads(2)
    from hybridnas import dashboard as dash
    from hybridnas.dashboard.testing import check_in_browser, write_example_run

    browser = None if args.no_browser else dash.find_browser()
    print(f"{'trials':>7} {'data s':>8} {'live s':>8} {'cli s':>8} {'no-imp s':>9} "
          f"{'page MB':>8} {'browser s':>10}  plots/errors")
    with tempfile.TemporaryDirectory(prefix="bench_dash_") as tmp:
        for n in args.sizes:
            run = write_example_run(Path(tmp) / f"run_{n}", n_trials=n, seed=n)

            def data_only(run=run):
                runs = dash.load_runs([run])
                dash.get_front_info(runs)
                dash.get_hypervolume_info(runs)
                dash.get_block_usage_info(runs)
                dash.get_learning_curves_info(runs)
                dash.get_latency_prediction_info(runs)
                dash.get_trials_table(runs)

            t_data = _timed(data_only, repeats=3)
            t_live = _timed(lambda run=run: dash.write_dashboard(run))
            out = Path(tmp) / f"cli_{n}.html"
            t_cli = _timed(lambda run=run, out=out: dash.render_dashboard(
                run, out, importance=optuna.importance.FanovaImportanceEvaluator(seed=0)))
            t_noimp = _timed(lambda run=run: dash.render_dashboard(run, Path(tmp) / "noimp.html",
                                                           importance=False))
            size_mb = os.path.getsize(out) / 1e6
            t_browser, status = float("nan"), "-"
            if browser:
                t = time.perf_counter()
                report = check_in_browser(out, browser=browser)
                t_browser = time.perf_counter() - t
                status = f"{report['plots']} plots, {len(report['errors'])} errors"
            print(f"{n:>7} {t_data:>8.2f} {t_live:>8.2f} {t_cli:>8.2f} {t_noimp:>9.2f} "
                  f"{size_mb:>8.2f} {t_browser:>10.2f}  {status}", flush=True)


if __name__ == "__main__":
    main()
