"""Cost before commitment: the estimate's arithmetic, the run's ETA, ``--dry-run``."""
from __future__ import annotations

import pytest
from search_standin import TinySpace  # tests/ is on the path: pytest's rootdir conftest

from hybridnas.search.budget import Budget
from hybridnas.search.estimate import KNOBS, MIN_TRIALS, StepTiming, estimate_trials

STEP = StepTiming(arch="C-T", device="cpu", train_batch_s=0.5, val_batch_s=0.25,
                  latency_s=1.5, setup_s=0.5, batches_timed=3)


def test_estimate_arithmetic_by_hand():
    # epoch = 10 x 0.5 + 4 x 0.25 = 6 s; trial = 3 x 6 + 0.5 + 1.5 = 20 s
    est = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4, concurrency=2,
                          budget_device_s=200.0, unit="cpu")
    assert est.epoch_s == pytest.approx(6.0) and est.trial_s == pytest.approx(20.0)
    assert est.trial_device_s == pytest.approx(20.0)
    assert (est.trials, est.limited_by) == (10, "device budget")   # 200 / 20
    assert est.wall_s == pytest.approx(100.0)                       # 5 waves of 2 x 20 s
    assert est.warnings == ()
    # half a GPU per trial: a trial costs half the device-seconds, so twice as many fit
    gpu = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4, concurrency=4,
                          devices_per_trial=0.5, budget_device_s=200.0, unit="gpu")
    assert gpu.trial_device_s == pytest.approx(10.0) and gpu.trials == 20
    assert gpu.wall_s == pytest.approx(100.0)                       # 5 waves of 4
    first = gpu.lines()[0]
    assert "per epoch 3 GPU device-s (~6s wall: 10 batches x 500 ms + validation 4 x 250 ms)" \
        in first and "per trial 10 GPU device-s (~20s wall: 3 epoch(s) + 2.0 s build" in first
    assert "20 trial(s) fit the device budget" in gpu.lines()[2]


def test_the_tightest_budget_bounds_the_plan():
    kw = dict(epochs=3, batches_per_epoch=10, val_batches=4, concurrency=2)
    # what a resumed run spent is taken off: (200 - 120) / 20 = 4
    est = estimate_trials(STEP, budget_device_s=200.0, spent_device_s=120.0, **kw)
    assert est.trials == 4
    assert estimate_trials(STEP, budget_device_s=200.0, budget_trials=7, trials_done=1,
                           **kw).trials == 6
    # 70 s left of a 100 s limit: 3 waves of 2 trials, and the wall time is the time left
    est = estimate_trials(STEP, time_limit_s=100.0, elapsed_s=30.0, **kw)
    assert (est.trials, est.limited_by) == (6, "time limit") and est.wall_s == pytest.approx(60.0)
    unbounded = estimate_trials(STEP, **kw)
    assert unbounded.trials is None and unbounded.wall_s is None
    assert any("no budget bounds" in line for line in unbounded.lines())


def test_few_trials_and_slow_epochs_are_called_out_with_the_knobs():
    few = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4,
                          budget_device_s=60.0)
    assert few.trials == 3 < MIN_TRIALS
    assert any("only 3 trial(s) fit the device budget" in w for w in few.warnings)
    text = "\n".join(few.lines())
    # 60 s / 5 trials = 12 s each: 2 s build/latency + 3 x 1 s validation leave 7 s
    # for 3 epochs of 0.5 s batches: 4 batches per epoch (then 11 s a trial, 5 fit)
    assert few.suggested_batches == 4
    assert estimate_trials(STEP, epochs=3, batches_per_epoch=4, val_batches=4,
                           budget_device_s=60.0).trials == MIN_TRIALS
    with_bs = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4,
                              budget_device_s=60.0, batch_size=32)
    assert "--max-batches-per-epoch 4 (or --subset ~128) would clear" in "\n".join(with_bs.lines())
    for knob in ("--subset", "--resolution", "--space-option width_mult=", "configs/quickstart.yaml"):
        assert knob in text
    slow = StepTiming(**{**STEP.__dict__, "train_batch_s": 2.0})
    est = estimate_trials(slow, epochs=1, batches_per_epoch=500, val_batches=0,
                          budget_device_s=1e9)
    assert est.epoch_s == pytest.approx(1000.0)
    assert [w for w in est.warnings if "one epoch of one trial takes ~16m40s" in w]
    assert est.suggested_batches == 450          # 900 s / 2 s per batch
    # three trials asked for is not a warning
    asked = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4,
                            budget_device_s=1e4, budget_trials=3)
    assert asked.trials == 3 and asked.warnings == ()
    fine = estimate_trials(STEP, epochs=3, batches_per_epoch=10, val_batches=4,
                           budget_device_s=1e4)
    assert fine.warnings == () and not any(k in "\n".join(fine.lines()) for k in KNOBS)


