"""Size and speed of the MaxViT, CvT, LeViT and EfficientFormer named models.

Prints, side by side in one run, for each model:
  - parameters and GMACs at 224x224 / 1000 classes (``hybridnas.cost``) next
    to the published figures, with the ratio. Targets: params within +-2%,
    GMACs within +-10%.
  - inference latency (eval, batch 1, 224) and a training step (forward +
    backward + SGD, proxy resolution, small batch), median over repeats.

    python benchmarks/bench_block_families.py                # CPU, 1 thread
    python benchmarks/bench_block_families.py --device cuda --batch-size 64

Wall latency on a shared machine is noisy; the (cpu) columns give the
process CPU time per call (with one thread, the work itself).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import hybridnas
from hybridnas.zoo import get_named

MODELS = ["maxvit_tiny", "cvt_13", "levit_128s", "levit_256", "efficientformer_l1"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of one call. On a
    shared CPU the CPU time is the steadier figure (other processes stretch
    the wall time, not the work done)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--proxy", type=int, default=64, help="training-step resolution")
    p.add_argument("--batch-size", type=int, default=16, help="training-step batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="*", default=MODELS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} proxy={args.proxy} "
          f"batch={args.batch_size} repeats={args.repeats}")
    header = (f"{'model':<19}{'params M':>9}{'pub':>7}{'ratio':>7}{'GMACs':>8}{'pub':>7}"
              f"{'ratio':>7}  {'ok':<4}{'infer ms':>9}{'(cpu)':>8}{'train ms':>10}{'(cpu)':>8}")
    print(header)
    print("-" * len(header))
    all_ok = True
    for name in args.models:
        named = get_named(name)
        c = hybridnas.cost(name)
        pr, mr = c.params / 1e6 / named.params_m, c.gmacs / named.gmacs
        ok = abs(pr - 1) <= 0.02 and abs(mr - 1) <= 0.10
        all_ok &= ok
        torch.manual_seed(0)
        model = hybridnas.create_model(name).to(device).eval()
        x = torch.randn(1, 3, 224, 224, device=device)
        with torch.no_grad():
            infer, infer_cpu = _median_seconds(lambda: model(x), device, 2, args.repeats)
        model = hybridnas.create_model(name, num_classes=10).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        xb = torch.randn(args.batch_size, 3, args.proxy, args.proxy, device=device)
        yb = torch.randint(0, 10, (args.batch_size,), device=device)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()

        train, train_cpu = _median_seconds(step, device, 1, args.repeats)
        print(f"{name:<19}{c.params / 1e6:9.2f}{named.params_m:7.1f}{pr:7.3f}{c.gmacs:8.3f}"
              f"{named.gmacs:7.3f}{mr:7.3f}  {'yes' if ok else 'NO':<4}{infer * 1e3:9.1f}"
              f"{infer_cpu * 1e3:8.1f}{train * 1e3:10.1f}{train_cpu * 1e3:8.1f}")
    print(f"all sizes within tolerance: {'OK' if all_ok else 'NO'}")


if __name__ == "__main__":
    main()
