"""Run a search: Ray Tune trials proposed by an Optuna multi-objective study.

Design (issue #4):

- **Trials.** A Tune function trainable (``trial.search_trial``) builds the
  architecture, counts params/MACs, measures latency, short-trains it and
  reports per epoch. ``reuse_actors=True``; resources per trial from
  ``cpus_per_trial`` / ``gpus_per_trial`` (0.5 packs two trials on a GPU).
- **Proposals.** ``searcher.ArchSearcher`` (Ray's ``OptunaSearch`` with the
  space's define-by-run ``suggest``): maximise the validation metric,
  minimise latency (and params/MACs with ``objectives``). Samplers: NSGA-II
  (default; small population so it starts evolving within a short run),
  TPE, random. The Optuna study lives in ``study.db`` (SQLite) or any
  ``storage`` URL (PostgreSQL); study name = run name. The next proposal is
  worked out on a background thread while a trial trains (started on its
  epoch reports): the ~0.1 s per candidate, the rejected ones and the count
  of its MACs stay off the critical path between trials.
- **Fidelity.** ASHA on the validation metric, time attribute ``epochs``.
  Early-stopped trials are recorded as EARLY_STOPPED with their epochs and
  ``full_fidelity=False``, told to Optuna as PRUNED, and never enter
  pareto.csv (the front holds full-fidelity COMPLETE trials only).
- **Budget.** ``budget.Budget``: device-hours (GPU-hours, or CPU
  device-hours on a machine without a GPU, said so in the output), trial
  count and wall-clock limit, checked before every new trial; a resumed run
  continues the spent budget and elapsed time.
- **Resume and faults.** The driver rewrites trials.parquet after every
  event (atomic rename). ``resume`` reloads the table and the study; trials
  that were running when the search died are marked FAILED
  ("interrupted") in both and re-queued with the same parameters; finished
  trials are never re-run (the searcher also answers a re-proposed,
  already-trained architecture from the table instead of training it again).
  Exceptions, NaN loss and out-of-memory inside a trial are recorded as
  FAILED with the reason and the search goes on.
- **Distributed.** Ray starts locally inside the command unless ``address``
  (``auto`` or ``HOST:PORT``) joins a running cluster; everything the run
  writes is written by the driver, except checkpoints (written by the trial
  under the run directory's path on its node).
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
from .budget import Budget
from .config import IDENTITY_FIELDS, SearchConfig
from .run import RunDir, objective_columns

__all__ = ["run_search", "SearchResult", "make_sampler"]

log = logging.getLogger("hybridnas.search")

# The clock of every latency figure of a run, the service's and a trial's own
# fallback alike: 'auto' = thread CPU time for one-thread CPU measurements
# (steadiest on a shared machine), wall time otherwise (GPU, several threads).
LATENCY_CLOCK = "auto"


@dataclass
class SearchResult:
    """What ``run_search`` returns: the run directory and its summary.json content."""

    run_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False

    @property
    def trials(self):
        from .run import load_run

        return load_run(self.run_dir)


def make_sampler(name: str, seed: int, population_size: int = 10):
    """The Optuna sampler for ``--sampler`` (nsga2 | tpe | random)."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(2, population_size), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=population_size)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"sampler={name!r} is not one of ['nsga2', 'tpe', 'random']")


def _load_space(cfg: SearchConfig, resolution):
    try:
        from .. import spaces
    except ImportError as e:
        raise UserError(f"space={cfg.space!r}: the search spaces package is not available ({e})")
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


def _resume_config(run: RunDir, overrides: dict[str, Any]) -> tuple[SearchConfig, dict]:
    saved = run.read_config()
    known = set(SearchConfig.__dataclass_fields__)
    base = SearchConfig.from_mapping({k: v for k, v in saved.items() if k in known},
                                     source=str(run.config))
    for key in IDENTITY_FIELDS:
        if key in overrides and overrides[key] is not None and overrides[key] != getattr(base, key):
            raise UserError(f"--resume {run.path}: {key}={overrides[key]!r} differs from the run's "
                            f"{key}={getattr(base, key)!r}; start a new run to change it")
    overrides = {k: v for k, v in overrides.items() if k not in ("name", "results_dir")}
    return base.merged(overrides, "flags"), saved


