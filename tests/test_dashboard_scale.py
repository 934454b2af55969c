"""Dashboard at the scale of a one-shot run (tens of thousands of evaluated
subnets): a page of a large run draws a stable subset, with every front,
retrained and reference trial in it and a line saying so; a small run's page
is exactly what it was; a one-shot run shows inherited and standalone
metrics apart. The sizes here are small (limits lowered per call);
benchmarks/bench_dashboard.py measures 20,000 rows."""
from __future__ import annotations

import re

import numpy as np
import pytest

from hybridnas.dashboard import get_front_info, get_importance_info, load_run_dir, load_runs
from hybridnas.dashboard._data import shown_mask, run_objectives, choose_x
from hybridnas.dashboard._draw import plot_front
from hybridnas.dashboard._page import build_html
from hybridnas.dashboard.testing import write_example_run
from hybridnas.pareto import pareto_mask

COUNT_LINE = re.compile(r"showing ([\d,]+) of ([\d,]+) subnets; front and retrained drawn in full")


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory):
    return write_example_run(tmp_path_factory.mktemp("scale") / "oneshot", n_trials=300, seed=5,
                             study=False, oneshot=True, retrained=4)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return write_example_run(tmp_path_factory.mktemp("scale") / "small", n_trials=60, seed=6,
                             study=False)


def _brute_pareto(points, maximize):
    pts = np.asarray(points, dtype=float) * np.where(np.asarray(maximize), -1.0, 1.0)
    ok = ~np.isnan(pts).any(axis=1)
    mask = np.zeros(len(pts), dtype=bool)
    for i in np.flatnonzero(ok):
        other = pts[ok]
        mask[i] = not np.any(np.all(other <= pts[i], axis=1) & np.any(other < pts[i], axis=1))
    return mask


