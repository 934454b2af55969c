"""Search engine benchmark, printed side by side in one run on one tiny task
(the stagewise space at 16x16 on scikit-learn's digits, narrow proxy):

(a) orchestration overhead = search wall time (Tune's fit: proposals,
    scheduling, the trial actor's start, bookkeeping) / sum of in-trial
    training + validation time, one trial at a time with actor reuse (target
    <= 1.10). In-trial time is counted two ways: training + validation only
    (``train_seconds``: without building, latency measurement or time a
    report waits for the driver), and everything the trial does on its
    device. Runs of two lengths on the same task split the overhead into a
    fixed start cost F (Ray starting the trial actor and the worker importing
    torch, once per run) and a cost per trial g (between-trial bookkeeping,
    build, latency): wall = train + F + n*g.
(b) hypervolume (val_accuracy up, latency down) of the front found by the
    default sampler (NSGA-II) vs. random sampling at the same trial budget,
    over several seeds, against one reference point shared by all runs.

    .venv/bin/python benchmarks/bench_search.py            # ~6-9 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_search.py --quick    # fewer trials and seeds
    .venv/bin/python benchmarks/bench_search.py --only overhead   # (a) alone, ~2-3 min
"""
from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import time

TASK = dict(space="stagewise", space_options={"width_mult": 0.125, "depth_mult": 0.25},
            dataset="digits", resolution=16, subset=600, batch_size=64, lr=3e-3,
            latency_repeats=10, dashboard_every=1000, keep_checkpoints="none", scheduler="none")


def _run(results, name, **kw):
    from hybridnas import run_search
    from hybridnas.search import SearchConfig

    cfg = SearchConfig(**{**TASK, **kw}, name=name, results_dir=results)
    t0 = time.perf_counter()
    res = run_search(cfg, stream=io.StringIO())
    return res, time.perf_counter() - t0


def overhead(results, trials: int, name: str = "overhead") -> dict:
    import optuna

    # All ~1600 training digits x 3 epochs per trial (~3-10 s each here).
    res, total_wall = _run(results, name, epochs=3, budget_trials=trials, max_concurrent=1,
                           seed=0, subset=None)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{res.run_dir / 'study.db'}")
    ran = [t for t in study.trials if "train_seconds" in t.user_attrs]
    failed = [t.number for t in ran if t.user_attrs.get("status") == "FAILED"]
    if failed:  # a trial that failed early would make the overhead look larger
        print(f"warning: {len(failed)} trial(s) failed in run {name}: {failed}", file=sys.stderr)
    train = sum(float(t.user_attrs["train_seconds"]) for t in ran)
    device = sum(float(t.user_attrs["device_seconds"]) for t in ran)
    tune_wall = res.summary["tune_wall_s"]
    return {"trials": len(ran), "tune_wall_s": tune_wall, "command_wall_s": total_wall,
            "train_eval_s": train, "in_trial_s": device,
            "ratio_train": tune_wall / train, "ratio_trial": tune_wall / device,
            "ratio_command": total_wall / device}


def split_overhead(short: dict, long: dict) -> dict:
    """Fixed start cost F and per-trial cost g from two run lengths:
    overhead = wall - train = F + n*g (the seed is the same, so the short
    run's trials are the long run's first ones)."""
    o_s = short["tune_wall_s"] - short["train_eval_s"]
    o_l = long["tune_wall_s"] - long["train_eval_s"]
    g = (o_l - o_s) / (long["trials"] - short["trials"])
    f = o_l - long["trials"] * g
    mean_trial = long["train_eval_s"] / long["trials"]
    # trials of this mean length a run needs for wall/train+eval <= 1.10
    need = f / (0.10 * mean_trial - g) if 0.10 * mean_trial > g else float("inf")
    return {"fixed_s": f, "per_trial_s": g, "mean_trial_s": mean_trial,
            "per_trial_ratio": g / mean_trial, "trials_for_target": need}


