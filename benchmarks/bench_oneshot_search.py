"""Search at equal budget (issue #12 (b)): oneshot vs multi-trial NSGA-II vs
multi-trial random, side by side in one run.

For every seed, the three strategies search the same space on the same data
(the seed picks the split and the training subset, the same for all three)
with the same device budget (``budget_gpu_hours``; CPU device-hours without
a GPU), through ``hybridnas.run_search`` as the CLI does. Every device-second
is one CPU thread here: multi-trial runs two 1-thread trials at a time, the
one-shot search runs in this process at 1 thread.

Then every run's found front (metric vs measured latency: ``load_run`` and
the run's front rule) is judged the same way: at most ``--front-k`` members,
chosen evenly along the front by latency, are retrained standalone with one
fixed schedule (``build_model`` + ``hybridnas.training.fit`` on a fixed
training subset, seed 0; not counted in any search budget) and scored on the
dataset's test split, which no search sees; the judge also measures each
member's latency once (``hybridnas.latency.measure``, 1 thread, thread CPU
time on a CPU), since the runs' own wall-clock figures of one architecture
differ with the machine's load. The
hypervolume of (test accuracy up, judged latency down) of each run is
computed against one reference point shared by all runs
(``hybridnas.pareto``). Judged accuracies and latencies are cached by
arch_id in a JSON file under results/, so reruns only retrain architectures
they have not seen.

The one-shot search needs a supernet epoch count that fits its budget: a
pilot epoch (one supernet built and trained for one epoch at 1 thread, not
counted) sets ``supernet_epochs`` to ``--supernet-share`` of the budget
(cached in the same JSON file); ``--supernet-epochs N`` skips the pilot.

    python benchmarks/bench_oneshot_search.py            # 3 seeds x 3 strategies, 3 device-min
                                                         # each: ~30-35 min on 2 idle CPU cores
    python benchmarks/bench_oneshot_search.py --quick    # 1 seed, 1 device-min each: ~5-6 min
    python benchmarks/bench_oneshot_search.py --resume-from results/bench_oneshot_search.csv

The raw table (one row per retrained front member, or one per run with an
empty front) is written to ``--out`` after every run; ``--resume-from`` skips
the (seed, strategy) runs it holds.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

STRATEGIES = ("oneshot", "nsga2", "random")
#: The task every strategy searches (the space's options and the data come
#: from the flags; these are the proxy and measurement settings).
TASK = dict(space_options={"width_mult": 0.125, "depth_mult": 0.25}, batch_size=64, lr=3e-3,
            max_val_batches=4, latency_repeats=10, latency_threads=1, dashboard_every=1000,
            keep_checkpoints="none")
#: Multi-trial: every trial trains fully (a short run has few trials; MOASHA
#: would leave most off the front), two 1-thread trials at a time.
TRIALS = dict(strategy="trials", epochs=2, scheduler="none", population_size=6,
              cpus_per_trial=1.0, threads_per_trial=1, max_concurrent=2)
#: One-shot: ranking runs until the budget is spent; the benchmark retrains.
ONESHOT = dict(strategy="oneshot", sampler="nsga2", population_size=12, sandwich_random=2,
               retrain_top=0, budget_trials=100_000)

#: The judge's latency clock (``hybridnas.latency.measure``): thread CPU
#: time on a CPU, so a loaded machine does not reorder architectures.
LATENCY_CLOCK = "auto"

CSV_FIELDS = ["seed", "strategy", "run_dir", "budget_minutes", "supernet_epochs", "wall_s",
              "device_s", "evaluated", "front_size", "trial_id", "arch_id", "search_metric",
              "latency_ms", "judge_latency_ms", "test_accuracy", "retrain_s"]


def _print(line: str) -> None:
    print(line, flush=True)


# ---- searches -------------------------------------------------------------
def search_config(args, strategy: str, seed: int, supernet_epochs: int | None, name: str):
    from hybridnas.search import SearchConfig

    kw = {**TASK, "space": args.space, "dataset": args.dataset, "resolution": args.resolution,
          "subset": args.subset, "seed": seed, "budget_gpu_hours": args.budget_minutes / 60.0,
          # a safety net only: the device budget ends every run long before
          "time_limit": max(600.0, 8 * 60 * args.budget_minutes),
          "name": name, "results_dir": str(args.runs_dir)}
    if strategy == "oneshot":
        kw.update(ONESHOT, supernet_epochs=int(supernet_epochs or 1))
    else:
        kw.update(TRIALS, sampler=strategy)
    return SearchConfig(**kw)


def run_one(args, strategy: str, seed: int, supernet_epochs: int | None) -> tuple[Path, float]:
    """Run (or continue, if its folder is there from an interrupted call) one
    search; returns its run directory and the wall time of this call."""
    import torch

    from hybridnas import run_search

    name = f"{args.tag}-{strategy}-s{seed}"
    cfg = search_config(args, strategy, seed, supernet_epochs, name)
    path = Path(cfg.results_dir) / name
    log = io.StringIO()
    torch.set_num_threads(1)  # the one-shot search runs here: one device = one thread
    t0 = time.perf_counter()
    try:
        if path.exists():
            _print(f"[bench] continuing the run {path} (an earlier call's; --resume)")
            res = run_search(resume=str(path), stream=log)
        else:
            res = run_search(cfg, stream=log)
    except Exception:
        sys.stderr.write(log.getvalue()[-4000:])
        raise
    return res.run_dir, time.perf_counter() - t0


def front_members(run_dir: Path, k: int):
    """The run's front (metric up, measured latency down, its own front rule
    and limits), at most ``k`` members chosen evenly along it by latency;
    also its summary (device seconds, evaluated architectures)."""
    import numpy as np

    from hybridnas import load_run
    from hybridnas.rundir import RunDir, front_limits, front_of

    run = RunDir(run_dir)
    df = load_run(run_dir)
    front = front_of(df, ["metric", "latency_ms"], [True, False], front_limits(run.read_config()))
    front = front.sort_values("latency_ms")
    if len(front) > k:
        picks = np.unique(np.round(np.linspace(0, len(front) - 1, k)).astype(int))
        chosen = front.iloc[picks]
    else:
        chosen = front
    summary = run.read_summary()
    info = {"device_s": float(summary.get("budget", {}).get("spent_device_seconds") or 0.0),
            "evaluated": int(summary.get("trials", {}).get("COMPLETE", 0)),
            "front_size": int(len(front))}
    return chosen, info


# ---- the shared judge: standalone retraining -------------------------------
class Judge:
    """Retrains architectures with one fixed schedule and scores them on the
    test split; results cached by arch_id under a key naming the schedule."""

    def __init__(self, args):
        from hybridnas.data import load_dataset

        self.args = args
        self.bundle = load_dataset(args.dataset, resolution=args.resolution,
                                   subset=args.retrain_subset, seed=0)
        if self.bundle.test is None:
            raise SystemExit(f"dataset {args.dataset!r} has no test split to score on")
        self.test_batches = max(1, math.ceil(min(args.test_images, len(self.bundle.test)) / 256))
        self.key = (f"{args.dataset}|{args.resolution}px|{args.space}|"
                    f"subset{args.retrain_subset}|ep{args.retrain_epochs}|bs{TASK['batch_size']}|"
                    f"lr{TASK['lr']}|test{self.test_batches * 256}")
        self.path = args.cache
        self.cache = json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def score(self, arch_id: str, spec_json: str) -> dict:
        """Test accuracy after the fixed schedule, retraining seconds and the
        judge's own latency measurement of one architecture (``cached``: all
        of it came from the cache)."""
        import torch

        from hybridnas.builder import build_model
        from hybridnas.latency import measure
        from hybridnas.spec import ArchSpec
        from hybridnas.training import evaluate, fit

        entry = dict(self.cache.get(self.key, {}).get(arch_id) or {})
        cached = bool(entry)
        spec = ArchSpec.from_json(spec_json)
        shape = dict(num_classes=int(self.bundle.num_outputs),
                     in_chans=int(self.bundle.input_shape[0]))
        if "test_accuracy" not in entry:
            torch.set_num_threads(self.args.retrain_threads)
            torch.manual_seed(0)
            model = build_model(spec, **shape)
            t0 = time.perf_counter()
            fit(model, self.bundle, epochs=self.args.retrain_epochs,
                batch_size=TASK["batch_size"], lr=TASK["lr"], device="auto", max_val_batches=1,
                seed=0)
            metrics = evaluate(model, self.bundle.test, self.bundle.task,
                               device=next(model.parameters()).device, batch_size=256,
                               max_batches=self.test_batches, prefix="test_")
            entry.update(test_accuracy=float(metrics["test_accuracy"]),
                         seconds=time.perf_counter() - t0)
        if "latency_ms" not in entry or entry.get("latency_clock") != LATENCY_CLOCK:
            # one measurement per architecture for every run that found it
            # (the runs' own wall-clock figures of one architecture differ
            # with the machine's load); "auto": thread CPU time on a CPU
            cached = False
            lat = measure(spec, device="cuda" if torch.cuda.is_available() else "cpu",
                          resolution=self.args.resolution, threads=1, clock=LATENCY_CLOCK,
                          repeats=self.args.judge_latency_repeats, **shape)
            entry.update(latency_ms=float(lat.median_ms), latency_clock=LATENCY_CLOCK)
        self.cache.setdefault(self.key, {})[arch_id] = entry
        self._save()
        return {**entry, "cached": cached}


# ---- the pilot: how many supernet epochs fit the budget -----------------------
def supernet_epochs(args, judge: Judge) -> int:
    if args.supernet_epochs:
        return args.supernet_epochs
    key = (f"pilot|{args.dataset}|{args.resolution}px|{args.space}|subset{args.subset}|"
           f"bs{TASK['batch_size']}")
    cached = judge.cache.get(key)
    if cached is None:
        import torch

        from hybridnas import spaces
        from hybridnas.data import load_dataset
        from hybridnas.supernet import Supernet
        from hybridnas.supernet.train import SandwichSettings, train_supernet

        torch.set_num_threads(1)
        bundle = load_dataset(args.dataset, resolution=args.resolution, subset=args.subset, seed=0)
        space = spaces.load(args.space, resolution=args.resolution, **TASK["space_options"])
        t0 = time.perf_counter()
        net = Supernet(space, num_classes=int(bundle.num_outputs),
                       in_chans=int(bundle.input_shape[0]), seed=0)
        build_s = time.perf_counter() - t0
        settings = SandwichSettings(epochs=1, batch_size=TASK["batch_size"], lr=TASK["lr"],
                                    random_subnets=ONESHOT["sandwich_random"],
                                    max_val_batches=TASK["max_val_batches"], quiet=True)
        t0 = time.perf_counter()
        train_supernet(net, bundle, settings, None, device="cpu", log=None)
        cached = {"epoch_s": time.perf_counter() - t0, "build_s": build_s}
        judge.cache[key] = cached
        judge._save()
        how = "measured"
    else:
        how = "cached"
    epochs = max(1, int(args.supernet_share * args.budget_minutes * 60 // cached["epoch_s"]))
    _print(f"[bench] pilot ({how}): supernet build {cached['build_s']:.0f} s, one epoch "
           f"{cached['epoch_s']:.1f} s at 1 thread -> supernet_epochs {epochs} "
           f"(~{args.supernet_share:.0%} of {args.budget_minutes:g} device-min)")
    return epochs


# ---- the table ------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def hypervolumes(rows: list[dict], seeds, strategies) -> tuple[dict, list[float]]:
    """Per (strategy, seed) hypervolume of (test accuracy up, latency down)
    against one reference point from every retrained member of every run."""
    import numpy as np

    from hybridnas.pareto import default_reference, hypervolume

    maximize = [True, False]
    pts: dict[tuple[str, int], np.ndarray] = {}
    for s in strategies:
        for seed in seeds:
            got = [(_f(r["test_accuracy"]), _f(r.get("judge_latency_ms"))) for r in rows
                   if r["strategy"] == s and int(r["seed"]) == seed]
            got = [p for p in got if all(math.isfinite(x) for x in p)]
            pts[(s, seed)] = np.array(got, dtype=float).reshape(-1, 2)
    every = np.concatenate([p for p in pts.values() if len(p)] or [np.zeros((0, 2))])
    if not len(every):
        return {k: 0.0 for k in pts}, [math.nan, math.nan]
    ref = default_reference(every, maximize)
    return ({k: hypervolume(p, maximize, ref) if len(p) else 0.0 for k, p in pts.items()},
            [float(x) for x in ref])


def report(rows: list[dict], seeds, strategies) -> None:
    hv, ref = hypervolumes(rows, seeds, strategies)
    runs = {(r["strategy"], int(r["seed"])): r for r in rows}
    _print(f"\n== per run (budget {rows[0]['budget_minutes']} device-min each) ==")
    _print(f"{'seed':>4} {'strategy':>8} {'wall s':>7} {'device s':>8} {'evaluated':>9} "
           f"{'front':>5} {'judged':>6} {'hypervolume':>11}")
    for seed in seeds:
        for s in strategies:
            r = runs.get((s, seed))
            if r is None:
                continue
            judged = sum(1 for x in rows if x["strategy"] == s and int(x["seed"]) == seed
                         and x["arch_id"])
            _print(f"{seed:>4} {s:>8} {_f(r['wall_s']):7.0f} {_f(r['device_s']):8.0f} "
                   f"{r['evaluated']:>9} {r['front_size']:>5} {judged:>6} {hv[(s, seed)]:11.4g}")
    _print(f"\n== hypervolume of the retrained fronts (test accuracy up, judged latency ms "
           f"down), reference {[round(x, 4) for x in ref]} ==")
    _print(f"{'seed':>4} " + " ".join(f"{s:>10}" for s in strategies))
    for seed in seeds:
        _print(f"{seed:>4} " + " ".join(f"{hv[(s, seed)]:10.4g}" for s in strategies))
    mean = {s: statistics.mean(hv[(s, seed)] for seed in seeds) for s in strategies}
    std = {s: statistics.stdev(hv[(s, seed)] for seed in seeds) if len(seeds) > 1 else 0.0
           for s in strategies}
    _print("mean " + " ".join(f"{mean[s]:10.4g}" for s in strategies))
    _print(" std " + " ".join(f"{std[s]:10.4g}" for s in strategies))
    for other in ("nsga2", "random"):
        if "oneshot" in strategies and other in strategies:
            ratio = mean["oneshot"] / mean[other] if mean[other] else math.nan
            aim = " (issue #12 aims >= 1.1)" if other == "nsga2" else ""
            _print(f"oneshot / {other} mean hypervolume: {ratio:.3f}{aim}")


# ---- main -----------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="device-minutes per search (default 3; quick 1)")
    p.add_argument("--space", default="stagewise")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--subset", type=int, default=600, help="training images of every search")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--front-k", type=int, default=None, help="front members judged (default 5; quick 3)")
    p.add_argument("--retrain-epochs", type=int, default=3)
    p.add_argument("--retrain-subset", type=int, default=1000, help="training images of the judge")
    p.add_argument("--retrain-threads", type=int, default=2)
    p.add_argument("--test-images", type=int, default=2048)
    p.add_argument("--judge-latency-repeats", type=int, default=30)
    p.add_argument("--supernet-epochs", type=int, default=None, help="skip the pilot")
    p.add_argument("--supernet-share", type=float, default=0.6,
                   help="share of the budget the pilot gives supernet training")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="results/bench_oneshot_search.csv")
    p.add_argument("--resume-from", default=None, help="a CSV of an earlier call: skip its runs")
    p.add_argument("--cache", default="results/bench_oneshot_search_cache.json")
    args = p.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.budget_minutes = args.budget_minutes or (1.0 if args.quick else 3.0)
    args.front_k = args.front_k or (3 if args.quick else 5)
    args.out, args.cache = Path(args.out), Path(args.cache)
    args.runs_dir = args.out.parent / "bench_oneshot_search"
    args.tag = f"{args.out.stem}-b{args.budget_minutes:g}m"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")

    rows: list[dict] = []
    if args.resume_from:
        rows = read_rows(Path(args.resume_from))
        budgets = {_f(r["budget_minutes"]) for r in rows}
        if budgets and budgets != {args.budget_minutes}:
            raise SystemExit(f"--resume-from {args.resume_from}: its runs had budget "
                             f"{sorted(budgets)} device-min, not {args.budget_minutes:g}")
    done = {(r["strategy"], int(r["seed"])) for r in rows}
    _print(f"[bench] {args.space} (width x0.125, depth x0.25) at {args.resolution}px on "
           f"{args.dataset} ({args.subset} training images per search), seeds {args.seeds}, "
           f"{args.budget_minutes:g} device-min per search; judge: {args.front_k} front members "
           f"retrained {args.retrain_epochs} epochs on {args.retrain_subset} images, scored on "
           f"up to {args.test_images} test images")
    t_start = time.perf_counter()
    judge = Judge(args)
    epochs = None
    if "oneshot" in args.strategies and any(("oneshot", s) not in done for s in args.seeds):
        epochs = supernet_epochs(args, judge)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        for seed in args.seeds:
            for strategy in args.strategies:
                if (strategy, seed) in done:
                    _print(f"[bench] seed {seed} {strategy}: in {args.resume_from}, skipped")
                    continue
                run_dir, wall = run_one(args, strategy, seed, epochs)
                chosen, info = front_members(run_dir, args.front_k)
                _print(f"[bench] seed {seed} {strategy}: searched in {wall:.0f} s wall, "
                       f"{info['device_s']:.0f} device-s, {info['evaluated']} architectures "
                       f"evaluated, front {info['front_size']} -> judging {len(chosen)} "
                       f"({run_dir})")
                base = dict(seed=seed, strategy=strategy, run_dir=str(run_dir),
                            budget_minutes=args.budget_minutes,
                            supernet_epochs=epochs if strategy == "oneshot" else "",
                            wall_s=round(wall, 1), **info)
                new = []
                for _, m in chosen.iterrows():
                    j = judge.score(str(m["arch_id"]), str(m["spec"]))
                    how = "cached" if j["cached"] else f"{j['seconds']:.0f} s"
                    _print(f"[bench]   retrained {m['arch_id']} (trial {int(m['trial_id'])}): "
                           f"search metric {float(m['metric']):.4f}, latency "
                           f"{float(m['latency_ms']):.3f} ms in the run, "
                           f"{j['latency_ms']:.3f} ms judged -> test accuracy "
                           f"{j['test_accuracy']:.4f} "
                           f"({how})")
                    new.append({**base, "trial_id": int(m["trial_id"]), "arch_id": m["arch_id"],
                                "search_metric": float(m["metric"]),
                                "latency_ms": float(m["latency_ms"]),
                                "judge_latency_ms": j["latency_ms"],
                                "test_accuracy": j["test_accuracy"],
                                "retrain_s": round(j["seconds"], 1)})
                rows += new or [{**base, **{k: "" for k in CSV_FIELDS if k not in base}}]
                write_rows(args.out, rows)
    finally:
        ray.shutdown()
    seeds = sorted({int(r["seed"]) for r in rows})
    strategies = [s for s in STRATEGIES if any(r["strategy"] == s for r in rows)]
    report(rows, seeds, strategies)
    _print(f"\n[bench] raw table: {args.out}; wall {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
