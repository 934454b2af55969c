"""Search engine tests: options, budget logic, and tiny real searches on digits.

The searches share one local Ray session (module fixture) and use
``tests/search_standin.py``'s two-stage space at 8x8 so each takes seconds.
"""
from __future__ import annotations

import json
import math
import re

import pytest
from search_standin import TinySpace  # tests/ is on the path: pytest's rootdir conftest

from hybridnas.errors import UserError
from hybridnas.search.budget import Budget
from hybridnas.search.config import SearchConfig, parse_duration

TINY = dict(space="tiny", dataset="digits", resolution=8, subset=200, epochs=2, batch_size=64,
            latency_repeats=5, max_concurrent=2, dashboard_every=100)


# ---------------------------------------------------------------- no Ray


def test_durations_and_option_checks():
    assert parse_duration("10m") == 600 and parse_duration(90) == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(UserError, match="time_limit"):
        SearchConfig(time_limit="soon").check()
    with pytest.raises(UserError, match="sampler='cmaes'"):
        SearchConfig(sampler="cmaes").check()
    with pytest.raises(UserError, match="unknown option 'epoch'"):
        SearchConfig.from_mapping({"epoch": 3}, source="x.yaml")
    cfg = SearchConfig.from_mapping({"objectives": "latency,params", "time-limit": "2m"})
    assert cfg.objectives == ["latency", "params"] and cfg.time_limit == 120


def test_flags_override_config_file(tmp_path):
    import argparse

    from hybridnas.search.cli import add_arguments, options_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--epochs", "5", "--sampler", "random", "--space-option", "width_mult=0.5",
                         "--with-references", "-v"])
    overrides, config_path, resume = options_from_args(args)
    base = SearchConfig.from_mapping({"epochs": 2, "dataset": "digits", "sampler": "tpe"})
    cfg = base.merged(overrides)
    assert (cfg.epochs, cfg.sampler, cfg.dataset) == (5, "random", "digits")
    assert cfg.space_options == {"width_mult": 0.5} and cfg.with_references and cfg.verbose == 1
    # flags left out do not reset what the file says
    assert "batch_size" not in overrides


def test_help_documents_every_option():
    import argparse

    from hybridnas.search.cli import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    dests = {a.dest for a in p._actions}
    missing = [f for f in SearchConfig.__dataclass_fields__ if f not in dests]
    assert not missing, f"options without a flag: {missing}"


def test_budget_stops_before_exceeding():
    b = Budget(device_hours=10 / 3600, unit="cpu")  # 10 device-seconds
    rows = [{"status": "COMPLETE", "device_seconds": 3.0}]
    assert b.why_not_start(rows) is None                      # 3 + 3 <= 10
    rows.append({"status": "COMPLETE", "device_seconds": 3.0})
    assert b.why_not_start(rows) is None                      # 6 + 3 <= 10
    rows.append({"status": "RUNNING", "device_seconds": 1.0})
    assert "would be exceeded" in b.why_not_start(rows)       # 7 + 2 (rest) + 3 > 10
    assert "CPU device-hours" in b.describe(rows)
    assert "trial budget" in Budget(trials=2).why_not_start(rows[:2])
    assert Budget(trials=2).why_not_start([{"status": "REJECTED"}] * 5) is None
    # a proposal Tune has not started yet (no row) counts against both budgets
    assert Budget(trials=3).why_not_start(rows[:2]) is None
    assert "trial budget" in Budget(trials=3).why_not_start(rows[:2], pending=1)
    assert b.why_not_start(rows[:1], pending=1) is None            # 3 + 3 + 3 <= 10
    assert "would be exceeded" in b.why_not_start(rows[:2], pending=1)  # 6 + 3 + 3 > 10


def test_budget_estimates_before_any_trial_finished():
    b = Budget(device_hours=1.0)
    first = {"status": "RUNNING", "epochs": 0, "device_seconds": 0.0, "max_epochs": 3}
    assert b.estimate_seconds([first]) is None
    assert b.should_wait([first])             # one trial at a time until a cost is known
    assert b.should_wait([], outstanding=1) and not b.should_wait([])
    first.update(epochs=1, device_seconds=2.0)
    assert b.estimate_seconds([first]) == pytest.approx(6.0)  # projected to 3 epochs
    assert not b.should_wait([first])
    assert not Budget(trials=5).should_wait([dict(first, epochs=0)])  # no device budget


