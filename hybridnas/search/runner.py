"""Run a search: Ray Tune trials proposed by an Optuna multi-objective study.

``run_search`` resolves the options, the dataset and the space, starts Ray
and hands Tune the trainable (``trial.search_trial``), the searcher
(``searcher.ArchSearcher``: define-by-run proposals, budget, PRUNED for early
stops), ASHA on ``epochs`` and the driver's record (``progress.RunRecorder``,
which writes the run directory through ``hybridnas.rundir``). The other jobs
live beside it: ``cluster`` (Ray start-up, device checks), ``storage``
(Optuna storage and sampler), ``resume`` (config and repair after a kill),
``sharing`` (the dataset through the object store), ``measuring`` (the
run's latency service and the ``max_latency_ms`` screen), ``estimate`` (the
cost printed before the first trial; all a ``dry_run`` does), ``report``
(end-of-run lines), ``settings`` (what each trial is told) and ``hooks``
(checkpoints and dashboard, handed in).

Early-stopped trials are recorded as EARLY_STOPPED with
``full_fidelity=False`` and never enter the front; a failing trial is
recorded as FAILED and the search goes on; everything the run writes is
written by the driver, except checkpoints and the per-epoch state of running
trials (written by the trial on its node). The driver holds the run's lock
(``hybridnas.runlock``) from start to end: one writer per run.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..latency.settings import SEARCH
from ..rundir import RunDir, front_limits, load_run, objective_columns
from ..runlock import RunLock, portable_storage_url, read_holder, resolve_storage_url
from .budget import Budget
from .cluster import check_devices, init_ray, local_resources, trial_concurrency
from .config import SearchConfig
from .hooks import SearchHooks
from .measuring import check_latency_device, latency_screen, latency_settings
from .resume import (
    INTERRUPTED,
    awaits_continuation,
    enqueue_references,
    repair_after_interrupt,
    resume_config,
)
from .settings import TrainSettings, TrialSettings
from .sharing import share_bundle
from .storage import make_sampler, storage_for, storage_url_for

__all__ = ["run_search", "SearchResult", "make_sampler", "default_run_name"]

log = logging.getLogger("hybridnas.search")


@dataclass
class SearchResult:
    """What ``run_search`` returns: the run directory and its summary.json content."""

    run_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False
    estimate: Any = None  # the cost estimate printed at the start (estimate.CostEstimate)

    @property
    def trials(self):
        return load_run(self.run_dir)


def load_space(cfg: SearchConfig, resolution):
    from .. import spaces

    return spaces.load(cfg.space, resolution=resolution, **(cfg.space_options or {}))


def _data_kwargs(cfg: SearchConfig) -> dict[str, Any]:
    return {"name": cfg.dataset, "data_dir": cfg.data_dir, "resolution": cfg.resolution,
            "subset": cfg.subset, "seed": cfg.seed, "val_fraction": cfg.val_fraction}


def load_bundle(cfg: SearchConfig, stream) -> tuple[Any, dict[str, Any]]:
    """The run's dataset and its load_dataset arguments; with
    ``dataset_fallback`` a missing dataset is replaced (said on ``stream``)."""
    from ..data import load_dataset

    data_kw = _data_kwargs(cfg)
    try:
        return load_dataset(**data_kw), data_kw
    except UserError as e:
        if not cfg.dataset_fallback or cfg.dataset_fallback == cfg.dataset:
            raise
        # e.g. the quickstart without Debian's Fashion-MNIST: say so, then go on.
        print(f"[search] {e}\n[search] falling back to dataset {cfg.dataset_fallback!r} "
              f"(dataset_fallback); install the data above to search on {cfg.dataset!r}",
              file=stream, flush=True)
        cfg.dataset = cfg.dataset_fallback
        cfg.data_dir = None
        data_kw = _data_kwargs(cfg)
        return load_dataset(**data_kw), data_kw


def run_search(cfg: SearchConfig | None = None, resume: str | os.PathLike | None = None,
               overrides: dict[str, Any] | None = None, stream=None,
               space=None, hooks: SearchHooks | None = None,
               dry_run: bool = False) -> SearchResult:
    """Run (or resume) a search and return its run directory and summary.

    ``cfg``: the options of a new run. ``resume``: a run directory to
    continue; its config.yaml is the base and ``overrides`` (e.g. a larger
    budget) apply on top. Progress lines go to ``stream`` (stdout).
    ``space``: a space object (the ``hybridnas.spaces`` surface: ``suggest``,
    ``encode``, ``references``, ``data_params``) to use instead of loading
    ``cfg.space`` by name; it is used in this process only. ``hooks``:
    the callbacks that save checkpoints and redraw the dashboard (none by
    default; ``hybridnas.run_search`` and the CLI pass export's and
    dashboard's). ``dry_run``: print the cost estimate and return (its
    ``estimate``) without creating the run directory, its study or a trial,
    and without starting Ray.
    """
    import optuna

    if resume is None and cfg is not None and cfg.strategy != "trials":
        raise UserError(f"strategy={cfg.strategy!r}: hybridnas.search.run_search runs the "
                        f"multi-trial strategy; use hybridnas.run_search for every strategy")
    stream = stream or sys.stdout
    hooks = hooks or SearchHooks()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if resume is not None:
        run = RunDir(resume)
        # a run that has just started has a lock holder but no config.yaml yet
        if not (run.config.is_file() or read_holder(run.path) is not None):
            raise UserError(f"--resume {run.path}: no config.yaml here; is this a search run "
                            f"directory?")
        if dry_run:  # a dry run creates nothing, not even a lock
            return _locked_search(cfg, run, resume, overrides, stream, space, hooks, True)
        lock = RunLock(run.path, command="hybridnas search --resume").acquire()
    else:
        cfg = cfg or SearchConfig()
        cfg.check()
        check_latency_device(cfg.latency_device)  # bad options leave no folder behind
        run = RunDir(Path(cfg.results_dir) / (cfg.name or default_run_name(cfg)))
        if dry_run:
            return _locked_search(cfg, run, resume, overrides, stream, space, hooks, True)
        lock = RunLock(run.path, command="hybridnas search").acquire()
    if lock.stale is not None:
        print(f"[search] {run.path} was last written by {lock.stale.describe()}, which ended "
              f"without releasing it (killed?); taking over", file=stream, flush=True)
    try:  # one writer per run: the lock is held until the run's files are final
        return _locked_search(cfg, run, resume, overrides, stream, space, hooks)
    finally:
        lock.release()


def default_run_name(cfg: SearchConfig) -> str:
    """``<space>-<dataset>-<time>``; a space given as a file contributes its
    stem only, so ``--space ../../x.yaml`` stays inside ``--results-dir``."""
    name = f"{Path(str(cfg.space)).stem}-{Path(str(cfg.dataset)).name}-{datetime.now():%Y%m%d-%H%M%S}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "run"


def _locked_search(cfg, run: RunDir, resume, overrides, stream, space,
                   hooks: SearchHooks, dry_run: bool = False) -> SearchResult:
    """``run_search`` once the run's lock is held (a dry run holds none: it writes nothing)."""
    if resume is not None:
        cfg, saved = resume_config(run, overrides or {})
        name = saved.get("run_name") or run.path.name
        saved_url = saved.get("storage_url")
        saved_url = resolve_storage_url(str(saved_url), run.path) if saved_url else None
        storage_url = storage_url_for(cfg.storage or saved_url or run.storage_url())
        try:
            before = run.read_summary().get("budget", {})
        except UserError as e:  # derived data, rewritten from the trials table below
            print(f"[search] {e}; rewriting it (the wall time of earlier sessions is not "
                  f"counted)", file=stream, flush=True)
            before = {}
        elapsed_before = float((before if isinstance(before, dict) else {}).get("elapsed_s") or 0.0)
    else:
        name = run.path.name
        if run.trials_file is not None or run.config.exists():
            raise UserError(f"{run.path} already holds a run; continue it with "
                            f"`hybridnas search --resume {run.path}` or pick another --name")
        storage_url = storage_url_for(cfg.storage or run.storage_url())
        elapsed_before = 0.0
    check_latency_device(cfg.latency_device)  # every option is checked before any work
    storage = None
    if not dry_run:  # a dry run creates nothing: no folder, no study, no lock
        run.create()
        storage = storage_for(storage_url)  # a bad --storage fails before data and Ray

    # The dataset first: it fixes the resolution, channels, outputs and metric,
    # and a missing dataset should fail before Ray starts.
    bundle, data_kw = load_bundle(cfg, stream)
    task = bundle.task
    input_shape = tuple(int(x) for x in bundle.input_shape)
    # The last axis: image side, sequence length, or a (features, assets, time) panel's lookback.
    resolution = input_shape[-1] if len(input_shape) >= 2 else None
    space = space if space is not None else load_space(cfg, resolution)
    columns, maximize = objective_columns(task.maximize, cfg.objectives)
    if dry_run:
        return _dry_run(cfg, run, space, bundle, resolution, elapsed_before, stream)

    started_ray = init_ray(cfg)
    try:
        import ray

        check_devices(cfg, ray.cluster_resources())
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        gpus = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if has_gpu else 0.0)
        unit = "gpu" if gpus > 0 and has_gpu else "cpu"
        budget = Budget(device_hours=cfg.budget_gpu_hours, trials=cfg.budget_trials,
                        time_limit_s=cfg.time_limit, unit=unit, elapsed_before_s=elapsed_before)
        # a SQLite study inside the run is stored relative to it: a copied run is its own run
        config_doc = {"run_name": name, **cfg.to_dict(),
                      "storage_url": portable_storage_url(storage_url, run.path),
                      "study_name": name, "metric_name": task.metric_name,
                      "maximize": bool(task.maximize), "objective_columns": columns,
                      "objective_maximize": maximize, "input_shape": list(input_shape),
                      "resolution": resolution, "num_outputs": int(bundle.num_outputs),
                      "budget_unit": unit, "gpus_per_trial_resolved": gpus,
                      "latency_clock": SEARCH.clock}
        if resume is None:
            config_doc["created_at"] = datetime.now().isoformat(timespec="seconds")
        else:
            config_doc["created_at"] = saved.get("created_at")
            config_doc["resumed_at"] = [*saved.get("resumed_at", []),
                                        datetime.now().isoformat(timespec="seconds")]
        run.write_config(config_doc)
        return _run(_Session(cfg=cfg, run=run, name=name, storage=storage, space=space,
                             resolution=resolution, bundle=bundle, columns=columns,
                             maximize=maximize, budget=budget, gpus=gpus, data_kw=data_kw,
                             resuming=resume is not None, stream=stream, hooks=hooks))
    finally:
        if started_ray:
            import ray

            ray.shutdown()


