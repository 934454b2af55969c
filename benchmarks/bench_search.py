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
(b) search quality at equal device budget: every sampler (NSGA-II, TPE,
    random) x scheduler (none, ASHA, MOASHA) pair searches with the same
    ``budget_gpu_hours`` (CPU device-hours without a GPU) on each seed. The
    seed also picks the data subset and validation split, so configurations
    are compared seed by seed. Printed per configuration: mean +- std
    hypervolume of the found front (val accuracy up, measured latency down)
    against one reference point shared by all runs, on how many seeds it
    beats random + none, NSGA-II + MOASHA / random + none (the issue's aim:
    >= 1.15 and better on >= 4 of 5 seeds), and on how many seeds the found
    front dominates each named reference architecture of the space
    (``with_references``), trained once per seed through the same proxy.
    Each finished run is appended to a CSV (``--out``) at once and a
    progress line printed; ``--resume-from`` skips the runs a CSV holds.

    .venv/bin/python benchmarks/bench_search.py            # (a) then the full (b) grid
    .venv/bin/python benchmarks/bench_search.py --only hypervolume   # (b) alone: 9 x 5 searches
    .venv/bin/python benchmarks/bench_search.py --quick    # smoke test of both parts
    .venv/bin/python benchmarks/bench_search.py --only overhead   # (a) alone, ~2-3 min

Sizing (2 CPU cores): a search's wall time is ~20-26 s (the trial actor's
start, the first trial running alone until a cost estimate exists, the last
trial's tail) plus its device budget / 2 (two trials at once), whatever the
load: a loaded machine buys fewer trials with the same budget, not a longer
run. At the default 1 device-minute a search takes ~45-52 s, a seed's
reference run ~25-37 s, so the default (b) grid (45 searches, 5 reference
runs) takes ~40-42 min; --quick ~4 min ((b) alone 2-3.5 min by load).
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


# ---------------------------------------------------------------------------
# (b) search quality: samplers x schedulers at one device budget, over seeds

#: The proxy every (b) search and the references train with. 4 epochs with
#: rungs at 1 and 2 epochs (grace 1, reduction 2), so ASHA and MOASHA stop
#: trials after 1 or 2 of the 4 epochs and spend the budget on more trials.
PROXY = dict(epochs=4, asha_grace_epochs=1, asha_reduction_factor=2, population_size=6,
             max_concurrent=2)
#: Objectives of the front: validation accuracy up, measured latency down.
COLUMNS, MAXIMIZE = ("metric", "latency_ms"), (True, False)
BASELINE = ("random", "none")
HEADLINE = ("nsga2", "moasha")
CSV_FIELDS = ("kind", "sampler", "scheduler", "seed", "budget_minutes", "epochs", "trials",
              "early_stopped", "rejected", "failed", "device_s", "wall_s", "points")


def search_row(results, sampler: str, scheduler: str, seed: int, budget_minutes: float) -> dict:
    """One search at ``budget_minutes`` device-minutes (``budget_gpu_hours``:
    CPU device-hours without a GPU); its found front as ``points``."""
    import hybridnas
    from hybridnas.rundir import front_of

    res, wall = _run(results, f"q-{sampler}-{scheduler}-{seed}", sampler=sampler,
                     scheduler=scheduler, seed=seed, budget_gpu_hours=budget_minutes / 60.0,
                     **PROXY)
    df = hybridnas.load_run(res.run_dir)
    front = front_of(df, list(COLUMNS), list(MAXIMIZE))
    return {**_counts(df), "kind": "search", "sampler": sampler, "scheduler": scheduler,
            "seed": seed, "budget_minutes": budget_minutes, "epochs": PROXY["epochs"],
            "wall_s": wall, "points": front[list(COLUMNS)].to_numpy(dtype=float).tolist()}


