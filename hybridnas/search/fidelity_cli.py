"""``hybridnas fidelity``: retrain some trials of a run longer, and say how
well the search's proxy ranked them (Kendall tau, Spearman, top-k overlap)."""
from __future__ import annotations

import argparse
import math

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..rundir import RunDir
    from ..runlock import RunLock
    from .fidelity import retrain

    if not RunDir(args.run).is_run():  # before the lock, which would create the folder
        raise UserError(f"{args.run}: not a run directory (no trials table or config.yaml)")
    # one writer per run: a search (or another fidelity call) writing this run refuses us
    with RunLock(args.run, command="hybridnas fidelity"):
        out = retrain(args.run, epochs=args.epochs, sample=args.sample, front=args.front,
                      subset=args.subset, seed=args.seed, k=args.top_k, device=args.device)

    def f(v: float) -> str:
        return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"

    print(f"proxy ({out['proxy_epochs']} epochs, {out['proxy_subset']} images) vs "
          f"{out['epochs']} epochs on {out['subset']} images, {out['n']} trials: "
          f"Kendall tau {f(out['kendall_tau'])}, Spearman {f(out['spearman'])}, "
          f"top-{out['k']} overlap {f(out['top_k_overlap'])}; "
          f"{out['device_seconds']:.0f} device-seconds; written to {args.run}/fidelity.parquet")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "fidelity", help="retrain trials of a run longer and measure how well the proxy ranks them",
        description="Retrain chosen trials of a search run at a higher fidelity (more epochs, "
                    "more images) with the run's recipe, and report Kendall tau, Spearman and "
                    "top-k overlap between the proxy metric and the retrained one. Writes "
                    "fidelity.parquet and fidelity.json into the run (the dashboard shows them).",
        epilog="example: hybridnas fidelity results/quickstart --sample 8 --epochs 8")
    p.add_argument("run", metavar="RUN", help="a search run directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", type=int, metavar="K",
                       help="K trials drawn at random among those that may enter the front")
    which.add_argument("--front", action="store_true", help="the run's Pareto front")
    p.add_argument("--epochs", type=int, required=True, metavar="E", help="epochs of the retraining")
    p.add_argument("--subset", type=int, metavar="N",
                   help="training images of the retraining (default: the run's subset)")
    p.add_argument("--top-k", type=int, metavar="K", help="k of the top-k overlap "
                   "(default: a quarter of the trials, at least 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample's draw (default: 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda:N")
    p.set_defaults(func=_run)
