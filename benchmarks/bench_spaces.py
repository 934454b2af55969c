"""How long one architecture takes from a space: sample (with constraint
checks and redraws) + validate + build, per space, at proxy settings.

    .venv/bin/python benchmarks/bench_spaces.py [--n 10] [--resolution 32]

Prints the median and mean per part side by side with the 100 ms target,
plus encode/decode/contains times. The machine's load average is printed
too: on a shared machine wall times scale with it, so the total is also
given in CPU time of this process (what an idle core would take).
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
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