def _temporal_stride_spec(space):
    """A temporal spec that downsamples time 100x: valid at lookback 90,
    not at 30 (the synthetic panel's default)."""
    import dataclasses

    spec = next(s for s in map(space.sample, range(200)) if len(s.stages) == 3)
    return dataclasses.replace(
        spec, stem=dataclasses.replace(spec.stem, strides=(1, 5, 5)),
        stages=tuple(dataclasses.replace(st, stride=2) if i < 2 else st
                     for i, st in enumerate(spec.stages)))


def test_temporal_trial_is_validated_and_timed_at_its_own_lookback(tmp_path, monkeypatch):
    """A temporal trial draws data.lookback: the searcher validates the
    architecture at that lookback and the trial times the whole
    (assets, lookback) panel, through the service and without it."""
    spaces = pytest.importorskip("hybridnas.spaces")
    import hybridnas
    import hybridnas.latency
    from hybridnas.data import load_dataset
    from hybridnas.latency import LatencyService
    from hybridnas.search.searcher import ArchSearcher
    from hybridnas.search.settings import TrialLatency, TrialSettings
    from hybridnas.search.trial import latency_resolution, measure_latency

    base = dict(name="synthetic-panel", subset=64, seed=0)
    default = load_dataset(**base)
    space = spaces.load("temporal", resolution=default.input_shape[-1])
    spec = _temporal_stride_spec(space)
    searcher = ArchSearcher.__new__(ArchSearcher)  # only its proposal checks, no study
    searcher._hn_space, searcher._resolution, searcher._shapes = space, default.input_shape[-1], {}
    searcher._settings = TrialSettings(data=base, num_outputs=default.num_outputs)
    params = dict(space.encode(spec, data={"lookback": 90}))
    data = searcher._data_settings(params)
    shape = searcher._input_shape(data)
    assert data["lookback"] == 90 and shape == (default.input_shape[0], default.input_shape[1], 90)
    assert searcher._problem(spec, shape[-1]) is None
    assert "stride" in searcher._problem(spec, default.input_shape[-1])

    bundle = load_dataset(**data)
    res = latency_resolution(bundle.input_shape, spec)
    assert res == (bundle.input_shape[1], 90)
    model = hybridnas.build_model(spec, num_classes=bundle.num_outputs,
                                  in_chans=bundle.input_shape[0])
    lat = TrialLatency(device="cpu", batch_size=1, repeats=2, warmup=1, clock="auto")
    service = LatencyService(tmp_path / "latency", resolution=latency_resolution(default.input_shape),
                             in_chans=bundle.input_shape[0], num_classes=bundle.num_outputs,
                             warmup=1, repeats=2)
    row = measure_latency(spec, model, res, bundle.input_shape[0], bundle.num_outputs, lat, service)
    assert row["latency_ms"] > 0
    again = service.measure(spec, resolution=res)  # cached only if it was timed at lookback 90
    assert again.settings["cached"] and again.settings["resolution"] == [bundle.input_shape[1], 90]

    # without a service: the same input and the same clock as the service's
    seen = {}
    real = hybridnas.latency.measure

    def spy(model, **kw):
        seen.update(kw)
        return real(model, **kw)

    monkeypatch.setattr(hybridnas.latency, "measure", spy)
    measure_latency(spec, model, res, bundle.input_shape[0], bundle.num_outputs, lat, None)
    assert seen["resolution"] == res and seen["clock"] == service.settings["clock"]


def _bare_searcher(tmp_path, space, budget_trials=10):
    """An ArchSearcher over an in-memory study, with a real recorder and no Ray trials."""
    import optuna

    from hybridnas.rundir import RunDir
    from hybridnas.search.budget import Budget
    from hybridnas.search.progress import RunRecorder
    from hybridnas.search.searcher import ArchSearcher
    from hybridnas.search.settings import TrialSettings

    run = RunDir(tmp_path / "run")
    run.create()
    recorder = RunRecorder(run, Budget(trials=budget_trials), [], ["metric", "latency_ms"],
                           [True, False], "val_accuracy", 1)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    settings = TrialSettings(data={"name": "digits", "resolution": 8}, num_outputs=10)
    return ArchSearcher(space, 8, recorder, settings, ["metric", "latency_ms"], ["max", "min"],
                        optuna.samplers.RandomSampler(seed=0), storage, "s")


