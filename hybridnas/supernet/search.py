"""One-shot search (``hybridnas search --strategy oneshot``).

Three phases, all in one run directory with the multi-trial layout:

1. **Supernet.** ``Supernet(space)`` trained with the sandwich rule for
   ``supernet_epochs`` (in-process, or data-parallel on Ray Train with
   ``supernet_workers`` > 1); checkpoints in ``<run>/supernet/``.
2. **Ranking.** The run's Optuna sampler (NSGA-II, TPE, random) proposes
   subnets through the space's ``suggest``; each is scored with inherited
   weights on the validation split (batch-norm statistics recalibrated
   first) and gets a predicted latency (``--latency-table``, else a
   predictor calibrated at the start on a few subnets). Every few
   evaluations the subnets near the (metric, predicted latency) front are
   measured by the run's isolated latency measurer. Every evaluated subnet
   is a row of trials.parquet with ``fidelity = "inherited"``; its
   extracted weights are kept as its checkpoint when it is measured.
3. **Retraining.** The top ``retrain_top`` subnets of the measured front
   are trained standalone for ``retrain_epochs``; their
   ``standalone_metric`` is recorded beside the inherited ``metric``.

Before phase 1 the run prints its cost estimate (``estimate``: a few timed
sandwich steps and subnet evaluations; all ``--dry-run`` does, writing
nothing). Checkpoints and the dashboard are written through ``SearchHooks``
callbacks handed in by the caller (``hybridnas.app``), as in the
multi-trial search: this room does not import export or dashboard.

Budget: supernet training, evaluation, latency and retraining all count as
device time against ``--budget-gpu-hours`` and ``--time-limit``;
``--budget-trials`` caps the evaluated subnets (default 200). Faults: each
evaluated subnet is told to the Optuna study (its row stored with it) before
the next starts, and the supernet is checkpointed per epoch, so ``kill -9``
then ``--resume`` loses no finished epoch and no evaluated subnet.
"""
from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
# The run-directory contract: imported here only.
from ..rundir import RunDir, empty_row, front_of, front_summary, objective_columns
from ..search.hooks import SearchHooks
from ..search.storage import tell_rejected
from .train import CHECKPOINT_STATE, SandwichSettings, evaluate_subnet, prepare_subnet

__all__ = ["run_oneshot", "DEFAULT_SUBNETS"]

#: Subnets evaluated when no --budget-trials is given.
DEFAULT_SUBNETS = 200
MEASURE_EVERY = 25  # evaluations between latency measurements of the front
_CALIBRATION_NETS = 6


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