def _init_ray(cfg: SearchConfig):
    """Start (or join) Ray; returns True if this call started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray runs workers at nice 15 by default; trials are the work of this
    # command, so a local Ray keeps them at normal priority (override by
    # setting RAY_worker_niceness yourself).
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    if cfg.verbose < 2:
        # Tune's end-of-run analysis looks for result files this run does not
        # write (the driver keeps the trials table); its warning would only confuse.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(logging_level=logging.WARNING if cfg.verbose < 2 else logging.INFO,
                              log_to_driver=cfg.verbose > 0, include_dashboard=False)
    if cfg.address:
        ray.init(address=cfg.address, **kw)
    else:
        ray.init(**kw)
    return True


def run_search(cfg: SearchConfig | None = None, resume: str | os.PathLike | None = None,
               overrides: dict[str, Any] | None = None, stream=None,
               space=None) -> SearchResult:
    """Run (or resume) a search and return its run directory and summary.

    ``cfg``: the options of a new run. ``resume``: a run directory to
    continue; its config.yaml is the base and ``overrides`` (e.g. a larger
    budget) apply on top. Progress lines go to ``stream`` (stdout).
    ``space``: a space object (the ``hybridnas.spaces`` surface: ``suggest``,
    ``encode``, ``references``, ``data_params``) to use instead of loading
    ``cfg.space`` by name; it is used in this process only.
    """
    import optuna

    if resume is None and cfg is not None and cfg.strategy == "oneshot":
        from ..supernet.search import run_oneshot

        return run_oneshot(cfg, stream=stream)
    stream = stream or sys.stdout
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if resume is not None:
        run = RunDir(resume)
        cfg, saved = _resume_config(run, overrides or {})
        name = saved.get("run_name") or run.path.name
        storage_url = storage_url_for(cfg.storage or saved.get("storage_url") or run.storage_url())
        elapsed_before = float(run.read_summary().get("budget", {}).get("elapsed_s") or 0.0)
    else:
        cfg = cfg or SearchConfig()
        cfg.check()
        name = cfg.name or f"{cfg.space}-{cfg.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
        run = RunDir(Path(cfg.results_dir) / name)
        if run.trials_parquet.exists() or run.config.exists():
            raise UserError(f"{run.path} already holds a run; continue it with "
                            f"`hybridnas search --resume {run.path}` or pick another --name")
        storage_url = storage_url_for(cfg.storage or run.storage_url())
        elapsed_before = 0.0
    run.create()

    # The dataset first: it fixes the resolution, channels, outputs and metric,
    # and a missing dataset should fail before Ray starts.
    bundle, data_kw = load_bundle(cfg, stream)
    task = bundle.task
    input_shape = tuple(int(x) for x in bundle.input_shape)
    # The last axis: image side, sequence length, or a (features, assets, time) panel's lookback.
    resolution = input_shape[-1] if len(input_shape) >= 2 else None
    space = space if space is not None else _load_space(cfg, resolution)
    columns, maximize = objective_columns(task.maximize, cfg.objectives)
    metrics = list(columns)
    modes = ["max" if m else "min" for m in maximize]

    started_ray = _init_ray(cfg)
    try:
        import ray

        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        gpus = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if has_gpu else 0.0)
        unit = "gpu" if gpus > 0 and has_gpu else "cpu"
        budget = Budget(device_hours=cfg.budget_gpu_hours, trials=cfg.budget_trials,
                        time_limit_s=cfg.time_limit, unit=unit, elapsed_before_s=elapsed_before)
        config_doc = {"run_name": name, **cfg.to_dict(), "storage_url": storage_url,
                      "study_name": name, "metric_name": task.metric_name,
                      "maximize": bool(task.maximize), "objective_columns": columns,
                      "objective_maximize": maximize, "input_shape": list(input_shape),
                      "resolution": resolution, "num_outputs": int(bundle.num_outputs),
                      "budget_unit": unit, "gpus_per_trial_resolved": gpus,
                      "latency_clock": LATENCY_CLOCK}
        if resume is None:
            config_doc["created_at"] = datetime.now().isoformat(timespec="seconds")
        else:
            config_doc["created_at"] = saved.get("created_at")
            config_doc["resumed_at"] = [*saved.get("resumed_at", []),
                                        datetime.now().isoformat(timespec="seconds")]
        run.write_config(config_doc)
        return _run(cfg, run, name, storage_url, space, resolution, bundle, task, columns,
                    maximize, metrics, modes, budget, gpus, data_kw, resume is not None, stream)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _run(cfg, run, name, storage_url, space, resolution, bundle, task, columns, maximize,
         metrics, modes, budget, gpus, data_kw, resuming, stream) -> SearchResult:
    import optuna
    import ray
    from ray import tune

    from .progress import RunRecorder
    from .searcher import ArchSearcher
    from .trial import search_trial

    storage = _open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                directions=["maximize" if m else "minimize" for m in maximize])
    rows = run.read_rows()
    recorder = RunRecorder(run, budget, rows, columns, maximize, task.metric_name, cfg.epochs,
                           keep_checkpoints=cfg.keep_checkpoints,
                           dashboard_every=cfg.dashboard_every, verbose=cfg.verbose, stream=stream)
    if resuming:
        _repair_after_interrupt(study, recorder)
    elif cfg.with_references:
        _enqueue_references(study, space, resolution, recorder)

    seed = cfg.seed + len(study.trials)  # a resumed random stream must not replay old proposals
    sampler = make_sampler(cfg.sampler, seed, cfg.population_size)
    threads = cfg.threads_per_trial or max(1, int(cfg.cpus_per_trial))
    latency, service = _latency_settings(cfg, run, gpus, bundle, resolution)
    settings = {
        "data": data_kw, "num_outputs": int(bundle.num_outputs), "epochs": cfg.epochs,
        "metric_name": task.metric_name,
        "maximize": bool(task.maximize), "gpus_per_trial": gpus, "threads": threads,
        "run_dir": str(run.path.resolve()), "keep_checkpoints": cfg.keep_checkpoints,
        "inject_failure": list(cfg.inject_failure or []),
        "train": {"batch_size": cfg.batch_size, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                  "warmup_epochs": cfg.warmup_epochs, "label_smoothing": cfg.label_smoothing,
                  "amp": cfg.amp, "max_batches_per_epoch": cfg.max_batches_per_epoch,
                  "max_val_batches": cfg.max_val_batches,
                  "seed": cfg.seed},
        "latency": latency,
    }
    searcher = ArchSearcher(space, resolution, recorder, settings, metrics, modes, sampler,
                            storage, name)
    searcher.prepare_next()  # the first proposal, while Tune sets up
    scheduler = None
    if cfg.scheduler == "asha" and cfg.epochs > cfg.asha_grace_epochs:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="epochs", metric="metric",
                                  mode="max" if task.maximize else "min", max_t=cfg.epochs,
                                  grace_period=cfg.asha_grace_epochs,
                                  reduction_factor=cfg.asha_reduction_factor)
    resources = ray.cluster_resources()
    concurrency = cfg.max_concurrent or max(1, int(resources.get("CPU", 1) // cfg.cpus_per_trial))
    if gpus > 0:
        concurrency = min(concurrency, max(1, int(resources.get("GPU", 0) / gpus)))
    time_left = None
    if cfg.time_limit is not None:
        time_left = max(1.0, cfg.time_limit - budget.elapsed())

    recorder.note(f"run {name} -> {run.path} | space {cfg.space} at {resolution}px, dataset "
                  f"{cfg.dataset} ({len(bundle.train)} train / {len(bundle.val)} val), "
                  f"objectives {', '.join(f'{m} {d}' for m, d in zip(columns, modes))}, "
                  f"sampler {cfg.sampler}, scheduler {cfg.scheduler}, "
                  f"{concurrency} concurrent trial(s)" + (" [resumed]" if resuming else ""))
    if budget.unit == "cpu" and cfg.budget_gpu_hours is not None:
        recorder.note(f"no GPU in use: --budget-gpu-hours {cfg.budget_gpu_hours:g} counts CPU "
                      f"device-hours (wall time x 1 device per trial)")
    recorder.save()

    tune_dir = tempfile.mkdtemp(prefix="hnas_tune_")
    trainable = search_trial
    shared = _share_bundle(bundle, data_kw)
    if shared is not None:
        trainable = tune.with_parameters(search_trial, shared_data=shared)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial, "gpu": gpus}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=concurrency, reuse_actors=True,
                                    time_budget_s=time_left,
                                    trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name="tune", storage_path=tune_dir, callbacks=[recorder],
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
        _fail_running_optuna_trials(study, stopped)
        recorder.save()
        _finish_files(cfg, run, recorder)
        if service is not None:
            service.close()
        import shutil

        shutil.rmtree(tune_dir, ignore_errors=True)
    summary = run.read_summary()
    summary["session_wall_s"] = time.monotonic() - t0
    summary["tune_wall_s"] = tune_wall
    run.write_summary(summary)
    _print_summary(recorder, summary, run, interrupted)
    return SearchResult(run.path, summary, interrupted)


SHARE_DATA_MAX_BYTES = 512 * 2**20


def _share_bundle(bundle, data_kw):
    """The loaded dataset for the trials, through Ray's object store: a fresh
    worker then skips the dataset's imports and decoding (digits: ~2 s of
    scikit-learn import on a busy 2-core machine), and nodes of a cluster
    need no copy of the files. ``(data key, [object ref])`` (the ref wrapped,
    so a worker fetches the bundle once and caches it), or None for a
    dataset too large to copy around (workers then load it themselves)."""
    import ray

    from .trial import data_key

    nbytes = 0
    for split in (bundle.train, bundle.val, getattr(bundle, "test", None)):
        nbytes += sum(int(getattr(v, "nbytes", 0) or 0) for v in vars(split).values()) \
            if split is not None and hasattr(split, "__dict__") else 0
    if nbytes > SHARE_DATA_MAX_BYTES:
        return None
    try:
        return data_key(data_kw), [ray.put(bundle)]
    except Exception as e:  # noqa: BLE001 - e.g. a dataset that does not pickle: workers load it
        log.info("dataset not shared with the trials (%s: %s)", type(e).__name__, e)
        return None


def _latency_resolution(bundle, resolution):
    """The service's default input size, at the run's default input shape:
    the resolution, or (assets, time) for a temporal panel (features, assets,
    time). Each trial passes its own (``trial.latency_resolution``), since a
    temporal space draws the lookback per trial."""
    from .trial import latency_resolution

    return latency_resolution(bundle.input_shape) if len(bundle.input_shape) >= 2 else resolution


def _latency_settings(cfg, run, gpus, bundle, resolution):
    """Latency settings for the trials and the run's one ``LatencyService``.

    The service (folder ``<run>/latency``) serialises measurements, pauses
    training trials on the host while one runs and caches figures by arch id.
    A CUDA target gets a dedicated Ray actor holding the device, so no
    training trial is placed on it.
    """
    device = cfg.latency_device or ("cuda" if gpus > 0 else "cpu")
    lat = {"device": device, "batch_size": cfg.latency_batch_size,
           "repeats": cfg.latency_repeats, "threads": cfg.latency_threads, "warmup": 5,
           "clock": LATENCY_CLOCK, "service_dir": None}
    try:
        from ..latency import LatencyService
    except ImportError:
        return lat, None
    service = LatencyService(run.path / "latency", device=device,
                             batch_size=cfg.latency_batch_size,
                             resolution=_latency_resolution(bundle, resolution),
                             in_chans=int(bundle.input_shape[0]),
                             num_classes=int(bundle.num_outputs), threads=cfg.latency_threads,
                             warmup=lat["warmup"], repeats=cfg.latency_repeats,
                             clock=lat["clock"], predictor=cfg.latency_table)
    if device.startswith("cuda"):
        service.start_actor()
    lat["service_dir"] = str(service.workdir)
    return lat, service


def storage_url_for(url: str) -> str:
    """``url`` with an installed driver: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3; the project installs psycopg2
    (``hybridnas[postgres]``), so such a URL names it when psycopg 3 is absent.
    config.yaml records the result, so every reader of the run can open it."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _open_storage(url: str):
    """The Optuna RDB storage for ``url`` (one line of error if it cannot open)."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except ImportError as e:
        raise UserError(f"--storage {url}: no database driver for this URL ({e.__cause__ or e}); "
                        f"for PostgreSQL: pip install psycopg2-binary") from None
    except Exception as e:  # noqa: BLE001 - connection refused, bad credentials, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--storage {url}: cannot open the Optuna storage: {first}") from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine) -> None:
    """WAL journal + synchronous=NORMAL: every suggest_* of a define-by-run
    space is a commit, and with the default rollback journal each one waits
    for an fsync (0.2-0.9 s per proposal measured on a busy 2-core machine,
    20-40 ms with WAL). Commits stay durable across a killed process."""
    import sqlalchemy

    def pragmas(conn, _record):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    sqlalchemy.event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened before the listener reconnect with it


def _trial_name(trial) -> str:
    return f"trial_{trial.config.get('trial_id', trial.trial_id)}"


def _enqueue_references(study, space, resolution, recorder) -> None:
    refs = getattr(space, "references", None)
    if refs is None:
        recorder.note("this space names no reference architectures")
        return
    named = refs(resolution) or {}
    for ref_name, spec in named.items():
        study.enqueue_trial(space.encode(spec), user_attrs={"reference": ref_name},
                            skip_if_exists=True)
    if named:
        recorder.note(f"enqueued {len(named)} reference architecture(s): {', '.join(named)}")


def _fail_running_optuna_trials(study, trial_numbers) -> None:
    import optuna

    wanted = set(int(t) for t in trial_numbers)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not wanted or t.number in wanted:
            study._storage.set_trial_user_attr(t._trial_id, "status", "FAILED")
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


INTERRUPTED = "interrupted"
REQUEUED = " (queued again on --resume)"


def _repair_after_interrupt(study, recorder) -> None:
    """After a kill: running trials become FAILED and are queued again."""
    import json

    import optuna

    stale = recorder.close_interrupted(f"{INTERRUPTED}: the search was killed while this trial ran")
    # Trials a Ctrl-C stopped were closed by that session; queue them too, once.
    stale += [n for n, r in recorder.rows.items() if r["status"] == "FAILED"
              and str(r.get("error") or "").startswith(INTERRUPTED) and REQUEUED not in r["error"]]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    running = [t.number for t in by_number.values() if t.state == optuna.trial.TrialState.RUNNING]
    _fail_running_optuna_trials(study, [])
    requeue = sorted(set(stale) | set(running))
    for number in requeue:
        row = recorder.rows.get(number)
        params = by_number[number].params if number in by_number else {}
        if not params and row and row.get("space_params"):
            params = json.loads(row["space_params"])
        if params:
            ref = row.get("reference") if row else None
            study.enqueue_trial(params, user_attrs={"reference": ref, "requeued_from": number})
        if row is not None:
            row["error"] = f"{row.get('error') or INTERRUPTED}{REQUEUED}"
    recorder.save()
    if requeue:
        recorder.note(f"resumed: trial(s) {requeue} were interrupted and are queued again")


def _finish_files(cfg, run, recorder) -> None:
    if cfg.keep_checkpoints != "all":
        try:
            from ..export import prune_checkpoints

            prune_checkpoints(str(run.path), keep=cfg.keep_checkpoints)
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001 - pruning is housekeeping
            recorder.note(f"checkpoints not pruned: {type(e).__name__}: {e}")
        for row in recorder.rows.values():  # rows point at checkpoints that still exist
            if row.get("checkpoint") and not (run.path / row["checkpoint"]).exists():
                row["checkpoint"] = None
        recorder.save()
    recorder.write_dashboard(force=True)


def _print_summary(recorder, summary: dict, run: RunDir, interrupted: bool) -> None:
    b = summary.get("budget", {})
    c = summary.get("trials", {})
    unit = "GPU-hours" if b.get("unit") == "gpu" else "CPU device-hours (no GPU used)"
    total = f" of {b['total_hours']:g}" if b.get("total_hours") else ""
    hv = summary.get("hypervolume", 0.0)
    lines = [
        "[search] " + ("interrupted" if interrupted else "finished") + f": {run.path}",
        f"[search] spent {b.get('spent_hours', 0.0):.4f}{total} {unit} in "
        f"{b.get('elapsed_s', 0.0):.0f} s wall; trials: " +
        ", ".join(f"{k.lower()} {v}" for k, v in c.items() if v),
        f"[search] Pareto front: {summary.get('front_size', 0)} trial(s) "
        f"{summary.get('front_trial_ids', [])}, hypervolume {hv:.4g} "
        f"(reference {summary.get('reference_point')}) -> {run.pareto_csv}",
    ]
    if interrupted:
        lines.append(f"[search] continue with: hybridnas search --resume {run.path}")
    for line in lines:
        recorder._emit(line)
