"""The run directory contract: the one module that knows how a search run is stored.

Search writes through it; export, dashboard and the one-shot search read (or
write) through it, so the trials columns, which trials may enter the Pareto
front, the objectives and summary.json are declared here once.

Layout (the manual: docs/CONTRACTS.md)::

    results/<run-name>/
      config.yaml  study.db  trials.parquet  trials.csv  pareto.csv  summary.json
      checkpoints/trial_<id>/  partial/trial_<id>/  logs/search.log  dashboard.html
      fidelity.parquet  fidelity.json     (``hybridnas fidelity``: proxy vs longer training)

The trials table is rewritten atomically (temp file + rename) after every
trial event, so a ``kill -9`` of the search loses at most the trials that
were running, never a finished one.

    >>> import hybridnas
    >>> df = hybridnas.load_run("results/quickstart")          # doctest: +SKIP
    >>> df[df.status == "COMPLETE"].sort_values("metric").tail(3)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._io import parse_json, parse_yaml, read_text, write_atomic
from .errors import UserError


class TrialsFallbackWarning(UserWarning):
    """trials.parquet could not be read and trials.csv was read instead."""


class RunWriteError(UserError):
    """A file of the run could not be written (a full or read-only disk);
    the message names the file. Written files stay as they were."""

__all__ = ["RunDir", "load_run", "TrialsFallbackWarning", "RunWriteError", "empty_row", "rows_to_frame", "normalise_trials",
           "COLUMNS", "Column", "TRIAL_COLUMNS", "STATUSES", "FIDELITIES",
           "OBJECTIVE_COLUMNS", "DEFAULT_OBJECTIVES", "objective_columns", "run_objectives",
           "LIMIT_OPTIONS", "front_limits", "front_eligible", "front_of", "front_summary", "make_summary",
           "FIDELITY_COLUMNS"]

STATUSES = ("COMPLETE", "EARLY_STOPPED", "FAILED", "REJECTED", "RUNNING")
#: How a trial's ``metric`` was obtained: trained at the proxy setting
#: (multi-trial search), with weights inherited from a supernet, or trained
#: on its own after a one-shot search.
FIDELITIES = ("proxy", "inherited", "standalone")


@dataclass(frozen=True)
class Column:
    """One trials-table column: its kind (int | float | bool | str) and the
    value a reader fills in where a table lacks the column."""

    kind: str
    default: Any = None


_NAN = math.nan

#: Columns of trials.parquet in contract order (extra val_* columns follow).
COLUMNS: dict[str, Column] = {
    "trial_id": Column("int", -1), "status": Column("str", "COMPLETE"),
    "arch_id": Column("str"), "spec": Column("str"), "pattern": Column("str"),
    "space_params": Column("str"), "params": Column("int", _NAN), "macs": Column("int", _NAN),
    "latency_ms": Column("float", _NAN), "latency_p10_ms": Column("float", _NAN),
    "latency_p90_ms": Column("float", _NAN), "latency_device": Column("str"),
    "predicted_latency_ms": Column("float", _NAN), "metric": Column("float", _NAN),
    "metric_name": Column("str"), "curve": Column("str"), "epochs": Column("int", _NAN),
    "max_epochs": Column("int", _NAN), "full_fidelity": Column("bool", True),
    "device_seconds": Column("float", 0.0), "accelerator": Column("str"),
    "error": Column("str"), "reference": Column("str"), "checkpoint": Column("str"),
    "started_at": Column("str"), "finished_at": Column("str"),
    "fidelity": Column("str", "proxy"), "standalone_metric": Column("float", _NAN),
}
#: Columns of fidelity.parquet: one row per trial retrained at a higher
#: fidelity (``proxy_metric``: its ``metric`` in the trials table;
#: ``fidelity_metric``: the best validation metric of the retraining, which
#: ran ``epochs`` epochs on ``subset`` training images in ``device_seconds``).
FIDELITY_COLUMNS: dict[str, Column] = {
    "trial_id": Column("int", -1), "arch_id": Column("str"), "proxy_metric": Column("float", _NAN),
    "fidelity_metric": Column("float", _NAN), "epochs": Column("int", 0),
    "subset": Column("int", 0), "device_seconds": Column("float", 0.0),
}
#: Column name -> kind.
TRIAL_COLUMNS: dict[str, str] = {name: col.kind for name, col in COLUMNS.items()}
#: Columns read as numbers (NaN where missing).
NUMERIC_COLUMNS = tuple(n for n, c in COLUMNS.items() if c.kind in ("int", "float")
                        and n != "trial_id")

#: Objective name (``--objectives``) -> (trials column, maximise?).
OBJECTIVE_COLUMNS = {"latency": ("latency_ms", False), "params": ("params", False),
                     "macs": ("macs", False)}
#: A run's objectives when it names none: maximise the metric, minimise latency.
DEFAULT_OBJECTIVES: tuple[tuple[str, ...], tuple[bool, ...]] = (("metric", "latency_ms"),
                                                                 (True, False))


def empty_row(trial_id: int) -> dict[str, Any]:
    """The row of a trial that has just started: RUNNING, nothing measured yet."""
    row: dict[str, Any] = {k: c.default if c.kind == "float" else None
                           for k, c in COLUMNS.items()}
    row.update(trial_id=int(trial_id), status="RUNNING", params=0, macs=0, epochs=0,
               max_epochs=0, full_fidelity=False, device_seconds=0.0, curve="[]",
               fidelity=COLUMNS["fidelity"].default)
    return row


def _string_dtype():
    """pandas' string dtype with NaN for missing values (the pandas 3 default),
    so ``if value`` style readers see NaN like any float column, not pd.NA."""
    import numpy as np
    import pandas as pd

    try:
        return pd.StringDtype(na_value=np.nan)
    except TypeError:  # pandas < 2.3: plain objects
        return object


def rows_to_frame(rows: Iterable[dict[str, Any]]):
    """A DataFrame with the contract's columns and dtypes (val_* extras last)."""
    import pandas as pd

    rows = sorted(rows, key=lambda r: r["trial_id"])
    _STR = _string_dtype()
    extra = sorted({k for r in rows for k in r if k not in TRIAL_COLUMNS})
    df = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS) + extra)
    for col, kind in TRIAL_COLUMNS.items():
        if kind == "int":
            df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype("int64")
        elif kind == "float":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        elif kind == "bool":
            df[col] = df[col].fillna(False).astype(bool)
        else:  # a string column even when all missing: a stable parquet schema
            df[col] = df[col].astype(object).where(df[col].notna(), None).astype(_STR)
    for col in extra:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def objective_columns(metric_maximize: bool, objectives: Sequence[str]) -> tuple[list[str], list[bool]]:
    """Trials columns and directions of a search's objectives: the metric
    (maximised when ``metric_maximize``) and each ``--objectives`` name."""
    cols, maxi = ["metric"], [bool(metric_maximize)]
    for o in objectives:
        c, m = OBJECTIVE_COLUMNS[o]
        cols.append(c)
        maxi.append(m)
    return cols, maxi