def test_next_proposal_is_prepared_on_a_background_thread(tmp_path):
    """prepare_next returns at once (Tune's thread is not held while Optuna
    proposes, candidates are rejected and MACs counted); suggest takes the
    prepared proposal, with its cost, and records the rejected ones."""
    import threading

    import hybridnas

    searcher = _bare_searcher(tmp_path, TinySpace(invalid_window=True))
    release = threading.Event()
    real_propose = searcher._propose

    def slow_propose():
        assert threading.current_thread() is not threading.main_thread()
        release.wait(10)
        return real_propose()

    searcher._propose = slow_propose
    searcher.prepare_next()  # must not wait for the proposal
    assert searcher._preparing is not None and searcher._preparing.is_alive()
    searcher.prepare_next()  # a second call while one is in flight starts nothing
    release.set()
    config = searcher.suggest("tune-1")
    assert searcher._preparing is None
    spec = hybridnas.ArchSpec.from_dict(config["spec"])
    c = hybridnas.cost(spec, (1, 8, 8), num_classes=10, in_chans=1)
    assert config["cost"] == {"params": c.params, "macs": c.macs}
    assert config["input_shape"] == [1, 8, 8] and config["arch_id"] == spec.arch_id
    # the rejected candidates (heads=3 does not divide the width) have rows, the proposal none
    rows = searcher._recorder.rows
    assert all(r["status"] == "REJECTED" for r in rows.values())
    assert config["trial_id"] not in rows


def test_an_exhausted_space_ends_the_search_and_says_so(tmp_path, capsys):
    """Every architecture of the space already trained: proposals are
    answered from the table until MAX_CONSECUTIVE_REJECTIONS in a row, then
    the search ends saying the space looks exhausted (not 'invalid')."""
    import itertools

    import optuna

    from hybridnas.rundir import empty_row
    from hybridnas.search.searcher import MAX_CONSECUTIVE_REJECTIONS

    space = TinySpace(widths=(8,))
    searcher = _bare_searcher(tmp_path, space, budget_trials=10_000)
    choices = [("mbconv", "transformer"), (8,), (1, 2)]
    for i, values in enumerate(itertools.product(*choices * 2)):
        params = {f"stages.{s}.{k}": v for s in range(2)
                  for k, v in zip(("block", "width", "depth"), values[3 * s:3 * s + 3])}
        spec = space.suggest(optuna.trial.FixedTrial(params))
        row = empty_row(10_000 + i)
        row.update(arch_id=spec.arch_id, status="COMPLETE", full_fidelity=True, metric=0.5,
                   latency_ms=1.0, epochs=1)
        searcher._recorder.rows[row["trial_id"]] = row
    assert searcher.suggest("tune-1") == searcher.FINISHED
    out = capsys.readouterr().out
    assert f"the last {MAX_CONSECUTIVE_REJECTIONS} proposals were 0 invalid" in out
    assert "space looks exhausted" in out
    assert searcher._recorder.duplicates == MAX_CONSECUTIVE_REJECTIONS


def test_ending_a_run_stops_a_proposal_thread_that_keeps_rejecting(tmp_path):
    """Ctrl-C or the budget ending a run must not wait for the proposal
    thread to work through MAX_CONSECUTIVE_REJECTIONS invalid candidates."""
    import time

    from hybridnas.search.searcher import MAX_CONSECUTIVE_REJECTIONS

    class SlowInvalid(TinySpace):
        def suggest(self, trial):
            super().suggest(trial)
            time.sleep(0.05)  # 200 of these would keep the run waiting ~10 s
            raise ValueError("never valid")

    searcher = _bare_searcher(tmp_path, SlowInvalid())
    searcher.prepare_next()
    time.sleep(0.3)
    assert searcher._preparing.is_alive()
    searcher.discard_prepared()  # how long this takes: benchmarks/bench_proposal_stop.py
    assert len(searcher._recorder.rows) < MAX_CONSECUTIVE_REJECTIONS  # it stopped mid-way
    assert not searcher._prepared and searcher._preparing is None


def test_an_error_while_preparing_is_raised_in_tunes_thread(tmp_path):
    searcher = _bare_searcher(tmp_path, TinySpace())

    def broken():
        raise RuntimeError("storage went away")

    searcher._propose = broken
    searcher.prepare_next()
    with pytest.raises(RuntimeError, match="storage went away"):
        searcher.suggest("tune-1")
    searcher.discard_prepared()  # nothing left to close, no error


# ---------------------------------------------------------------- real searches


def _search(tmp_path, name, space=None, stream=None, **kw):
    from hybridnas import run_search

    cfg = SearchConfig(**{**TINY, **kw}, name=name, results_dir=str(tmp_path))
    return run_search(cfg, space=space or TinySpace(), stream=stream)


