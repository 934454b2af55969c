"""``hybridnas search``: the command line of the search engine.

Options resolve as defaults < ``--config FILE.yaml`` < flags; every resolved
option is written to the run's config.yaml. ``--resume RUN_DIR`` takes the
run's config.yaml as the base (flags such as a larger budget still apply).
"""
from __future__ import annotations

import argparse

from ..errors import UserError

__all__ = ["register", "add_arguments", "options_from_args"]


def _kv(text: str) -> tuple[str, object]:
    from .._io import parse_yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key.strip(), parse_yaml(value, key.strip())
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay out of the namespace: the file/defaults apply
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="YAML file of options (keys as the flags "
                   "with _ for -); flags given here override it")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (same study, "
                   "trials and budget); finished trials are kept, interrupted ones re-queued")
    g.add_argument("--name", default=S, help="run name (default: <space>-<dataset>-<time>)")
    g.add_argument("--results-dir", default=S, help="parent of run directories (default: results)")
    g.add_argument("--storage", default=S, metavar="URL", help="Optuna storage URL, e.g. "
                   "postgresql://user@host/db (default: sqlite study.db in the run directory)")
    g.add_argument("--keep-checkpoints", choices=("all", "pareto", "none"), default=S,
                   help="trained weights to keep at the end (default: pareto)")
    g.add_argument("--dashboard-every", type=int, default=S, metavar="N",
                   help="rewrite dashboard.html every N finished trials (default: 5)")
    g.add_argument("--dry-run", action="store_true", default=S,
                   help="print the cost estimate and exit: no run directory, study or trial "
                   "is created (trials: a timed training step of a sampled architecture, trials "
                   "the budget buys, wall time; oneshot: timed sandwich steps and subnet "
                   "evaluations, supernet epochs and subnets the budget buys, retraining)")
    g.add_argument("--progress-every", dest="progress_every_s", type=float, default=S,
                   metavar="SECONDS", help="seconds between a trial's progress lines (batches, "
                   "images/s, epoch ETA) in logs/search.log and, with -v, on the console "
                   "(default: 10; 0: after every batch)")
    g.add_argument("-v", "--verbose", action="count", default=S,
                   help="more output (-v: per-epoch lines and worker logs; -vv: Ray's own)")

    g = p.add_argument_group("what to search")
    g.add_argument("--space", default=S, help="search space name or YAML path (default: stagewise)")
    g.add_argument("--space-option", dest="space_options", type=_kv, action="append", default=S,
                   metavar="KEY=VALUE", help="option for hybridnas.spaces.load, e.g. "
                   "width_mult=0.25 (repeatable)")
    g.add_argument("--dataset", default=S, help="dataset name (default: fashion-mnist)")
    g.add_argument("--data-dir", default=S, help="where the dataset's files are")
    g.add_argument("--dataset-fallback", default=S, metavar="NAME",
                   help="dataset to use (with a message) when --dataset's files are missing")
    g.add_argument("--resolution", type=int, default=S, help="input resolution of the proxy "
                   "(default: the dataset's own)")
    g.add_argument("--subset", type=int, default=S, metavar="N",
                   help="train on the first N training images of a fixed shuffle")
    g.add_argument("--val-fraction", type=float, default=S,
                   help="part of the training set held out for validation (default: 0.1)")
    g.add_argument("--with-references", action="store_true", default=S,
                   help="first evaluate the named architectures the space contains "
                   "(scaled to the proxy), marked in the 'reference' column")

    g = p.add_argument_group("proxy training (per trial)")
    g.add_argument("--epochs", type=int, default=S, help="epochs of a fully trained trial (default: 3)")
    g.add_argument("--batch-size", type=int, default=S, help="(default: 128)")
    g.add_argument("--lr", type=float, default=S, help="peak learning rate (default: 2e-3)")
    g.add_argument("--weight-decay", type=float, default=S, help="(default: 0.05)")
    g.add_argument("--warmup-epochs", type=int, default=S, help="(default: 1)")
    g.add_argument("--label-smoothing", type=float, default=S, help="(default: 0.1)")
    g.add_argument("--grad-clip", type=float, default=S, metavar="NORM",
                   help="clip the gradient norm at NORM, 0 for none (default: 1)")
    g.add_argument("--max-batches-per-epoch", type=int, default=S, help="cap batches per epoch")
    g.add_argument("--max-val-batches", type=int, default=S, help="validate on the first N "
                   "batches of the validation split (the same images for every trial)")
    g.add_argument("--amp", action="store_true", default=S, help="mixed precision on GPU")

    g = p.add_argument_group("objectives and strategy")
    g.add_argument("--objectives", default=S, metavar="LIST",
                   help="objectives besides the validation metric (maximised): comma list of "
                   "latency, params, macs (default: latency)")
    g.add_argument("--sampler", choices=("nsga2", "tpe", "random"), default=S,
                   help="Optuna sampler (default: nsga2)")
    g.add_argument("--population-size", type=int, default=S,
                   help="NSGA-II population / TPE start-up trials (default: 10)")
    g.add_argument("--scheduler", choices=("moasha", "asha", "none"), default=S,
                   help="early stopping: moasha promotes at each rung by non-dominated sorting of "
                        "(metric, latency) with a crowding tie-break; asha on the metric alone "
                        "(default: moasha)")
    g.add_argument("--asha-grace-epochs", type=int, default=S, help="(default: 1)")
    g.add_argument("--asha-reduction-factor", type=int, default=S, help="(default: 2)")
    g.add_argument("--seed", type=int, default=S, help="(default: 0)")

    g = p.add_argument_group("one-shot search (--strategy oneshot)")
    g.add_argument("--strategy", choices=("trials", "oneshot"), default=S,
                   help="trials: train every architecture (default); oneshot: train one "
                   "weight-sharing supernet, rank subnets with its weights, retrain the best")
    g.add_argument("--supernet-epochs", type=int, default=S, help="(default: 10)")
    g.add_argument("--sandwich-random", type=int, default=S, metavar="N",
                   help="random subnets per step besides largest and smallest (default: 2)")
    g.add_argument("--sandwich-stage-distill", type=float, default=S, metavar="W",
                   help="weight of stage-wise distillation: the other subnets' stem and stage "
                   "outputs pulled towards the largest's (default: 0, off; see README)")
    g.add_argument("--supernet-workers", type=int, default=S, metavar="N",
                   help="data-parallel Ray Train workers, one per GPU (default: 1, in-process)")
    g.add_argument("--retrain-top", type=int, default=S, metavar="K",
                   help="retrain the best K subnets of the front standalone (default: 3)")
    g.add_argument("--retrain-epochs", type=int, default=S, metavar="E", help="(default: 3)")

    g = p.add_argument_group("budget (no new trial starts once one is reached)")
    g.add_argument("--budget-gpu-hours", type=float, default=S, metavar="H",
                   help="accelerator-hours x accelerators per trial, latency measurement "
                   "included; without a GPU it counts CPU device-hours (and says so)")
    g.add_argument("--budget-trials", type=int, default=S, metavar="N", help="at most N trials")
    g.add_argument("--time-limit", default=S, metavar="T", help="wall clock: seconds or 10m/1h; "
                   "running trials are stopped at the limit")

    g = p.add_argument_group("resources and cluster")
    g.add_argument("--cpus-per-trial", type=float, default=S, help="(default: 1)")
    g.add_argument("--gpus-per-trial", type=float, default=S,
                   help="0.5 packs two trials per GPU (default: 1 with a GPU, else 0)")
    g.add_argument("--max-concurrent", type=int, default=S,
                   help="trials at once (default: what the resources allow)")
    g.add_argument("--threads-per-trial", type=int, default=S,
                   help="torch threads in a trial (default: cpus per trial)")
    g.add_argument("--address", default=S, help="join a Ray cluster: auto or HOST:PORT "
                   "(default: start Ray locally)")

    g = p.add_argument_group("latency")
    g.add_argument("--latency-device", default=S, help="cpu or cuda (default: the trial's device)")
    g.add_argument("--latency-batch-size", type=int, default=S, help="(default: 1)")
    g.add_argument("--latency-repeats", type=int, default=S, help="timed calls (default: 20)")
    g.add_argument("--latency-threads", type=int, default=S, help="CPU threads (default: 1)")
    g.add_argument("--latency-table", default=S, metavar="JSON",
                   help="calibrated latency table (hybridnas latency calibrate): fills "
                   "predicted_latency_ms")
    g.add_argument("--max-latency-ms", type=float, default=S, metavar="MS",
                   help="latency limit: with --latency-table, architectures predicted slower are "
                   "REJECTED before training; trials measured slower stay in the table but "
                   "never enter the Pareto front")
    g.add_argument("--inject-failure", type=int, action="append", default=S, metavar="TRIAL",
                   help=argparse.SUPPRESS)  # tests: make this trial raise during training


