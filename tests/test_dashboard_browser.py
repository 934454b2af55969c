"""The dashboard in a real browser: Debian's headless Chromium renders the
page offline; the plots must be drawn, with no JavaScript error, and the
table must sort. Saves a screenshot (set HYBRIDNAS_DASHBOARD_SCREENSHOT to
keep it somewhere)."""
from __future__ import annotations

import os

import pytest

from hybridnas.dashboard import (
    get_front_info,
    load_runs,
    render_dashboard,
    write_front_png,
)
from hybridnas.dashboard._png import find_browser
from hybridnas.dashboard.testing import check_in_browser, write_example_run

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    return [write_example_run(root / "search_a", n_trials=30, seed=0),
            write_example_run(root / "search_b", n_trials=20, seed=1, study=False)]


def test_page_renders_without_errors(runs, tmp_path):
    import optuna

    page = render_dashboard(runs, tmp_path / "report.html",
                            importance=optuna.importance.FanovaImportanceEvaluator(n_trees=8))
    shot = os.environ.get("HYBRIDNAS_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png"
    report = check_in_browser(page, browser=CHROMIUM, screenshot=shot)
    expected = page.read_text().count("Plotly.newPlot(")
    assert report["errors"] == []
    assert expected >= 7  # front, hypervolume, blocks, curves, latency, 2 x importance
    assert report["plots"] == expected
    assert report["main_svgs"] >= expected
    assert report["points"] > 50 and report["bars"] > 10
    assert report["rows"] == 50
    assert report["metric_sorted_desc"] and report["metric_values"] > 20
    from PIL import Image, ImageStat

    with Image.open(report["screenshot"]) as img:
        assert img.size == (1400, 2600)
        assert max(ImageStat.Stat(img.convert("L")).stddev) > 20  # not a blank page


def test_thinned_oneshot_page_renders(tmp_path):
    """A one-shot run above the drawing limit: the sampled front, the
    standalone diamonds and a thinned table draw without error."""
    run = write_example_run(tmp_path / "oneshot", n_trials=400, seed=2, study=False,
                            oneshot=True)
    page = render_dashboard(run, tmp_path / "oneshot.html", importance=False, max_shown=150)
    report = check_in_browser(page, browser=CHROMIUM)
    assert report["errors"] == []
    assert report["plots"] == page.read_text().count("Plotly.newPlot(")
    text = page.read_text()
    shown = int(text.split('<div class="note thinned">showing ')[1].split(" of ")[0])
    assert report["rows"] == shown < 400
    assert report["metric_sorted_desc"]


def test_error_collection_can_fail(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head></head><body><p>x</p>"
                    "<script>undefinedFunction();</script></body></html>")
    report = check_in_browser(page, browser=CHROMIUM)
    assert report["plots"] == 0
    assert any("undefinedFunction" in e for e in report["errors"])


def test_front_png_through_kaleido(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", CHROMIUM)
    assert find_browser() == CHROMIUM
    png = write_front_png(get_front_info(load_runs(runs)), tmp_path / "front.png", log_x=True)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