def run_objectives(config: dict[str, Any] | None = None,
                   summary: dict[str, Any] | None = None) -> tuple[list[str], list[bool]]:
    """Trials columns and directions a run optimised: summary.json's
    ``objectives`` / ``maximize``, else config.yaml's ``objective_columns`` /
    ``objective_maximize``, else ``DEFAULT_OBJECTIVES``."""
    config, summary = config or {}, summary or {}
    columns = summary.get("objectives")
    maximize = summary.get("maximize")
    if not (isinstance(columns, list) and columns):
        columns, maximize = config.get("objective_columns"), config.get("objective_maximize")
    if not (isinstance(columns, list) and columns):
        columns = list(DEFAULT_OBJECTIVES[0])
    if not (isinstance(maximize, list) and len(maximize) == len(columns)):
        maximize = [bool(config.get("maximize", True))] + [False] * (len(columns) - 1)
    return [str(c) for c in columns], [bool(m) for m in maximize]


#: Run options (config.yaml keys) that bound a trials column on the front:
#: option -> column. A trial over a bound is recorded but never on the front.
LIMIT_OPTIONS = {"max_latency_ms": "latency_ms"}


def front_limits(config: dict[str, Any] | None) -> dict[str, float]:
    """Upper bounds a run's front obeys, as trials column -> largest allowed
    value (e.g. ``{"latency_ms": 5.0}`` from ``max_latency_ms: 5``), read from
    the run's config.yaml (a dict); {} when it sets none."""
    limits = {}
    for option, column in LIMIT_OPTIONS.items():
        value = (config or {}).get(option)
        if value is not None:
            limits[column] = float(value)
    return limits