def options_from_args(args: argparse.Namespace) -> tuple[dict, str | None, str | None]:
    """(explicit option overrides, --config path, --resume path)."""
    skip = {"command", "func", "config", "resume", "hooks", "run_search", "dry_run"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    if "space_options" in overrides:
        overrides["space_options"] = dict(overrides["space_options"])
    return overrides, getattr(args, "config", None), getattr(args, "resume", None)


def _read_config_file(path: str) -> dict:
    from .._io import parse_yaml, read_text

    data = parse_yaml(read_text(path), f"--config {path}") or {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of options, got {type(data).__name__}")
    return data


def _run(args: argparse.Namespace) -> int:
    from .config import SearchConfig
    from .runner import run_search

    overrides, config_path, resume = options_from_args(args)
    hooks = getattr(args, "hooks", None)  # checkpoints and dashboard, from hybridnas.cli
    dry_run = bool(getattr(args, "dry_run", False))
    # the app layer picks the strategy (search must not import the supernet)
    run_search = getattr(args, "run_search", None) or run_search
    if resume:
        if config_path:
            raise UserError("--resume takes the run's own config.yaml; drop --config")
        result = run_search(resume=resume, overrides=overrides, hooks=hooks, dry_run=dry_run)
    else:
        base = _read_config_file(config_path) if config_path else {}
        cfg = SearchConfig.from_mapping(base, source=config_path or "defaults").merged(overrides)
        result = run_search(cfg, hooks=hooks, dry_run=dry_run)
    return 130 if result.interrupted else 0


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="search a space: Ray Tune trials, Optuna multi-objective, budget",
        description="Multi-objective architecture search: maximise the validation metric, "
                    "minimise latency (and params/MACs). Writes results/<name>/ with config.yaml, "
                    "study.db, trials.parquet/csv, pareto.csv, summary.json, checkpoints/, logs/.",
        epilog="example: hybridnas search --config configs/quickstart.yaml",
    )
    add_arguments(p)
    p.set_defaults(func=_run)