def references_row(results, seed: int) -> dict:
    """The space's named architectures (``with_references``) trained once
    through the same proxy and seed (the seed also picks the data split), no
    early stopping; ``points`` maps each name to (accuracy, latency), or None
    when it did not complete."""
    import hybridnas
    from hybridnas.rundir import front_eligible
    from hybridnas.search import SearchConfig
    from hybridnas.search.runner import load_space

    cfg = SearchConfig(**TASK)
    names = list(load_space(cfg, cfg.resolution).references(cfg.resolution))
    res, wall = _run(results, f"q-references-{seed}", sampler="random", seed=seed,
                     with_references=True, budget_trials=len(names),
                     **{**PROXY, "max_concurrent": min(PROXY["max_concurrent"], len(names))})
    df = hybridnas.load_run(res.run_dir)
    ok = front_eligible(df, list(COLUMNS))
    points: dict = {name: None for name in names}
    for _, r in df[ok & df["reference"].notna()].iterrows():
        points[str(r["reference"])] = [float(r[c]) for c in COLUMNS]
    return {**_counts(df), "kind": "references", "sampler": "", "scheduler": "", "seed": seed,
            "budget_minutes": "", "epochs": PROXY["epochs"], "wall_s": wall, "points": points}


def _counts(df) -> dict:
    status = df["status"]
    return {"trials": int((status != "REJECTED").sum()),
            "early_stopped": int((status == "EARLY_STOPPED").sum()),
            "rejected": int((status == "REJECTED").sum()), "failed": int((status == "FAILED").sum()),
            "device_s": float(df["device_seconds"].fillna(0).sum())}


def dominated_by(front, point, maximize=MAXIMIZE) -> bool:
    """Whether some row of ``front`` dominates ``point``: at least as good in
    every objective (directions in ``maximize``) and better in one."""
    import numpy as np

    sign = np.where(np.asarray(maximize), -1.0, 1.0)
    pts = np.asarray(front, dtype=float).reshape(-1, len(maximize)) * sign
    p = np.asarray(point, dtype=float) * sign
    return bool(np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)))


def summarise(rows: list[dict]) -> dict:
    """Per configuration (sampler, scheduler) over seeds, from ``search_row``
    and ``references_row`` rows: every front's hypervolume against one
    reference point (``default_reference`` of all fronts together), mean and
    std, the seeds on which it beats random + none on the same seed, the
    headline ratio (NSGA-II + MOASHA / random + none), and for each named
    reference the seeds on which the found front dominates it."""
    import numpy as np

    from hybridnas.pareto import default_reference, hypervolume

    fronts = {(r["sampler"], r["scheduler"], int(r["seed"])): np.asarray(r["points"], dtype=float)
              .reshape(-1, len(COLUMNS)) for r in rows if r["kind"] == "search"}
    refs = {int(r["seed"]): r["points"] for r in rows if r["kind"] == "references"}
    every = [f for f in fronts.values() if len(f)]
    if not every:
        return {"reference": None, "hv": {}, "configs": {}, "headline": None, "ref_points": refs,
                "rows": {}}
    ref = default_reference(np.concatenate(every), list(MAXIMIZE))
    hv = {k: hypervolume(f, list(MAXIMIZE), ref) if len(f) else 0.0 for k, f in fronts.items()}
    configs: dict = {}
    for (sampler, scheduler) in dict.fromkeys(k[:2] for k in fronts):
        seeds = sorted(k[2] for k in fronts if k[:2] == (sampler, scheduler))
        vals = [hv[(sampler, scheduler, s)] for s in seeds]
        paired = [s for s in seeds if (*BASELINE, s) in hv]
        beats = sum(hv[(sampler, scheduler, s)] > hv[(*BASELINE, s)] for s in paired)
        dom: dict = {}
        for s in seeds:
            for name, pt in (refs.get(s) or {}).items():
                if pt is not None:
                    d = dom.setdefault(name, [0, 0])
                    d[0] += dominated_by(fronts[(sampler, scheduler, s)], pt)
                    d[1] += 1
        configs[(sampler, scheduler)] = {
            "seeds": seeds, "hv": vals, "mean": statistics.mean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "beats": beats, "paired": len(paired), "dominates": dom}
    headline = None
    if HEADLINE in configs and BASELINE in configs:
        seeds = [s for s in configs[HEADLINE]["seeds"] if (*BASELINE, s) in hv]
        if seeds:
            a = statistics.mean(hv[(*HEADLINE, s)] for s in seeds)
            b = statistics.mean(hv[(*BASELINE, s)] for s in seeds)
            headline = {"ratio": a / b if b else math.nan, "seeds": len(seeds),
                        "better": sum(hv[(*HEADLINE, s)] > hv[(*BASELINE, s)] for s in seeds)}
    return {"reference": ref.tolist(), "hv": hv, "configs": configs, "headline": headline,
            "ref_points": refs, "rows": {(r["sampler"], r["scheduler"], int(r["seed"])): r
                                         for r in rows if r["kind"] == "search"}}


