"""``hybridnas latency``: measure one architecture, build a space's latency
table (``calibrate``), or compare predictions with measurements (``check``).

    hybridnas latency coatnet_0 --resolution 64
    hybridnas latency my_spec.yaml --device cuda --batch-size 8
    hybridnas latency calibrate --space stagewise --device cpu
    hybridnas latency check --space stagewise -n 50
"""
from __future__ import annotations

import argparse
import os

from ..errors import UserError
from .settings import CLOCKS, MEASURE, SEARCH

ACTIONS = ("calibrate", "check")


def default_table(space: str, device: str, resolution: int, batch_size: int) -> str:
    """Where calibrate writes and check/measure read a space's table by default."""
    dev = device.replace(":", "")
    name = os.path.splitext(os.path.basename(space))[0]
    return os.path.join("results", "latency_tables",
                        f"{name}-{dev}-r{resolution}-b{batch_size}.json")


def cmd_latency(args: argparse.Namespace) -> int:
    if args.target == "calibrate":
        return _calibrate(args)
    if args.target == "check":
        return _check(args)
    if args.space or args.n is not None:
        raise UserError("--space and -n belong to `hybridnas latency calibrate|check`, "
                        f"not to measuring {args.target!r}")
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    from .. import get_spec
    from ._measure import measure

    spec = get_spec(args.target)
    resolution = args.resolution
    if resolution is None:
        try:
            from ..zoo import get_named

            resolution = get_named(args.target).resolution
        except KeyError:
            resolution = 224
    r = measure(spec, device=args.device, batch_size=args.batch_size, resolution=resolution,
                num_classes=args.num_classes, threads=args.threads, warmup=args.warmup,
                repeats=args.repeats, backend=args.backend, clock=args.clock or MEASURE.clock)
    s = r.settings
    line = (f"{spec.name or args.target}  id={spec.arch_id}  {s['device']} ({s['device_name']})"
            f"  backend={s['backend']}  batch={s['batch_size']}  resolution={resolution}"
            + (f"  threads={s['threads']}" if s["threads"] else ""))
    print(line)
    print(f"latency: median {r.median_ms:.3f} ms  p10 {r.p10_ms:.3f}  p90 {r.p90_ms:.3f}  "
          f"({s['repeats']} runs after {s['warmup']} warm-up)")
    if args.table:
        from ._predictor import LatencyPredictor

        predictor = LatencyPredictor.load(args.table)
        pred = predictor.predict(spec, resolution=resolution, batch_size=args.batch_size,
                                 num_classes=args.num_classes)
        print(f"predicted: {pred:.3f} ms ({(pred - r.median_ms) / r.median_ms:+.1%}, "
              f"{predictor.coverage(spec, resolution=resolution, batch_size=args.batch_size):.0%}"
              f" of parts from the table {args.table})")
    return 0


def _space_args(args: argparse.Namespace, action: str) -> tuple[str, int]:
    if not args.space:
        raise UserError(f"`hybridnas latency {action}` needs --space NAME (e.g. stagewise)")
    return args.space, args.resolution or 32


