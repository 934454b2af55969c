"""Dashboard: figure data checked on numbers, pages and the live hooks smoke-tested.

The hand-built run below is small enough to compute the front and the
hypervolume on paper (see the comments); the synthetic run from
``hybridnas.dashboard.testing`` covers realistic sizes and the Optuna study.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pandas as pd
import pytest

from hybridnas.cli import main as cli_main
from hybridnas.dashboard import (
    get_block_usage_info,
    get_front_info,
    get_hypervolume_info,
    get_importance_info,
    get_latency_prediction_info,
    get_learning_curves_info,
    get_trials_table,
    load_run_dir,
    load_runs,
    render_dashboard,
    write_dashboard,
)
from hybridnas.dashboard.testing import write_example_run
from hybridnas.errors import UserError
from hybridnas.spec import ArchSpec, StageSpec, StemSpec


def _spec(*blocks: str) -> ArchSpec:
    return ArchSpec(stem=StemSpec(kind="conv", widths=(16,)),
                    stages=tuple(StageSpec(b, depth=1, width=32 * (i + 1))
                                 for i, b in enumerate(blocks)))


def _trial(tid, status, metric, latency, blocks, *, finished, seconds=1800.0, full=None,
           curve=None, predicted=math.nan, reference=None, epochs=10):
    spec = _spec(*blocks)
    full = (status == "COMPLETE") if full is None else full
    return {
        "trial_id": tid, "status": status, "arch_id": spec.arch_id, "spec": spec.to_json(),
        "pattern": spec.pattern, "space_params": json.dumps({"stages.0.block": blocks[0]}),
        "params": 1_000_000 + tid, "macs": 50_000_000 + tid, "latency_ms": latency,
        "latency_p10_ms": latency, "latency_p90_ms": latency, "latency_device": "cpu",
        "predicted_latency_ms": predicted, "metric": metric, "metric_name": "val_accuracy",
        "curve": json.dumps(curve if curve is not None else []), "epochs": epochs,
        "max_epochs": 10, "full_fidelity": full, "device_seconds": seconds,
        "accelerator": "cuda:0", "error": "boom" if status == "FAILED" else None,
        "reference": reference, "checkpoint": None,
        "started_at": f"2026-01-01T{finished - 1:02d}:00:00+00:00",
        "finished_at": None if status == "RUNNING" else f"2026-01-01T{finished:02d}:00:00+00:00",
    }


def write_hand_run(path, reference=(0.6, 30.0), csv=False):
    """Five trials, finishing in the order C, B, D, A, E (then F still running).

    Front candidates (full-fidelity COMPLETE): A (0.9, 10 ms), B (0.8, 5 ms),
    C (0.7, 20 ms); C is dominated by A. D is early-stopped with (0.95, 3 ms):
    it would dominate everything but must not count. With reference
    (0.6, 30 ms) the hypervolume is
      after C: (30-20)*(0.7-0.6) = 1.0
      after B: B dominates C: (30-5)*(0.8-0.6) = 5.0
      after D: unchanged 5.0
      after A: 5.0 + (10-5)*0 ... = A's box 20*0.3 = 6 plus B's strip 5*0.2 = 1 -> 7.0
      after E (failed): 7.0
    """
    path.mkdir(parents=True)
    rows = [
        _trial(0, "COMPLETE", 0.9, 10.0, ("mbconv", "transformer"), finished=4,
               curve=[0.5, 0.8, 0.9], predicted=12.0, reference="coatnet_0"),
        _trial(1, "COMPLETE", 0.8, 5.0, ("mbconv", "mbconv"), finished=2,
               curve=[0.4, 0.7, 0.8], predicted=4.0),
        _trial(2, "COMPLETE", 0.7, 20.0, ("convnext", "transformer"), finished=1,
               curve=[0.6, 0.7]),
        _trial(3, "EARLY_STOPPED", 0.95, 3.0, ("convnext", "mbconv"), finished=3,
               curve=[0.9, 0.95], epochs=2),
        _trial(4, "FAILED", math.nan, math.nan, ("mbconv", "transformer"), finished=5,
               seconds=900.0, epochs=0),
        _trial(5, "RUNNING", math.nan, math.nan, ("mbconv", "transformer"), finished=6,
               curve=[0.3], epochs=1),
    ]
    df = pd.DataFrame(rows)
    # text columns may come back as pandas' "string" dtype (missing = <NA>)
    df = df.astype({c: "string" for c in ("status", "arch_id", "spec", "pattern", "error",
                                           "reference", "checkpoint", "finished_at")})
    if csv:
        df.to_csv(path / "trials.csv", index=False)
    else:
        df.to_parquet(path / "trials.parquet", index=False)
    # summary.json and config.yaml as hybridnas.search writes them
    (path / "summary.json").write_text(json.dumps({
        "budget": {"unit": "gpu", "spent_hours": 2.75, "total_hours": 10.0},
        "trials": {"COMPLETE": 3, "EARLY_STOPPED": 1, "FAILED": 1, "REJECTED": 0, "RUNNING": 1},
        "objectives": ["metric", "latency_ms"], "maximize": [True, False],
        "metric_name": "val_accuracy", "front_size": 2, "hypervolume": 7.0,
        "reference_point": list(reference), "front_trial_ids": [1, 0]}))
    (path / "config.yaml").write_text(f"run_name: {path.name}\nstudy_name: {path.name}\n"
                                      "metric_name: val_accuracy\nobjectives: [latency]\n")
    return path


@pytest.fixture
def hand_run(tmp_path):
    return write_hand_run(tmp_path / "hand")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    return write_example_run(tmp_path_factory.mktemp("runs") / "example", n_trials=30, seed=3)


# ---------------------------------------------------------------- front

def test_front_membership_hand_case(hand_run):
    info = get_front_info(load_runs([hand_run]))
    pts = info["points"].set_index("trial_id")
    assert info["x"] == "latency_ms" and info["metric_name"] == "val_accuracy"
    assert sorted(pts.index[pts.on_front]) == [0, 1]
    assert not pts.loc[3, "on_front"]  # early-stopped: better numbers, still off the front
    assert 4 not in pts.index and 5 not in pts.index  # no metric: not plotted
    assert pts.loc[0, "reference"] == "coatnet_0" and pts.loc[0, "pattern"] == "C-T"
    assert "mbconv 1x32 > transformer 1x64" in pts.loc[0, "summary"]
    assert pts.loc[3, "fidelity"].startswith("2/10 epochs")


def test_front_agrees_with_pareto_module_on_example(example_run):
    from hybridnas.pareto import pareto_mask

    run = load_run_dir(example_run)
    t = run.trials
    ok = (t.status == "COMPLETE") & t.full_fidelity
    expected = set(t[ok].trial_id[pareto_mask(t[ok][["metric", "latency_ms"]].to_numpy(),
                                              [True, False])])
    pts = get_front_info([run])["points"]
    assert set(pts[pts.on_front].trial_id) == expected
    # the writer's pareto.csv holds the same trials
    assert set(pd.read_csv(example_run / "pareto.csv").trial_id) == expected


# ---------------------------------------------------------------- hypervolume

def test_hypervolume_curve_hand_case(hand_run):
    info = get_hypervolume_info(load_runs([hand_run]))
    curve = info["curve"]
    assert info["reference"] == [0.6, 30.0] and info["unit"] == "GPU"
    assert curve.trial_id.tolist() == [2, 1, 3, 0, 4]  # finish order; running one left out
    np.testing.assert_allclose(curve.hypervolume, [1.0, 5.0, 5.0, 7.0, 7.0])
    np.testing.assert_allclose(curve.budget_hours, [0.5, 1.0, 1.5, 2.0, 2.25])
    assert curve.front_size.tolist() == [1, 1, 1, 2, 2]


def test_hypervolume_reference_shared_across_runs(tmp_path):
    a = write_hand_run(tmp_path / "a", reference=(0.6, 30.0))
    b = write_hand_run(tmp_path / "b", reference=(0.0, 100.0))
    info = get_hypervolume_info(load_runs([a, b]))
    # default_reference over both runs' eligible points (metric 0.7..0.9, latency 5..20)
    np.testing.assert_allclose(info["reference"], [0.7 - 0.02, 20.0 + 1.5])
    last = info["curve"].groupby("run").hypervolume.last()
    assert last["a"] == pytest.approx(last["b"])  # same data, same reference
    assert set(info["curve"].run) == {"a", "b"}


# ---------------------------------------------------------------- other figures

def test_block_usage_front_vs_all(hand_run):
    usage = get_block_usage_info(load_runs([hand_run]))
    front = usage[usage.group == "front"].set_index(["stage", "block"]).fraction
    assert front.to_dict() == {(0, "mbconv"): 1.0, (1, "mbconv"): 0.5, (1, "transformer"): 0.5}
    all_ = usage[usage.group == "all"].set_index(["stage", "block"])
    assert all_.loc[(0, "mbconv"), "count"] == 4 and all_.loc[(0, "convnext"), "count"] == 2
    assert all_.loc[(1, "transformer"), "fraction"] == pytest.approx(4 / 6)


def test_block_usage_bars_keep_stage_order():
    """The first block drawn on the front may only use stages 1 and 3:
    the x axes still read stage 0, 1, 2, 3."""
    from hybridnas.dashboard._draw import plot_block_usage

    rows = [("front", 1, "convnext"), ("front", 3, "convnext"), ("front", 0, "mbconv"),
            ("front", 2, "mbconv"), ("all", 2, "convnext"), ("all", 0, "mbconv"),
            ("all", 1, "mbconv"), ("all", 3, "mbconv")]
    usage = pd.DataFrame([{"run": "r", "group": g, "stage": st, "block": b, "count": 1,
                           "fraction": 1.0} for g, st, b in rows])
    fig = plot_block_usage(usage)
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert axis.categoryorder == "array"
        assert list(axis.categoryarray) == [f"stage {i}" for i in range(4)]


def test_learning_curves_mark_early_stopped(hand_run):
    curves = get_learning_curves_info(load_runs([hand_run]))
    by_trial = curves.groupby("trial_id")
    assert by_trial.epoch.max().to_dict() == {0: 3, 1: 3, 2: 2, 3: 2, 5: 1}
    assert by_trial.early_stopped.first().to_dict() == {0: False, 1: False, 2: False, 3: True,
                                                        5: False}
    assert curves[curves.trial_id == 0].value.tolist() == [0.5, 0.8, 0.9]


def test_latency_prediction_stats(hand_run):
    info = get_latency_prediction_info(load_runs([hand_run]))
    assert sorted(info["points"].trial_id) == [0, 1]
    # |12-10|/10 = 20 %, |4-5|/5 = 20 %; ranks agree
    assert info["mape"] == pytest.approx(20.0)
    assert info["spearman"] == pytest.approx(1.0)


def test_trials_table_and_csv_input(tmp_path):
    run = write_hand_run(tmp_path / "csvrun", csv=True)
    table = get_trials_table(load_runs([run]))
    assert len(table) == 6 and table.on_front.sum() == 2
    assert table.set_index("trial_id").loc[3, "status"] == "EARLY_STOPPED"


# ---------------------------------------------------------------- importance

def test_importance_per_objective_on_full_fidelity_trials(example_run):
    import optuna

    run = load_run_dir(example_run)
    fast = optuna.importance.FanovaImportanceEvaluator(n_trees=8, seed=0)
    info = get_importance_info(run, evaluator=fast)
    imp = info["importances"]
    assert info["note"] is None
    assert set(imp.objective) == {"val_accuracy", "latency_ms"}
    for _, grp in imp.groupby("objective"):
        assert grp.importance.sum() == pytest.approx(1.0, abs=1e-6)
        assert set(grp.param) == {f"stages.{i}.{k}" for i in range(4)
                                  for k in ("block", "depth", "width")}
    # early-stopped trials are COMPLETE in Optuna but must not count
    t = run.trials
    full = int(((t.status == "COMPLETE") & t.full_fidelity).sum())
    assert full < int(t.status.isin(["COMPLETE", "EARLY_STOPPED"]).sum())
    assert info["n_trials"] == full


def test_importance_graceful_without_enough_trials(hand_run, tmp_path):
    info = get_importance_info(load_run_dir(hand_run))  # no study.db
    assert info["importances"].empty and "study.db" in info["note"]
    few = write_example_run(tmp_path / "few", n_trials=3, seed=0)  # 3 trials
    info = get_importance_info(load_run_dir(few))
    assert info["importances"].empty and "needs" in info["note"]


# ---------------------------------------------------------------- page and hooks

def test_render_dashboard_single_and_overlay(example_run, hand_run, tmp_path):
    out = render_dashboard(example_run, tmp_path / "one.html", importance=False, log_x=True)
    text = out.read_text()
    assert "cdn.plot.ly" not in text.split("<body>")[0].split("</script>")[-1]
    assert text.count("Plotly.newPlot") >= 4 and 'id="trials"' in text
    assert text.count('<tr class="s-') == 30
    assert "&lt;NA&gt;" not in text and ">nan<" not in text and ">None<" not in text
    assert '"type":"log"' in text.replace(" ", "")
    multi = render_dashboard([example_run, hand_run], tmp_path / "two.html", importance=False)
    body = multi.read_text()
    assert "&lt;NA&gt;" not in body and ">nan<" not in body and ">None<" not in body
    assert "front: example" in body and "front: hand" in body
    assert body.count('<tr class="s-') == 36


def test_write_dashboard_default_path_and_empty_run(tmp_path, hand_run):
    assert write_dashboard(hand_run, importance=False) == hand_run / "dashboard.html"
    assert (hand_run / "dashboard.html").stat().st_size > 1_000_000  # plotly.js inside
    fresh = tmp_path / "fresh"  # a search that has not finished a trial yet
    fresh.mkdir()
    assert write_dashboard(fresh, importance=False) == fresh / "dashboard.html"


def test_write_dashboard_never_raises(tmp_path, hand_run, caplog):
    (hand_run / "trials.parquet").write_bytes(b"PAR1 half written")
    with caplog.at_level(logging.WARNING):
        assert write_dashboard(hand_run) is None
    assert "cannot read the trials table" in caplog.text
    assert write_dashboard(tmp_path / "missing") is None


def test_cli_writes_page_and_reports_errors(hand_run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli_main(["dashboard", str(hand_run), "--out", str(out), "--no-importance"]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert cli_main(["dashboard", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such run directory" in err


def test_png_without_browser_is_one_clear_line(hand_run, monkeypatch):
    from hybridnas.dashboard import write_front_png

    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chrome")
    with pytest.raises(UserError, match="apt-get install chromium"):
        write_front_png(get_front_info(load_runs([hand_run])), hand_run / "front.png")


def test_serve_rebuilds_and_signals_changes(hand_run, tmp_path):
    from hybridnas.dashboard._serve import DashboardServer

    server = DashboardServer([hand_run], tmp_path / "live.html", port=0, importance=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        assert "/__version" in page and "Plotly.newPlot" in page
        v1 = urllib.request.urlopen(server.url + "__version", timeout=10).read().decode()
        df = pd.read_parquet(hand_run / "trials.parquet")
        df.loc[df.trial_id == 5, ["status", "metric", "latency_ms"]] = ["COMPLETE", 0.99, 1.0]
        df.to_parquet(hand_run / "trials.parquet", index=False)
        v2 = urllib.request.urlopen(server.url + "__version", timeout=10).read().decode()
        assert v1 != v2
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        assert repr(v2) in page  # rebuilt for the new data
        port = server.httpd.server_address[1]
        with pytest.raises(UserError, match="choose another --port"):
            DashboardServer([hand_run], tmp_path / "x.html", port=port)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_import_is_light():
    code = ("import sys, hybridnas.dashboard; "
            "print([m for m in ('plotly', 'optuna', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_third_objective_front_follows_the_run(hand_run):
    from hybridnas.pareto import hypervolume

    # C (trial 2) is dominated by A on accuracy/latency but is far smaller:
    # with params as a third objective (as the search's summary says) it joins
    # the front, yet the drawn 2-D staircase still runs through A and B only.
    df = pd.read_parquet(hand_run / "trials.parquet")
    df.loc[df.trial_id == 2, "params"] = 10
    df.to_parquet(hand_run / "trials.parquet", index=False)
    summary = json.loads((hand_run / "summary.json").read_text())
    ref = [0.6, 30.0, 2_000_000.0]
    summary.update(objectives=["metric", "latency_ms", "params"], maximize=[True, False, False],
                   reference_point=ref)
    (hand_run / "summary.json").write_text(json.dumps(summary))
    runs = load_runs([hand_run])
    pts = get_front_info(runs)["points"].set_index("trial_id")
    assert sorted(pts.index[pts.on_front]) == [0, 1, 2]
    assert sorted(pts.index[pts.on_line]) == [0, 1]
    info = get_hypervolume_info(runs)
    assert info["objectives"] == ["metric", "latency_ms", "params"] and info["reference"] == ref
    final = np.array([[0.9, 10.0, 1_000_000], [0.8, 5.0, 1_000_001], [0.7, 20.0, 10]])
    assert info["curve"].hypervolume.iloc[-1] == pytest.approx(
        hypervolume(final, [True, False, False], ref))
    assert info["curve"].front_size.tolist() == [1, 2, 2, 3, 3]


def test_fidelity_info_from_a_fake_fidelity_parquet(hand_run, tmp_path):
    from hybridnas.dashboard import get_fidelity_info, load_runs, plot_fidelity
    from hybridnas.rundir import RunDir

    assert len(get_fidelity_info(load_runs([hand_run]))["points"]) == 0
    ids = [int(t) for t in load_runs([hand_run])[0].trials["trial_id"][:4]]
    proxy, full = [0.5, 0.6, 0.7, 0.8], [0.55, 0.75, 0.7, 0.9]  # one of six pairs swapped
    RunDir(hand_run).write_fidelity(
        [{"trial_id": t, "arch_id": "", "proxy_metric": p, "fidelity_metric": f, "epochs": 8,
          "subset": 6000, "device_seconds": 1.0} for t, p, f in zip(ids, proxy, full)],
        {"maximize": True, "proxy_epochs": 2, "k": 2})
    info = get_fidelity_info(load_runs([hand_run]))
    assert info["points"]["trial_id"].tolist() == ids
    assert info["points"]["fidelity"].tolist() == full
    (stats,) = info["stats"].to_dict("records")
    assert stats["kendall_tau"] == pytest.approx(4 / 6) and stats["top_k_overlap"] == 0.5
    assert stats["epochs"] == 8 and stats["proxy_epochs"] == 2
    fig = plot_fidelity(info)
    assert "0.67" in fig.layout.title.text
    page = render_dashboard([hand_run], tmp_path / "d.html", importance=False).read_text()
    assert "Proxy fidelity: Kendall" in page
