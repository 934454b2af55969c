"""How long one architecture takes from a space: sample (with constraint
checks and redraws) + validate + build, per space, at proxy settings.

    .venv/bin/python benchmarks/bench_spaces.py [--n 10] [--resolution 32]
    .venv/bin/python benchmarks/bench_spaces.py --rejections [--n 200]

Prints the median and mean per part side by side with the 100 ms target,
plus encode/decode/contains times. The machine's load average is printed
too: on a shared machine wall times scale with it, so the total is also
given in CPU time of this process (what an idle core would take).

``--rejections``: the share of proposals a search would reject before
training, per space, at the quickstart proxy (28 px, width 0.25, depth 0.5)
and at 8 px (``digits``): ``n`` Optuna proposals per sampler (random and
NSGA-II with population 6, as the quickstart), each checked with
``space.check`` at the proposal's resolution (the searcher's check), with
the most common reasons.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

TARGET_MS = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10, help="architectures per space and setting")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--spaces", nargs="*", default=None)
    ap.add_argument("--rejections", action="store_true",
                    help="measure the share of proposals rejected before training instead")
    args = ap.parse_args()
    if args.rejections:
        rejections(args.n, args.spaces)
        return

    import numpy as np
    import torch

    import hybridnas
    from hybridnas import spaces

    torch.set_num_threads(1)
    names = args.spaces or spaces.list_spaces()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch threads 1; "
          f"n={args.n} per row; times in ms (median / mean)")
    header = (f"{'space':<12} {'width':>5}  {'sample+check':>14}  {'validate':>9}  {'build':>14}  "
              f"{'total':>14}  {'total cpu':>14}  {'target':>6}  {'ok(cpu)':>7}  {'params(M)':>9}")
    print(header)
    print("-" * len(header))
    for name in names:
        base = spaces.load(name)
        res = args.resolution if base.dims == 2 else max(8, base.reference_resolution // 2)
        for mult in (0.25, 1.0):
            space = base.at(res, width_mult=mult)
            rng = np.random.default_rng(0)
            space.sample(rng)  # warm imports
            space._cache = {}  # no parameter counts carried over from the other row
            parts: dict[str, list[float]] = {"sample": [], "validate": [], "build": []}
            params, cpu = [], []
            for _ in range(args.n):
                c0 = time.process_time()
                t0 = time.perf_counter()
                spec = space.sample(rng)
                t1 = time.perf_counter()
                spec.validate(res)
                t2 = time.perf_counter()
                if getattr(spec, "assets", False):
                    model = None  # multi-asset panels are built by hybridnas.temporal
                else:
                    model = hybridnas.build_model(spec, num_classes=10)
                t3 = time.perf_counter()
                cpu.append((time.process_time() - c0) * 1e3)
                parts["sample"].append((t1 - t0) * 1e3)
                parts["validate"].append((t2 - t1) * 1e3)
                parts["build"].append((t3 - t2) * 1e3)
                if model is not None:
                    params.append(sum(p.numel() for p in model.parameters()) / 1e6)
            total = [a + b + c for a, b, c in zip(*parts.values())]

            def fmt(xs: list[float]) -> str:
                return f"{statistics.median(xs):6.1f} /{statistics.mean(xs):6.1f}"

            ok = "yes" if statistics.median(cpu) < TARGET_MS else "no"
            print(f"{name:<12} {mult:>5}  {fmt(parts['sample']):>14}  "
                  f"{statistics.median(parts['validate']):9.2f}  {fmt(parts['build']):>14}  "
                  f"{fmt(total):>14}  {fmt(cpu):>14}  {TARGET_MS:6.0f}  {ok:>7}  "
                  f"{statistics.median(params) if params else float('nan'):9.2f}")

    print()
    print("fixed points (reference resolution): encode / decode / contains per named architecture")
    for name in names:
        space = spaces.load(name)
        for arch in space.named():
            spec = hybridnas.get_spec(arch)
            t0 = time.perf_counter()
            params = space.encode(spec)
            t1 = time.perf_counter()
            space.decode(params)
            t2 = time.perf_counter()
            space.contains(spec)
            t3 = time.perf_counter()
            print(f"  {name:<12} {arch:<20} encode {(t1 - t0) * 1e3:6.2f} ms  decode "
                  f"{(t2 - t1) * 1e3:6.2f} ms  contains {(t3 - t2) * 1e3:7.1f} ms")


def rejection_share(space, n: int, sampler: str, seed: int = 0,
                    conditioned: bool = True) -> tuple[int, dict[str, int]]:
    """(rejected, {reason: count}) of ``n`` proposals ``space.suggest`` makes
    in an Optuna study with ``sampler`` ("random" or "nsga2"). Accepted
    proposals are told a random value pair, rejected ones FAIL (as the
    searcher does), so NSGA-II breeds from what it was told.
    ``conditioned=False`` offers every decision with all its choices (how
    the space proposed before conditional choice sets), for comparison."""
    import re

    import numpy as np
    import optuna

    from hybridnas.spaces.space import build

    def propose(trial):
        if conditioned:
            return space.suggest(trial)
        return space._finish(build(space.arch, lambda d: d.suggest(trial)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "nsga2":
        chosen = optuna.samplers.NSGAIISampler(population_size=6, seed=seed)
    else:
        chosen = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=chosen)
    rng = np.random.default_rng(seed)
    reasons: dict[str, int] = {}
    for _ in range(n):
        trial = study.ask()
        verdict = space.check(propose(trial))
        if verdict:
            study.tell(trial, [float(rng.random()), float(rng.random())])
            continue
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        key = re.sub(r"[0-9][0-9,.e+]*", "N", verdict.reason)[:70]
        reasons[key] = reasons.get(key, 0) + 1
    return sum(reasons.values()), reasons


def rejections(n: int, names: list[str] | None) -> None:
    from hybridnas import spaces

    names = names or [s for s in spaces.list_spaces() if spaces.load(s).dims == 2]
    print(f"n={n} proposals per row; rejected = what the searcher's check refuses before training")
    print(f"{'space':<12} {'setting':<22} {'sampler':<7} {'all choices':>11} {'conditioned':>11}"
          f"  most common reason (conditioned)")
    for name in names:
        base = spaces.load(name)
        for res in (28, 8):
            space = base.at(res, width_mult=0.25, depth_mult=0.5)
            for sampler in ("random", "nsga2"):
                t0 = time.perf_counter()
                before, _ = rejection_share(space, n, sampler, conditioned=False)
                bad, reasons = rejection_share(space, n, sampler)
                top = max(reasons, key=reasons.get) if reasons else ""
                setting = f"{res}px w0.25 d0.5"
                print(f"{name:<12} {setting:<22} {sampler:<7} {before / n:11.1%} {bad / n:11.1%}"
                      f"  {top} ({time.perf_counter() - t0:.0f} s)")
        unfit = spaces.load(name).at(8).unfit_references()
        if unfit:
            print(f"{'':<12} references that are no points at 8px (left out): {', '.join(unfit)}")


if __name__ == "__main__":
    main()
