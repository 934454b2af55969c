"""The run directory: what a search writes and how to read it back.

Layout (docs/CONTRACTS.md)::

    results/<run-name>/
      config.yaml  study.db  trials.parquet  trials.csv  pareto.csv  summary.json
      checkpoints/trial_<id>/  logs/search.log  dashboard.html

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
from pathlib import Path
from typing import Any, Iterable, Sequence

from .._io import write_atomic
from ..errors import UserError

__all__ = ["RunDir", "load_run", "TRIAL_COLUMNS", "STATUSES", "front_of", "front_summary"]

STATUSES = ("COMPLETE", "EARLY_STOPPED", "FAILED", "REJECTED", "RUNNING")

#: Columns of trials.parquet in contract order (extra val_* columns follow).
TRIAL_COLUMNS = {
    "trial_id": "int", "status": "str", "arch_id": "str", "spec": "str", "pattern": "str",
    "space_params": "str", "params": "int", "macs": "int", "latency_ms": "float",
    "latency_p10_ms": "float", "latency_p90_ms": "float", "latency_device": "str",
    "predicted_latency_ms": "float", "metric": "float", "metric_name": "str", "curve": "str",
    "epochs": "int", "max_epochs": "int", "full_fidelity": "bool", "device_seconds": "float",
    "accelerator": "str", "error": "str", "reference": "str", "checkpoint": "str",
    "started_at": "str", "finished_at": "str", "fidelity": "str", "standalone_metric": "float",
}

#: Objective name -> (trials column, maximise?).
OBJECTIVE_COLUMNS = {"latency": ("latency_ms", False), "params": ("params", False),
                     "macs": ("macs", False)}


def empty_row(trial_id: int) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in TRIAL_COLUMNS}
    row.update(trial_id=int(trial_id), status="RUNNING", params=0, macs=0, epochs=0,
               max_epochs=0, full_fidelity=False, device_seconds=0.0,
               latency_ms=math.nan, latency_p10_ms=math.nan, latency_p90_ms=math.nan,
               predicted_latency_ms=math.nan, metric=math.nan, curve="[]", fidelity="proxy",
               standalone_metric=math.nan)
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
    cols, maxi = ["metric"], [bool(metric_maximize)]
    for o in objectives:
        c, m = OBJECTIVE_COLUMNS[o]
        cols.append(c)
        maxi.append(m)
    return cols, maxi


def front_of(df, columns: Sequence[str], maximize: Sequence[bool]):
    """The Pareto front among full-fidelity COMPLETE trials (a DataFrame).

    Early-stopped trials never enter: their metric was measured after fewer
    epochs, so comparing it with fully trained trials would be unfair in
    both directions.
    """
    from ..pareto import pareto_mask

    ok = df[(df["status"] == "COMPLETE") & df["full_fidelity"].astype(bool)]
    ok = ok.dropna(subset=list(columns))
    if ok.empty:
        return ok
    mask = pareto_mask(ok[list(columns)].to_numpy(dtype=float), maximize)
    return ok[mask].sort_values(list(columns)[1] if len(columns) > 1 else columns[0])


def front_summary(df, columns: Sequence[str], maximize: Sequence[bool], reference=None) -> dict:
    """Front size, hypervolume and the reference point it was measured against.

    Without ``reference`` the point comes from every full-fidelity COMPLETE
    trial (``hybridnas.pareto.default_reference``).
    """
    from ..pareto import default_reference, hypervolume

    ok = df[(df["status"] == "COMPLETE") & df["full_fidelity"].astype(bool)].dropna(subset=list(columns))
    if ok.empty:
        return {"front_size": 0, "hypervolume": 0.0, "reference_point": None}
    pts = ok[list(columns)].to_numpy(dtype=float)
    ref = default_reference(pts, maximize) if reference is None else reference
    front = front_of(df, columns, maximize)
    return {"front_size": int(len(front)),
            "hypervolume": float(hypervolume(pts, maximize, ref)),
            "reference_point": [float(x) for x in ref]}


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
    logs = property(lambda self: self.path / "logs")
    log_file = property(lambda self: self.path / "logs" / "search.log")

    def storage_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)

    # config ----------------------------------------------------------------
    def write_config(self, data: dict[str, Any]) -> None:
        import yaml

        write_atomic(self.config, lambda p: p.write_text(yaml.safe_dump(data, sort_keys=False)))

    def read_config(self) -> dict[str, Any]:
        import yaml

        if not self.config.exists():
            raise UserError(f"{self.path}: no config.yaml here; is this a search run directory?")
        return yaml.safe_load(self.config.read_text()) or {}

    # trials ------------------------------------------------------------------
    def write_trials(self, rows: Iterable[dict[str, Any]]):
        df = rows_to_frame(rows)
        write_atomic(self.trials_parquet, lambda p: df.to_parquet(p, index=False))
        write_atomic(self.trials_csv, lambda p: df.to_csv(p, index=False))
        return df

    def read_rows(self) -> list[dict[str, Any]]:
        if not self.trials_parquet.exists():
            return []
        df = load_run(self.path)
        rows = df.to_dict("records")
        import pandas as pd

        for r in rows:  # missing strings come back as NaN or NA: the rows use None
            for k, v in list(r.items()):
                if TRIAL_COLUMNS.get(k) == "str" and not isinstance(v, str) and pd.isna(v):
                    r[k] = None
        return rows

    def write_pareto(self, front) -> None:
        write_atomic(self.pareto_csv, lambda p: front.to_csv(p, index=False))

    def write_summary(self, data: dict[str, Any]) -> None:
        write_atomic(self.summary, lambda p: p.write_text(json.dumps(data, indent=2, default=str)))

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}


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
        return pd.read_parquet(parquet)
    if csv.exists():
        return pd.read_csv(csv)
    if not p.exists():
        raise UserError(f"{path}: no such run directory")
    raise UserError(f"{path}: no trials.parquet or trials.csv (has the search started a trial?)")