def hypervolumes(results, seeds, trials: int) -> dict:
    import numpy as np

    import hybridnas
    from hybridnas.pareto import default_reference, hypervolume
    from hybridnas.rundir import front_of

    fronts: dict[str, list] = {"nsga2": [], "random": []}
    for seed in seeds:
        for sampler in fronts:
            res, _ = _run(results, f"hv-{sampler}-{seed}", sampler=sampler, seed=seed, epochs=2,
                          budget_trials=trials, population_size=6, max_concurrent=2)
            df = hybridnas.load_run(res.run_dir)
            front = front_of(df, ["metric", "latency_ms"], [True, False])
            fronts[sampler].append(front[["metric", "latency_ms"]].to_numpy(dtype=float))
    every = np.concatenate([f for fs in fronts.values() for f in fs if len(f)])
    ref = default_reference(every, [True, False])
    hv = {s: [hypervolume(f, [True, False], ref) if len(f) else 0.0 for f in fs]
          for s, fs in fronts.items()}
    return {"reference": ref.tolist(), "hv": hv}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer trials and seeds")
    p.add_argument("--only", choices=["overhead", "hypervolume"], help="run one part")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _temp_dir="/tmp/rt_bench_search")
    try:
        with tempfile.TemporaryDirectory(prefix="bench_search_") as results:
            o = h = None
            if args.only != "hypervolume":
                lengths = (3, 8) if args.quick else (4, 16)
                o = [overhead(results, trials=n, name=f"overhead-{n}") for n in lengths]
            seeds = [0, 1] if args.quick else [0, 1, 2]
            if args.only != "overhead":
                h = hypervolumes(results, seeds, trials=8 if args.quick else 14)
    finally:
        ray.shutdown()

    if o is not None:
        _print_overhead(o)
    if h is not None:
        _print_hypervolumes(h, seeds)
    return 0


def _print_overhead(runs: list[dict]) -> None:
    print("\n== (a) orchestration overhead: one trial at a time, actor reuse, 3 epochs a trial ==")
    print(f"{'trials':>6} {'Tune wall (s)':>14} {'train+eval (s)':>15} {'in-trial (s)':>13} "
          f"{'wall/train+eval':>16} {'wall/in-trial':>14} {'command/in-trial':>17}")
    for o in runs:
        print(f"{o['trials']:>6} {o['tune_wall_s']:14.1f} {o['train_eval_s']:15.1f} "
              f"{o['in_trial_s']:13.1f} {o['ratio_train']:16.3f} {o['ratio_trial']:14.3f} "
              f"{o['ratio_command']:17.3f}   (target <= 1.10)")
    s = split_overhead(runs[0], runs[-1])
    need = s["trials_for_target"]
    reach = (f"reaches wall/train+eval <= 1.10 from {math.ceil(need)} trials"
             if math.isfinite(need) and need > 0 else "never reaches wall/train+eval <= 1.10")
    print(f"overhead split: fixed start F = {s['fixed_s']:.2f} s per run, "
          f"g = {s['per_trial_s']:.3f} s per trial = {100 * s['per_trial_ratio']:.1f} % of a "
          f"{s['mean_trial_s']:.2f} s trial; a run of such trials {reach}")


def _print_hypervolumes(h: dict, seeds) -> None:
    print(f"\n== (b) hypervolume of the front, same trial budget, reference {h['reference']} ==")
    print(f"{'seed':>6} {'nsga2 (default)':>16} {'random':>10} {'ratio':>7}")
    for i, seed in enumerate(seeds):
        a, b = h["hv"]["nsga2"][i], h["hv"]["random"][i]
        print(f"{seed:>6} {a:16.4g} {b:10.4g} {a / b if b else float('nan'):7.3f}")
    ma, mb = statistics.mean(h["hv"]["nsga2"]), statistics.mean(h["hv"]["random"])
    print(f"{'mean':>6} {ma:16.4g} {mb:10.4g} {ma / mb if mb else float('nan'):7.3f}")


if __name__ == "__main__":
    sys.exit(main())
