"""Proxy fidelity: how well a search's short training ranks architectures.

Retraining some trials of a run at a higher fidelity (more epochs, more
data) and comparing the two metric columns tells whether the proxy ranks
architectures as the longer training would. The pure parts live here:
which trials to retrain, and the rank agreement of two columns;
``retrain`` (``hybridnas fidelity``) does the retraining and stores the
result in the run (``fidelity.parquet`` and ``fidelity.json``, through
``hybridnas.rundir``).

    >>> from hybridnas.search.fidelity import rank_agreement
    >>> r = rank_agreement([0.5, 0.6, 0.7, 0.8], [0.55, 0.75, 0.7, 0.9], k=2)
    >>> round(r["kendall_tau"], 3), r["top_k_overlap"]
    (0.667, 0.5)
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["kendall_tau", "rank_agreement", "retrain", "select_trials", "spearman",
           "top_k_overlap"]


def _pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """The two columns as floats, rows with a NaN in either dropped."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-D columns of one length, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    return a[ok], b[ok]


def kendall_tau(x, y) -> float:
    """Kendall's tau-b between two columns (ties counted as in scipy); NaN
    with fewer than two complete rows or a constant column."""
    from scipy.stats import kendalltau

    a, b = _pairs(x, y)
    if len(a) < 2:
        return math.nan
    return float(kendalltau(a, b).statistic)


def spearman(x, y) -> float:
    """Spearman's rank correlation between two columns; NaN with fewer than
    two complete rows or a constant column."""
    from scipy.stats import spearmanr

    a, b = _pairs(x, y)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(spearmanr(a, b).statistic)


