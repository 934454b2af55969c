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
    from hybridnas.rundir import empty_row, rows_to_frame

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


# ---------------------------------------------------------------------------
# hybridnas fidelity on a real run (the session's tiny search)
# ---------------------------------------------------------------------------

@pytest.fixture
def run_copy(tiny_search_run, tmp_path):
    """A private copy of the tiny real run: retraining writes into it."""
    import shutil

    return shutil.copytree(tiny_search_run, tmp_path / "run")


def test_retrain_writes_fidelity_and_reuses_rows(run_copy):
    import json

    from hybridnas.rundir import RunDir, front_eligible, load_run
    from hybridnas.search.fidelity import retrain

    lines: list[str] = []
    out = retrain(run_copy, sample=3, epochs=3, seed=1, log=lines.append)
    run = RunDir(run_copy)
    df, summary = run.read_fidelity()
    trials = load_run(run_copy)
    eligible = set(trials[front_eligible(trials)]["trial_id"])
    assert len(df) == 3 and set(df["trial_id"]) <= eligible
    assert (df["epochs"] == 3).all() and (df["subset"] == 200).all()
    assert df["fidelity_metric"].between(0.0, 1.0).all() and (df["device_seconds"] > 0).all()
    proxy = trials.set_index("trial_id").loc[df["trial_id"], "metric"].to_numpy()
    assert df["proxy_metric"].to_numpy() == pytest.approx(proxy)
    # the summary is the rank agreement of the two stored columns
    expected = rank_agreement(df["proxy_metric"], df["fidelity_metric"])
    assert summary["n"] == 3 and summary["complete"] is True
    for key in ("kendall_tau", "spearman", "top_k_overlap"):
        assert summary[key] == pytest.approx(expected[key], nan_ok=True)
    assert out["trial_ids"] == sorted(df["trial_id"]) == summary["trial_ids"]
    assert json.loads(run.fidelity_json.read_text())["epochs"] == 3
    assert sum(line.startswith("[fidelity] trial") for line in lines) == 3 * 3  # per epoch
    # the same setting again: nothing is retrained, the rows are kept
    again: list[str] = []
    retrain(run_copy, sample=3, epochs=3, seed=1, log=again.append)
    assert not any(line.startswith("[fidelity] trial") for line in again)
    assert run.read_fidelity()[0]["fidelity_metric"].tolist() == df["fidelity_metric"].tolist()


def test_fidelity_command(run_copy, capsys):
    from hybridnas.cli import main
    from hybridnas.rundir import RunDir

    assert main(["fidelity", str(run_copy), "--front", "--epochs", "1"]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    df, summary = RunDir(run_copy).read_fidelity()
    assert len(df) == summary["n"] >= 1 and summary["selection"] == "front"
    # bad input: one clear line, exit 2
    assert main(["fidelity", str(run_copy / "nope"), "--front", "--epochs", "1"]) == 2
    assert main(["fidelity", str(run_copy), "--sample", "0", "--epochs", "1"]) == 2
    assert "--sample 0" in capsys.readouterr().err
