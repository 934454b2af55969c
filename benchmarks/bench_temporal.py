"""Temporal room benchmark: numbers side by side in one run.

(a) Training-step throughput (panels/s, forward + backward) of the
    ``financial_hybrid`` spec built by the builder versus the design
    document's hand-written FinancialHybrid module, on the same panels
    (target ratio >= 0.95), and their single-panel CPU latency.
(b) With a run directory: the run's Pareto front beside the baselines
    (zero, mean, ridge, the seed module), every latency measured on a full
    panel; baselines are computed first if the run has no baselines.csv.

    python benchmarks/bench_temporal.py [RUN_DIR] [--threads 2] [--steps 10]
"""
from __future__ import annotations

import argparse
import os
import time


def throughput(model, x, steps: int) -> float:
    import torch

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    for _ in range(2):  # warm-up
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    t0 = time.perf_counter()
    for _ in range(steps):
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    import hybridnas
    from hybridnas.temporal.baselines import panel_latency_ms
    from hybridnas.temporal.model import SeedFinancialHybrid

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (6, 20, 60)  # sp500-20 panels: features, assets, lookback
    x = torch.randn(args.batch_size, *shape)
    spec_model = hybridnas.create_model("financial_hybrid", num_classes=3, in_chans=shape[0])
    seed_model = SeedFinancialHybrid(shape[0], shape[1], shape[2], horizons=3, panel_first=True)
    rows = []
    for name, m in (("financial_hybrid (spec)", spec_model), ("seed module", seed_model)):
        rows.append((name, sum(p.numel() for p in m.parameters()),
                     throughput(m, x, args.steps), panel_latency_ms(m.eval(), shape)))
    print(f"(a) {args.batch_size} panels of {shape}, {args.threads} threads, {args.steps} steps")
    print(f"{'model':26s} {'params':>9s} {'panels/s':>9s} {'latency ms':>11s}")
    for name, params, tput, lat in rows:
        print(f"{name:26s} {params:9d} {tput:9.1f} {lat:11.2f}")
    print(f"throughput ratio spec/seed: {rows[0][2] / rows[1][2]:.2f} (target >= 0.95)")

    if args.run_dir:
        from hybridnas.temporal.baselines import baselines_for_run, front_with_baselines

        if not os.path.exists(os.path.join(args.run_dir, "baselines.csv")):
            baselines_for_run(args.run_dir)
        table = front_with_baselines(args.run_dir, measure_panels=True)
        print(f"\n(b) front vs baselines: {args.run_dir}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