@dataclass(frozen=True)
class _Session:
    """What ``run_search`` resolved before the trials start."""

    cfg: SearchConfig
    run: RunDir
    name: str
    storage: Any  # optuna.storages.RDBStorage
    space: Any
    resolution: Any
    bundle: Any
    columns: list
    maximize: list
    budget: Budget
    gpus: float
    data_kw: dict
    resuming: bool
    stream: Any
    hooks: SearchHooks


def _estimate(cfg: SearchConfig, space, bundle, resolution, gpus: float, concurrency: int,
              unit: str, rows: list[dict], elapsed_s: float, latency=None):
    """The run's cost estimate (``estimate.estimate_search``), counting what a
    resumed run has spent already."""
    from .estimate import estimate_search

    return estimate_search(cfg, space, bundle, resolution, gpus=gpus, concurrency=concurrency,
                           unit=unit, spent_device_s=Budget.spent_seconds(rows),
                           trials_done=sum(1 for r in rows if r.get("status") != "REJECTED"),
                           elapsed_s=elapsed_s, latency=latency)


def _dry_run(cfg: SearchConfig, run: RunDir, space, bundle, resolution, elapsed_before: float,
             stream) -> SearchResult:
    """``--dry-run``: the estimate on this machine's resources, nothing started."""
    import torch

    has_gpu = torch.cuda.is_available()
    gpus = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if has_gpu else 0.0)
    unit = "gpu" if gpus > 0 and has_gpu else "cpu"
    concurrency = trial_concurrency(cfg, local_resources(), gpus)
    est = _estimate(cfg, space, bundle, resolution, gpus, concurrency, unit, run.read_rows(),
                    elapsed_before)
    where = "; a cluster at --address may run more at once" if cfg.address else ""
    lines = est.lines() + [f"dry run: nothing created or started (concurrency from this "
                           f"machine's resources{where})"]
    for line in lines:
        print(f"[search] {line}", file=stream, flush=True)
    return SearchResult(run.path, {}, estimate=est)


