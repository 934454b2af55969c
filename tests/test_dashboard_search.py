"""The dashboard on a run written by the real search (Ray + Optuna, tiny
space on digits): the live rewrite happened and the page's data agrees with
the run's own pareto.csv and summary.json."""
from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tiny_search_run):
    return tiny_search_run


def test_live_dashboard_written_by_search(real_run):
    page = real_run / "dashboard.html"
    assert page.exists() and page.stat().st_size > 1_000_000
    assert f"<title>hybridnas search: {real_run.name}</title>" in page.read_text()


def test_dashboard_data_matches_search_outputs(real_run):
    from hybridnas.dashboard import get_front_info, get_hypervolume_info, load_runs

    runs = load_runs([real_run])
    pts = get_front_info(runs)["points"]
    front = pd.read_csv(real_run / "pareto.csv")
    assert set(pts[pts.on_front].trial_id) == set(front.trial_id)
    summary = json.loads((real_run / "summary.json").read_text())
    hv = get_hypervolume_info(runs)
    assert hv["reference"] == pytest.approx(summary["reference_point"])
    assert hv["curve"].hypervolume.iloc[-1] == pytest.approx(summary["hypervolume"])
    assert hv["unit"] == summary["budget"]["unit"].upper()
    assert hv["curve"].budget_hours.iloc[-1] == pytest.approx(summary["budget"]["spent_hours"])


def test_cli_page_for_real_run(real_run, tmp_path):
    from hybridnas.cli import main

    out = tmp_path / "report.html"
    assert main(["dashboard", str(real_run), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Parameter importance" in text and "&lt;NA&gt;" not in text
