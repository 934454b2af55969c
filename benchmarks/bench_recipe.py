"""Which proxy training recipe lets every architecture learn at the quickstart proxy.

Trains the proxy-scaled named references of a space (``space.references``)
and a few sampled architectures with ``hybridnas.training.fit`` at the
quickstart's proxy (configs/quickstart.yaml: resolution, subset, epochs,
batch size, validation images), once per recipe and seed, and prints a table
recipe x architecture -> validation accuracy (mean over seeds, the worst seed
in brackets), plus each recipe's mean and its count of runs at chance
(< 1.5x chance accuracy). A recipe is warm-up epochs, label smoothing,
learning rate and gradient clipping; the search's default recipe
(``SearchConfig``) is chosen from this table.

Data: Fashion-MNIST when its files are installed (Debian's
dataset-fashion-mnist), else scikit-learn's digits; the output says which.

    python benchmarks/bench_recipe.py                 # 4 recipes x 5 archs x 2 seeds = 40 runs
    python benchmarks/bench_recipe.py --seeds 1 --sampled 1 --recipes 1,0,2   # 12 runs

One run takes 20-50 s on an idle 2-core CPU (1 thread), several minutes on
a busy shared one; Ctrl-C prints the table of the runs that finished.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: name -> (warmup_epochs, label_smoothing, lr, grad_clip)
RECIPES = {
    "old-search (wu0 ls0 lr3e-3 clip1)": (0, 0.0, 3e-3, 1.0),
    "fit-default (wu1 ls.1 lr3e-3 clip1)": (1, 0.1, 3e-3, 1.0),
    "wu1 ls.1 lr1e-3 clip1": (1, 0.1, 1e-3, 1.0),
    "wu1 ls.1 lr3e-3 no-clip": (1, 0.1, 3e-3, None),
    "wu1 ls0 lr3e-3 clip1": (1, 0.0, 3e-3, 1.0),
}


def _dataset(cfg: dict):
    from hybridnas.data import load_dataset
    from hybridnas.errors import UserError

    kw = dict(resolution=cfg["resolution"], subset=cfg["subset"], seed=0,
              val_fraction=cfg["val_fraction"])
    try:
        return cfg["dataset"], load_dataset(cfg["dataset"], **kw)
    except UserError:
        fallback = cfg.get("dataset_fallback") or "digits"
        return fallback, load_dataset(fallback, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--sampled", type=int, default=2, help="sampled architectures besides the references")
    ap.add_argument("--recipes", default="0,1,2,3", help="indices into RECIPES (comma-separated)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from hybridnas import spaces
    from hybridnas.builder import build_model
    from hybridnas.training import fit

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    dataset, bundle = _dataset(cfg)
    res = int(cfg["resolution"])
    space = spaces.load(cfg["space"], resolution=res, **(cfg.get("space_options") or {}))
    archs = dict(space.references(res))
    for i in range(args.sampled):
        archs[f"sampled_{i}"] = space.sample(rng=1000 + i)
    names = list(RECIPES)
    recipes = [names[int(i)] for i in args.recipes.split(",")]
    chance = 1.0 / bundle.num_outputs
    print(f"dataset {dataset} at {res}px, {len(bundle.train)} training images, "
          f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, "
          f"val <= {cfg.get('max_val_batches')} batches; space {cfg['space']} "
          f"{cfg.get('space_options')}; {args.seeds} seed(s); chance {chance:.3f}", flush=True)

    acc: dict[tuple[str, str], list[float]] = {}
    t_all = time.perf_counter()
    try:
        for seed in range(args.seeds):
            for arch, spec in archs.items():
                for recipe in recipes:
                    warmup, smoothing, lr, clip = RECIPES[recipe]
                    model = build_model(spec, num_classes=bundle.num_outputs,
                                        in_chans=int(bundle.input_shape[0]))
                    t0 = time.perf_counter()
                    r = fit(model, bundle, epochs=int(cfg["epochs"]),
                            batch_size=int(cfg["batch_size"]), lr=lr,
                            weight_decay=float(cfg.get("weight_decay", 0.05)),
                            warmup_epochs=warmup, label_smoothing=smoothing, grad_clip=clip,
                            device="cpu", max_val_batches=cfg.get("max_val_batches"), seed=seed)
                    value = r.best_metric if math.isfinite(r.best_metric) else chance
                    acc.setdefault((recipe, arch), []).append(value)
                    print(f"  seed {seed} {arch:14s} {recipe:38s} val_acc {value:.3f} "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    except KeyboardInterrupt:  # the table of the runs that finished
        print("\ninterrupted: the table holds the finished runs only")
    _table(acc, recipes, list(archs), chance, args.seeds, time.perf_counter() - t_all)
    return 0


def _table(acc, recipes, archs, chance, seeds, seconds) -> None:
    width = max(len(a) for a in archs) + 2
    print(f"\nval accuracy, mean over up to {seeds} seed(s) [worst seed]; total {seconds:.0f} s")
    print(f"{'recipe':38s}" + "".join(f"{a:>{width + 8}s}" for a in archs)
          + f"{'mean':>8s}{'at chance':>11s}")
    for recipe in recipes:
        cells, everything = [], []
        for arch in archs:
            v = acc.get((recipe, arch), [])
            everything += v
            cells.append((f"{statistics.mean(v):.3f} [{min(v):.3f}]" if v else "-").rjust(width + 8))
        dead = sum(v < 1.5 * chance for v in everything)
        mean = f"{statistics.mean(everything):8.3f}" if everything else f"{'-':>8s}"
        print(f"{recipe:38s}" + "".join(cells) + mean + f"{dead:>6d}/{len(everything)}")


if __name__ == "__main__":
    sys.exit(main())
