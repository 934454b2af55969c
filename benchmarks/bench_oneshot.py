"""One-shot search: rank fidelity, throughput and extraction, in one run.

Prints side by side:
  (a) rank fidelity on Fashion-MNIST: Kendall tau, Spearman rho and top-5
      overlap between each architecture's accuracy with inherited supernet
      weights and its accuracy trained standalone for ``--standalone-epochs``
      -- and the same three numbers for the multi-trial proxy
      (``hybridnas.training.fit`` for ``--proxy-epochs``) against the same
      standalone accuracies. Issue #12 requires tau >= 0.5 (aim 0.7).
  (c) throughput: subnets evaluated (inherited weights, batch-norm
      recalibration included) per device-minute; supernet step time over
      the standalone step time of its largest subnet, raw and per subnet
      trained in a step (aim <= 1.3 per subnet).
  (d) extraction: max |supernet(x) - extract(spec)(x)| over every
      architecture above and the space's named architectures.

    python benchmarks/bench_oneshot.py      # the size in the README: supernet ~15 min on 2
                                            # idle cores; standalone side 45 min on a loaded
                                            # machine, then cached in --cache
    python benchmarks/bench_oneshot.py --supernet-epochs 30 --standalone-epochs 10 --subset 6000
    python benchmarks/bench_oneshot.py --only throughput --resolution 28 \
        --width-mult 0.25 --depth-mult 0.5 --val-images 1000     # (c) at the quickstart proxy

The sizes are arguments; the output starts with the sizes it ran.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _rank_stats(a: list[float], b: list[float], k: int = 5) -> tuple[float, float, float]:
    from scipy.stats import kendalltau, spearmanr

    tau = float(kendalltau(a, b).statistic)
    rho = float(spearmanr(a, b).statistic)
    top_a = set(np.argsort(a)[::-1][:k])
    top_b = set(np.argsort(b)[::-1][:k])
    return tau, rho, len(top_a & top_b) / k


def _train_standalone(args, specs, bundle, val_batches: int):
    """Standalone accuracy of every architecture (the mean over
    ``--standalone-seeds`` training seeds, and each seed's apart) and its
    proxy accuracy, cached in ``--cache`` by (architecture, schedule, data,
    training seed) so a rerun that changes only the supernet does not
    retrain them."""
    import json
    from pathlib import Path

    from hybridnas.builder import build_model
    from hybridnas.training import fit

    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    data_key = (f"{args.dataset}/{args.resolution}px/{len(bundle.train)}train/"
                f"{val_batches * 250}val/seed{args.seed}/bs{args.batch_size}/lr{args.lr}")
    c, n = int(bundle.input_shape[0]), int(bundle.num_outputs)

    def metric(s, epochs: int, train_seed: int) -> dict:
        # the first training seed is the data seed (keys of earlier runs stay valid)
        key = f"{s.arch_id}/{data_key}/{epochs}ep" + (
            f"/train{train_seed}" if train_seed != args.seed else "")
        if key not in cache:
            torch.manual_seed(train_seed)
            model = build_model(s, num_classes=n, in_chans=c)
            t0 = time.perf_counter()
            value = fit(model, bundle, epochs=epochs, batch_size=args.batch_size,
                        lr=args.lr, device="cpu", seed=train_seed, eval_batch_size=250,
                        max_val_batches=val_batches).final_metrics[bundle.task.metric_name]
            cache[key] = {"metric": value, "seconds": time.perf_counter() - t0}
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=1))
        return cache[key]

    seeds = [args.seed + k for k in range(args.standalone_seeds)]
    per_seed: list[list[float]] = [[] for _ in seeds]
    standalone, proxy = [], []
    proxy_s = 0.0
    for i, s in enumerate(specs):
        for j, seed in enumerate(seeds):
            per_seed[j].append(metric(s, args.standalone_epochs, seed)["metric"])
        standalone.append(float(np.mean([p[-1] for p in per_seed])))
        entry = metric(s, args.proxy_epochs, args.seed)
        proxy.append(entry["metric"])
        proxy_s += entry["seconds"]
        print(f"  standalone {i + 1}/{len(specs)} {s.pattern}: proxy {proxy[-1]:.3f}, "
              f"standalone {' '.join(f'{p[-1]:.3f}' for p in per_seed)}", flush=True)
    return standalone, proxy, proxy_s, per_seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", default="stagewise")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--width-mult", type=float, default=0.125)
    p.add_argument("--depth-mult", type=float, default=0.25)
    p.add_argument("--subset", type=int, default=1000, help="training images")
    p.add_argument("--val-images", type=int, default=1000,
                   help="validate every architecture on the first N validation images")
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--supernet-epochs", type=int, default=60)
    p.add_argument("--standalone-epochs", type=int, default=6)
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--standalone-seeds", type=int, default=2,
                   help="train every architecture standalone from this many seeds; the reference "
                        "is their mean, and the seeds' agreement is the noise ceiling")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--random-subnets", type=int, default=4)
    p.add_argument("--ends", choices=["types", "fixed"], default="types",
                   help="sandwich: type paths drawn uniformly (default), or BigNAS's fixed ends")
    p.add_argument("--stage-distill", type=float, default=0.0,
                   help="weight of stage-wise distillation (SandwichSettings.stage_distill; 0: off)")
    p.add_argument("--stage-inputs", choices=["own", "teacher"], default="own",
                   help="student stages run on their own inputs or on the teacher's "
                        "(SandwichSettings.stage_inputs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3, help="standalone and proxy learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="results/bench_oneshot_standalone.json",
                   help="standalone/proxy accuracies kept between runs (git-ignored results/)")
    p.add_argument("--supernet-dir", default=None,
                   help="checkpoint the supernet here (a rerun continues or reuses it)")
    p.add_argument("--only", choices=["standalone", "throughput"], default=None,
                   help="standalone: train the standalone/proxy side only (fills the cache); "
                        "throughput: (c) and (d) on an untrained supernet")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from hybridnas.builder import build_model
    from hybridnas.data import load_dataset
    from hybridnas.supernet import Supernet, max_abs_diff
    from hybridnas.supernet.train import (SandwichSettings, calibration_batches, evaluate_subnet,
                                          prepare_subnet,
                                          train_supernet)

    bundle = load_dataset(args.dataset, resolution=args.resolution, subset=args.subset,
                          seed=args.seed)
    c, n = int(bundle.input_shape[0]), int(bundle.num_outputs)
    val_batches = max(1, args.val_images // 250)
    print(f"bench_oneshot: space {args.space} at {args.resolution}px (width x{args.width_mult}, "
          f"depth x{args.depth_mult}), {args.dataset} {len(bundle.train)} train / "
          f"{len(bundle.val)} val (first {val_batches * 250} used), {args.archs} architectures; supernet {args.supernet_epochs} "
          f"epochs (largest + smallest ({args.ends}) + {args.random_subnets} random per step), standalone "
          f"{args.standalone_epochs} epochs, proxy {args.proxy_epochs} epochs, batch "
          f"{args.batch_size}, {args.threads} thread(s)", flush=True)

    from hybridnas import spaces

    space = spaces.load(args.space, resolution=args.resolution, width_mult=args.width_mult,
                        depth_mult=args.depth_mult)
    rng = np.random.default_rng(args.seed + 1)
    specs, seen = [], set()
    while len(specs) < args.archs:
        s = space.sample(rng)
        if s.arch_id not in seen:
            seen.add(s.arch_id)
            specs.append(s)
    if args.only == "standalone":
        _train_standalone(args, specs, bundle, val_batches)
        return

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    net = Supernet(args.space, resolution=args.resolution, num_classes=n, in_chans=c,
                   width_mult=args.width_mult, depth_mult=args.depth_mult, seed=args.seed)
    build_s = time.perf_counter() - t0
    settings = SandwichSettings(epochs=args.supernet_epochs, batch_size=args.batch_size,
                                random_subnets=args.random_subnets, seed=args.seed, quiet=True,
                                ends=args.ends, stage_distill=args.stage_distill,
                                stage_inputs=args.stage_inputs,
                                eval_batch_size=250, max_val_batches=val_batches)
    if args.only == "throughput":  # (c) and (d) only: they do not depend on training
        print(f"supernet: built in {build_s:.1f} s, {repr(net)}; not trained", flush=True)
    else:
        t0 = time.perf_counter()
        history = train_supernet(net, bundle, settings, args.supernet_dir, device="cpu",
                                 log=lambda line: print("  " + line, flush=True))
        train_s = time.perf_counter() - t0
        steps = sum(h.steps for h in history)
        print(f"supernet: built in {build_s:.1f} s, trained {train_s:.0f} s ({steps} steps); "
              f"largest {history[-1].acc_largest:.3f}, smallest {history[-1].acc_smallest:.3f}",
              flush=True)

    # (a) inherited accuracy (+ (c) evaluation rate, (d) extraction)
    calibration = calibration_batches(bundle.train, settings, torch.device("cpu"))
    x = torch.randn(2, c, args.resolution, args.resolution)
    inherited, diffs = [], []
    t0 = time.perf_counter()
    for s in specs:
        inherited.append(evaluate_subnet(net, s, bundle.val, bundle.task, torch.device("cpu"),
                                         calibration, settings)[bundle.task.metric_name])
    eval_s = time.perf_counter() - t0
    for s in specs + list(net.space.references(args.resolution).values()):
        prepare_subnet(net, s, calibration[:1], settings, bundle.task)
        net.eval()
        with torch.no_grad():
            diffs.append(max_abs_diff(net.activate(s)(x), net.extract(s)(x)))

    # (c) step times: the supernet's sandwich step vs a standalone step of its largest
    def step_time(fn, repeats: int = 5) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    xb = torch.randn(args.batch_size, c, args.resolution, args.resolution)
    yb = torch.randint(0, n, (args.batch_size,))
    net.train()
    subnets = [net.largest, net.smallest] + [net.sample(k) for k in range(args.random_subnets)]

    def supernet_step() -> None:
        net.zero_grad(set_to_none=True)
        for s in subnets:
            torch.nn.functional.cross_entropy(net.activate(s)(xb), yb).backward()

    largest = build_model(net.largest, num_classes=n, in_chans=c).train()

    def largest_step() -> None:
        largest.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(largest(xb), yb).backward()

    t_super, t_large = step_time(supernet_step), step_time(largest_step)

    print("\n(c) throughput:")
    print(f"    subnets evaluated per device-minute: {len(specs) / eval_s * 60:.1f} "
          f"({val_batches * 250} val images, BN recalibration on {settings.bn_batches} batches "
          f"of {settings.bn_batch_size})")
    print(f"    supernet step {t_super * 1e3:.0f} ms ({len(subnets)} subnets) / largest "
          f"standalone step {t_large * 1e3:.0f} ms = {t_super / t_large:.2f}; per subnet "
          f"{t_super / t_large / len(subnets):.2f}")
    print(f"\n(d) extraction: max abs diff {max(diffs):.2e} over {len(diffs)} architectures",
          flush=True)
    if args.only == "throughput":
        return

    standalone, proxy, proxy_s, per_seed = _train_standalone(args, specs, bundle, val_batches)
    for i, s in enumerate(specs):
        print(f"  arch {i + 1}/{len(specs)} {s.pattern}: inherited {inherited[i]:.3f}, "
              f"proxy {proxy[i]:.3f}, standalone {standalone[i]:.3f}", flush=True)

    print("\n(a) rank fidelity vs standalone accuracy "
          f"({args.standalone_epochs} epochs on {len(bundle.train)} images, mean of "
          f"{len(per_seed)} training seed(s)):")
    if len(per_seed) > 1:
        tau, rho, top = _rank_stats(per_seed[1], per_seed[0])
        print(f"    {'standalone seed 2 vs seed 1':<34} Kendall tau {tau:6.3f}   Spearman {rho:6.3f}   "
              f"top-5 {top:.2f}   (the noise ceiling)")
    for label, values in (("one-shot, inherited weights", inherited),
                          (f"multi-trial proxy, {args.proxy_epochs} epochs", proxy)):
        tau, rho, top = _rank_stats(values, standalone)
        print(f"    {label:<34} Kendall tau {tau:6.3f}   Spearman {rho:6.3f}   top-5 {top:.2f}")
    print(f"    standalone accuracy range {min(standalone):.3f}-{max(standalone):.3f}")
    print(f"    multi-trial {args.proxy_epochs}-epoch proxy: {len(specs) / proxy_s * 60:.2f} "
          f"architectures per device-minute")


if __name__ == "__main__":
    main()
