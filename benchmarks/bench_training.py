"""Training-loop overhead, dataset loading time and proxy accuracy, in one run.

Prints side by side:
  1. loop overhead: ``fit``'s training time vs a bare loop (pre-cut batches,
     forward, cross-entropy, backward, AdamW step) for the same model, data and
     number of steps; runs alternate so machine-load drift hits both.
     Target: fit train time / bare <= 1.05 (the search needs wall / in-trial
     training time <= 1.10 overall, so the loop itself must stay lean).
  2. dataset loading: first load vs cached load (what every further trial in
     a search worker pays).
  3. accuracy: a tiny C-T hybrid on digits (16x16) and on a Fashion-MNIST
     subset, validation and test accuracy after a few epochs.

    python benchmarks/bench_training.py                  # CPU, 1 thread
    python benchmarks/bench_training.py --device cuda --threads 4
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import hybridnas
from hybridnas.data import clear_cache, load_dataset
from hybridnas.spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from hybridnas.training import fit, evaluate, resolve_device

TINY = ArchSpec(
    stem=StemSpec(kind="conv", widths=(16,), norm="bn", act="gelu"),
    stages=(StageSpec("mbconv", depth=1, width=24, stride=1, expansion=2.0),
            StageSpec("transformer", depth=1, width=32, stride=2, head_dim=16, attention="global")),
    head=HeadSpec(pool="avg", norm="ln"),
)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, bundle, steps, batch_size, device):
    """The least a training loop can do: no schedule, clipping, checks or validation."""
    model.to(device).train()
    x_all, y_all = bundle.train.x.to(device), bundle.train.y.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(steps):
        j = (i * batch_size) % (len(x_all) - batch_size)
        loss = F.cross_entropy(model(x_all[j:j + batch_size]), y_all[j:j + batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _timed(fn, device):
    """(wall seconds, CPU seconds of this process) of ``fn()``; CPU time is the
    fairer measure on a machine shared with other jobs."""
    _sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w, time.process_time() - c


def bench_overhead(bundle, device, batch_size, epochs, repeats):
    times = {"bare": [], "fit": []}
    steps = epochs * (len(bundle.train) // batch_size)  # fit drops the last partial batch

    def model(r):
        torch.manual_seed(r)
        return hybridnas.build_model(TINY, num_classes=10, in_chans=1)

    runs = {
        "bare": lambda r: bare_loop(model(r), bundle, steps, batch_size, device),
        # the same number of steps, validation after every epoch included
        "fit": lambda r: fit(model(r), bundle, epochs=epochs, batch_size=batch_size,
                             device=device, seed=r),
    }
    runs["bare"](0), runs["fit"](0)  # warm-up (allocator, kernels)
    for r in range(repeats):
        order = ("bare", "fit") if r % 2 == 0 else ("fit", "bare")  # alternate: drift hits both
        for k in order:
            times[k].append(_timed(lambda: runs[k](r), device))
    med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
           for k, v in times.items()}
    print(f"\n1. loop overhead ({steps} steps = {epochs} epochs of digits, batch {batch_size}, "
          f"median of {repeats}, {device}; fit includes {epochs} validation passes over "
          f"{len(bundle.val)} images)")
    print(f"   {'':<24}{'wall s':>9}{'CPU s':>9}{'img/s (CPU)':>13}")
    for k, label in (("bare", "bare loop"), ("fit", "fit")):
        w, c = med[k]
        print(f"   {label:<24}{w:9.3f}{c:9.3f}{steps * batch_size / c:13.0f}")
    print(f"   ratio fit / bare: wall {med['fit'][0] / med['bare'][0]:.3f}, "
          f"CPU {med['fit'][1] / med['bare'][1]:.3f} (target <= 1.05 + validation)")


def bench_loading():
    print("\n2. dataset loading (first load / cached load)")
    cases = [("digits", dict(resolution=16))]
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        cases += [("fashion-mnist", dict(resolution=32)), ("fashion-mnist", dict(resolution=32, subset=5000))]
    cases += [("synthetic", dict(resolution=32, n_train=10000))]
    for name, kw in cases:
        clear_cache()
        t = time.perf_counter()
        b = load_dataset(name, **kw)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        load_dataset(name, **kw)
        warm = time.perf_counter() - t
        print(f"   {name:<14}{str(kw):<36}{cold:7.2f} s  {warm * 1e6:7.1f} us   {b.summary()}")


def bench_accuracy(device, epochs):
    print(f"\n3. accuracy of the tiny C-T hybrid ({sum(p.numel() for p in hybridnas.build_model(TINY, num_classes=10, in_chans=1).parameters())} params)")
    cases = [("digits", dict(resolution=16), 64)]
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        cases.append(("fashion-mnist", dict(resolution=16, subset=10000), 128))
    for name, kw, bs in cases:
        b = load_dataset(name, **kw)
        torch.manual_seed(0)
        model = hybridnas.build_model(TINY, num_classes=b.num_outputs, in_chans=b.in_chans)
        t = time.perf_counter()
        res = fit(model, b, epochs=epochs, batch_size=bs, lr=3e-3, warmup_epochs=0.5, device=device)
        wall = time.perf_counter() - t
        test = evaluate(model, b.test, b.task, device, prefix="test_")
        print(f"   {name:<14}{str(kw):<36}{epochs} epochs {wall:6.1f} s  best val_accuracy "
              f"{res.best_metric:.3f}  test_accuracy {test['test_accuracy']:.3f}  "
              f"{statistics.median(h.images_per_sec for h in res.history):.0f} img/s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--overhead-epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"bench_training: device {device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    digits = load_dataset("digits", resolution=16)
    # subnormal floats (e.g. from softmax) cost CPUs up to 2x; both loops get the same setting
    torch.set_flush_denormal(True)
    bench_overhead(digits, device, args.batch_size, args.overhead_epochs, args.repeats)
    bench_loading()
    bench_accuracy(device, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
