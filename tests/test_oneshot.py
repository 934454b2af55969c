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

from hybridnas.app import search_hooks
from hybridnas.rundir import load_run
from hybridnas.search.config import SearchConfig
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
    # checkpoints and the dashboard come through the hooks, as from the CLI
    result = run_oneshot(cfg, stream=open(os.devnull, "w"), hooks=search_hooks())
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
    assert (oneshot_run.run_dir / "dashboard.html").exists()
    # the cost estimate came first, in the log too
    log = (oneshot_run.run_dir / "logs" / "search.log").read_text()
    assert log.index("estimate (strategy oneshot): supernet") < log.index("[supernet] epoch 1/1")
    assert oneshot_run.estimate.epochs_fit == 1 and oneshot_run.estimate.subnets == 8


def test_kept_subnets_score_their_inherited_metric(oneshot_run):
    """A kept front subnet is what was scored: loaded from its checkpoint it
    gets the row's inherited metric on the same validation images (its
    batch-norm statistics and refitted classifier travel with it, not those
    of whichever subnet the supernet evaluated last); a retrained one holds
    its standalone weights and gets its standalone metric."""
    import hybridnas
    from hybridnas.search.runner import load_bundle
    from hybridnas.supernet.train import SandwichSettings
    from hybridnas.training import evaluate

    df = load_run(oneshot_run.run_dir)
    kept = df[df.checkpoint.notna()]
    assert len(kept) >= 1
    cfg = SearchConfig(results_dir=str(oneshot_run.run_dir.parent), name="run", **OPTIONS)
    bundle, _ = load_bundle(cfg, open(os.devnull, "w"))
    for row in kept.itertuples():
        model = hybridnas.load(oneshot_run.run_dir / row.checkpoint)
        got = evaluate(model, bundle.val, bundle.task, "cpu", amp="off",
                       batch_size=SandwichSettings().eval_batch_size,
                       max_batches=cfg.max_val_batches)[bundle.task.metric_name]
        retrained = math.isfinite(row.standalone_metric)
        want = row.standalone_metric if retrained else row.metric
        assert got == pytest.approx(want, abs=1e-6), (row.trial_id, retrained)
    assert (~kept.standalone_metric.notna()).any(), "no kept subnet with inherited weights"


def test_dry_run_of_a_resume_counts_what_the_run_did_and_touches_nothing(oneshot_run):
    import io

    run_dir = oneshot_run.run_dir
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    out = io.StringIO()
    result = run_oneshot(resume=str(run_dir), overrides={"budget_trials": 12}, stream=out,
                         dry_run=True)
    est = result.estimate
    # the supernet's one epoch is trained and 8 subnets ranked: 4 more, no calibration
    assert (est.epochs_done, est.epochs_fit, est.subnets) == (1, 0, 4)
    assert est.timing.calibration_s == 0.0 and est.retrain_each_s > 0
    assert "4 subnet(s) ranked (--budget-trials 12)" in out.getvalue()
    assert "--retrain-top 1 x --retrain-epochs 1" in out.getvalue()
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert after == before   # no study, table, log or lock written


def test_dry_run_from_the_command_line_creates_nothing(tmp_path, capsys):
    """Digits at 8 px as in configs/oneshot_quickstart.yaml, with a budget
    too small for the supernet: the estimate says so and names the knobs."""
    import re

    from hybridnas.cli import main

    rc = main(["search", "--strategy", "oneshot", "--space", "interleaved",
               "--space-option", "width_mult=0.125", "--space-option", "depth_mult=0.25",
               "--dataset", "digits", "--resolution", "8", "--subset", "200",
               "--batch-size", "16", "--max-batches-per-epoch", "6", "--supernet-epochs", "10",
               "--sandwich-random", "1", "--budget-trials", "60", "--retrain-top", "0",
               "--budget-gpu-hours", "0.001", "--results-dir", str(tmp_path / "r"),
               "--name", "dry", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"estimate \(strategy oneshot\): supernet [\d.]+ M params; per supernet "
                     r"epoch \d+ CPU device-s .* 6 sandwich steps x \d+ ms \(3 subnets each\)",
                     out)
    assert re.search(r"\d+ subnets per device-minute; \d+ subnet\(s\) ranked", out)
    assert "--retrain-top" not in out   # nothing to retrain
    # 3.6 device-s cannot pay for 10 epochs of 6 sandwich steps
    assert re.search(r"warning: --budget-gpu-hours 0.001 buys \d of 10 supernet epochs "
                     r"\(~\d+ device-s each; none starts once it is spent\); raise it or lower "
                     r"--supernet-epochs", out)
    assert "--sandwich-random N" in out and "dry run: nothing created or started" in out
    assert not (tmp_path / "r").exists()


def test_resume_rebuilds_rows_from_the_study(oneshot_run):
    # A kill between telling the study and rewriting the table loses no
    # subnet: the rows come back from the study, and none is evaluated again.
    run_dir = oneshot_run.run_dir
    before = load_run(run_dir)
    for name in ("trials.parquet", "trials.csv"):
        (run_dir / name).unlink()
    again = run_oneshot(resume=str(run_dir), stream=open(os.devnull, "w"), hooks=search_hooks())
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
    # run_oneshot alone (no hooks) writes the run directory only: checkpoints and
    # the dashboard are the caller's (hybridnas.app) to hand in
    assert load_run(result.run_dir).checkpoint.isna().all()
    assert not (result.run_dir / "checkpoints").exists()
    assert not (result.run_dir / "dashboard.html").exists()
