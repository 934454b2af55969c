"""Readable results: the front table, the next commands and `hybridnas runs`,
on tiny run directories written here (trials.parquet, summary.json, config.yaml
and logs/search.log as a search writes them)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hybridnas.cli import main
from hybridnas.errors import UserError
from hybridnas.report import (
    format_front,
    format_results,
    format_runs,
    front_rows,
    list_runs,
    next_commands,
    read_run,
    run_overview,
)


def _row(tid, status, metric, latency, *, params=0, macs=0, pattern="C-T", full=None,
         epochs=3, reference=None):
    full = status == "COMPLETE" if full is None else full
    return {"trial_id": tid, "status": status, "arch_id": f"a{tid}", "spec": "{}",
            "pattern": pattern, "space_params": "{}", "params": params, "macs": macs,
            "latency_ms": latency, "predicted_latency_ms": math.nan, "metric": metric,
            "metric_name": "val_accuracy", "curve": "[]", "epochs": epochs, "max_epochs": 3,
            "full_fidelity": full, "device_seconds": 60.0, "reference": reference,
            "error": None}


def write_run(path, log_lines=(), summary=True, running=False):
    """Three finished trials (front: 1 then 0), one rejected, optionally one running."""
    path.mkdir(parents=True)
    rows = [_row(0, "COMPLETE", 0.9, 2.5, params=1_234_567, macs=45_600_000, pattern="C-C-T-T",
                 reference="coatnet_0"),
            _row(1, "COMPLETE", 0.8, 1.0, params=700_000, macs=5_700_000, pattern="C-C-C-C"),
            _row(2, "COMPLETE", 0.7, 3.0, params=900_000, macs=9_000_000),
            _row(3, "REJECTED", math.nan, math.nan, epochs=0)]
    if running:
        rows.append(_row(4, "RUNNING", math.nan, math.nan, epochs=1))
    pd.DataFrame(rows).to_parquet(path / "trials.parquet", index=False)
    counts = pd.DataFrame(rows)["status"].value_counts().to_dict()
    if summary:
        (path / "summary.json").write_text(json.dumps({
            "budget": {"unit": "cpu", "spent_hours": 0.05, "total_hours": 0.08},
            "trials": counts, "objectives": ["metric", "latency_ms"], "maximize": [True, False],
            "metric_name": "val_accuracy", "front_size": 2, "hypervolume": 1.25,
            "reference_point": [0.6, 3.5], "front_trial_ids": [1, 0]}))
    (path / "config.yaml").write_text(f"run_name: {path.name}\ndataset: fashion-mnist\n")
    (path / "logs").mkdir()
    (path / "logs" / "search.log").write_text(
        "".join(f"2026-11-29T10:00:0{i}+00:00 {line}\n" for i, line in enumerate(log_lines)))
    return path


START = "[search] run r -> results/r | space stagewise at 28px"
FINISHED = "[search] finished: results/r"
INTERRUPTED = "[search] interrupted: results/r"


def test_front_rows_follow_the_summary_order_and_skip_unknown_ids(tmp_path):
    trials, summary, config = read_run(write_run(tmp_path / "r"))
    rows = front_rows(trials, [1, 0, 99])
    assert [r["trial"] for r in rows] == [1, 0]
    assert rows[1]["params"] == 1_234_567 and rows[1]["reference"] == "coatnet_0"
    assert rows[0]["reference"] is None and rows[0]["full_fidelity"]
    assert config["dataset"] == "fashion-mnist" and summary["front_size"] == 2


def test_front_table_is_readable(tmp_path):
    trials, summary, _ = read_run(write_run(tmp_path / "r"))
    text = format_front(front_rows(trials, summary["front_trial_ids"]))
    lines = text.splitlines()
    assert lines[0].split() == ["trial", "pattern", "params", "MACs", "latency", "val_accuracy",
                                "fidelity"]
    assert lines[2].split() == ["1", "C-C-C-C", "700", "k", "5.70", "M", "1.00", "ms", "0.8000",
                                "3/3", "ep"]
    assert lines[3].split()[:4] == ["0", "(coatnet_0)", "C-C-T-T", "1.23"]
    assert "45.6 M" in lines[3] and "2.50 ms" in lines[3]
    assert "no trial on the front" in format_front([])


def test_low_fidelity_and_missing_values_are_marked(tmp_path):
    trials = pd.DataFrame([_row(7, "COMPLETE", math.nan, math.nan, full=False, epochs=1)])
    row = format_front(front_rows(trials, [7])).splitlines()[2]
    assert row.split() == ["7", "C-T", "1/3", "ep", "(low)"]  # blank params/MACs/latency/metric


def test_results_name_the_run_and_the_next_commands(tmp_path):
    run = write_run(tmp_path / "my run")
    trials, summary, config = read_run(run)
    text = format_results(trials, summary, run, dataset=config["dataset"])
    assert f"Pareto front of {run}: 2 trial(s), hypervolume 1.25" in text
    assert f"hybridnas dashboard '{run}'" in text  # quoted: the path has a space
    assert f"hybridnas export '{run}' --pareto" in text
    assert f"hybridnas train '{run}/export/trial_0' --dataset fashion-mnist" in text
    assert next_commands("results/x") == ["hybridnas dashboard results/x",
                                          "hybridnas export results/x --pareto"]


@pytest.mark.parametrize("lines, running, state", [
    ((START, FINISHED), False, "finished"),
    ((START, INTERRUPTED), True, "interrupted"),
    ((START, INTERRUPTED, START), True, "running or killed"),  # resumed, not ended
    ((START, FINISHED, START, FINISHED), False, "finished"),
    ((), True, "running or killed"),
    ((), False, "unknown"),
])
def test_run_state_from_the_search_log(tmp_path, lines, running, state):
    assert run_overview(write_run(tmp_path / "r", lines, running=running))["state"] == state


def test_overview_counts_trials_without_a_summary(tmp_path):
    o = run_overview(write_run(tmp_path / "r", summary=False, running=True))
    assert o["trials"] == {"COMPLETE": 3, "REJECTED": 1, "RUNNING": 1}
    assert math.isnan(o["budget_spent_hours"]) and o["front_size"] == 0


def test_list_runs_skips_other_folders_and_reports_unreadable_runs(tmp_path):
    write_run(tmp_path / "b_run", (START, FINISHED))
    write_run(tmp_path / "a_run", (START,), running=True)
    (tmp_path / "train" / "x").mkdir(parents=True)  # `hybridnas train` output: not a run
    broken = tmp_path / "c_broken"
    broken.mkdir()
    (broken / "trials.parquet").write_text("not parquet")
    runs = list_runs(tmp_path)
    assert [r["name"] for r in runs] == ["a_run", "b_run", "c_broken"]
    assert runs[2]["state"].startswith("unreadable")
    table = format_runs(runs).splitlines()
    assert table[0].split() == ["run", "state", "trials", "budget", "front", "HV"]
    assert table[3].split() == ["b_run", "finished", "3", "done,", "1", "rejected", "0.05", "/",
                                "0.08", "CPU-h", "2", "1.25"]
    assert "1 running" in table[2]
    with pytest.raises(UserError, match="no such folder"):
        list_runs(tmp_path / "missing")


def test_runs_command_lists_a_folder_or_shows_one_run(tmp_path, capsys):
    run = write_run(tmp_path / "r", (START, FINISHED))
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[:2] == ["r", "finished"]
    assert main(["runs", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Pareto front of" in out and "--dataset fashion-mnist" in out
    assert main(["runs", str(tmp_path / "missing")]) == 2