def test_run_eta_from_budget_pace():
    rows = [{"status": "COMPLETE", "device_seconds": 30.0},
            {"status": "RUNNING", "device_seconds": 10.0}]
    # 40 of 100 device-s in 20 s wall: 60 more at 2 device-s per s = 30 s
    b = Budget(device_hours=100 / 3600)
    assert b.eta_seconds(rows, elapsed=20.0) == pytest.approx(30.0)
    assert b.describe_eta(rows, elapsed=20.0) == "ETA 30s"
    # a trial budget: 1 of 4 finished in 100 s -> 3 more x 100 s
    assert Budget(trials=4).eta_seconds(rows, elapsed=100.0) == pytest.approx(300.0)
    # the time limit caps it
    assert Budget(trials=4, time_limit_s=150.0).describe_eta(rows, elapsed=100.0) == "ETA 50s"
    assert Budget(device_hours=1.0).describe_eta([], elapsed=5.0) == "ETA ?"   # no pace yet
    assert Budget().describe_eta(rows, elapsed=5.0) == ""                       # nothing bounds it
    assert Budget(device_hours=2.0).describe_eta(rows, elapsed=100.0) == "ETA 4h58m"


def test_dry_run_prints_the_estimate_and_creates_nothing(tmp_path, capsys):
    """A dry run times a real step of the tiny space on digits, prints the
    plan and leaves no run directory, study or trial behind (no Ray)."""
    import io

    from hybridnas.search import SearchConfig, run_search

    cfg = SearchConfig(space="tiny", dataset="digits", resolution=8, subset=200, epochs=2,
                       batch_size=32, budget_gpu_hours=0.01, name="dry",
                       results_dir=str(tmp_path / "results"))
    out = io.StringIO()
    result = run_search(cfg, space=TinySpace(), stream=out, dry_run=True)
    text = out.getvalue()
    assert "estimate (strategy trials): per epoch" in text
    assert "median-MACs architecture of 3 random samples" in text
    assert "dry run: nothing created or started" in text
    est = result.estimate
    assert est.batches_per_epoch == 200 // 32    # --subset counts training images
    assert est.trials == int(36.0 // est.trial_device_s)
    assert est.timing.train_batch_s > 0 and est.timing.batches_timed == 3
    assert not (tmp_path / "results").exists()


def test_dry_run_from_the_command_line(tmp_path, capsys):
    from hybridnas.cli import main

    rc = main(["search", "--space", "stagewise", "--space-option", "width_mult=0.25",
               "--space-option", "depth_mult=0.5", "--dataset", "digits", "--subset", "300",
               "--epochs", "1", "--budget-gpu-hours", "1e-4", "--results-dir", str(tmp_path / "r"),
               "--name", "dry", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "trial(s) fit the device budget" in out and "too few to find a front" in out
    assert "--subset N" in out
    assert not (tmp_path / "r").exists()


def test_dry_run_of_a_resume_counts_what_the_run_spent_and_touches_nothing(tiny_search_run):
    import io

    from hybridnas import load_run
    from hybridnas.search import run_search

    before = {p: p.stat().st_mtime_ns for p in tiny_search_run.rglob("*") if p.is_file()}
    ran = int((load_run(tiny_search_run).status != "REJECTED").sum())
    out = io.StringIO()
    result = run_search(resume=tiny_search_run, overrides={"budget_trials": ran + 2},
                        space=TinySpace(), stream=out, dry_run=True)
    assert result.estimate.trials == 2 and "2 trial(s) fit the trial budget" in out.getvalue()
    after = {p: p.stat().st_mtime_ns for p in tiny_search_run.rglob("*") if p.is_file()}
    assert after == before   # no study, table, log or lock written