def write_row(path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` (header first when new), flushed."""
    import csv
    import json

    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow({**{k: row[k] for k in CSV_FIELDS}, "points": json.dumps(row["points"])})
        f.flush()
        os.fsync(f.fileno())


def read_rows(path) -> list[dict]:
    """Rows a ``write_row`` CSV holds, checked (``ValueError`` naming the line
    on anything malformed)."""
    import csv
    import json

    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or list(reader.fieldnames) != list(CSV_FIELDS):
            raise ValueError(f"{path}: header is not {','.join(CSV_FIELDS)}")
        for line, r in enumerate(reader, start=2):
            try:
                row = dict(r)
                if row["kind"] not in ("search", "references"):
                    raise ValueError(f"kind={row['kind']!r}")
                row["seed"], row["epochs"] = int(row["seed"]), int(row["epochs"])
                row["budget_minutes"] = (float(row["budget_minutes"]) if row["kind"] == "search"
                                         else "")
                for k in ("trials", "early_stopped", "rejected", "failed"):
                    row[k] = int(row[k])
                row["device_s"], row["wall_s"] = float(row["device_s"]), float(row["wall_s"])
                row["points"] = _check_points(json.loads(row["points"]), row["kind"])
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
            out.append(row)
    return out


def _check_points(points, kind: str):
    def pair(p):
        if (not isinstance(p, list) or len(p) != len(COLUMNS)
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p)):
            raise ValueError(f"point {str(p)[:40]!r} is not {len(COLUMNS)} numbers")
        return [float(x) for x in p]

    if kind == "search":
        if not isinstance(points, list):
            raise ValueError("points is not a list")
        return [pair(p) for p in points]
    if not isinstance(points, dict):
        raise ValueError("points is not a mapping")
    return {str(k): None if v is None else pair(v) for k, v in points.items()}


def search_quality(results, seeds, samplers, schedulers, budget_minutes: float, out: str,
                   done: list[dict]) -> list[dict]:
    """Every (sampler, scheduler, seed) search and each seed's references
    not already in ``done``; each row is appended to ``out`` as it finishes
    and a progress line printed. Returns all rows (``done`` first)."""
    rows = list(done)
    have = {(r["kind"], r["sampler"], r["scheduler"], r["seed"]) for r in rows}
    todo = [("references", "", "", s) for s in seeds if ("references", "", "", s) not in have]
    todo += [("search", a, k, s) for s in seeds for a in samplers for k in schedulers
             if ("search", a, k, s) not in have]
    print(f"(b) {len(todo)} run(s) to do, {len(have)} already in {out}", flush=True)
    t0 = time.perf_counter()
    for i, (kind, sampler, scheduler, seed) in enumerate(todo, start=1):
        if kind == "references":
            row = references_row(results, seed)
            got = ", ".join(f"{n} {p[0]:.3f}/{p[1]:.2f} ms" if p else f"{n} n/a"
                            for n, p in row["points"].items())
            what = f"references seed {seed}: {got}"
        else:
            row = search_row(results, sampler, scheduler, seed, budget_minutes)
            s = summarise(rows + [row])
            what = (f"{sampler}+{scheduler} seed {seed}: HV {s['hv'][(sampler, scheduler, seed)]:.4g}"
                    f" (reference so far), {row['trials']} trials ({row['early_stopped']} stopped "
                    f"early, {row['rejected']} rejected), front {len(row['points'])}")
        write_row(out, row)
        rows.append(row)
        spent = time.perf_counter() - t0
        print(f"[b {i}/{len(todo)}] {what}; {row['wall_s']:.0f} s wall, {row['device_s']:.0f} "
              f"device-s; ETA {spent / i * (len(todo) - i) / 60:.1f} min", flush=True)
    return rows


def main(argv=None) -> int:
    from hybridnas.search.config import SAMPLERS, SCHEDULERS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"shorter (a); (b) on {QUICK['seeds']} seed(s), samplers "
                        f"{','.join(QUICK['samplers'])} x schedulers {','.join(QUICK['schedulers'])}"
                        f", {QUICK['budget_minutes']:g} device-min a search (flags still override)")
    p.add_argument("--only", choices=["overhead", "hypervolume"], help="run one part")
    p.add_argument("--seeds", type=int, help=f"(b) seeds 0..N-1 (default {FULL['seeds']})")
    p.add_argument("--budget-minutes", type=float,
                   help=f"(b) device-minutes per search, budget_gpu_hours x 60: CPU "
                        f"device-minutes without a GPU (default {FULL['budget_minutes']:g})")
    p.add_argument("--samplers", help=f"(b) comma list of {','.join(SAMPLERS)} (default all)")
    p.add_argument("--schedulers", help=f"(b) comma list of {','.join(SCHEDULERS)} (default all)")
    p.add_argument("--out", help="(b) CSV the per-run rows are appended to as they finish "
                                 "(default results/bench_search_<time>.csv, or --resume-from's file)")
    p.add_argument("--resume-from", help="(b) a CSV of an earlier run: its finished runs are "
                                         "not run again")
    args = p.parse_args(argv)
    plan = {**FULL, **(QUICK if args.quick else {})}
    for key in ("seeds", "budget_minutes", "samplers", "schedulers"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    for key, allowed in (("samplers", SAMPLERS), ("schedulers", SCHEDULERS)):
        if isinstance(plan[key], str):
            plan[key] = tuple(x for x in plan[key].replace(" ", "").split(",") if x)
        bad = [x for x in plan[key] if x not in allowed] or ([] if plan[key] else ["(none)"])
        if bad:
            p.error(f"--{key}: {bad[0]} is not one of {','.join(allowed)}")
    if plan["seeds"] < 1 or not (plan["budget_minutes"] > 0 and math.isfinite(plan["budget_minutes"])):
        p.error("--seeds must be >= 1 and --budget-minutes a positive number")
    seeds = list(range(plan["seeds"]))
    done: list[dict] = []
    out = args.out or args.resume_from or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results",
        time.strftime("bench_search_%Y%m%d_%H%M%S.csv"))
    if args.only != "overhead":
        if args.resume_from:
            try:
                done = read_rows(args.resume_from)
            except (OSError, ValueError) as e:
                p.error(f"--resume-from: {e}")
            clash = [r for r in done if r["epochs"] != PROXY["epochs"] or (
                r["kind"] == "search" and not math.isclose(r["budget_minutes"], plan["budget_minutes"]))]
            if clash:
                p.error(f"--resume-from {args.resume_from}: it ran {clash[0]['epochs']} epochs at "
                        f"{clash[0]['budget_minutes'] or '-'} device-min, this run "
                        f"{PROXY['epochs']} at {plan['budget_minutes']:g}")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _temp_dir="/tmp/rt_bench_search")
    try:
        with tempfile.TemporaryDirectory(prefix="bench_search_") as results:
            o = rows = None
            if args.only != "hypervolume":
                lengths = (3, 8) if args.quick else (4, 16)
                o = [overhead(results, trials=n, name=f"overhead-{n}") for n in lengths]
            if args.only != "overhead":
                rows = search_quality(results, seeds, plan["samplers"], plan["schedulers"],
                                      plan["budget_minutes"], out, done)
    finally:
        ray.shutdown()

    if o is not None:
        _print_overhead(o)
    if rows is not None:
        grid = [r for r in rows if r["seed"] in seeds and (r["kind"] == "references" or (
            r["sampler"] in plan["samplers"] and r["scheduler"] in plan["schedulers"]))]
        _print_quality(summarise(grid), plan, out)
    return 0


#: (b) defaults, and what --quick changes (sized in the module docstring).
FULL = dict(seeds=5, budget_minutes=1.0, samplers=("nsga2", "tpe", "random"),
            schedulers=("none", "asha", "moasha"))
QUICK = dict(seeds=1, budget_minutes=0.5, samplers=("nsga2", "random"),
             schedulers=("none", "moasha"))


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


def _print_quality(s: dict, plan: dict, out: str) -> None:
    print(f"\n== (b) search quality at equal device budget: {plan['budget_minutes']:g} device-min "
          f"per search, {PROXY['epochs']} epochs a trial (ASHA/MOASHA rungs at 1 and 2 epochs), "
          f"{PROXY['max_concurrent']} trials at once; rows in {out} ==")
    if s["reference"] is None:
        print("no search found a front")
        return
    print(f"hypervolume of the found front (val accuracy up, latency down), reference point "
          f"[{s['reference'][0]:.4g}, {s['reference'][1]:.4g} ms] shared by all runs")
    names = sorted({n for pts in s["ref_points"].values() for n in pts})
    head = (f"{'config':<14} {'seeds':>5} {'HV mean':>8} {'± std':>7} {'beats random+none':>18} "
            f"{'trials':>6} {'stopped':>7} {'wall s':>6}")
    print(head + "".join(f" {'dom. ' + n:>{max(len(n) + 5, 8)}}" for n in names))
    for key in ((a, k) for a in plan["samplers"] for k in plan["schedulers"]):
        c = s["configs"].get(key)
        if c is None:
            continue
        runs = [s["rows"][(*key, seed)] for seed in c["seeds"]]
        beats = f"{c['beats']}/{c['paired']}" if c["paired"] else "n/a"
        line = (f"{'+'.join(key):<14} {len(c['seeds']):>5} {c['mean']:8.4g} {c['std']:7.3g} "
                f"{beats:>18} {statistics.mean(r['trials'] for r in runs):6.1f} "
                f"{statistics.mean(r['early_stopped'] for r in runs):7.1f} "
                f"{statistics.mean(r['wall_s'] for r in runs):6.0f}")
        for n in names:
            d = c["dominates"].get(n)
            line += f" {(f'{d[0]}/{d[1]}' if d else 'n/a'):>{max(len(n) + 5, 8)}}"
        print(line)
    print("(beats: seeds on which its HV > random+none's on the same seed; dom.: seeds on which "
          "some found front point dominates that named architecture, trained once per seed "
          "through the same proxy; n/a: it did not complete)")
    for n in names:
        pts = [p[n] for p in s["ref_points"].values() if p.get(n)]
        if pts:
            print(f"  {n}: val accuracy {statistics.mean(p[0] for p in pts):.3f}, latency "
                  f"{statistics.mean(p[1] for p in pts):.2f} ms (mean of {len(pts)} seed(s))")
    h = s["headline"]
    if h is None:
        print("nsga2+moasha / random+none: not both in the grid")
    else:
        print(f"nsga2+moasha / random+none mean hypervolume: {h['ratio']:.3f}, better on "
              f"{h['better']} of {h['seeds']} seed(s)   (aim: >= 1.15 and better on >= 4 of 5)")
        print("  per seed (nsga2+moasha / random+none HV): " + ", ".join(
            f"{seed}: {s['hv'][(*HEADLINE, seed)]:.4g} / {s['hv'][(*BASELINE, seed)]:.4g}"
            for seed in s["configs"][HEADLINE]["seeds"] if (*BASELINE, seed) in s["hv"]))


if __name__ == "__main__":
    sys.exit(main())