def top_k_overlap(x, y, k: int, maximize: bool = True) -> float:
    """Share of the ``k`` best rows by ``x`` that are also among the ``k``
    best by ``y`` (1.0: the proxy picks the same top ``k``). Ties keep the
    rows' order; ``k`` is capped at the number of complete rows."""
    a, b = _pairs(x, y)
    k = min(int(k), len(a))
    if k < 1:
        return math.nan
    sign = -1.0 if maximize else 1.0
    top_a = set(np.argsort(sign * a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(sign * b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def rank_agreement(proxy, target, k: int | None = None, maximize: bool = True) -> dict[str, Any]:
    """How well ``proxy`` (the search's metric per trial) ranks like
    ``target`` (the same trials at a higher fidelity): ``n`` (complete
    pairs), ``kendall_tau``, ``spearman``, ``k`` and ``top_k_overlap``
    (``k`` defaults to a quarter of ``n``, at least 1)."""
    a, _ = _pairs(proxy, target)
    n = len(a)
    if k is None:
        k = max(1, n // 4)
    return {"n": n, "kendall_tau": kendall_tau(proxy, target), "spearman": spearman(proxy, target),
            "k": min(int(k), n), "top_k_overlap": top_k_overlap(proxy, target, k, maximize)}


def select_trials(df, *, sample: int | None = None, front: bool = False,
                  columns: Sequence[str] = ("metric",), maximize: Sequence[bool] = (True,),
                  seed: int = 0) -> list[int]:
    """Trial ids of a run's trials table ``df`` to retrain at higher fidelity.

    ``front=True``: the run's Pareto front over ``columns``/``maximize``
    (``hybridnas.rundir.front_of``). ``sample=K``: K trials drawn at
    random (``seed``) among those that may enter the front (COMPLETE at full
    fidelity, objectives known), all of them when there are fewer. Exactly
    one of the two must be given. Ids are returned sorted.
    """
    from ..rundir import front_eligible, front_of

    if (sample is None) == (not front):
        raise UserError("fidelity: give exactly one of --sample K or --front")
    if front:
        return sorted(int(t) for t in front_of(df, columns, maximize)["trial_id"])
    if int(sample) < 1:
        raise UserError(f"fidelity: --sample {sample} must be at least 1")
    # the trials front_of compares: the same rows, without the Pareto filter
    ok = df[front_eligible(df, columns)]
    ids = sorted(int(t) for t in ok["trial_id"])
    if len(ids) <= int(sample):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(int(t) for t in rng.choice(ids, size=int(sample), replace=False))


def retrain(run_dir: str | os.PathLike, *, epochs: int, sample: int | None = None,
            front: bool = False, subset: int | None = None, seed: int = 0, k: int | None = None,
            device: str = "auto", log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Retrain trials of a finished run at a higher fidelity and measure how
    well the run's proxy metric ranks them.

    ``run_dir``: a search run directory. ``sample=K`` or ``front=True``
    chooses the trials (``select_trials``; ``seed`` draws the sample).
    Each is built from its spec and trained by ``hybridnas.training.fit``
    with the run's recipe (dataset, resolution, validation split, batch
    size, learning rate, weight decay, warm-up, label smoothing, and the
    trial's own seed) for ``epochs`` epochs on ``subset`` training images
    (default: the run's subset), validated on the whole validation split.
    ``log`` gets a line per epoch (None: quiet).

    After every trial the rows so far are written to the run's
    ``fidelity.parquet`` with ``fidelity.json`` (the summary this returns:
    ``rank_agreement`` of proxy against retrained metric, plus the setting,
    trial ids and device seconds), so an interrupted call loses at most the
    trial it was training; rows already there with the same ``epochs`` and
    ``subset`` are reused, not retrained. Raises ``UserError`` for a folder
    that is not a run, a bad selection or nothing to retrain.
    """
    from ..builder import build_model
    from ..data import load_dataset
    from ..rundir import RunDir, run_objectives
    from ..spec import ArchSpec
    from ..training import fit, resolve_device
    from .config import SearchConfig
    from .runner import _data_kwargs
    from .settings import TrainSettings

    if int(epochs) < 1:
        raise UserError(f"fidelity: --epochs {epochs} must be at least 1")
    if subset is not None and int(subset) < 1:
        raise UserError(f"fidelity: --subset {subset} must be at least 1")
    run = RunDir(run_dir)
    trials = run.read_trials()
    config = run.read_config()
    columns, maximize = run_objectives(config, run.read_summary())
    ids = select_trials(trials, sample=sample, front=front, columns=columns, maximize=maximize,
                        seed=seed)
    if not ids:
        raise UserError(f"{run.path}: no trial may enter the front (COMPLETE at full fidelity "
                        f"with every objective known), so there is nothing to retrain")
    # the run's options (a key a later version added takes its default)
    cfg = SearchConfig(**{k: v for k, v in config.items() if k in SearchConfig.__dataclass_fields__})
    recipe = TrainSettings.from_config(cfg)
    data_kw = {**_data_kwargs(cfg), "subset": int(subset) if subset is not None else cfg.subset}
    bundle = load_dataset(**data_kw)
    n_train = len(bundle.train)
    space = []  # loaded once, only for trials with their own data decisions (temporal lookback)
    dev = resolve_device(device)
    by_id = trials.set_index("trial_id")
    old, _ = run.read_fidelity()
    rows: dict[int, dict[str, Any]] = {}
    if old is not None:
        same = old[(old["epochs"] == int(epochs)) & (old["subset"] == n_train)]
        rows = {int(r["trial_id"]): dict(r) for r in same.to_dict("records")
                if int(r["trial_id"]) in ids}
    started = time.perf_counter()

    def summary() -> dict[str, Any]:
        done = [rows[t] for t in ids if t in rows]
        agreement = rank_agreement([r["proxy_metric"] for r in done],
                                   [r["fidelity_metric"] for r in done], k=k, maximize=maximize[0])
        return {**agreement, "metric_name": config.get("metric_name", "metric"),
                "maximize": bool(maximize[0]), "epochs": int(epochs), "subset": n_train,
                "proxy_epochs": cfg.epochs, "proxy_subset": cfg.subset,
                "selection": "front" if front else f"sample {int(sample)} (seed {seed})",
                "trial_ids": [int(r["trial_id"]) for r in done],
                "device_seconds": float(sum(r["device_seconds"] for r in done)),
                "device": str(dev), "complete": len(done) == len(ids),
                "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    for i, tid in enumerate(ids, 1):
        if tid in rows:
            continue
        row = by_id.loc[tid]
        spec = ArchSpec.from_json(row["spec"])
        t0 = time.perf_counter()
        params = json.loads(row["space_params"]) if isinstance(row["space_params"], str) else {}
        if any(str(key).startswith("data.") for key in params):
            if not space:
                from .. import spaces

                space.append(spaces.load(cfg.space, resolution=cfg.resolution,
                                         **(cfg.space_options or {})))
            bundle = load_dataset(**{**data_kw, **space[0].data_params(params)})
        model = build_model(spec, num_classes=bundle.num_outputs, in_chans=int(bundle.input_shape[0]))

        def on_epoch(r, tid=tid, i=i) -> None:
            if log is not None:
                log(f"[fidelity] trial {tid} ({i}/{len(ids)}) epoch {r.epoch}/{r.max_epochs}: "
                    f"{r.metric:.4f} (proxy {float(row['metric']):.4f}, {r.seconds:.0f} s)")

        result = fit(model, bundle, epochs=int(epochs), batch_size=recipe.batch_size, lr=recipe.lr,
                     weight_decay=recipe.weight_decay, warmup_epochs=recipe.warmup_epochs,
                     label_smoothing=recipe.label_smoothing, grad_clip=recipe.grad_clip,
                     device=dev, amp=recipe.amp, on_epoch=on_epoch, seed=recipe.seed + tid)
        rows[tid] = {"trial_id": tid, "arch_id": spec.arch_id, "proxy_metric": float(row["metric"]),
                     "fidelity_metric": float(result.best_metric),
                     "epochs": int(epochs), "subset": n_train,
                     "device_seconds": time.perf_counter() - t0}
        run.write_fidelity(rows.values(), summary())
    out = summary()
    run.write_fidelity(rows.values(), out)
    if log is not None:
        log(f"[fidelity] {out['n']} trials retrained for {epochs} epochs on {n_train} images "
            f"in {time.perf_counter() - started:.0f} s: Kendall tau {out['kendall_tau']:.3f}, "
            f"Spearman {out['spearman']:.3f}, top-{out['k']} overlap {out['top_k_overlap']:.2f}")
    return out
