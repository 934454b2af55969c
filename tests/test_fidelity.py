"""Proxy fidelity: rank agreement of two metric columns, worked out by hand,
and which trials of a run are picked for retraining."""
from __future__ import annotations

import math

import pytest

from hybridnas.errors import UserError
from hybridnas.search.fidelity import (
    kendall_tau,
    rank_agreement,
    select_trials,
    spearman,
    top_k_overlap,
)


def test_rank_agreement_by_hand():
    proxy = [0.5, 0.6, 0.7, 0.8]
    target = [0.55, 0.75, 0.7, 0.9]  # one of six pairs swapped: (1, 2)
    r = rank_agreement(proxy, target, k=2)
    assert r["n"] == 4
    assert r["kendall_tau"] == pytest.approx((5 - 1) / 6)
    assert r["spearman"] == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))  # d^2 = 0+1+1+0
    assert r["top_k_overlap"] == 0.5  # top-2 by proxy {3, 2}, by target {3, 1}


def test_perfect_reversed_and_missing():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # a NaN drops its row from both columns
    assert kendall_tau([1, 2, math.nan, 3], [1, 2, 0, 3]) == pytest.approx(1.0)
    assert math.isnan(kendall_tau([1], [1]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_top_k_overlap_follows_the_direction():
    losses_proxy, losses_full = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]
    assert top_k_overlap(losses_proxy, losses_full, 2, maximize=False) == 0.0
    assert top_k_overlap(losses_proxy, losses_proxy, 2, maximize=False) == 1.0
    assert top_k_overlap([1, 2], [1, 2], 5) == 1.0  # k capped at the rows there are
    assert rank_agreement(range(8), range(8))["k"] == 2  # default: a quarter of n


def _table():
    from hybridnas.search.run import empty_row, rows_to_frame

    rows = []
    spec = [  # (status, full fidelity, metric, latency)
        ("COMPLETE", True, 0.9, 10.0),   # 0: front
        ("COMPLETE", True, 0.8, 5.0),    # 1: front
        ("COMPLETE", True, 0.7, 20.0),   # 2: dominated
        ("EARLY_STOPPED", False, 0.95, 1.0),  # 3: never compared
        ("REJECTED", False, math.nan, math.nan),  # 4
        ("COMPLETE", True, 0.6, 1.0),    # 5: front
    ]
    for i, (status, full, metric, lat) in enumerate(spec):
        row = empty_row(i)
        row.update(status=status, full_fidelity=full, metric=metric, latency_ms=lat)
        rows.append(row)
    return rows_to_frame(rows)


def test_select_trials_front_and_sample():
    df = _table()
    cols, maxi = ["metric", "latency_ms"], [True, False]
    assert select_trials(df, front=True, columns=cols, maximize=maxi) == [0, 1, 5]
    assert select_trials(df, sample=10, columns=cols, maximize=maxi) == [0, 1, 2, 5]
    two = select_trials(df, sample=2, columns=cols, maximize=maxi, seed=3)
    assert len(two) == 2 and set(two) <= {0, 1, 2, 5}
    assert two == select_trials(df, sample=2, columns=cols, maximize=maxi, seed=3)
    draws = {tuple(select_trials(df, sample=2, seed=s)) for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_select_trials_needs_one_way():
    df = _table()
    with pytest.raises(UserError):
        select_trials(df)
    with pytest.raises(UserError):
        select_trials(df, sample=2, front=True)
    with pytest.raises(UserError):
        select_trials(df, sample=0)
