"""``hybridnas export``: take architectures out of a search run (or the zoo)."""
from __future__ import annotations

import argparse

from ..rundir import RunDir

__all__ = ["register"]

EPILOG = """\
examples:
  hybridnas export results/my-run --pareto
  hybridnas export results/my-run --trial 12 17 --format spec,onnx --out exports/
  hybridnas export results/my-run --top 3 --by latency
  hybridnas export coatnet_0 --resolution 32 --num-classes 10 --out exports/coatnet_0

Each architecture gets a folder with spec.yaml, model.safetensors (when the run
kept the trial's weights), model.ts, model.onnx, meta.json and a README.md
model card. TorchScript and ONNX are loaded back and compared with PyTorch on
the same input; the max abs difference is printed (ONNX must be <= 1e-4).
Load a folder with hybridnas.load(folder). Exit status 1 if a format failed.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export searched architectures (spec, weights, TorchScript, ONNX, card)",
        description="Export architectures of a search run into self-contained folders.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR",
                   help="search run directory (results/<run>); also a checkpoint folder, a spec "
                        "file or a named architecture")
    pick = p.add_argument_group("which architectures (default: the Pareto front)")
    pick.add_argument("--trial", type=int, nargs="+", metavar="ID", help="trial ids")
    pick.add_argument("--pareto", action="store_true", help="every trial on the front")
    pick.add_argument("--top", type=int, metavar="K", help="the best K full-fidelity trials")
    pick.add_argument("--by", default="metric", metavar="KEY",
                      help="ranking for --top: metric (highest first; also 'accuracy' or the "
                           "metric's name) or latency (lowest first)")
    p.add_argument("--format", default="spec,pytorch,torchscript,onnx", metavar="LIST",
                   help="comma-separated subset of spec,pytorch,torchscript,onnx (default: all)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    p.add_argument("--resolution", type=int, metavar="N", help="input resolution for tracing (default: the "
                   "run's; needed for a spec or named architecture)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="classifier outputs for a spec or named architecture (default: 1000)")
    p.add_argument("--in-chans", type=int, default=None, metavar="N",
                   help="input channels for a spec or named architecture (default: 3)")
    p.set_defaults(func=run_export)


def _is_run(path) -> bool:
    return RunDir(path).is_run()


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from .checkpoint import SPEC_FILE, WEIGHTS_FILE
    from .exporter import describe, export_model, export_run, load, parse_formats

    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    formats = parse_formats(args.format)
    source = Path(args.source)
    if _is_run(source):
        results = export_run(source, trials=args.trial, pareto=args.pareto, top=args.top,
                             by=args.by, formats=formats, out=args.out,
                             resolution=args.resolution, log=print)
        dest = Path(args.out) if args.out else source / "export"
    else:
        if args.trial or args.pareto or args.top:
            raise UserError(f"{args.source}: no such run directory (--trial/--pareto/--top "
                            f"need a run with trials.parquet)")
        if source.is_dir() and (source / SPEC_FILE).exists():
            target = load(source) if (source / WEIGHTS_FILE).exists() else str(source / SPEC_FILE)
        elif source.is_dir() or str(args.source).endswith(("/", "\\")):
            raise UserError(f"{args.source}: no such run directory (no trials.parquet, "
                            f"config.yaml or spec.yaml in it)")
        else:
            target = str(source)
            if not source.exists() and ("/" in str(source)):
                raise UserError(f"{args.source}: no such run directory")
        name = getattr(getattr(target, "spec", None), "name", None) or source.stem
        dest = Path(args.out) if args.out else Path("export") / name
        meta = {}
        if source.is_dir():  # a checkpoint or export folder knows its input shape
            from .checkpoint import read_meta

            meta = read_meta(source)
        result = export_model(target, dest, formats, meta=meta, resolution=args.resolution,
                              num_classes=args.num_classes, in_chans=args.in_chans)
        print(describe(result))
        results = [result]
    bad = [r for r in results if not r.ok]
    print(f"exported {len(results)} architecture(s) to {dest}"
          + (f"; {len(bad)} with a failed format or parity check" if bad else ""))
    return 1 if bad else 0