def test_tiny_search_end_to_end(ray_session, tmp_path, capsys):
    import optuna
    import pandas as pd

    import hybridnas

    # a progress line after every batch (but an epoch's last), to find in the log
    res = _search(tmp_path, "e2e", budget_trials=4, with_references=True, keep_checkpoints="pareto",
                  progress_every_s=0.0)
    run = res.run_dir
    for f in ("config.yaml", "study.db", "trials.parquet", "trials.csv", "pareto.csv",
              "summary.json", "logs/search.log"):
        assert (run / f).exists(), f
    df = hybridnas.load_run(run)
    assert len(df) == 4 and df.trial_id.tolist() == list(range(4))
    assert set(df.status) <= {"COMPLETE", "EARLY_STOPPED"}
    # early stopping ran through MOASHA, the default scheduler (2 epochs, a rung at 1)
    from hybridnas.rundir import RunDir

    assert RunDir(run).read_config()["scheduler"] == "moasha"
    # the reference ran first, under its name
    assert df.loc[df.trial_id == 0, "reference"].item() == "tiny_coatnet"
    assert (df.params > 0).all() and (df.macs > 0).all() and (df.latency_ms > 0).all()
    # params/MACs counted by the searcher's proposal thread = fvcore on the trial's network
    for _, row in df.iterrows():
        c = hybridnas.cost(hybridnas.ArchSpec.from_dict(json.loads(row.spec)), (1, 8, 8),
                           num_classes=10, in_chans=1)
        assert (row.params, row.macs) == (c.params, c.macs)
    assert (df.device_seconds > 0).all() and (df.metric_name == "val_accuracy").all()
    for _, row in df.iterrows():
        curve = json.loads(row.curve)
        assert len(curve) == row.epochs and row.metric == pytest.approx(max(curve))
        assert row.full_fidelity == (row.status == "COMPLETE" and row.epochs == 2)
        assert hybridnas.ArchSpec.from_dict(json.loads(row.spec)).arch_id == row.arch_id
    # the front: full-fidelity COMPLETE trials only, none dominated
    front = pd.read_csv(run / "pareto.csv")
    assert len(front) >= 1
    assert set(front.trial_id) <= set(df[(df.status == "COMPLETE") & df.full_fidelity].trial_id)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["front_size"] == len(front) and summary["hypervolume"] > 0
    assert summary["budget"]["unit"] == "cpu" and summary["trials"]["COMPLETE"] >= 1
    # Optuna got COMPLETE values for full trials and PRUNED for early-stopped ones
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{run / 'study.db'}")
    states = {t.number: t.state.name for t in study.trials}
    for _, row in df.iterrows():
        assert states[row.trial_id] == {"COMPLETE": "COMPLETE", "EARLY_STOPPED": "PRUNED"}[row.status]
    # a proposal prepared ahead that never ran is closed, not left RUNNING
    extra = [t for t in study.trials if t.number not in set(df.trial_id)]
    assert all(t.state.name == "FAIL" and t.user_attrs.get("status") == "UNUSED" for t in extra)
    assert "RUNNING" not in states.values()
    # checkpoints kept for the front only
    kept = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("trial_*"))
    assert kept == sorted(front.trial_id.tolist())
    # a checkpoint folder says its input, so it exports without --resolution
    meta = json.loads((run / "checkpoints" / f"trial_{kept[0]}" / "meta.json").read_text())
    assert meta["input_shape"] == [1, 8, 8] and meta["resolution"] == 8
    out = capsys.readouterr().out
    assert "CPU device-hours" in out and "front" in out and "HV" in out
    # the cost estimate comes first, and progress lines carry the run's ETA
    assert out.index("estimate (strategy trials)") < out.index("trial 0 (tiny_coatnet) started")
    assert "4 trial(s) fit the trial budget" in out and res.estimate.trials == 4
    assert any(", ETA " in line for line in out.splitlines() if "done (" in line)
    # every trial's progress lines are in the run's log (written by its worker), not on
    # the console without -v
    log = (run / "logs" / "search.log").read_text()
    for tid in df.trial_id:
        assert re.search(rf"\[trial {tid}\] epoch 1/2: batch 1/\d+ \(\d+%\), \d+ img/s, "
                         rf"epoch ETA", log), tid
    assert "[trial 0] epoch 1/2: batch" not in out