class _Accounts:
    """Device time of the phases that are not rows (supernet training,
    calibration), kept in ``<run>/supernet/accounts.json``."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def add(self, key: str, seconds: float) -> None:
        self.data[key] = float(self.data.get(key, 0.0)) + float(seconds)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from .._io import write_atomic

        write_atomic(self.path, lambda p: p.write_text(json.dumps(self.data)))

    def total(self) -> float:
        return float(sum(self.data.values()))


class _OneShot:
    def __init__(self, cfg, run: RunDir, name: str, stream, elapsed_before: float, resuming: bool,
                 hooks: SearchHooks | None = None):
        from ..search.budget import Budget
        from ..search.runner import load_bundle, load_space

        self.cfg, self.run, self.name, self.stream = cfg, run, name, stream
        self.hooks = hooks or SearchHooks()
        self.bundle, self.data_kw = load_bundle(cfg, stream)
        self.task = self.bundle.task
        self._calibration: list = []  # the batches subnets are prepared on (set by _rank)
        shape = tuple(int(x) for x in self.bundle.input_shape)
        self.resolution = shape[-1]
        self.in_chans = shape[0]
        self.num_classes = int(self.bundle.num_outputs)
        self.space = load_space(cfg, self.resolution)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.columns, self.maximize = objective_columns(self.task.maximize, cfg.objectives)
        self.budget = Budget(device_hours=cfg.budget_gpu_hours, trials=None,
                             time_limit_s=cfg.time_limit,
                             unit="gpu" if self.device.type == "cuda" else "cpu",
                             elapsed_before_s=elapsed_before)
        self.max_subnets = cfg.budget_trials or DEFAULT_SUBNETS
        self.accounts = _Accounts(run.path / "supernet" / "accounts.json")
        self.rows: dict[int, dict[str, Any]] = {int(r["trial_id"]): r for r in run.read_rows()}
        self.resuming = resuming
        self._saved_at = 0.0
        self.settings = SandwichSettings(
            epochs=cfg.supernet_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, warmup_epochs=float(cfg.warmup_epochs or 1),
            random_subnets=cfg.sandwich_random, stage_distill=cfg.sandwich_stage_distill,
            max_batches_per_epoch=cfg.max_batches_per_epoch,
            max_val_batches=cfg.max_val_batches, seed=cfg.seed, quiet=cfg.verbose < 1)

    # ---- accounting ------------------------------------------------------
    def spent(self) -> float:
        return self.accounts.total() + sum(float(r.get("device_seconds") or 0.0)
                                           for r in self.rows.values())

    def why_stop(self) -> str | None:
        if self.budget.time_limit_s is not None and self.budget.elapsed() >= self.budget.time_limit_s:
            return f"time limit reached ({self.budget.elapsed():.0f} s)"
        total = self.budget.total_seconds
        if total is not None and self.spent() >= total:
            return f"device budget spent ({self.spent() / 3600:.4f} h of {total / 3600:g} h)"
        return None

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self.run.append_log(line)

    # ---- files -------------------------------------------------------------
    def save(self, force: bool = True) -> None:
        if not force and time.monotonic() - self._saved_at < 2.0:
            return
        self._saved_at = time.monotonic()
        df = self.run.write_trials(self.rows.values())
        front = front_of(df, self.columns, self.maximize)
        self.run.write_pareto(front)
        budget = self.budget.to_summary(self.rows.values())
        budget["spent_device_seconds"] = self.spent()
        budget["spent_hours"] = self.spent() / 3600.0
        budget["supernet_device_seconds"] = self.accounts.total()
        counts: dict[str, int] = {}
        for r in self.rows.values():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        self.run.write_summary({
            "strategy": "oneshot", "budget": budget, "trials": counts,
            "objectives": self.columns, "maximize": self.maximize,
            "metric_name": self.task.metric_name,
            **front_summary(df, self.columns, self.maximize),
            "front_trial_ids": [int(t) for t in front["trial_id"].tolist()],
            "retrained": sorted(int(t) for t, r in self.rows.items()
                                if _finite(r.get("standalone_metric"))),
            "updated_at": _now()})

    # ---- cost estimate -----------------------------------------------------
    def estimate(self):
        """The run's cost estimate (``hybridnas.supernet.estimate``), counting
        what a resumed run has done already."""
        from .estimate import estimate_oneshot_run

        state = self.run.path / "supernet" / CHECKPOINT_STATE
        try:
            epochs_done = int(json.loads(state.read_text()).get("epoch") or 0)
        except (OSError, ValueError, AttributeError):
            epochs_done = 0
        calibrate = not (self.cfg.latency_table
                         or (self.run.path / "latency" / "predictor.json").exists())
        done = sum(1 for r in self.rows.values() if r["status"] == "COMPLETE")
        return estimate_oneshot_run(self.cfg, self.space, self.bundle, device=self.device,
                                    settings=self.settings, unit=self.budget.unit,
                                    max_subnets=self.max_subnets, spent_device_s=self.spent(),
                                    epochs_done=epochs_done, subnets_done=done,
                                    calibrate=calibrate, elapsed_s=self.budget.elapsed())

    def keep(self, tid: int, model, spec, meta: dict[str, Any]) -> None:
        """Save ``model`` as trial ``tid``'s checkpoint through the hooks and
        point its row at it (no ``save_checkpoint`` hook: nothing is saved)."""
        save = self.hooks.save_checkpoint
        if save is None:
            return
        folder = self.run.checkpoints / f"trial_{int(tid)}"
        save(folder, model, spec, {"resolution": self.resolution, "dataset": self.cfg.dataset,
                                   "metric_name": self.task.metric_name, **meta})
        self.rows[int(tid)]["checkpoint"] = str(folder.relative_to(self.run.path))

    # ---- phase 1 -----------------------------------------------------------
    def supernet(self):
        from . import Supernet
        from .train import load_checkpoint, train_supernet, train_supernet_ray

        kwargs = dict(num_classes=self.num_classes, in_chans=self.in_chans,
                      seed=self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        net = Supernet(self.space, **kwargs)
        ckpt = self.run.path / "supernet"
        t0 = time.perf_counter()
        done = [0]

        def on_epoch(stats) -> bool:
            # the epoch is checkpointed: its device time is spent for good
            self.accounts.add("supernet", time.perf_counter() - t0 - done[0])
            done[0] = time.perf_counter() - t0
            return self.why_stop() is None

        if self.why_stop() is None:
            if self.cfg.supernet_workers > 1:
                from ..search.cluster import init_ray

                started = init_ray(self.cfg)
                try:
                    train_supernet_ray({"space": self.space, **kwargs}, self.bundle,
                                       self.settings, ckpt, num_workers=self.cfg.supernet_workers)
                finally:
                    if started:
                        import ray

                        ray.shutdown()
                self.accounts.add("supernet", (time.perf_counter() - t0) *
                                  self.cfg.supernet_workers)
            else:
                train_supernet(net, self.bundle, self.settings, ckpt, device=self.device,
                               on_epoch=on_epoch, log=self.say)
        state = load_checkpoint(ckpt, net, device=self.device)
        epochs = int(state["epoch"]) if state else 0
        self.say(f"[oneshot] supernet trained for {epochs}/{self.settings.epochs} epoch(s); "
                 f"device time so far {self.spent():.0f} s")
        return net.to(self.device)

    # ---- latency ---------------------------------------------------------
    def latency(self, net):
        from ..latency import LatencyPredictor, calibrate
        from ..search.measuring import latency_settings

        _, service = latency_settings(self.cfg, self.run, 0.0, self.bundle, self.resolution)
        path = self.run.path / "latency" / "predictor.json"
        if self.cfg.latency_table:
            predictor = LatencyPredictor.load(self.cfg.latency_table)
        elif path.exists():
            predictor = LatencyPredictor.load(path)
        else:
            import numpy as np

            t0 = time.perf_counter()
            rng = np.random.default_rng(self.cfg.seed)
            specs = [net.largest, net.smallest] + [net.sample(rng) for _ in
                                                   range(_CALIBRATION_NETS - 2)]
            predictor = calibrate(specs, device="cpu", resolution=self.resolution,
                                  in_chans=self.in_chans, num_classes=self.num_classes,
                                  threads=self.cfg.latency_threads, repeats=5, warmup=2,
                                  measure_fn=service.measure if service is not None else None)
            path.parent.mkdir(parents=True, exist_ok=True)
            predictor.save(path)
            self.accounts.add("latency_calibration", time.perf_counter() - t0)
        return predictor, service

    # ---- phase 2 -----------------------------------------------------------
    def rank(self, net, predictor, service) -> None:
        from ..search.storage import storage_for, storage_url_for

        storage = storage_for(storage_url_for(self.cfg.storage or self.run.storage_url()))
        try:
            self._rank(storage, net, predictor, service)
        finally:  # the study's connections close with the phase (SQLite: the WAL is folded in)
            storage.engine.dispose()

    def _rank(self, storage, net, predictor, service) -> None:
        import optuna

        from ..search.storage import make_sampler
        from .train import calibration_batches

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=storage, study_name=self.name, load_if_exists=True,
                                    directions=["maximize" if m else "minimize"
                                                for m in self.maximize])
        self._recover(study)
        sampler = make_sampler(self.cfg.sampler, self.cfg.seed + len(study.trials),
                               self.cfg.population_size)
        study.sampler = sampler
        calibration = calibration_batches(self.bundle.train, self.settings, self.device)
        self._calibration = calibration
        val = self.bundle.val.to(self.device) if hasattr(self.bundle.val, "to") else self.bundle.val
        evaluated = sum(1 for r in self.rows.values() if r["status"] == "COMPLETE")
        since = 0
        while evaluated < self.max_subnets:
            reason = self.why_stop()
            if reason:
                self.say(f"[oneshot] ranking stops: {reason}")
                break
            trial = study.ask()
            t0 = time.perf_counter()
            spec = self.space.suggest(trial)
            row = self._row(trial.number, spec, trial.params)
            ok = self.space.check(spec)
            if not ok:
                row.update(status="REJECTED", error=ok.reason[:500], finished_at=_now())
                tell_rejected(study, trial)
                self.rows[trial.number] = row
                continue
            metrics = evaluate_subnet(net, spec, val, self.task, self.device, calibration,
                                      self.settings)
            metric = float(metrics.get(self.task.metric_name, math.nan))
            row.update(metrics)
            row.update(status="COMPLETE", metric=metric, full_fidelity=True,
                       params=sum(p.numel() for p in net._plan.template.parameters()),
                       predicted_latency_ms=float(predictor.predict(spec, self.resolution)),
                       device_seconds=time.perf_counter() - t0, finished_at=_now())
            values = [metric] + [self._objective(row, c) for c in self.columns[1:]]
            trial.set_user_attr("row", json.dumps(row, default=str))
            study.tell(trial, values)
            self.rows[trial.number] = row
            evaluated += 1
            since += 1
            if since >= MEASURE_EVERY:
                since = 0
                self.measure_front(net, service)
            self.save(force=False)
            if evaluated % 50 == 0:
                self.say(f"[oneshot] {evaluated} subnets evaluated; best {self.task.metric_name} "
                         f"{max(_m(r) for r in self.rows.values()):.4f}; device time "
                         f"{self.spent():.0f} s")
        self.measure_front(net, service)
        self.save()

    def _objective(self, row: dict, column: str) -> float:
        if column == "latency_ms":  # proposals are told the prediction; measured later
            return float(row["predicted_latency_ms"])
        return float(row.get(column) or 0)

    def _row(self, number: int, spec, params: dict) -> dict[str, Any]:
        row = empty_row(number)
        row.update(arch_id=spec.arch_id, spec=json.dumps(spec.to_dict(), sort_keys=True),
                   pattern=spec.pattern, space_params=json.dumps(params, sort_keys=True,
                                                                 default=str),
                   metric_name=self.task.metric_name, fidelity="inherited",
                   started_at=_now(), accelerator=self.device.type, max_epochs=0)
        return row

    def _recover(self, study) -> None:
        """After a kill: every subnet told to the study is a row (its row was
        stored with it); proposals that never got an answer are failed."""
        import optuna

        for t in study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING:
                study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            elif t.state == optuna.trial.TrialState.COMPLETE and t.number not in self.rows \
                    and "row" in t.user_attrs:
                self.rows[t.number] = json.loads(t.user_attrs["row"])
        self.save()

    def measure_front(self, net, service) -> None:
        """Measure (isolated, cached by arch) the subnets on the front of
        (metric, predicted latency) and keep their extracted weights (through
        the hooks)."""
        from ..spec import ArchSpec

        df = self.run.write_trials(self.rows.values())
        cols = ["metric", "predicted_latency_ms"]
        front = front_of(df, cols, [self.maximize[0], False])
        for tid in front["trial_id"].tolist():
            row = self.rows[int(tid)]
            if _finite(row.get("latency_ms")):
                continue
            t0 = time.perf_counter()
            spec = ArchSpec.from_json(row["spec"])
            if service is not None:
                lat = service.measure(spec)
                row.update(latency_ms=lat.median_ms, latency_p10_ms=lat.p10_ms,
                           latency_p90_ms=lat.p90_ms,
                           latency_device=str(lat.settings.get("device")))
            if self.hooks.save_checkpoint is not None:
                # subnets evaluated since share its batch-norm statistics: prepare it again
                if self._calibration:
                    prepare_subnet(net, spec, self._calibration, self.settings, self.task)
                self.keep(int(tid), net.extract(spec), spec,
                          {"metric": row["metric"], "fidelity": "inherited", "epochs": 0})
            row["device_seconds"] = float(row["device_seconds"] or 0) + time.perf_counter() - t0
        self.save()

    # ---- phase 3 -------------------------------------------------------------
    def retrain(self) -> None:
        from ..builder import build_model
        from ..spec import ArchSpec
        from ..training import fit

        k = self.cfg.retrain_top
        if k <= 0:
            return
        df = self.run.write_trials(self.rows.values())
        front = front_of(df, self.columns, self.maximize)
        best = front.sort_values("metric", ascending=not self.maximize[0]).head(k)
        for tid in best["trial_id"].tolist():
            row = self.rows[int(tid)]
            if _finite(row.get("standalone_metric")):
                continue  # retrained before a resume
            reason = self.why_stop()
            if reason:
                self.say(f"[oneshot] retraining stops: {reason}")
                return
            spec = ArchSpec.from_json(row["spec"])
            torch.manual_seed(self.cfg.seed)
            model = build_model(spec, num_classes=self.num_classes, in_chans=self.in_chans)
            t0 = time.perf_counter()
            result = fit(model, self.bundle, epochs=self.cfg.retrain_epochs,
                         batch_size=self.cfg.batch_size, lr=self.cfg.lr,
                         weight_decay=self.cfg.weight_decay, label_smoothing=self.cfg.label_smoothing,
                         max_batches_per_epoch=self.cfg.max_batches_per_epoch,
                         max_val_batches=self.cfg.max_val_batches, seed=self.cfg.seed,
                         device=self.device)
            self.keep(int(tid), model, spec, {"metric": result.best_metric,
                                              "fidelity": "standalone", "epochs": result.epochs})
            row.update(standalone_metric=float(result.best_metric), epochs=result.epochs,
                       max_epochs=self.cfg.retrain_epochs, curve=json.dumps(result.curve),
                       device_seconds=float(row["device_seconds"] or 0)
                       + time.perf_counter() - t0)
            self.save()
            self.say(f"[oneshot] retrained trial {tid}: inherited {row['metric']:.4f}, "
                     f"standalone {row['standalone_metric']:.4f} ({result.epochs} epochs)")


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _m(row: dict) -> float:
    return float(row["metric"]) if _finite(row.get("metric")) else -math.inf


def run_oneshot(cfg=None, resume=None, overrides: dict | None = None, stream=None,
                hooks: SearchHooks | None = None, dry_run: bool = False):
    """Run (or resume) a one-shot search; returns a ``SearchResult`` like
    ``hybridnas.search.run_search`` (same arguments). ``hooks``: the
    callbacks that save checkpoints (of the measured front and the retrained
    subnets) and draw the dashboard; none by default (``hybridnas.run_search``
    and the CLI pass export's and dashboard's). ``dry_run``: print the cost
    estimate and return it (``estimate``) without creating the run
    directory, its study or its lock. The run directory is locked for the
    whole run (one writer)."""
    from ..runlock import RunLock, read_holder
    from ..search.config import SearchConfig
    from ..search.runner import default_run_name

    stream = stream or sys.stdout
    if resume is not None:
        run = RunDir(resume)
        if not (run.config.is_file() or read_holder(run.path) is not None):
            raise UserError(f"--resume {run.path}: no config.yaml here; is this a search run "
                            f"directory?")
    else:
        cfg = cfg or SearchConfig(strategy="oneshot")
        cfg.strategy = "oneshot"
        cfg.check()
        run = RunDir(Path(cfg.results_dir) / (cfg.name or default_run_name(cfg) + "-oneshot"))
    if dry_run:  # a dry run creates nothing, not even a lock
        return _dry_run(cfg, run, resume, overrides, stream)
    lock = RunLock(run.path, command="hybridnas search --strategy oneshot").acquire()
    try:
        return _run_oneshot_locked(cfg, run, resume, overrides, stream, hooks or SearchHooks())
    finally:
        lock.release()


def _resolve(cfg, run: RunDir, resume, overrides) -> tuple[Any, str, float, str | None]:
    """(options, run name, wall seconds of earlier sessions, created_at) of a
    new or resumed run; a new run may not land on an existing one."""
    from ..search.resume import resume_config

    if resume is not None:
        cfg, saved = resume_config(run, overrides or {})
        try:
            elapsed = float(run.read_summary().get("budget", {}).get("elapsed_s") or 0.0)
        except UserError:  # derived data: rewritten at the end
            elapsed = 0.0
        return cfg, saved.get("run_name") or run.path.name, elapsed, saved.get("created_at")
    if run.trials_file is not None or run.config.exists():
        raise UserError(f"{run.path} already holds a run; continue it with "
                        f"`hybridnas search --resume {run.path}` or pick another --name")
    return cfg, run.path.name, 0.0, _now()


def _dry_run(cfg, run: RunDir, resume, overrides, stream):
    """``--dry-run``: the estimate, printed; nothing written."""
    from ..search.runner import SearchResult

    cfg, name, elapsed, _ = _resolve(cfg, run, resume, overrides)
    job = _OneShot(cfg, run, name, stream, elapsed, resume is not None)
    estimate = job.estimate()
    for line in estimate.lines() + ["dry run: nothing created or started"]:
        print(f"[oneshot] {line}", file=stream, flush=True)
    return SearchResult(run.path, {}, estimate=estimate)


def _run_oneshot_locked(cfg, run: RunDir, resume, overrides, stream, hooks: SearchHooks):
    from ..runlock import portable_storage_url
    from ..search.runner import SearchResult

    cfg, name, elapsed, created = _resolve(cfg, run, resume, overrides)
    run.create()
    job = _OneShot(cfg, run, name, stream, elapsed, resume is not None, hooks)
    # a SQLite study inside the run is stored relative to it: a copied run is its own run
    run.write_config({"run_name": name, **cfg.to_dict(), "strategy": "oneshot",
                      "storage_url": portable_storage_url(cfg.storage or run.storage_url(),
                                                          run.path),
                      "study_name": name,
                      "metric_name": job.task.metric_name, "maximize": bool(job.task.maximize),
                      "objective_columns": job.columns, "objective_maximize": job.maximize,
                      "input_shape": list(job.bundle.input_shape), "resolution": job.resolution,
                      "num_outputs": job.num_classes, "budget_unit": job.budget.unit,
                      "created_at": created})
    job.say(f"[oneshot] run {name} -> {run.path} | space {job.space.name} at {job.resolution}px, "
            f"dataset {cfg.dataset} ({len(job.bundle.train)} train / {len(job.bundle.val)} val)"
            + (" [resumed]" if resume is not None else ""))
    estimate = job.estimate()
    for line in estimate.lines():
        job.say(f"[oneshot] {line}")
    interrupted = False
    service = None
    try:
        net = job.supernet()
        predictor, service = job.latency(net)
        job.rank(net, predictor, service)
        job.retrain()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if service is not None:
            service.close()
        job.save()
        if hooks.write_dashboard is not None:
            try:
                hooks.write_dashboard(str(run.path))
            except Exception as e:  # noqa: BLE001 - drawing must not lose a finished run
                job.say(f"[oneshot] dashboard not written: {type(e).__name__}: {e}")
    summary = run.read_summary()
    job.say(f"[oneshot] {'interrupted' if interrupted else 'finished'}: {run.path}; "
            f"{summary.get('trials', {}).get('COMPLETE', 0)} subnets evaluated, front "
            f"{summary.get('front_trial_ids')}, retrained {summary.get('retrained')}, "
            f"device time {job.spent():.0f} s")
    return SearchResult(run.path, summary, interrupted, estimate=estimate)