def test_pareto_mask_equals_the_pairwise_definition():
    """The culling front (one pass per front point) keeps exactly the rows no
    other row dominates, ties and NaN rows included."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, d = int(rng.integers(0, 30)), int(rng.integers(1, 4))
        pts = rng.integers(0, 4, size=(n, d)).astype(float)  # many ties
        pts[rng.random((n, d)) < 0.1] = np.nan
        maximize = list(rng.random(d) < 0.5)
        np.testing.assert_array_equal(pareto_mask(pts, maximize), _brute_pareto(pts, maximize))


def test_thinned_page_keeps_front_retrained_and_says_so(oneshot_run):
    runs = load_runs([oneshot_run])
    info = get_front_info(runs, max_shown=80)
    pts = info["points"]
    assert info["n_points"] == len(pts) and info["n_shown"] < info["n_points"]
    must = pts.on_front | pts.on_line | pts.reference.notna() | pts.standalone_metric.notna()
    assert must.any() and pts.loc[must, "shown"].all()
    assert pts.standalone_metric.notna().sum() == 4
    # drawn = the front figure's traces hold every kept trial and nothing else
    fig = plot_front(info)
    drawn = {int(c[1]) for t in fig.data if t.customdata is not None and t.mode == "markers"
             and t.name not in ("standalone (retrained)",) for c in t.customdata}
    assert drawn == set(pts.loc[pts.shown, "trial_id"])
    assert re.search(COUNT_LINE, fig.layout.title.subtitle.text)

    # panels with fewer points than the limit draw them all
    from hybridnas.dashboard import get_latency_prediction_info, get_learning_curves_info

    latency = get_latency_prediction_info(runs, max_shown=80)["points"]
    assert 0 < len(latency) < 80 and latency.shown.all()
    curves = get_learning_curves_info(runs, max_shown=80)
    assert set(curves.trial_id) == set(pts.trial_id[pts.standalone_metric.notna()])

    page = build_html(runs, importance=False, max_shown=80)
    note = page.split('<div class="note thinned">')[-1].split("</div>")[0]
    shown, total = (int(v.replace(",", "")) for v in COUNT_LINE.search(note).groups())
    assert total == 300 and shown == page.split("<tbody>")[1].count("<tr")
    rows = set(int(v) for v in re.findall(r'<tr class="[^"]*"><td class="t" data-v="[^"]*">'
                                          r'[^<]*</td><td data-v="(\d+)"', page))
    kept = set(runs[0].trials.trial_id[shown_mask(runs[0], run_objectives(runs, choose_x(runs)),
                                                  80)])
    assert rows == kept and set(pts.loc[must, "trial_id"]) <= rows


def test_oneshot_subnets_without_measured_latency_stand_at_the_prediction(oneshot_run):
    """Like the search, the synthetic run measures latency near the front only."""
    run = load_run_dir(oneshot_run)
    t = run.trials.set_index("trial_id")
    pts = get_front_info([run])["points"].set_index("trial_id")
    assert len(pts) == int((t.status == "COMPLETE").sum())
    predicted = t.loc[pts.index, "latency_ms"].isna()
    assert 0 < predicted.sum() < len(pts)
    np.testing.assert_allclose(pts.x[predicted], t.loc[pts.index[predicted], "predicted_latency_ms"])
    np.testing.assert_allclose(pts.x[~predicted], t.loc[pts.index[~predicted], "latency_ms"])
    assert not pts.on_front[predicted].any() and pts.on_front[~predicted].any()
    assert pts.fidelity[predicted].str.endswith("latency predicted").all()
    assert not pts.fidelity[~predicted].str.contains("predicted").any()


def test_thinning_is_stable_and_fills_the_limit(oneshot_run):
    run = load_run_dir(oneshot_run)
    objectives = run_objectives([run], "latency_ms")
    a, b = shown_mask(run, objectives, 120), shown_mask(run, objectives, 120)
    np.testing.assert_array_equal(a, b)
    assert a.sum() == 120
    assert shown_mask(run, objectives, 400).all()  # fewer trials than the limit: all


def test_small_run_page_is_unchanged(small_run):
    """Under the limit, the default page equals the page that draws everything."""
    runs = load_runs([small_run])
    stamp = re.compile(r"generated [^<|]*")
    full = stamp.sub("", build_html(runs, importance=False, max_shown=None))
    default = stamp.sub("", build_html(runs, importance=False))
    assert default == full and not COUNT_LINE.search(default)
    assert "inherited weights" not in default and "standalone" not in default


def test_oneshot_front_draws_inherited_and_standalone_apart(oneshot_run, small_run):
    info = get_front_info(load_runs([oneshot_run]))
    fig = plot_front(info)
    names = {t.name for t in fig.data}
    assert {"inherited weights (supernet)", "standalone (retrained)",
            "inherited → standalone"} <= names
    alone = next(t for t in fig.data if t.name == "standalone (retrained)")
    pts = info["points"][info["points"].standalone_metric.notna()]
    assert sorted(alone.y) == sorted(pts.standalone_metric)
    assert all(f.startswith("inherited; retrained 12/12") for f in pts.fidelity)
    line = next(t for t in fig.data if t.name == "inherited → standalone")
    assert len(line.y) == 3 * len(pts)  # from inherited to standalone, a gap between
    page = build_html(load_runs([oneshot_run]), importance=False)
    assert "<th>standalone_metric</th>" in page and "<th>fidelity</th>" in page
    # a multi-trial run: none of it
    names = {t.name for t in plot_front(get_front_info(load_runs([small_run]))).data}
    assert not names & {"inherited weights (supernet)", "standalone (retrained)"}


def test_importance_of_a_large_run_is_fitted_on_a_sample(oneshot_run):
    """No study.db needed: parameters from space_params, values from the
    objective columns (predicted latency where none was measured)."""
    import optuna

    run = load_run_dir(oneshot_run)
    fast = optuna.importance.FanovaImportanceEvaluator(n_trees=4, seed=0)
    info = get_importance_info(run, evaluator=fast, min_trials=20, max_trials=40)
    assert info["sampled"] and info["n_trials"] == 40
    assert info["n_eligible"] == int(((run.trials.status == "COMPLETE")
                                      & run.trials.full_fidelity).sum())
    imp = info["importances"]
    assert set(imp.objective) == {"val_accuracy", "latency_ms"}
    for _, grp in imp.groupby("objective"):
        assert grp.importance.sum() == pytest.approx(1.0, abs=1e-6)
    again = get_importance_info(run, evaluator=fast, min_trials=20, max_trials=40)
    assert again["importances"].equals(imp)  # a seeded, stable sample
    # under max_trials: the study path as before (this run has none)
    assert not get_importance_info(run, max_trials=None)["sampled"]


def test_oneshot_fidelity_panel_compares_inherited_with_standalone(oneshot_run):
    from hybridnas.dashboard import get_fidelity_info, plot_fidelity

    runs = load_runs([oneshot_run])
    info = get_fidelity_info(runs)
    t = runs[0].trials
    alone = t[t.standalone_metric.notna()].sort_values("trial_id")
    assert info["points"].sort_values("trial_id").fidelity.tolist() == alone.standalone_metric.tolist()
    assert info["points"].sort_values("trial_id").proxy.tolist() == alone.metric.tolist()
    (stats,) = info["stats"].to_dict("records")
    assert stats["proxy_kind"] == "inherited" and stats["n"] == 4 and stats["epochs"] == 12
    fig = plot_fidelity(info)
    assert "inherited weights vs retrained standalone 12 epochs" in fig.layout.title.subtitle.text
    assert "inherited" in fig.layout.xaxis.title.text


def test_cli_max_shown_zero_draws_every_trial(oneshot_run, tmp_path, capsys):
    from hybridnas.cli import main as cli_main

    out = tmp_path / "all.html"
    assert cli_main(["dashboard", str(oneshot_run), "--out", str(out), "--no-importance",
                     "--max-shown", "0"]) == 0
    assert not COUNT_LINE.search(out.read_text())
    assert cli_main(["dashboard", str(oneshot_run), "--out", str(out), "--no-importance",
                     "--max-shown", "50"]) == 0
    assert COUNT_LINE.search(out.read_text())


def test_thinned_multi_trial_page_counts_trials(tmp_path):
    run = write_example_run(tmp_path / "many", n_trials=150, seed=7, study=False)
    page = build_html(load_runs([run]), importance=False, max_shown=60)
    assert "showing 60 of 150 trials; front and retrained drawn in full" in page


def test_oneshot_run_with_a_study_fits_importance_on_the_study(tmp_path):
    import optuna

    run = load_run_dir(write_example_run(tmp_path / "os", n_trials=40, seed=8, oneshot=True))
    fast = optuna.importance.FanovaImportanceEvaluator(n_trees=4, seed=0)
    info = get_importance_info(run, evaluator=fast, min_trials=20, max_trials=200)
    assert not info["sampled"] and info["note"] is None
    assert info["n_trials"] == int((run.trials.status == "COMPLETE").sum())
    assert set(info["importances"].objective) == {"val_accuracy", "latency_ms"}
