"""Baselines on the very same walk-forward samples as a temporal search.

    >>> from hybridnas.data import load_dataset
    >>> from hybridnas.temporal.baselines import compute_baselines
    >>> bundle = load_dataset("sp500-20", lookback=60)
    >>> rows = compute_baselines(bundle, run_dir="results/my-run", epochs=5)

- ``zero``: predicts a zero return (IC 0 by construction; its MSE is the
  variance of the targets).
- ``mean``: each asset's mean target over the training block.
- ``ridge``: scikit-learn ``Ridge`` on the model inputs (each asset's
  normalised feature window, flattened), one shared linear map per horizon.
- ``seed_financial_hybrid``: the design document's FinancialHybrid module as
  written (``SeedFinancialHybrid``), trained with ``hybridnas.training.fit``
  and the recipe given here.

Each row has the validation and test metrics of the task (``val_ic``,
``val_mse``, ``test_ic``...), ``params``, ``latency_ms`` (single-sample CPU
latency from ``hybridnas.latency.measure``; 0 for the constant predictors)
and ``metric``/``metric_name`` like a trials table, so a dashboard can
overlay them on the front. ``write_baselines`` puts them in
``<run_dir>/baselines.csv``; ``baselines_for_run`` does it for a finished
search with that run's dataset and training recipe, and
``front_with_baselines`` lists the run's Pareto front beside them::

    python -m hybridnas.temporal.baselines results/<run> [--epochs N] [--which zero,mean]
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["compute_baselines", "write_baselines", "baselines_for_run", "front_with_baselines",
           "BASELINES"]

BASELINES = ("zero", "mean", "ridge", "seed_financial_hybrid")


def _stack(dataset, batch_size: int = 512):
    """All (inputs, targets) of a PanelDataset as two tensors."""
    import torch

    xs, ys = [], []
    for i in range(0, len(dataset), batch_size):
        x, y = dataset.batch(torch.arange(i, min(i + batch_size, len(dataset))))
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


class _ConstantPanel:
    """Predicts the same (assets, horizons) values for every sample."""

    def __init__(self, values):
        self.values = values

    def __call__(self, x):
        return self.values.expand(len(x), *self.values.shape)


def _linear_module(coef, intercept, in_shape):
    """The fitted ridge as a torch module over (B, F, A, T) panels."""
    import torch
    from torch import nn

    f, a, t = in_shape

    class RidgePanel(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_chans = f
            self.linear = nn.Linear(f * t, coef.shape[0])
            with torch.no_grad():
                self.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
                self.linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))

        def forward(self, x):
            b = x.shape[0]
            return self.linear(x.permute(0, 2, 1, 3).reshape(b, a, f * t))

    return RidgePanel()


def _scores(predict, bundle, prefix_sets=(("val_", "val"), ("test_", "test"))) -> dict[str, float]:
    import torch

    out: dict[str, float] = {}
    for prefix, attr in prefix_sets:
        x, y = _stack(getattr(bundle, attr))
        with torch.no_grad():
            pred = predict(x)
        for k, v in bundle.task.metrics(pred, y).items():
            out[prefix + k] = float(v)
    return out


def panel_latency_ms(model, input_shape: tuple[int, int, int], repeats: int = 20) -> float:
    """Median single-sample CPU latency (1 thread) of ``model`` on a full panel
    (1, features, assets, time), via ``hybridnas.latency.measure``; NaN if it
    cannot be measured. The model is measured behind a spec-less wrapper so
    the input is the whole panel, whatever the model's spec says."""
    from torch import nn

    class _Panel(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.in_chans = int(input_shape[0])

        def forward(self, x):
            return self.inner(x)

    try:
        from ..latency import measure

        res = measure(_Panel(model), device="cpu", resolution=tuple(input_shape[1:]),
                      in_chans=int(input_shape[0]), threads=1, warmup=3, repeats=repeats)
        return float(res.median_ms)
    except Exception:  # noqa: BLE001 - a row without a latency is still a row
        return math.nan




def compute_baselines(bundle, *, which: tuple[str, ...] = BASELINES, epochs: int = 10,
                      batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05,
                      warmup_epochs: float = 1.0, max_batches_per_epoch: int | None = None,
                      ridge_alpha: float = 100.0, device: str = "auto", seed: int = 0,
                      latency_repeats: int = 20,
                      run_dir: str | None = None) -> list[dict[str, Any]]:
    """Fit and score the baselines on ``bundle`` (a temporal ``DatasetBundle``).

    ``which``: names from ``BASELINES``. The training settings apply to the
    seed FinancialHybrid (give the search's proxy recipe to compare like
    with like). ``latency_repeats``: timed runs per latency figure. Returns
    one dict per baseline; with ``run_dir`` also writes ``baselines.csv`` there.
    """
    import numpy as np
    import torch

    from ..errors import UserError

    unknown = [w for w in which if w not in BASELINES]
    if unknown:
        raise UserError(f"unknown baseline {unknown[0]!r} (known: {', '.join(BASELINES)})")
    task = bundle.task
    f, a, t = bundle.input_shape
    rows = []

    def row(name: str, scores: dict[str, float], params: int, latency: float, note: str):
        rows.append({"name": name, "metric": scores.get(task.metric_name, math.nan),
                     "metric_name": task.metric_name, "params": int(params),
                     "latency_ms": latency, "note": note, **scores})

    if "zero" in which:
        zero = _ConstantPanel(torch.zeros(a, bundle.num_outputs))
        row("zero", _scores(zero, bundle), 0, 0.0, "predicts a zero return")
    if "mean" in which or "ridge" in which:
        x_tr, y_tr = _stack(bundle.train)
    if "mean" in which:
        mean = _ConstantPanel(y_tr.mean(dim=0))
        row("mean", _scores(mean, bundle), a * bundle.num_outputs, 0.0,
            "each asset's mean training-block target")
    if "ridge" in which:
        from sklearn.linear_model import Ridge

        flat = x_tr.permute(0, 2, 1, 3).reshape(-1, f * t).numpy()
        ridge = Ridge(alpha=ridge_alpha).fit(flat, y_tr.reshape(-1, bundle.num_outputs).numpy())
        linear = _linear_module(np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_),
                                (f, a, t)).eval()
        del flat
        row("ridge", _scores(linear, bundle), sum(p.numel() for p in linear.parameters()),
            panel_latency_ms(linear, tuple(bundle.input_shape), latency_repeats),
            f"Ridge(alpha={ridge_alpha}) on the flattened input window")
    if "seed_financial_hybrid" in which:
        from ..training import fit
        from .model import SeedFinancialHybrid

        torch.manual_seed(seed)
        model = SeedFinancialHybrid(f, a, t, horizons=bundle.num_outputs, panel_first=True)
        result = fit(model, bundle, epochs=epochs, batch_size=batch_size, lr=lr,
                     weight_decay=weight_decay, warmup_epochs=warmup_epochs, label_smoothing=0.0,
                     device=device, max_batches_per_epoch=max_batches_per_epoch, seed=seed)
        model.to("cpu").eval()
        scores = _scores(model, bundle)
        row("seed_financial_hybrid", scores, sum(p.numel() for p in model.parameters()),
            panel_latency_ms(model, tuple(bundle.input_shape), latency_repeats),
            f"seed module as written, fit {result.epochs} epochs (best val epoch "
            f"{result.best_epoch}); scores are of the last epoch")
    if run_dir is not None:
        write_baselines(rows, run_dir)
    return rows