def front_eligible(df, columns: Sequence[str] = DEFAULT_OBJECTIVES[0],
                   limits: dict[str, float] | None = None):
    """The front rule, as a boolean Series over ``df``: full-fidelity COMPLETE
    trials with a finite value in every objective column, and within every
    bound of ``limits`` (``front_limits`` of the run's config: a trial whose
    measured latency exceeds ``max_latency_ms`` stays in the table, off the
    front).

    Early-stopped trials never enter: their metric was measured after fewer
    epochs, so comparing it with fully trained trials would be unfair in
    both directions.
    """
    import numpy as np
    import pandas as pd

    ok = (df["status"] == "COMPLETE") & df["full_fidelity"].astype(bool)
    for col in columns:
        ok &= np.isfinite(pd.to_numeric(df[col], errors="coerce").astype(float))
    for col, bound in (limits or {}).items():
        ok &= pd.to_numeric(df[col], errors="coerce").astype(float) <= float(bound)
    return ok


def front_of(df, columns: Sequence[str], maximize: Sequence[bool],
             limits: dict[str, float] | None = None):
    """The Pareto front among the trials ``front_eligible`` admits (a DataFrame)."""
    from .pareto import pareto_mask

    ok = df[front_eligible(df, columns, limits)]
    if ok.empty:
        return ok
    mask = pareto_mask(ok[list(columns)].to_numpy(dtype=float), maximize)
    return ok[mask].sort_values(list(columns)[1] if len(columns) > 1 else columns[0])


def front_summary(df, columns: Sequence[str], maximize: Sequence[bool], reference=None,
                  limits: dict[str, float] | None = None) -> dict:
    """Front size, hypervolume and the reference point it was measured against.

    Without ``reference`` the point comes from every trial ``front_eligible``
    admits (``hybridnas.pareto.default_reference``).
    """
    from .pareto import default_reference, hypervolume

    ok = df[front_eligible(df, columns, limits)]
    if ok.empty:
        return {"front_size": 0, "hypervolume": 0.0, "reference_point": None}
    pts = ok[list(columns)].to_numpy(dtype=float)
    ref = default_reference(pts, maximize) if reference is None else reference
    front = front_of(df, columns, maximize, limits)
    return {"front_size": int(len(front)),
            "hypervolume": float(hypervolume(pts, maximize, ref)),
            "reference_point": [float(x) for x in ref]}


def make_summary(front, front_info: dict, columns: Sequence[str], maximize: Sequence[bool],
                 metric_name: str, budget: dict, counts: dict[str, int],
                 updated_at: str) -> dict[str, Any]:
    """The content of summary.json: budget, trial counts, objectives, front
    (``front_info`` from ``front_summary``, ``front`` from ``front_of``)."""
    return {
        "budget": budget, "trials": counts,
        "objectives": list(columns), "maximize": list(maximize),
        "metric_name": metric_name,
        **front_info,
        "front_trial_ids": [int(t) for t in front["trial_id"].tolist()],
        "updated_at": updated_at,
    }


