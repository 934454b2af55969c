"""Dashboard page details a reader meets: blank (not 0) sizes of trials that
were never counted, the predicted-latency column only with a predictor,
wrapped error text, visible non-front trials, importance only from enough
trials (and saying so otherwise)."""
from __future__ import annotations

import math

import pandas as pd

from hybridnas.dashboard import get_front_info, load_runs
from hybridnas.dashboard._draw import plot_front
from hybridnas.dashboard._page import IMPORTANCE_MIN_TRIALS, build_html, table_html
from hybridnas.dashboard.testing import write_example_run


def _table(predicted=math.nan):
    return pd.DataFrame([
        {"run": "r", "trial_id": 0, "status": "COMPLETE", "pattern": "C-T", "metric": 0.9,
         "latency_ms": 2.0, "predicted_latency_ms": predicted, "params": 1_500_000,
         "macs": 20_000_000, "on_front": True, "error": None},
        {"run": "r", "trial_id": 1, "status": "REJECTED", "pattern": "T-C", "metric": math.nan,
         "latency_ms": math.nan, "predicted_latency_ms": math.nan, "params": 0, "macs": 0,
         "on_front": False, "error": "stages[1].block='mbconv' (C) follows stages[0] (T): " * 3},
    ])


def _cells(page: str, row: int) -> list[str]:
    body = page.split("<tbody>")[1]
    tr = body.split("</tr>")[row]
    return [c.split(">", 1)[1].split("</td")[0] for c in tr.split("<td")[1:]]


def test_rejected_rows_show_blank_sizes_not_zero():
    page = table_html(_table())
    head = [h.split("</th>")[0] for h in page.split("<th>")[1:]]
    done, rejected = _cells(page, 0), _cells(page, 1)
    assert done[head.index("params")] == "1.50M" and done[head.index("macs")] == "20.00M"
    assert rejected[head.index("params")] == "" and rejected[head.index("macs")] == ""


def test_predicted_latency_column_only_with_a_predictor():
    assert "predicted_latency_ms" not in table_html(_table())
    page = table_html(_table(predicted=2.2))
    assert "<th>predicted_latency_ms</th>" in page and ">2.2<" in page


def test_error_text_wraps_in_its_cell():
    page = table_html(_table())
    assert '<td class="err"' in page
    css = build_html.__globals__["_CSS"]
    rule = css.split("td.err{")[1].split("}")[0]
    assert "white-space:normal" in rule


def test_non_front_trials_are_not_faint(tmp_path):
    runs = load_runs([write_example_run(tmp_path / "ex", n_trials=12, seed=1, study=False)])
    fig = plot_front(get_front_info(runs))
    faded = [t for t in fig.data if t.marker.opacity is not None and t.marker.opacity < 1]
    assert faded and min(t.marker.opacity for t in faded) >= 0.5


def test_importance_needs_enough_full_fidelity_trials_and_says_so(tmp_path):
    runs = load_runs([write_example_run(tmp_path / "few", n_trials=12, seed=1)])
    full = int(((runs[0].trials.status == "COMPLETE") & runs[0].trials.full_fidelity).sum())
    assert 0 < full < IMPORTANCE_MIN_TRIALS
    page = build_html(runs)
    assert f"{full} full-fidelity trials; importance needs {IMPORTANCE_MIN_TRIALS}" in page