def write_baselines(rows: list[dict[str, Any]], run_dir: str) -> str:
    """Write ``rows`` to ``<run_dir>/baselines.csv``; returns the path."""
    import os

    import pandas as pd

    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "baselines.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


_RECIPE = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "max_batches_per_epoch")


def baselines_for_run(run_dir: str, *, which: tuple[str, ...] = BASELINES,
                      data_options: dict[str, Any] | None = None,
                      **overrides: Any) -> list[dict[str, Any]]:
    """Baselines for a search run: its dataset (``subset``, ``seed``) at the
    dataset's default options (lookback 60 for ``sp500-20``; change them with
    ``data_options``), the seed model trained with the run's proxy recipe
    (``epochs``, ``batch_size``, ``lr``... from ``config.yaml``; ``overrides``
    win). Writes ``<run_dir>/baselines.csv`` and returns the rows."""
    from ..data import load_dataset
    from ..errors import UserError
    from ..rundir import RunDir

    cfg = RunDir(run_dir).read_config()  # the guarded reader; UserError names the file
    bundle = load_dataset(cfg["dataset"], data_dir=cfg.get("data_dir"), subset=cfg.get("subset"),
                          seed=int(cfg.get("seed") or 0), **(data_options or {}))
    if getattr(bundle.task, "name", "") != "returns":
        raise UserError(f"{run_dir}: dataset {cfg['dataset']!r} is not a temporal (returns) "
                        f"dataset; baselines apply to temporal runs")
    kw = {k: cfg[k] for k in _RECIPE if cfg.get(k) is not None}
    kw.update(overrides)
    return compute_baselines(bundle, which=which, run_dir=run_dir, seed=int(cfg.get("seed") or 0),
                             **kw)


