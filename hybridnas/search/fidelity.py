"""Proxy fidelity: how well a search's short training ranks architectures.

Retraining some trials of a run at a higher fidelity (more epochs, more
data) and comparing the two metric columns tells whether the proxy ranks
architectures as the longer training would. The pure parts live here:
which trials to retrain, and the rank agreement of two columns.

    >>> from hybridnas.search.fidelity import rank_agreement
    >>> r = rank_agreement([0.5, 0.6, 0.7, 0.8], [0.55, 0.75, 0.7, 0.9], k=2)
    >>> round(r["kendall_tau"], 3), r["top_k_overlap"]
    (0.667, 0.5)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["kendall_tau", "rank_agreement", "select_trials", "spearman", "top_k_overlap"]


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
