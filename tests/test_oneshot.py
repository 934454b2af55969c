"""``hybridnas search --strategy oneshot`` end to end on digits: rows with
fidelity 'inherited', standalone retraining, export, and resume after kill."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridnas.search.config import SearchConfig
from hybridnas.rundir import load_run
from hybridnas.supernet.search import run_oneshot

OPTIONS = dict(strategy="oneshot", space="interleaved",
               space_options={"width_mult": 0.125, "depth_mult": 0.25}, dataset="digits",
               resolution=8, subset=200, batch_size=32, max_batches_per_epoch=2,
               max_val_batches=1, supernet_epochs=1, sandwich_random=1, budget_trials=8,
               population_size=4, retrain_top=1, retrain_epochs=1, latency_repeats=3)


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneshot")
    cfg = SearchConfig(results_dir=str(root), name="run", **OPTIONS)
    result = run_oneshot(cfg, stream=open(os.devnull, "w"))
    return result


def test_every_evaluated_subnet_is_a_row_with_inherited_fidelity(oneshot_run):
    df = load_run(oneshot_run.run_dir)
    done = df[df.status == "COMPLETE"]
    assert len(done) == 8
    assert set(df.fidelity) == {"inherited"}
    assert done.metric.between(0, 1).all() and done.predicted_latency_ms.gt(0).all()
    retrained = done[done.standalone_metric.notna()]
    assert len(retrained) == 1
    assert (oneshot_run.run_dir / "pareto.csv").exists()
    assert json.loads((oneshot_run.run_dir / "summary.json").read_text())["strategy"] == "oneshot"
    front = df[df.latency_ms.notna()]
    assert len(front) >= 1 and front.checkpoint.notna().all()


def test_a_found_subnet_exports_and_loads(oneshot_run, tmp_path):
    import torch

    import hybridnas
    from hybridnas.export import export_run

    df = load_run(oneshot_run.run_dir)
    tid = int(df[df.standalone_metric.notna()].trial_id.iloc[0])
    export_run(str(oneshot_run.run_dir), trials=[tid], out=str(tmp_path),
               formats=("spec", "pytorch"))
    model = hybridnas.load(next(p for p in tmp_path.iterdir() if p.is_dir()))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_resume_rebuilds_rows_from_the_study(oneshot_run):
    # A kill between telling the study and rewriting the table loses no
    # subnet: the rows come back from the study, and none is evaluated again.
    run_dir = oneshot_run.run_dir
    before = load_run(run_dir)
    for name in ("trials.parquet", "trials.csv"):
        (run_dir / name).unlink()
    again = run_oneshot(resume=str(run_dir), stream=open(os.devnull, "w"))
    after = load_run(again.run_dir)
    assert sorted(after.trial_id) == sorted(before.trial_id)
    assert (after.status == "COMPLETE").sum() == 8


def test_kill_during_supernet_training_then_resume(tmp_path):
    args = [sys.executable, "-m", "hybridnas.cli", "search", "--strategy", "oneshot",
            "--space", "interleaved", "--space-option", "width_mult=0.125",
            "--space-option", "depth_mult=0.25", "--dataset", "digits", "--resolution", "8",
            "--subset", "200", "--batch-size", "16", "--max-batches-per-epoch", "4",
            "--max-val-batches", "1", "--supernet-epochs", "3", "--budget-trials", "3",
            "--retrain-top", "0", "--results-dir", str(tmp_path), "--name", "k"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "k" / "supernet" / "supernet.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.loads(state.read_text())
    assert first["epoch"] < 3, "the run finished before it could be killed"
    result = run_oneshot(resume=str(tmp_path / "k"), stream=open(os.devnull, "w"))
    final = json.loads(state.read_text())
    assert final["epoch"] == 3
    # the epochs finished before the kill are kept as they were
    assert final["history"][:first["epoch"]] == first["history"]
    assert (load_run(result.run_dir).status == "COMPLETE").sum() == 3
    assert not math.isnan(load_run(result.run_dir).metric.max())
