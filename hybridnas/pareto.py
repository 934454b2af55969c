"""Pareto fronts and hypervolume (pure numpy; used by search progress,
run summaries and dashboards).

Objectives are given as columns with a direction each, e.g. accuracy
(maximise) and latency (minimise)::

    >>> import numpy as np
    >>> pts = np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 20.0]])
    >>> pareto_mask(pts, maximize=[True, False]).tolist()
    [True, True, False]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["crowding_distance", "default_reference", "hypervolume", "nondominated_ranks",
           "pareto_mask"]


def _to_min(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != len(maximize):
        raise ValueError(f"points of shape {pts.shape} do not match {len(maximize)} objectives")
    sign = np.where(np.asarray(maximize), -1.0, 1.0)
    return pts * sign


def pareto_mask(points, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (NaN rows are never on the front)."""
    pts = _to_min(points, maximize)
    mask = np.zeros(len(pts), dtype=bool)
    # Cull: the lexicographically smallest point left is never dominated;
    # drop what it dominates and repeat. One pass per front point, so a run
    # of tens of thousands of trials with a small front costs O(n * front).
    left = np.flatnonzero(~np.isnan(pts).any(axis=1))
    left = left[np.lexsort(pts[left].T[::-1])] if len(left) else left
    while len(left):
        best = pts[left[0]]
        rest = pts[left]
        dominated = np.all(rest >= best, axis=1) & np.any(rest > best, axis=1)
        same = np.all(rest == best, axis=1)
        mask[left[same]] = True
        left = left[~dominated & ~same]
    return mask


def nondominated_ranks(points, maximize: Sequence[bool]) -> np.ndarray:
    """Non-dominated sorting (NSGA-II, Deb et al. 2002): rank 0 for the
    Pareto front, rank 1 for the front of what is left, and so on. Rows with
    a NaN come after every front (one rank past the last)."""
    pts = _to_min(points, maximize)
    ranks = np.full(len(pts), -1, dtype=int)
    left = np.flatnonzero(~np.isnan(pts).any(axis=1))
    rank = 0
    while len(left):
        front = left[pareto_mask(pts[left], [False] * pts.shape[1])]
        ranks[front] = rank
        left = np.setdiff1d(left, front)
        rank += 1
    ranks[ranks < 0] = rank
    return ranks


def crowding_distance(points, maximize: Sequence[bool], ranks=None) -> np.ndarray:
    """NSGA-II crowding distance of every row within its own front (``ranks``
    from ``nondominated_ranks``, computed when not given): the sum over the
    objectives of the gap between its two neighbours, each objective scaled
    by its span in the front. A front's extreme points, and fronts of one or
    two points, get ``inf``; rows with a NaN get 0."""
    pts = _to_min(points, maximize)
    ranks = nondominated_ranks(points, maximize) if ranks is None else np.asarray(ranks)
    out = np.zeros(len(pts))
    bad = np.isnan(pts).any(axis=1)
    for r in np.unique(ranks[~bad]):
        members = np.flatnonzero((ranks == r) & ~bad)
        if len(members) <= 2:
            out[members] = np.inf
            continue
        for j in range(pts.shape[1]):
            order = members[np.argsort(pts[members, j], kind="stable")]
            values = pts[order, j]
            out[order[0]] = out[order[-1]] = np.inf
            span = values[-1] - values[0]
            if span > 0:
                out[order[1:-1]] += (values[2:] - values[:-2]) / span
    return out


def default_reference(points, maximize: Sequence[bool]) -> np.ndarray:
    """A reference point slightly worse than the worst value of each objective
    (in the objectives' own directions)."""
    pts = np.asarray(points, dtype=float)
    worst = np.where(np.asarray(maximize), np.nanmin(pts, axis=0), np.nanmax(pts, axis=0))
    span = np.nanmax(pts, axis=0) - np.nanmin(pts, axis=0)
    pad = np.where(span > 0, 0.1 * span, np.maximum(np.abs(worst) * 0.1, 1e-9))
    return np.where(np.asarray(maximize), worst - pad, worst + pad)


def hypervolume(points, maximize: Sequence[bool], reference) -> float:
    """Volume dominated by ``points`` and bounded by ``reference``.

    Exact for any number of objectives (inclusion by slicing; fine for the
    front sizes of a NAS run).
    """
    pts = _to_min(points, maximize)
    ref = _to_min(np.asarray(reference, dtype=float)[None, :], maximize)[0]
    pts = pts[~np.isnan(pts).any(axis=1)]
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[pareto_mask(pts, [False] * pts.shape[1])]
    return float(_hv_min(pts, ref))


def _hv_min(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        order = np.argsort(pts[:, 0])
        vol, best_y = 0.0, ref[1]
        for x, y in pts[order]:
            if y < best_y:
                vol += (ref[0] - x) * (best_y - y)
                best_y = y
        return vol
    # Slice along the last objective.
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    vol = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            sub = pts[: i + 1, :-1]
            sub = sub[pareto_mask(sub, [False] * sub.shape[1])]
            vol += depth * _hv_min(sub, ref[:-1])
    return vol