def _calibrate(args: argparse.Namespace) -> int:
    from ._measure import resolve_device
    from ._predictor import calibrate_space

    space, resolution = _space_args(args, "calibrate")
    device = resolve_device(args.device)
    out = args.table or default_table(space, device, resolution, args.batch_size)
    n = args.n or 100
    print(f"calibrating {space} at resolution {resolution} on {device}: {n} sampled "
          f"architectures -> {out}")
    predictor = calibrate_space(space, n=n, resolution=resolution, seed=args.seed,
                                device=device, batch_size=args.batch_size,
                                num_classes=args.num_classes, threads=args.threads,
                                warmup=min(args.warmup, SEARCH.warmup),
                                repeats=min(args.repeats, SEARCH.repeats),
                                clock=args.clock or SEARCH.clock,
                                networks=args.networks, progress=print)
    predictor.save(out)
    rep = predictor.report
    print(f"table: {rep['parts']} parts from {rep['architectures']} architectures; correction "
          f"fitted on {rep['networks']} networks: {rep['fit_within_10pct']:.0%} within ±10% "
          f"(median error {rep['fit_median_rel_error']:.1%}); {rep['calibration_seconds']} s")
    print(f"wrote {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    import numpy as np

    from .._text import table as _table
    from ._measure import resolve_device
    from ._predictor import (
        LatencyPredictor,
        _sample_unique,
        check,
        load_space,
        summarise_check,
    )

    space, resolution = _space_args(args, "check")
    device = resolve_device(args.device)
    path = args.table or default_table(space, device, resolution, args.batch_size)
    predictor = LatencyPredictor.load(path)
    if predictor.settings.get("device") != device:
        raise UserError(f"{path}: calibrated on {predictor.settings.get('device')}, "
                        f"not {device}")
    sp = load_space(space, predictor.settings["resolution"])
    # A different seed from calibration: check on architectures it has not seen.
    specs = _sample_unique(sp, args.n or 50, np.random.default_rng(args.seed + 1))
    rows = check(predictor, specs, repeats=args.repeats)
    print(_table([[r["arch_id"], r["pattern"], f"{r['predicted_ms']:.3f}",
                   f"{r['measured_ms']:.3f}", f"{r['rel_error']:+.1%}", f"{r['coverage']:.0%}"]
                  for r in rows], ["arch_id", "pattern", "predicted_ms", "measured_ms", "error",
                                   "table"]))
    s = summarise_check(rows)
    print(f"\n{s['n']} architectures from {space} on {device}: {s['within']:.0%} within ±10% "
          f"(median |error| {s['median_abs_error']:.1%}, max {s['max_abs_error']:.1%}); "
          f"{s['coverage']:.0%} of parts from the table"
          + (f", {s['within_fully_covered']:.0%} within ±10% among the {s['fully_covered']} "
             f"fully covered" if s["fully_covered"] else ""))
    print(f"cost: one prediction {s['predict_ms']:.3f} ms, one measurement "
          f"{s['measure_ms']:.0f} ms (build + warm-up + {args.repeats} runs)")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "latency", help="measure latency; `calibrate`/`check` a space's latency predictor",
        description="hybridnas latency NAME|SPEC.yaml: measure one architecture. "
                    "hybridnas latency calibrate --space S: build the per-part latency table. "
                    "hybridnas latency check --space S -n 50: predicted vs measured.")
    p.add_argument("target", help="registered name or spec file, or 'calibrate' / 'check'")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, help="samples per call (default 1)")
    p.add_argument("--resolution", type=int, default=None,
                   help="input size (default: the named model's, 224, or 32 for a space)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1)")
    p.add_argument("--warmup", type=int, default=MEASURE.warmup,
                   help=f"untimed calls first (default {MEASURE.warmup})")
    p.add_argument("--repeats", type=int, default=MEASURE.repeats,
                   help=f"timed calls (default {MEASURE.repeats})")
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "onnxruntime"])
    p.add_argument("--clock", default=None, choices=list(CLOCKS),
                   help="wall time, or thread CPU time (1 CPU thread: ignores preemption by "
                        "other processes on a shared machine); auto = cpu where allowed. "
                        "Default: wall when measuring, auto for calibrate (as the search's "
                        "LatencyService)")
    p.add_argument("--table", default=None,
                   help="latency table: written by calibrate, read by check; when measuring, "
                        "show its prediction beside the measurement")
    p.add_argument("--space", default=None, help="search space (calibrate/check)")
    p.add_argument("-n", type=int, default=None,
                   help="architectures to sample (calibrate: 100, check: 50)")
    p.add_argument("--networks", type=int, default=None,
                   help="calibrate: how many of the sampled networks fit the whole-network "
                        "correction (default: all; each is measured once anyway)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.set_defaults(func=cmd_latency)