def _run(s: _Session) -> SearchResult:
    cfg, run, name, space, resolution, bundle = s.cfg, s.run, s.name, s.space, s.resolution, s.bundle
    task, columns, maximize, budget, gpus, hooks = (bundle.task, s.columns, s.maximize, s.budget,
                                                    s.gpus, s.hooks)
    metrics = list(columns)
    modes = ["max" if m else "min" for m in maximize]
    import optuna
    import ray
    from ray import tune

    from .progress import RunRecorder
    from .report import print_summary
    from .searcher import ArchSearcher
    from .trial import search_trial

    storage = s.storage
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                directions=["maximize" if m else "minimize" for m in maximize])
    rows = run.read_rows()
    recorder = RunRecorder(run, budget, rows, columns, maximize, task.metric_name, cfg.epochs,
                           keep_checkpoints=cfg.keep_checkpoints,
                           dashboard_every=cfg.dashboard_every, verbose=cfg.verbose,
                           stream=s.stream,
                           write_dashboard=hooks.write_dashboard,
                           limits=front_limits(cfg.to_dict()))
    continued: list = []
    if s.resuming:
        continued = repair_after_interrupt(study, recorder)
    elif cfg.with_references:
        enqueue_references(study, space, resolution, recorder)

    seed = cfg.seed + len(study.trials)  # a resumed random stream must not replay old proposals
    sampler = make_sampler(cfg.sampler, seed, cfg.population_size)
    threads = cfg.threads_per_trial or max(1, int(cfg.cpus_per_trial))
    latency, service = latency_settings(cfg, run, gpus, bundle, resolution)
    concurrency = trial_concurrency(cfg, ray.cluster_resources(), gpus)
    # Timed before the searcher's proposal thread starts, which would compete for the CPU.
    estimate = _estimate(cfg, space, bundle, resolution, gpus, concurrency, budget.unit,
                         list(recorder.rows.values()), budget.elapsed(), latency)
    settings = TrialSettings(
        data=s.data_kw, num_outputs=int(bundle.num_outputs), epochs=cfg.epochs,
        metric_name=task.metric_name, maximize=bool(task.maximize), gpus_per_trial=gpus,
        threads=threads, run_dir=str(run.path.resolve()), keep_checkpoints=cfg.keep_checkpoints,
        progress_every_s=cfg.progress_every_s,
        inject_failure=tuple(int(t) for t in cfg.inject_failure or ()),
        train=TrainSettings.from_config(cfg),
        latency=latency,
    )
    searcher = ArchSearcher(space, resolution, recorder, settings, metrics, modes, sampler,
                            storage, name, screen=latency_screen(service, cfg.max_latency_ms),
                            continued=continued)
    searcher.prepare_next()  # the first proposal, while Tune sets up
    from .moasha import make_scheduler

    # MOASHA promotes by (metric at the rung, the other objectives known before
    # training), so fast, slightly less accurate trials reach the front
    scheduler = make_scheduler(cfg.scheduler, mode="max" if task.maximize else "min",
                               max_t=cfg.epochs, grace_period=cfg.asha_grace_epochs,
                               reduction_factor=cfg.asha_reduction_factor, costs=columns[1:],
                               cost_modes=["max" if m else "min" for m in maximize[1:]])
    time_left = None
    if cfg.time_limit is not None:
        time_left = max(1.0, cfg.time_limit - budget.elapsed())

    recorder.note(f"run {name} -> {run.path} | space {cfg.space} at {resolution}px, dataset "
                  f"{cfg.dataset} ({len(bundle.train)} train / {len(bundle.val)} val), "
                  f"objectives {', '.join(f'{m} {d}' for m, d in zip(columns, modes))}, "
                  f"sampler {cfg.sampler}, scheduler {cfg.scheduler}, "
                  f"{concurrency} concurrent trial(s)" + (" [resumed]" if s.resuming else ""))
    for line in estimate.lines():
        recorder.note(line)
    if cfg.max_latency_ms is not None:
        recorder.note(f"max_latency_ms {cfg.max_latency_ms:g}: " + (
            "architectures the latency table predicts slower are rejected before training; "
            if cfg.latency_table else "no --latency-table, so nothing is rejected before "
            "training; ") + "trials measured slower stay off the front")
    if budget.unit == "cpu" and cfg.budget_gpu_hours is not None:
        recorder.note(f"no GPU in use: --budget-gpu-hours {cfg.budget_gpu_hours:g} counts CPU "
                      f"device-hours (wall time x 1 device per trial)")
    recorder.save()

    tune_dir = tempfile.mkdtemp(prefix="hnas_tune_")
    trainable = search_trial
    shared = share_bundle(bundle, s.data_kw)
    if shared is not None or hooks.save_checkpoint is not None:
        trainable = tune.with_parameters(search_trial, shared_data=shared,
                                         save_checkpoint=hooks.save_checkpoint)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": gpus}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=concurrency, reuse_actors=True,
                                    time_budget_s=time_left,
                                    trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name="tune", storage_path=tune_dir, callbacks=[recorder],
                                  stop=_write_error_stopper(recorder),
                                  verbose=min(cfg.verbose, 3) if cfg.verbose > 1 else 0,
                                  log_to_file=False),
    )
    t0 = time.monotonic()
    interrupted = False
    tune_wall = None
    try:
        tuner.fit()
        tune_wall = time.monotonic() - t0
        # Tune turns Ctrl-C into a graceful stop and returns normally: a run
        # that ended before the searcher said "finished" (and before the time
        # limit) was interrupted.
        out_of_time = time_left is not None and tune_wall >= time_left - 1.0
        interrupted = not searcher.is_finished and not out_of_time
    except KeyboardInterrupt:
        interrupted = True
    finally:
        searcher.discard_prepared()
        recorder.flush()
        stopped = recorder.close_interrupted(
            f"{INTERRUPTED}: the search stopped while this trial ran")
        searcher.release_running(stopped)  # open in the study: --resume continues them
        if recorder.write_error is None and recorder.save_or_stop():
            _finish_files(cfg, run, recorder, hooks)
        service.close()
        import shutil

        shutil.rmtree(tune_dir, ignore_errors=True)
    if recorder.write_error is not None:  # a full or read-only disk: one line naming the file
        raise recorder.write_error
    summary = run.read_summary()
    summary["session_wall_s"] = time.monotonic() - t0
    summary["tune_wall_s"] = tune_wall
    run.write_summary(summary)
    print_summary(recorder, summary, run, interrupted, dataset=cfg.dataset)
    return SearchResult(run.path, summary, interrupted, estimate=estimate)


