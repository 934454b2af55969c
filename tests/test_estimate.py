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


# ---------------------------------------------------------------------------
# --strategy oneshot: supernet epochs, ranked subnets, retraining
# ---------------------------------------------------------------------------

def _oneshot_timing(calibration_s: float = 3.0):
    from hybridnas.search.estimate import EvalTiming, OneShotTiming

    return OneShotTiming(
        device="cpu", supernet_params=240_000, subnets_per_step=4, step_s=0.5, steps_timed=3,
        step_note="3 sandwich step(s) timed after a warm-up step",
        largest=EvalTiming(bn_s=0.2, val_batch_s=0.1), smallest=EvalTiming(bn_s=0.1,
                                                                           val_batch_s=0.05),
        sampled=EvalTiming(bn_s=0.15, val_batch_s=0.05, propose_s=0.05), sampled_desc="two",
        calibration_s=calibration_s, setup_s=2.0,
        retrain=StepTiming(arch="C-T", device="cpu", train_batch_s=0.2, val_batch_s=0.1,
                           latency_s=1.0, setup_s=0.5, batches_timed=3))


ONESHOT = dict(epochs=4, steps_per_epoch=10, val_batches=2, max_subnets=200, retrain_top=2,
               retrain_epochs=2, retrain_batches_per_epoch=10, retrain_val_batches=2)


def test_oneshot_estimate_arithmetic_by_hand():
    from hybridnas.search.estimate import estimate_oneshot

    # epoch = 10 x 0.5 + (0.2 + 2 x 0.1) + (0.1 + 2 x 0.05) = 5.6 s; a subnet
    # 0.05 + 0.15 + 2 x 0.05 = 0.3 s; a retraining 0.5 + 2 x (10 x 0.2 + 2 x 0.1) = 4.9 s
    est = estimate_oneshot(_oneshot_timing(), budget_device_s=100.0, **ONESHOT)
    assert est.epoch_s == pytest.approx(5.6) and est.subnet_s == pytest.approx(0.3)
    assert est.retrain_each_s == pytest.approx(4.9)
    assert est.subnets_per_device_minute == pytest.approx(200.0)
    # 4 epochs (22.4) + calibration (3) leave 74.6: 248 subnets, capped at 200
    # (60); the 14.6 left pays for both retrainings (9.8)
    assert (est.epochs_fit, est.subnets, est.subnets_limited_by, est.retrained) == \
        (4, 200, "--budget-trials 200", 2)
    assert est.device_s == pytest.approx(95.2) and est.wall_s == pytest.approx(97.2)
    assert est.warnings == ()
    text = "\n".join(est.lines())
    assert "supernet 0.24 M params; per supernet epoch 6 CPU device-s" in text
    assert "10 sandwich steps x 500 ms (4 subnets each)" in text
    assert "200 subnets per device-minute; 200 subnet(s) ranked (--budget-trials 200)" in text
    assert "--retrain-top 2 x --retrain-epochs 2: 5 device-s per subnet; 2 of 2 fit" in text
    # two data-parallel workers: half the steps' wall time, twice the device-seconds
    two = estimate_oneshot(_oneshot_timing(), workers=2, **ONESHOT)
    assert two.epoch_wall_s == pytest.approx(3.1) and two.epoch_s == pytest.approx(6.2)
    # a resumed run: 3 epochs and 50 subnets done, 30 device-s spent; no calibration left
    resumed = estimate_oneshot(_oneshot_timing(calibration_s=0.0), budget_device_s=100.0,
                               spent_device_s=30.0, epochs_done=3, subnets_done=50, **ONESHOT)
    assert (resumed.epochs_fit, resumed.subnets, resumed.retrained) == (1, 150, 2)


def test_oneshot_estimate_names_the_knobs_when_the_budget_falls_short():
    from hybridnas.search.estimate import MIN_SUBNETS, ONESHOT_KNOBS, estimate_oneshot

    # 10.8 s: the second epoch starts with 5.2 s left and spends it all (as the run
    # does: it checks the budget between epochs); no subnet, no retraining
    short = estimate_oneshot(_oneshot_timing(), budget_device_s=10.8, **ONESHOT)
    assert (short.epochs_fit, short.subnets, short.retrained) == (2, 0, 0)
    assert "--budget-gpu-hours 0.003 buys 2 of 4 supernet epochs (~6 device-s each; none " \
           "starts once it is spent); raise it or lower --supernet-epochs" in short.warnings
    assert any("only 0 subnet(s) can be ranked" in w and f"aim for {MIN_SUBNETS}" in w
               for w in short.warnings)
    text = "\n".join(short.lines())
    assert all(k in text for k in ONESHOT_KNOBS)
    # the time limit, less the supernet's build (2 s), bounds it the same way
    timed = estimate_oneshot(_oneshot_timing(), time_limit_s=12.0, **ONESHOT)
    assert "--time-limit 12s allows 2 of 4 supernet epochs (~6s each); raise it or lower " \
           "--supernet-epochs" in timed.warnings
    # 36 s: the ranking takes what the supernet leaves (10.6 s: 36 subnets start) and
    # retraining gets nothing; 2 subnets would leave room for both retrainings
    greedy = estimate_oneshot(_oneshot_timing(), budget_device_s=36.0, **ONESHOT)
    assert (greedy.subnets, greedy.subnets_limited_by, greedy.retrained) == \
        (36, "device budget", 0)
    assert any("ranking spends what is left of the device budget" in w for w in greedy.warnings)
    assert greedy.suggested_subnets == 2
    assert "--budget-trials 2 would leave the budget room to retrain" in "\n".join(greedy.lines())
    # slow epochs are called out
    slow = estimate_oneshot(_oneshot_timing(), **{**ONESHOT, "steps_per_epoch": 2000})
    assert any("one supernet epoch takes ~16m41s here" in w for w in slow.warnings)


def test_samples_are_ranked_by_a_count_that_agrees_with_cost():
    """pick_architecture counts MACs from shapes on the meta device (fast):
    the same params as hybridnas.complexity.cost (fvcore), MACs without the
    elementwise ops cost adds (activations, softmax), so lower (by a fifth in
    the tiny stand-in networks, ~1 % in a space's), and the same order."""
    import optuna

    from hybridnas import spaces
    from hybridnas.complexity import cost
    from hybridnas.search.estimate import _size

    def counts(space, shape, n):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
        out = []
        while len(out) < n:
            spec = space.suggest(study.ask())
            if getattr(space, "check", lambda s: True)(spec):
                c = cost(spec, shape, num_classes=10, in_chans=shape[0])
                out.append((_size(spec, shape, 10), (c.macs, c.params)))
        return out

    tiny = counts(TinySpace(), (1, 8, 8), 4)
    for (macs, params), (full_macs, full_params) in tiny:
        assert params == full_params and macs <= full_macs
    order = sorted(range(4), key=lambda i: tiny[i][0][0])
    assert order == sorted(range(4), key=lambda i: tiny[i][1][0])
    stagewise = spaces.load("stagewise", resolution=28, width_mult=0.25)
    for (macs, params), (full_macs, full_params) in counts(stagewise, (1, 28, 28), 1):
        assert params == full_params and 0.97 * full_macs <= macs <= full_macs
