"""The driver-side record of a search: trial rows, progress lines, run files.

``RunRecorder`` is a Ray Tune callback. It keeps one row per trial (keyed by
the Optuna trial number), rewrites trials.parquet/csv, pareto.csv and
summary.json atomically after every trial event, prints one progress line
per event (and appends it to logs/search.log), and rewrites the dashboard
every few finished trials. The searcher asks it whether the budget allows
another trial and hands it the rejected architectures.

Everything runs in the driver process, so a search on a multi-node cluster
still writes one run directory on the machine that started it. Two threads
use it there -- Tune's (its callbacks) and the searcher's proposal thread
(rejected and repeated architectures) -- so every method that reads or
writes the rows holds one lock.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import sys
import threading
import time
from typing import Any, Sequence

from ray.tune import Callback

from ..rundir import (
    STATUSES,
    TRIAL_COLUMNS,
    RunDir,
    RunWriteError,
    empty_row,
    front_of,
    front_summary,
    make_summary,
    rows_to_frame,
)
from .budget import Budget
from .trial import now_iso

__all__ = ["RunRecorder"]

log = logging.getLogger("hybridnas.search")


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class RunRecorder(Callback):
    def __init__(self, run: RunDir, budget: Budget, rows: list[dict], columns: Sequence[str],
                 maximize: Sequence[bool], metric_name: str, max_epochs: int,
                 keep_checkpoints: str = "pareto", dashboard_every: int = 5,
                 verbose: int = 0, stream=None, write_dashboard=None,
                 limits: dict[str, float] | None = None):
        self.run = run
        self.budget = budget
        self.rows: dict[int, dict[str, Any]] = {int(r["trial_id"]): r for r in rows}
        self.columns = list(columns)
        self.maximize = list(maximize)
        self.limits = dict(limits or {})  # rundir.front_limits of the run's config
        self.metric_name = metric_name
        self.max_epochs = max_epochs
        self.keep_checkpoints = keep_checkpoints
        self.dashboard_every = max(1, int(dashboard_every))
        self.verbose = verbose
        self.stream = stream
        self.dashboard_hook = write_dashboard  # SearchHooks.write_dashboard, or None
        self._finished_since_dashboard = 0
        self.duplicates = 0
        self._dirty = False
        self._saved_at = 0.0
        self.result_save_interval_s = 5.0
        self._lock = threading.RLock()
        self._front: dict | None = None  # front_summary of the rows; only a finish changes it
        self._writer: threading.Thread | None = None  # save_soon's background write
        self.write_error: RunWriteError | None = None  # a full or read-only disk: the run stops

    def __getstate__(self):
        # Tune pickles its config (callbacks included) for Tuner.restore; the
        # output stream and the lock stay behind.
        state = dict(self.__dict__)
        state["stream"] = None
        state.pop("_lock", None)
        state["_writer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- queries
    @_locked
    def why_not_start(self, pending: int = 0) -> str | None:
        return self.budget.why_not_start(list(self.rows.values()), pending)

    @_locked
    def should_wait(self, outstanding: int = 0) -> bool:
        return self.budget.should_wait(list(self.rows.values()), outstanding)

    @_locked
    def frame(self):
        return rows_to_frame(self.rows.values())

    @_locked
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.rows.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @_locked
    def known_result(self, arch_id: str) -> dict[str, Any] | None:
        """The row of a full-fidelity COMPLETE trial of ``arch_id``, if any."""
        for row in self.rows.values():
            if row.get("arch_id") == arch_id and row["status"] == "COMPLETE" and row.get("full_fidelity"):
                return row
        return None

    @_locked
    def duplicate(self, trial_number: int, of: int) -> None:
        self.duplicates += 1
        if self.verbose:
            self.note(f"proposal {trial_number} repeats trial {of}: answered from the table, "
                      f"not trained again")

    # ---------------------------------------------------------------- output
    def note(self, message: str) -> None:
        self._emit(f"[search] {message}")

    @_locked
    def _emit(self, line: str, console: bool = True) -> None:
        if console:
            print(line, file=self.stream or sys.stdout, flush=True)
        self.run.append_log(line)

    @_locked
    def front_summary(self) -> dict:
        """Front size and hypervolume of the rows (cached: the front holds
        finished full-fidelity trials only, so it changes when one finishes)."""
        if self._front is None:
            self._front = front_summary(self.frame(), self.columns, self.maximize,
                                        limits=self.limits)
        return self._front

    @_locked
    def progress_line(self, event: str = "") -> str:
        c = self.counts()
        fs = self.front_summary()
        done = c["COMPLETE"] + c["EARLY_STOPPED"]
        parts = [f"{done} done ({c['EARLY_STOPPED']} early-stopped)", f"{c['RUNNING']} running",
                 f"{c['FAILED']} failed", f"{c['REJECTED']} rejected",
                 f"budget {self.budget.describe(self.rows.values())}"
                 + (f", {eta}" if (eta := self.budget.describe_eta(self.rows.values())) else ""),
                 f"front {fs['front_size']}, HV {fs['hypervolume']:.4g}"]
        line = "[search] " + " | ".join(parts)
        return f"{line} | {event}" if event else line

    @_locked
    def save(self) -> None:
        """Rewrite the trials table, front and summary (atomic renames)."""
        self._dirty = False
        self._saved_at = time.monotonic()
        df = self.run.write_trials(self.rows.values())
        front = front_of(df, self.columns, self.maximize, self.limits)
        self.run.write_pareto(front)
        if self._front is None:  # unchanged since the last finish otherwise
            self._front = front_summary(df, self.columns, self.maximize, limits=self.limits)
        summary = make_summary(front, self._front, self.columns, self.maximize,
                               self.metric_name, self.budget.to_summary(self.rows.values()),
                               self.counts(), now_iso())
        self.run.write_summary(summary)

    def save_soon(self) -> None:
        """Save on a background thread: for events on the critical path (a
        trial starting, an epoch report the trial waits on), where a
        synchronous rewrite of the tables would hold up the
        trial. A trial's finish is saved at once (``save``): its result must
        be on disk before the next trial starts."""
        with self._lock:
            self._dirty = True
            if self._writer is not None and self._writer.is_alive():
                return  # the write in flight takes the rows as they are when it starts
            self._writer = threading.Thread(target=self._save_if_dirty, daemon=True,
                                            name="hybridnas-save")
            self._writer.start()

    def save_or_stop(self) -> bool:
        """``save()``; a full or read-only disk is kept in ``write_error``
        (the runner then stops the run and reports it) instead of raising
        inside Tune. False when the files could not be written."""
        try:
            self.save()
            return True
        except RunWriteError as e:
            with self._lock:
                self.write_error = self.write_error or e
            return False

    def _save_if_dirty(self) -> None:
        try:
            with self._lock:
                if self._dirty:
                    self.save_or_stop()
        except Exception as e:  # noqa: BLE001 - the next synchronous save tries again
            log.warning("trials table not written: %s: %s", type(e).__name__, e)

    def flush(self) -> None:
        """Wait for a background save in flight (end of a run, tests)."""
        writer = self._writer
        if writer is not None:
            writer.join()

    @_locked
    def write_dashboard(self, force: bool = False) -> None:
        """Rewrite dashboard.html every few finished trials (through the
        ``write_dashboard`` callback, if one was given); never fails the search."""
        if not force and self._finished_since_dashboard < self.dashboard_every:
            return
        self._finished_since_dashboard = 0
        if self.dashboard_hook is None:
            return
        try:
            self.dashboard_hook(str(self.run.path))
        except Exception as e:  # noqa: BLE001 - a drawing problem must not stop a search
            log.warning("dashboard not written: %s: %s", type(e).__name__, e)
            if self.verbose:
                self.note(f"dashboard not written: {type(e).__name__}: {e}")

    # ---------------------------------------------------------------- rows
    def _row(self, trial_id: int) -> dict[str, Any]:
        if trial_id not in self.rows:
            self.rows[trial_id] = empty_row(trial_id)
        return self.rows[trial_id]

    def _from_config(self, row: dict[str, Any], config: dict[str, Any]) -> None:
        from ..spec import ArchSpec

        spec = config.get("spec")
        if spec:
            row["spec"] = json.dumps(spec, sort_keys=True)
            try:
                row["pattern"] = ArchSpec.from_dict(spec).pattern
            except Exception:  # noqa: BLE001
                row["pattern"] = None
        row["arch_id"] = config.get("arch_id") or row.get("arch_id")
        row["space_params"] = json.dumps(config.get("space_params") or {}, sort_keys=True,
                                         default=str)
        row["reference"] = config.get("reference")
        row["metric_name"] = self.metric_name
        row["max_epochs"] = self.max_epochs

    def _from_result(self, row: dict[str, Any], result: dict[str, Any]) -> None:
        for key, value in result.items():
            if key in TRIAL_COLUMNS or key.startswith("val_"):
                if key in ("trial_id",):
                    continue
                row[key] = value
        for key in ("error", "checkpoint", "finished_at", "latency_device"):
            if row.get(key) == "":
                row[key] = None

    @_locked
    def rejected(self, trial_id: int, spec, params: dict, reason: str,
                 reference: str | None) -> None:
        row = self._row(trial_id)
        if spec is not None:
            self._from_config(row, {"spec": spec.to_dict(), "arch_id": spec.arch_id,
                                    "space_params": params, "reference": reference})
        else:
            self._from_config(row, {"space_params": params, "reference": reference})
        row.update(status="REJECTED", error=reason[:500], started_at=now_iso(),
                   finished_at=now_iso())
        # Written with the next trial event: a constrained space may reject
        # dozens in a row, and each costs nothing to propose again.
        self._dirty = True
        # Constrained spaces reject often: one console line each only with -v
        # (the counter is in every progress line; the log has them all).
        self._emit(self.progress_line(f"trial {trial_id} REJECTED: {reason[:160]}"),
                   console=self.verbose > 0)

    # ---------------------------------------------------------------- Tune hooks
    @_locked
    def on_trial_start(self, iteration, trials, trial, **info):
        tid = int(trial.config["trial_id"])
        row = self._row(tid)
        self._from_config(row, trial.config)
        row.update(status="RUNNING", started_at=now_iso())
        # In the background: a start is on the critical path between two
        # trials, and a kill before the row is written loses nothing (resume
        # re-queues the study's RUNNING trials, row or not).
        self.save_soon()
        ref = f" ({trial.config['reference']})" if trial.config.get("reference") else ""
        self._emit(self.progress_line(f"trial {tid}{ref} started [{trial.config.get('arch_id')}]"))

    @_locked
    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = int(trial.config["trial_id"])
        row = self._row(tid)
        self._from_result(row, result)
        if row["status"] not in ("FAILED",):
            row["status"] = "RUNNING"  # final status is decided on completion
        # Rows of running trials are lost on a kill anyway; rewriting the
        # table at most every few seconds, in the background (the trial
        # waits in tune.report until this returns), keeps epoch reports cheap.
        if time.monotonic() - self._saved_at > self.result_save_interval_s:
            self.save_soon()
        else:
            self._dirty = True
        if int(row.get("epochs") or 0) < self.max_epochs and row["status"] != "FAILED":
            self._emit(f"[search] trial {tid} epoch {row['epochs']}/{self.max_epochs} "
                       f"{self.metric_name}={_fmt(row['metric'])} "
                       f"({_fmt(row['device_seconds'])} device-s)")

    @_locked
    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, error=None)

    @_locked
    def on_trial_error(self, iteration, trials, trial, **info):
        err = getattr(trial, "error_msg", None) or "the trial's worker crashed"
        try:
            err = trial.get_error() and str(trial.get_error()).strip().splitlines()[-1]
        except Exception:  # noqa: BLE001
            pass
        self._finish(trial, error=str(err or "worker error")[:500])

    def _finish(self, trial, error: str | None) -> None:
        tid = int(trial.config["trial_id"])
        row = self._row(tid)
        result = trial.last_result or {}
        self._from_result(row, result)
        status = result.get("status") or "RUNNING"
        if error:
            status, row["error"] = "FAILED", error
        elif status == "RUNNING":
            # Stopped by ASHA or the time limit after row['epochs'] epochs.
            status = "EARLY_STOPPED" if row.get("epochs", 0) > 0 else "FAILED"
            if status == "FAILED":
                row["error"] = row.get("error") or "stopped before its first epoch finished"
        row["status"] = status
        row["full_fidelity"] = status == "COMPLETE" and int(row.get("epochs") or 0) >= self.max_epochs
        row["finished_at"] = row.get("finished_at") or now_iso()
        self._front = None
        self.save_or_stop()
        self._finished_since_dashboard += 1
        what = f"trial {tid} {status}"
        if status in ("COMPLETE", "EARLY_STOPPED"):
            what += (f" {self.metric_name}={_fmt(row['metric'])} after {row['epochs']} ep, "
                     f"latency {_fmt(row['latency_ms'])} ms, {row['params'] / 1e6:.2f}M params")
        else:
            what += f": {row.get('error')}"
        self._emit(self.progress_line(what))
        self.write_dashboard()

    @_locked
    def close_interrupted(self, reason: str) -> list[int]:
        """Mark rows still RUNNING as FAILED (the search stopped under them)."""
        ids = []
        for tid, row in self.rows.items():
            if row["status"] == "RUNNING":
                row.update(status="FAILED", error=reason, finished_at=now_iso(),
                           full_fidelity=False)
                ids.append(tid)
        return ids


def _fmt(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if math.isnan(v) else f"{v:.4g}"