def front_with_baselines(run_dir: str, measure_panels: bool = False):
    """The run's Pareto front and its baselines in one table (pandas), sorted
    by latency: ``kind`` ('front'/'baseline'), ``name``, ``val_ic``,
    ``val_mse``, ``latency_ms`` (as the search recorded it), ``params``,
    ``lookback``. With ``measure_panels``, ``panel_latency_ms`` re-measures
    every front architecture on a full panel at its own lookback, the way
    the baselines are measured (``panel_latency_ms``)."""
    import json
    import os

    import pandas as pd

    from ..rundir import RunDir

    rows = []
    front_path = os.path.join(run_dir, "pareto.csv")
    cfg: dict[str, Any] = RunDir(run_dir).read_config(required=False)
    shape = tuple(cfg.get("input_shape") or ()) if measure_panels else None
    if os.path.exists(front_path):
        for _, r in pd.read_csv(front_path).iterrows():
            params = json.loads(r["space_params"]) if isinstance(r.get("space_params"), str) else {}
            row = {"kind": "front", "name": f"trial_{int(r['trial_id'])} {r.get('pattern', '')}",
                   "val_ic": r.get("metric"), "val_mse": r.get("val_mse", math.nan),
                   "latency_ms": r.get("latency_ms"), "params": r.get("params"),
                   "lookback": params.get("data.lookback")}
            if isinstance(r.get("reference"), str):
                row["name"] += f" ({r['reference']})"
            if shape and len(shape) == 3:
                from ..builder import build_model
                from ..spec import ArchSpec

                lookback = int(row["lookback"] or shape[2])
                spec = ArchSpec.from_dict(json.loads(r["spec"]))
                model = build_model(spec, num_classes=int(cfg.get("num_outputs") or 1),
                                    in_chans=int(shape[0]))
                row["panel_latency_ms"] = panel_latency_ms(model, (shape[0], shape[1], lookback))
            rows.append(row)
    base_path = os.path.join(run_dir, "baselines.csv")
    if os.path.exists(base_path):
        for _, r in pd.read_csv(base_path).iterrows():
            rows.append({"kind": "baseline", "name": r["name"], "val_ic": r.get("val_ic"),
                         "val_mse": r.get("val_mse"), "latency_ms": r.get("latency_ms"),
                         "params": r.get("params"), "lookback": None,
                         "panel_latency_ms": r.get("latency_ms")})
    columns = ["kind", "name", "val_ic", "val_mse", "latency_ms", "params", "lookback"]
    if measure_panels:
        columns.append("panel_latency_ms")
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["kind", "latency_ms"], ascending=[False, True], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hybridnas.temporal.baselines",
        description="Compute the temporal baselines of a search run (writes baselines.csv) "
                    "and print the run's Pareto front beside them.")
    parser.add_argument("run_dir")
    parser.add_argument("--which", default=",".join(BASELINES),
                        help=f"comma-separated baselines (default: {','.join(BASELINES)})")
    parser.add_argument("--epochs", type=int, help="epochs for the seed model (default: the run's)")
    parser.add_argument("--max-batches-per-epoch", type=int)
    parser.add_argument("--lookback", type=int, help="lookback of the baselines' inputs")
    parser.add_argument("--show", action="store_true", help="only print the table")
    parser.add_argument("--measure-panels", action="store_true",
                        help="re-measure the front's latency on full panels (as the baselines)")
    args = parser.parse_args(argv)
    from ..errors import USER_ERRORS

    try:
        if not args.show:
            over = {k: v for k, v in (("epochs", args.epochs),
                                      ("max_batches_per_epoch", args.max_batches_per_epoch))
                    if v is not None}
            baselines_for_run(args.run_dir, which=tuple(w for w in args.which.split(",") if w),
                              data_options={"lookback": args.lookback} if args.lookback else None,
                              **over)
        table = front_with_baselines(args.run_dir, measure_panels=args.measure_panels)
    except USER_ERRORS as e:
        import sys

        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