def _write_error_stopper(recorder):
    """A Tune stopper (``RunConfig(stop=...)``): the whole run stops once the
    recorder could not write the run directory (``RunRecorder.write_error``)."""
    from ray.tune import Stopper

    class StopOnWriteError(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return recorder.write_error is not None

        def stop_all(self) -> bool:
            return recorder.write_error is not None

    return StopOnWriteError()


def _trial_name(trial) -> str:
    return f"trial_{trial.config.get('trial_id', trial.trial_id)}"


def _finish_files(cfg, run, recorder, hooks: SearchHooks) -> None:
    # training state is kept for the interrupted trials only (--resume continues them)
    run.drop_partial(t for t, r in recorder.rows.items() if awaits_continuation(r))
    if cfg.keep_checkpoints != "all":
        if hooks.prune_checkpoints is not None:
            try:
                hooks.prune_checkpoints(str(run.path), cfg.keep_checkpoints)
            except Exception as e:  # noqa: BLE001 - pruning is housekeeping
                recorder.note(f"checkpoints not pruned: {type(e).__name__}: {e}")
        for row in recorder.rows.values():  # rows point at checkpoints that still exist
            if row.get("checkpoint") and not (run.path / row["checkpoint"]).exists():
                row["checkpoint"] = None
        recorder.save()
    recorder.write_dashboard(force=True)