@pytest.fixture(scope="module")
def faulty_run(ray_session, tmp_path_factory):
    """heads=3 does not divide the widths, so those proposals are rejected
    before training; even-numbered trials raise inside training (an
    injected fault)."""
    tmp = tmp_path_factory.mktemp("faulty")
    return _search(tmp, "faults", space=TinySpace(invalid_window=True), budget_trials=5,
                   inject_failure=list(range(0, 400, 2)), scheduler="none", max_concurrent=1,
                   epochs=1, seed=3)


def test_failed_and_rejected_trials_do_not_stop_the_search(faulty_run):
    import hybridnas

    df = hybridnas.load_run(faulty_run.run_dir)
    ran = df[df.status != "REJECTED"]
    assert len(ran) == 5
    failed = ran[ran.trial_id % 2 == 0]
    assert len(failed) >= 1 and (failed.status == "FAILED").all()
    assert failed.error.str.contains("InjectedFault").all()
    # the search went on: the other trials completed
    assert len(ran) > len(failed) and (ran[ran.trial_id % 2 == 1].status == "COMPLETE").all()
    rejected = df[df.status == "REJECTED"]
    assert len(rejected) >= 1 and rejected.error.str.contains("heads").all()
    assert (rejected.device_seconds == 0).all()


def test_device_budget_is_honoured(ray_session, tmp_path):
    import io

    import hybridnas

    budget_h = 3.0 / 3600  # three device-seconds: a few tiny trials, however busy the machine
    out = io.StringIO()
    # Trials here cost ~0.1 device-s: a space of 256 architectures so that the
    # budget, not an exhausted space, ends the run.
    res = _search(tmp_path, "budget", space=TinySpace(widths=(8, 12, 16, 24)),
                  budget_gpu_hours=budget_h, budget_trials=500,
                  scheduler="none", max_concurrent=1, epochs=1, stream=out)
    out = out.getvalue()
    df = hybridnas.load_run(res.run_dir)
    spent = df.device_seconds.sum()
    assert "no new trials: device budget" in out and "counts CPU device-hours" in out
    assert 1 <= len(df) < 500
    # no new trial starts once the next would exceed the budget: overrun <= one trial
    assert spent <= budget_h * 3600 + df.device_seconds.max() + 1e-9
    summary = res.summary["budget"]
    assert summary["total_hours"] == pytest.approx(budget_h)
    assert summary["spent_hours"] == pytest.approx(spent / 3600)
    assert not math.isnan(summary["spent_hours"])


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    from hybridnas.cli import main

    assert main(["search", "--dataset", "no-such-data", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-data" in err and "Traceback" not in err
    assert main(["search", "--resume", str(tmp_path / "missing")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["search", "--config", str(bad)]) == 2
    assert "unknown option 'epochz'" in capsys.readouterr().err


def test_device_options_fail_at_start(tmp_path, capsys):
    """A bad --latency-device fails before any work (one line, no run folder);
    GPU requests are checked against the cluster's resources, naming them."""
    from hybridnas.cli import main
    from hybridnas.search.cluster import check_devices

    args = ["search", "--dataset", "digits", "--results-dir", str(tmp_path), "--name", "x",
            "--latency-device", "cpux"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'cpux'" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    cpu_only = {"CPU": 2.0, "memory": 1e9}
    with pytest.raises(UserError, match=r"--gpus-per-trial 1: .*available: CPU 2"):
        check_devices(SearchConfig(gpus_per_trial=1.0), cpu_only)
    with pytest.raises(UserError, match=r"--latency-device cuda: .*no GPU"):
        check_devices(SearchConfig(latency_device="cuda"), cpu_only)
    check_devices(SearchConfig(latency_device="cuda:0", gpus_per_trial=0.5),
                  {"CPU": 16.0, "GPU": 1.0})


def test_max_latency_rejects_by_prediction_and_keeps_slow_trials_off_the_front(
        ray_session, tmp_path, monkeypatch, capsys):
    """--max-latency-ms: an architecture the latency table predicts over the
    limit is REJECTED before training; a trained trial measured over it stays
    in the table but off the front, and pareto.csv, summary.json, export and
    the dashboard agree (the rule lives in rundir.front_eligible)."""
    import pandas as pd

    import hybridnas
    from hybridnas import rundir
    from hybridnas.dashboard import front_mask, load_run_dir
    from hybridnas.export.checkpoint import front_trial_ids
    from hybridnas.latency import LatencyService

    # A stand-in latency table in the driver, where the searcher screens
    # proposals: 1 ms for a network with a 16-wide stage, 0 ms otherwise.
    monkeypatch.setattr(LatencyService, "predictor", property(lambda self: "stand-in"))
    monkeypatch.setattr(LatencyService, "predict",
                        lambda self, spec, **kw: 1.0 if max(s.width for s in spec.stages) > 8
                        else 0.0)
    res = _search(tmp_path, "maxlat", budget_trials=3, scheduler="none", max_latency_ms=1e-6)
    df = hybridnas.load_run(res.run_dir)
    rejected = df[df.status == "REJECTED"]
    assert len(rejected) >= 1
    assert rejected.error.str.startswith("predicted latency 1 ms > max_latency_ms 1e-06").all()
    trained = df[df.status == "COMPLETE"]
    assert len(trained) == 3
    for spec in trained.spec:
        assert max(s["width"] for s in json.loads(spec)["stages"]) == 8   # predicted 0 ms
    assert (trained.latency_ms > 1e-6).all()  # every one measured over the limit
    columns, maximize = ["metric", "latency_ms"], [True, False]
    assert len(rundir.front_of(df, columns, maximize)) >= 1   # the front without the limit
    config = rundir.RunDir(res.run_dir).read_config()
    assert rundir.front_limits(config) == {"latency_ms": 1e-6}
    assert pd.read_csv(res.run_dir / "pareto.csv").empty
    assert res.summary["front_size"] == 0 and res.summary["front_trial_ids"] == []
    assert front_trial_ids(res.run_dir) == []
    run = load_run_dir(res.run_dir)
    assert not front_mask(run.trials, objectives=(columns, maximize), limits=run.limits).any()
    assert "max_latency_ms 1e-06" in capsys.readouterr().out


def test_a_full_disk_stops_the_run_with_one_line_naming_the_file(ray_session, tmp_path,
                                                                 monkeypatch):
    """Once a trial is on disk, every write of the run fails with ENOSPC: the
    search stops with one RunWriteError line naming the file, and what was
    written before stays intact."""
    import errno

    import hybridnas
    from hybridnas import rundir

    real = rundir.write_atomic
    full = {"now": False}

    def write_atomic(path, write):
        if not full["now"] and path.name == "trials.parquet" and path.exists():
            full["now"] = (hybridnas.load_run(path).status == "COMPLETE").any()
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(rundir, "write_atomic", write_atomic)
    with pytest.raises(rundir.RunWriteError) as err:
        _search(tmp_path, "full", budget_trials=6, scheduler="none", max_concurrent=1)
    msg = str(err.value)
    assert "\n" not in msg and "No space left on device" in msg and "--resume" in msg
    assert msg.startswith(str(tmp_path / "full"))
    df = hybridnas.load_run(tmp_path / "full")
    assert (df.status == "COMPLETE").sum() >= 1 and len(df) < 6  # kept, and the run stopped


def test_a_checkpoint_that_cannot_be_written_keeps_the_trials_metric(ray_session, tmp_path):
    import errno

    import hybridnas
    from hybridnas.search import run_search
    from hybridnas.search.hooks import SearchHooks
    from hybridnas.search.trial import CHECKPOINT_MISSING

    def save_checkpoint(folder, model, spec, meta):  # pickled by value into the workers
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    cfg = SearchConfig(**{**TINY, "max_concurrent": 1}, budget_trials=2, scheduler="none",
                       keep_checkpoints="all", name="nockpt", results_dir=str(tmp_path))
    run_search(cfg, space=TinySpace(), stream=None,
               hooks=SearchHooks(save_checkpoint=save_checkpoint))
    df = hybridnas.load_run(tmp_path / "nockpt")
    assert (df.status == "COMPLETE").all() and df.metric.notna().all() and len(df) == 2
    assert df.checkpoint.isna().all()
    assert df.error.str.startswith(CHECKPOINT_MISSING).all()
    assert df.error.str.contains("No space left on device").all()


def test_a_read_only_results_dir_is_one_line(ray_session, tmp_path, monkeypatch, capsys):
    """A results directory that refuses writes (EROFS, simulated: the tests may
    run as root, where chmod does not stop writes) ends the command with one
    line naming the file, before any trial."""
    import errno

    from hybridnas import rundir
    from hybridnas.cli import main

    def read_only(path, write):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(rundir, "write_atomic", read_only)
    assert main(["search", "--space", "stagewise", "--dataset", "digits", "--resolution", "8",
                 "--subset", "100", "--name", "ro", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'ro' / 'config.yaml'}: cannot write it (Read-only file system)" in err
