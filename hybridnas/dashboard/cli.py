"""``hybridnas dashboard``: write (or serve) the dashboard of search runs."""
from __future__ import annotations

import argparse
from pathlib import Path


def cmd_dashboard(args: argparse.Namespace) -> int:
    from . import _data
    from ._page import default_output, render_dashboard

    out = Path(args.out) if args.out else default_output(args.runs)
    max_shown = (_data.MAX_SHOWN if args.max_shown is None
                 else args.max_shown if args.max_shown > 0 else None)
    kwargs = dict(log_x=args.log_x, importance=not args.no_importance, x=args.x,
                  title=args.title, max_shown=max_shown)
    if args.serve:
        from ._serve import serve

        serve(args.runs, out, host=args.host, port=args.port, interval=args.interval, **kwargs)
        return 0
    path = render_dashboard(args.runs, out, **kwargs)
    print(f"wrote {path}")
    if args.png:
        from ._png import write_front_png

        runs = _data.load_runs(args.runs)
        png = write_front_png(_data.get_front_info(runs, x=args.x, max_shown=max_shown),
                              path.with_suffix(".png"),
                              log_x=args.log_x)
        print(f"wrote {png}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "dashboard", help="write an HTML dashboard of one or more search runs",
        description="Write one self-contained HTML page (works offline) with the Pareto front, "
                    "hypervolume vs budget, block types per stage, parameter importance, "
                    "learning curves, predicted vs measured latency and a sortable trials "
                    "table. Several runs overlay their fronts.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (results/<run>)")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/dashboard.html for one "
                                 "run, ./dashboard.html for several)")
    p.add_argument("--serve", action="store_true",
                   help="serve the page on localhost and reload it as the runs change")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    p.add_argument("--interval", type=float, default=5.0,
                   help="seconds between the page's checks for new results (default 5)")
    p.add_argument("--png", action="store_true",
                   help="also write the Pareto front as PNG next to the HTML (needs chromium)")
    p.add_argument("--log-x", action="store_true", help="start the front with a log cost axis")
    p.add_argument("--x", choices=["latency_ms", "macs", "params"], default=None,
                   help="cost axis of the front (default: latency when measured, else MACs)")
    p.add_argument("--no-importance", action="store_true",
                   help="skip Optuna parameter importance (the slowest part)")
    p.add_argument("--max-shown", type=int, default=None, metavar="N",
                   help="runs with more trials draw N of them (the front, retrained, references "
                        "and best always, the rest a stable sample) and fit importance on a "
                        "sample (default: hybridnas.dashboard._data.MAX_SHOWN; 0 draws every "
                        "trial and fits importance on all)")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=cmd_dashboard)