def normalise_trials(df):
    """A trials table read from anywhere, with every contract column (filled
    with its ``Column.default``) and uniform types: numbers as floats (NaN
    where missing), ``full_fidelity`` as bool, text as objects with None for
    missing, sorted by trial id."""
    import pandas as pd

    df = df.copy()
    for col, spec in COLUMNS.items():
        if col not in df.columns:
            df[col] = spec.default
    for col in NUMERIC_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["trial_id"] = pd.to_numeric(df["trial_id"], errors="coerce").fillna(-1).astype(int)
    df["status"] = df["status"].fillna(COLUMNS["status"].default).astype(str).str.upper()
    df["full_fidelity"] = df["full_fidelity"].map(_as_bool)
    # Text columns as plain objects with None for "missing", whatever the
    # writer's dtype (pandas' "string" reads back <NA>, "str" NaN, CSV "").
    for col in df.columns:
        if col in NUMERIC_COLUMNS or col in ("trial_id", "full_fidelity"):
            continue
        if not (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            continue
        values = df[col].astype(object)
        df[col] = values.where(values.notna() & (values.astype(str) != ""), None)
    return df.sort_values("trial_id", kind="stable").reset_index(drop=True)


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


class RunDir:
    """Paths of one run directory and the writers for its files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # paths ---------------------------------------------------------------
    config = property(lambda self: self.path / "config.yaml")
    study_db = property(lambda self: self.path / "study.db")
    trials_parquet = property(lambda self: self.path / "trials.parquet")
    trials_csv = property(lambda self: self.path / "trials.csv")
    pareto_csv = property(lambda self: self.path / "pareto.csv")
    summary = property(lambda self: self.path / "summary.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    #: training state of unfinished trials (model, optimizer, epoch), so that
    #: ``--resume`` continues an interrupted trial from its last epoch
    partial = property(lambda self: self.path / "partial")
    logs = property(lambda self: self.path / "logs")
    log_file = property(lambda self: self.path / "logs" / "search.log")
    fidelity_parquet = property(lambda self: self.path / "fidelity.parquet")
    fidelity_json = property(lambda self: self.path / "fidelity.json")

    def append_log(self, line: str) -> None:
        """Append ``line`` to logs/search.log with a UTC timestamp. Any
        process of the run may call it (the driver, a trial's worker on a
        node that can write the run directory): one short ``O_APPEND`` write
        per line. A log that cannot be written is skipped: the line is also
        on the console, and the run's results do not depend on it."""
        from datetime import datetime, timezone

        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(f"{stamp} {line}\n")
        except OSError:
            pass

    @property
    def trials_file(self) -> Path | None:
        """trials.parquet, else trials.csv, else None (no trial recorded yet)."""
        for path in (self.trials_parquet, self.trials_csv):
            if path.exists():
                return path
        return None

    def is_run(self) -> bool:
        """A folder with a trials table or a config.yaml."""
        return self.path.is_dir() and (self.trials_file is not None or self.config.exists())

    def partial_dir(self, trial_id: int) -> Path:
        """Where trial ``trial_id`` keeps its per-epoch training state."""
        return self.partial / f"trial_{int(trial_id)}"

    def drop_partial(self, keep: Iterable[int]) -> None:
        """Remove the training state of every trial not in ``keep`` (those
        that finished: only interrupted trials are continued)."""
        import shutil

        keep = {int(t) for t in keep}
        if not self.partial.is_dir():
            return
        for folder in self.partial.glob("trial_*"):
            tid = folder.name[len("trial_"):]
            if not (tid.isdigit() and int(tid) in keep):
                shutil.rmtree(folder, ignore_errors=True)
        if not any(self.partial.iterdir()):
            self.partial.rmdir()

    def storage_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(exist_ok=True)
        except OSError as e:
            raise self._write_error(self.logs, e) from None

    def _write_error(self, path: Path, e: OSError) -> RunWriteError:
        return RunWriteError(f"{path}: cannot write it ({e.strerror or e}); free space or fix the "
                             f"permissions of {self.path}, then continue with --resume")

    def _write(self, path: Path, write) -> None:
        """``write_atomic`` with a ``RunWriteError`` naming ``path`` on a full
        or read-only disk (the old file, if any, stays intact)."""
        try:
            write_atomic(path, write)
        except OSError as e:
            raise self._write_error(path, e) from None

    # config ----------------------------------------------------------------
    def write_config(self, data: dict[str, Any]) -> None:
        import yaml

        self._write(self.config, lambda p: p.write_text(yaml.safe_dump(data, sort_keys=False)))

    def read_config(self, required: bool = True) -> dict[str, Any]:
        """config.yaml as a dict; {} when absent and not ``required``."""
        if not self.config.exists():
            if not required:
                return {}
            raise UserError(f"{self.path}: no config.yaml here; is this a search run directory?")
        data = parse_yaml(read_text(self.config), str(self.config))
        return data if isinstance(data, dict) else {}

    # trials ------------------------------------------------------------------
    def write_trials(self, rows: Iterable[dict[str, Any]]):
        df = rows_to_frame(rows)
        self._write(self.trials_parquet, lambda p: df.to_parquet(p, index=False))
        self._write(self.trials_csv, lambda p: df.to_csv(p, index=False))
        return df

    def read_rows(self) -> list[dict[str, Any]]:
        if self.trials_file is None:
            return []
        df = load_run(self.path)
        rows = df.to_dict("records")
        import pandas as pd

        for r in rows:  # missing strings come back as NaN or NA: the rows use None
            for k, col in COLUMNS.items():  # a table written before a column existed
                r.setdefault(k, col.default)
            for k, v in list(r.items()):
                if TRIAL_COLUMNS.get(k) == "str" and not isinstance(v, str) and pd.isna(v):
                    r[k] = None
        return rows

    def write_pareto(self, front) -> None:
        self._write(self.pareto_csv, lambda p: front.to_csv(p, index=False))

    def write_summary(self, data: dict[str, Any]) -> None:
        self._write(self.summary, lambda p: p.write_text(json.dumps(data, indent=2, default=str)))

    def read_summary(self) -> dict[str, Any]:
        """summary.json as a dict ({} before the first save)."""
        if not self.summary.exists():
            return {}
        data = parse_json(read_text(self.summary), str(self.summary))
        return data if isinstance(data, dict) else {}

    # proxy fidelity ------------------------------------------------------------
    def write_fidelity(self, rows: Iterable[dict[str, Any]], summary: dict[str, Any]):
        """Write fidelity.parquet (``FIDELITY_COLUMNS``, sorted by trial id)
        and fidelity.json (``summary``), each atomically; returns the table."""
        import pandas as pd

        df = pd.DataFrame(sorted(rows, key=lambda r: r["trial_id"]), columns=list(FIDELITY_COLUMNS))
        for col, spec in FIDELITY_COLUMNS.items():
            if spec.kind in ("int", "float"):
                df[col] = pd.to_numeric(df[col], errors="coerce").astype(
                    "float64" if spec.kind == "float" else "int64")
            else:
                df[col] = df[col].astype(object).where(df[col].notna(), None).astype(_string_dtype())
        write_atomic(self.fidelity_parquet, lambda p: df.to_parquet(p, index=False))
        write_atomic(self.fidelity_json,
                     lambda p: p.write_text(json.dumps(summary, indent=2, default=str)))
        return df

    def read_fidelity(self):
        """(fidelity table, its summary dict), or (None, {}) when the run has
        none; every ``FIDELITY_COLUMNS`` column is there (defaults filled)."""
        if not self.fidelity_parquet.exists():
            return None, {}
        try:
            df = _read_parquet(self.fidelity_parquet)
        except Exception as e:  # noqa: BLE001 - a damaged or foreign file: name it
            raise UserError(f"{self.fidelity_parquet}: cannot read it "
                            f"({type(e).__name__}: {str(e)[:200]})") from None
        for col, spec in FIDELITY_COLUMNS.items():
            if col not in df.columns:
                df[col] = spec.default
        summary: dict[str, Any] = {}
        if self.fidelity_json.exists():
            data = parse_json(read_text(self.fidelity_json), str(self.fidelity_json))
            summary = data if isinstance(data, dict) else {}
        return df, summary

    def read_trials(self):
        """The trials table (``load_run``); UserError if the folder is not a run."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        return load_run(self.path)


def _read_parquet(path: Path):
    """A table read through one open file: a writer's atomic replace between
    pyarrow's reads of the footer and of the pages (a live run) cannot mix
    two files."""
    import pandas as pd

    with open(path, "rb") as f:
        return pd.read_parquet(f)


def load_run(path: str | os.PathLike):
    """The trials table of a run directory as a pandas DataFrame.

    ``path`` is the run directory (or its trials.parquet / trials.csv).
    One row per trial; columns as in docs/CONTRACTS.md (``spec``,
    ``space_params`` and ``curve`` are JSON strings).
    """
    import pandas as pd

    p = Path(path)
    if p.is_file():
        p = p.parent
    parquet, csv = p / "trials.parquet", p / "trials.csv"
    if parquet.exists():
        try:
            return _read_parquet(parquet)
        except Exception as e:  # noqa: BLE001 - truncated or foreign: the CSV copy may be intact
            reason = f"{type(e).__name__}: {str(e).strip()[:200]}"
            if not csv.exists():
                raise UserError(f"{parquet}: cannot read the trials table ({reason})") from None
            warnings.warn(f"{parquet} is unreadable ({reason}); reading {csv} instead",
                          TrialsFallbackWarning, stacklevel=2)
    if csv.exists():
        try:
            return pd.read_csv(csv)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{csv}: cannot read the trials table ({type(e).__name__}: "
                            f"{str(e).strip()[:200]})") from None
    if not p.exists():
        raise UserError(f"{path}: no such run directory")
    raise UserError(f"{path}: no trials.parquet or trials.csv (has the search started a trial?)")
