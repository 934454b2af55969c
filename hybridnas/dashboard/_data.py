"""Figure data for the dashboard: plain DataFrames and dicts, no plotly.

Each ``get_*_info`` function takes loaded runs (``load_runs``) and returns
exactly the numbers a figure shows, so tests can check them directly; the
drawing functions in ``_draw`` only turn these into plotly figures (the
split Optuna's visualisation module uses).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .. import rundir
from ..errors import UserError
from ..pareto import default_reference, hypervolume, pareto_mask

__all__ = [
    "Run",
    "load_run_dir",
    "load_runs",
    "arch_summary",
    "front_eligible",
    "get_front_info",
    "get_hypervolume_info",
    "get_block_usage_info",
    "get_importance_info",
    "get_learning_curves_info",
    "get_latency_prediction_info",
    "get_fidelity_info",
    "get_trials_table",
]

log = logging.getLogger(__name__)

#: The contract's front: maximise the metric, minimise latency (or another cost).
MAXIMIZE = rundir.DEFAULT_OBJECTIVES[1]

X_LABELS = {"latency_ms": "latency (ms)", "macs": "MACs", "params": "parameters"}


@dataclass
class Run:
    """One run directory, read: the trials table plus its config and summary."""

    name: str
    path: Path
    trials: pd.DataFrame
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    #: fidelity.parquet (``hybridnas fidelity``) and its summary, when the run has one
    fidelity: pd.DataFrame | None = None
    fidelity_summary: dict = field(default_factory=dict)

    @property
    def limits(self) -> dict[str, float]:
        """Bounds its front obeys (``hybridnas.rundir.front_limits``: max_latency_ms)."""
        return rundir.front_limits(self.config)

    @property
    def metric_name(self) -> str:
        names = self.trials["metric_name"].dropna() if len(self.trials) else []
        if len(names):
            return str(names.iloc[0])
        return str(self.config.get("metric_name") or "metric")

    @property
    def budget_unit(self) -> str:
        """'GPU' or 'CPU' (hours are device-hours of that kind)."""
        unit = _summary_budget(self.summary).get("unit") or self.config.get("budget_unit")
        if not unit:
            acc = " ".join(str(a) for a in self.trials["accelerator"].dropna().unique()).lower()
            unit = "gpu" if any(k in acc for k in ("cuda", "gpu", "nvidia")) else "cpu"
        return str(unit).upper()


def _summary_budget(summary: dict) -> dict:
    budget = summary.get("budget")
    return budget if isinstance(budget, dict) else {}


def _read_trials(path: Path) -> pd.DataFrame:
    table = rundir.RunDir(path).trials_file
    if table is None:
        return normalise_trials(pd.DataFrame(columns=list(rundir.COLUMNS)))
    try:
        df = rundir.load_run(path)
    except UserError:
        raise
    except Exception as e:  # a truncated or foreign file: name it, keep it one line
        raise UserError(f"{table}: cannot read the trials table "
                        f"({type(e).__name__}: {str(e)[:200]})") from None
    return normalise_trials(df)


def normalise_trials(df: pd.DataFrame) -> pd.DataFrame:
    """``rundir.normalise_trials`` plus the pattern of trials whose writer left it out."""
    df = rundir.normalise_trials(df)
    if df["pattern"].isna().any():
        df["pattern"] = [p if isinstance(p, str) and p else _pattern_of(s)
                         for p, s in zip(df["pattern"], df["spec"])]
    return df


def load_run_dir(path: str | os.PathLike, *, allow_empty: bool = False) -> Run:
    """Read one run directory (see docs/CONTRACTS.md). Raises ``UserError``
    naming the path when it is not a run directory."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory")
    if rundir.RunDir(path).trials_file is None and not allow_empty:
        raise UserError(f"{path}: not a run directory (no trials.parquet or trials.csv)")
    run = rundir.RunDir(path)
    config, summary = run.read_config(required=False), run.read_summary()
    fidelity, fidelity_summary = run.read_fidelity()
    name = str(config.get("name") or config.get("run_name") or path.resolve().name)
    return Run(name=name, path=path, trials=_read_trials(path), config=config, summary=summary,
               fidelity=fidelity, fidelity_summary=fidelity_summary)


def load_runs(paths: Sequence[str | os.PathLike], *, allow_empty: bool = False) -> list[Run]:
    """Read several run directories; names are made unique for the legend."""
    if not paths:
        raise UserError("no run directory given")
    runs = [load_run_dir(p, allow_empty=allow_empty) for p in paths]
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:
            seen[run.name] += 1
            run.name = f"{run.name} ({seen[run.name]})"
        else:
            seen[run.name] = 1
    return runs


# --------------------------------------------------------------------------
# Architecture summaries (from the spec JSON stored per trial)
# --------------------------------------------------------------------------

def _spec_dict(spec: Any) -> dict | None:
    if isinstance(spec, dict):
        return spec
    if not isinstance(spec, str) or not spec:
        return None
    try:
        data = json.loads(spec)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _pattern_of(spec: Any) -> str:
    from ..spec import ArchSpec, SpecError

    data = _spec_dict(spec)
    if data is None:
        return "?"
    try:
        return ArchSpec.from_dict(data).pattern
    except (SpecError, TypeError, ValueError):
        return "?"


def arch_summary(spec: Any) -> str:
    """One line per architecture, e.g. ``conv stem 64 | mbconv 2x96 > transformer 5x384``."""
    data = _spec_dict(spec)
    if data is None:
        return "?"
    stem = data.get("stem") or {}
    widths = stem.get("widths") or []
    head = f"{stem.get('kind', '?')} stem {widths[-1] if widths else ''}".strip()
    stages = " > ".join(f"{s.get('block', '?')} {s.get('depth', '?')}x{s.get('width', '?')}"
                        for s in data.get("stages", []))
    return f"{head} | {stages}"


def stage_blocks(spec: Any) -> list[str]:
    data = _spec_dict(spec)
    return [str(s.get("block", "?")) for s in data.get("stages", [])] if data else []


# --------------------------------------------------------------------------
# Pareto front
# --------------------------------------------------------------------------

def front_eligible(trials: pd.DataFrame, columns: Sequence[str] = ("metric", "latency_ms"),
                   limits: dict[str, float] | None = None) -> pd.Series:
    """Trials that may be on the front (``hybridnas.rundir.front_eligible``;
    ``limits``: the run's ``Run.limits``)."""
    return rundir.front_eligible(trials, columns, limits)


def front_mask(trials: pd.DataFrame, x: str = "latency_ms", *,
               objectives: tuple[Sequence[str], Sequence[bool]] | None = None,
               limits: dict[str, float] | None = None) -> np.ndarray:
    """Boolean mask over ``trials``: on the Pareto front of metric vs ``x``, or
    of ``objectives`` = (columns, maximize) such as a run's own objectives."""
    columns, maximize = objectives or (("metric", x), MAXIMIZE)
    ok = front_eligible(trials, columns, limits).to_numpy()
    mask = np.zeros(len(trials), dtype=bool)
    if ok.any():
        pts = trials.loc[ok, list(columns)].to_numpy(dtype=float)
        mask[np.flatnonzero(ok)] = pareto_mask(pts, maximize)
    return mask


def run_objectives(runs: Sequence[Run], x: str) -> tuple[list[str], list[bool]]:
    """The objective columns the runs searched (summary.json ``objectives``
    and ``maximize``, e.g. metric, latency_ms, params) when all runs share
    them and they include ``x``; else metric vs ``x``."""
    found = None
    for run in runs:
        cols, maxi = rundir.run_objectives(run.config, run.summary)
        if not (cols[0] == "metric" and x in cols and all(c in run.trials.columns for c in cols)):
            return ["metric", x], list(MAXIMIZE)
        key = (cols, maxi)
        if found is not None and key != found:
            return ["metric", x], list(MAXIMIZE)
        found = key
    return found if found else (["metric", x], list(MAXIMIZE))


def choose_x(runs: Sequence[Run]) -> str:
    """The runs' cost objective (summary.json ``objectives``, e.g. ["metric",
    "latency_ms"]); else latency when measured, else MACs, else parameters."""
    for run in runs:
        objectives, _ = rundir.run_objectives(run.config, run.summary)
        if len(objectives) >= 2 and objectives[1] in X_LABELS \
                and np.isfinite(run.trials[objectives[1]]).any():
            return objectives[1]
    for col in ("latency_ms", "macs", "params"):
        if any(np.isfinite(r.trials[col]).any() for r in runs):
            return col
    return "latency_ms"


def _fidelity(row) -> str:
    ep, mx = row.epochs, row.max_epochs
    if np.isfinite(ep) and np.isfinite(mx):
        text = f"{int(ep)}/{int(mx)} epochs"
    else:
        text = "? epochs"
    return text + (" (full)" if row.full_fidelity else " (low fidelity)")


def get_front_info(runs: Sequence[Run], x: str | None = None) -> dict[str, Any]:
    """Points of the front figure.

    Returns ``{"x", "x_label", "metric_name", "points"}``; ``points`` has one
    row per trial with a metric and a cost: run, trial_id, status, pattern,
    metric, x, params, macs, fidelity, summary, reference, on_front (on the
    front of the runs' own objectives, as in pareto.csv) and on_line (on the
    2-D metric-vs-x front; the same unless a run has a third objective),
    sorted by run then x.
    """
    x = x or choose_x(runs)
    objectives = run_objectives(runs, x)
    rows = []
    for run in runs:
        t = run.trials
        on_front = front_mask(t, objectives=objectives, limits=run.limits)
        on_line = front_mask(t, x, limits=run.limits)
        has = np.isfinite(t["metric"]) & np.isfinite(t[x])
        for i in np.flatnonzero(has.to_numpy()):
            r = t.iloc[i]
            rows.append({
                "run": run.name, "trial_id": int(r.trial_id), "status": r.status,
                "pattern": r.pattern or "?", "metric": float(r.metric), "x": float(r[x]),
                "params": r.params, "macs": r.macs, "latency_ms": r.latency_ms,
                "fidelity": _fidelity(r), "full_fidelity": bool(r.full_fidelity),
                "summary": arch_summary(r.spec), "reference": r.reference,
                "on_front": bool(on_front[i]), "on_line": bool(on_line[i]),
            })
    cols = ["run", "trial_id", "status", "pattern", "metric", "x", "params", "macs", "latency_ms",
            "fidelity", "full_fidelity", "summary", "reference", "on_front", "on_line"]
    points = pd.DataFrame(rows, columns=cols)
    if len(points):
        points = points.sort_values(["run", "x", "metric"], kind="stable").reset_index(drop=True)
    return {"x": x, "x_label": X_LABELS.get(x, x), "metric_name": _metric_name(runs),
            "objectives": objectives[0], "points": points}


def _metric_name(runs: Sequence[Run]) -> str:
    names = sorted({r.metric_name for r in runs})
    return " / ".join(names) if names else "metric"


# --------------------------------------------------------------------------
# Hypervolume against budget
# --------------------------------------------------------------------------

def summary_reference(summary: dict, columns: Sequence[str] = ("metric", "latency_ms")
                      ) -> np.ndarray | None:
    """The hypervolume reference point a search wrote to summary.json, if it
    was measured on these objective ``columns``."""
    objectives = summary.get("objectives")
    if objectives is not None and list(objectives) != list(columns):
        return None
    candidates = []
    hv = summary.get("hypervolume")
    if isinstance(hv, dict):
        candidates += [hv.get("reference"), hv.get("reference_point")]
    candidates += [summary.get(k) for k in ("hypervolume_reference", "reference_point",
                                            "reference")]
    for ref in candidates:
        if isinstance(ref, dict):
            ref = [ref.get(c) for c in columns]
        if isinstance(ref, (list, tuple)) and len(ref) == len(columns):
            try:
                arr = np.asarray(ref, dtype=float)
            except (TypeError, ValueError):
                continue
            if np.isfinite(arr).all():
                return arr
    return None


def get_hypervolume_info(runs: Sequence[Run], reference: Sequence[float] | None = None,
                         x: str | None = None) -> dict[str, Any]:
    """Hypervolume of the front after each finished trial, against budget spent.

    Trials are taken in ``finished_at`` order; the budget is the cumulative
    ``device_seconds`` of every finished trial (failed and early-stopped ones
    cost budget too), in hours. One reference point is used for all runs so
    that their curves compare: ``reference`` if given, else the one in
    summary.json when there is a single run, else ``default_reference`` over
    the eligible points of all runs.

    The objectives are the runs' own (``run_objectives``: usually metric and
    latency_ms). Returns ``{"reference", "objectives", "unit", "curve"}``;
    ``curve`` has columns run,
    trial_id, finished_at, budget_hours, hypervolume, front_size.
    """
    x = x or choose_x(runs)
    columns, maximize = run_objectives(runs, x)
    if reference is None and len(runs) == 1:
        reference = summary_reference(runs[0].summary, columns)
    if reference is None:
        pts = [r.trials.loc[front_eligible(r.trials, columns, r.limits), columns].to_numpy(dtype=float)
               for r in runs]
        allp = np.concatenate(pts) if pts else np.zeros((0, len(columns)))
        reference = default_reference(allp, maximize) if len(allp) else None
    ref = None if reference is None else np.asarray(reference, dtype=float)
    rows = []
    for run in runs:
        t = run.trials
        done = t[t["finished_at"].notna() & (t["status"] != "RUNNING")].copy()
        done["_finished"] = pd.to_datetime(done["finished_at"], errors="coerce", utc=True)
        done = done.sort_values(["_finished", "trial_id"], kind="stable")
        eligible = front_eligible(done, columns, run.limits).to_numpy()
        pts = done[columns].to_numpy(dtype=float)
        budget = np.cumsum(done["device_seconds"].fillna(0.0).to_numpy(dtype=float)) / 3600.0
        # The front grows one trial at a time: only a trial that enters it
        # changes the hypervolume, so recompute only then (O(n * front)).
        front = np.zeros((0, len(columns)))
        hv = 0.0
        for k, r in enumerate(done.itertuples(index=False)):
            if eligible[k]:
                cand = np.vstack([front, pts[k]])
                keep = pareto_mask(cand, maximize)
                if keep[-1]:
                    front = cand[keep]
                    hv = hypervolume(front, maximize, ref) if ref is not None else 0.0
            rows.append({"run": run.name, "trial_id": int(r.trial_id),
                         "finished_at": r.finished_at, "budget_hours": float(budget[k]),
                         "hypervolume": hv, "front_size": int(len(front))})
    curve = pd.DataFrame(rows, columns=["run", "trial_id", "finished_at", "budget_hours",
                                        "hypervolume", "front_size"])
    units = sorted({r.budget_unit for r in runs})
    return {"reference": None if ref is None else ref.tolist(), "objectives": columns,
            "unit": "/".join(units) if units else "GPU", "curve": curve}


# --------------------------------------------------------------------------
# Block types per stage
# --------------------------------------------------------------------------

def get_block_usage_info(runs: Sequence[Run], x: str | None = None) -> pd.DataFrame:
    """How often each block type fills each stage, on the front and across all
    trials that have a spec.

    Columns: run, group ('front' | 'all'), stage (0-based), block, count,
    fraction (of that run/group/stage's trials).
    """
    x = x or choose_x(runs)
    objectives = run_objectives(runs, x)
    rows = []
    for run in runs:
        t = run.trials
        on_front = front_mask(t, objectives=objectives, limits=run.limits)
        blocks = [stage_blocks(s) for s in t["spec"]]
        for group, sel in (("all", np.ones(len(t), dtype=bool)), ("front", on_front)):
            counts: dict[tuple[int, str], int] = {}
            for b, keep in zip(blocks, sel):
                if keep:
                    for stage, block in enumerate(b):
                        counts[(stage, block)] = counts.get((stage, block), 0) + 1
            totals: dict[int, int] = {}
            for (stage, _), n in counts.items():
                totals[stage] = totals.get(stage, 0) + n
            for (stage, block), n in sorted(counts.items()):
                rows.append({"run": run.name, "group": group, "stage": stage, "block": block,
                             "count": n, "fraction": n / totals[stage]})
    return pd.DataFrame(rows, columns=["run", "group", "stage", "block", "count", "fraction"])


# --------------------------------------------------------------------------
# Parameter importance (Optuna)
# --------------------------------------------------------------------------

def _study_url(run: Run) -> str | None:
    for key in ("storage_url", "storage"):  # the search writes storage_url
        url = run.config.get(key)
        if isinstance(url, str) and "://" in url:
            if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
                continue  # a run directory copied from elsewhere: use its own study.db
            return url
    db = run.path / "study.db"
    return f"sqlite:///{db.resolve()}" if db.exists() else None


def _objective_names(run: Run, study) -> list[str]:
    names = getattr(study, "metric_names", None)
    if names and all(names):
        return list(names)
    columns, _ = rundir.run_objectives(run.config, run.summary)  # e.g. ["metric", "latency_ms"]
    if len(columns) != len(study.directions):
        columns = ["metric", "latency_ms"][: len(study.directions)]
    names = [run.metric_name if c == "metric" else str(c) for c in columns]
    return names + [f"objective {i}" for i in range(len(names), len(study.directions))]


def get_importance_info(run: Run, evaluator: Any = None, min_trials: int = 4) -> dict[str, Any]:
    """Parameter importance for each objective of the run's Optuna study.

    Opens ``study.db`` (study name = run directory name; ``storage`` from
    config.yaml when it names a URL) and uses Optuna's importance evaluator
    (``evaluator``, default fANOVA) on the full-fidelity COMPLETE trials only:
    early-stopped trials reach Optuna as COMPLETE with low-fidelity values
    that would mix two fidelities into one importance.

    Returns ``{"importances": DataFrame(objective, param, importance),
    "n_trials": int, "note": str | None}``; ``note`` says why the table is
    empty (no study, too few trials).
    """
    empty = pd.DataFrame(columns=["objective", "param", "importance"])
    url = _study_url(run)
    if url is None:
        return {"importances": empty, "n_trials": 0, "note": "no study.db in the run directory"}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = str(run.config.get("study_name") or run.path.resolve().name)
    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        try:
            names = optuna.get_all_study_names(storage=url)
        except Exception:
            names = []
        if len(names) != 1:
            return {"importances": empty, "n_trials": 0,
                    "note": f"no study named {study_name!r} in {url}"}
        study = optuna.load_study(study_name=names[0], storage=url)
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # Keep full-fidelity COMPLETE trials (trial_id = Optuna's trial number);
    # trials the table does not know count only if the study says COMPLETE
    # (the search marks duplicates and early stops in user_attrs["status"]).
    table_ids = set(run.trials["trial_id"])
    full = set(run.trials.loc[(run.trials["status"] == "COMPLETE")
                              & run.trials["full_fidelity"], "trial_id"])
    trials = [t for t in trials if t.user_attrs.get("status", "COMPLETE") == "COMPLETE"
              and (t.number in full or t.number not in table_ids)]
    trials = [t for t in trials if t.values is not None and all(map(math.isfinite, t.values))]
    if len(trials) < min_trials:
        return {"importances": empty, "n_trials": len(trials),
                "note": f"{len(trials)} full-fidelity trials; importance needs {min_trials}"}
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials(trials)
    objectives = _objective_names(run, study)
    if evaluator is None:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    rows, notes = [], []
    for i, name in enumerate(objectives):
        try:
            imp = optuna.importance.get_param_importances(
                sub, evaluator=evaluator, target=_objective(i))
        except (ValueError, RuntimeError) as e:
            notes.append(f"{name}: {e}")
            continue
        rows += [{"objective": name, "param": p, "importance": float(v)} for p, v in imp.items()]
    df = pd.DataFrame(rows, columns=["objective", "param", "importance"])
    return {"importances": df, "n_trials": len(trials), "note": "; ".join(notes) or None}


def _objective(i: int) -> Callable:
    return lambda t: t.values[i]


# --------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------

def _curve(value: Any) -> list[float]:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if isinstance(value, (list, tuple, np.ndarray)):
        out = []
        for v in value:
            try:
                out.append(float(v) if v is not None else math.nan)
            except (TypeError, ValueError):
                out.append(math.nan)
        return out
    return []


def get_learning_curves_info(runs: Sequence[Run]) -> pd.DataFrame:
    """Validation metric per epoch, one row per (trial, epoch).

    Columns: run, trial_id, status, early_stopped, pattern, epoch (1-based),
    value. ``early_stopped`` is True for EARLY_STOPPED trials and for any
    trial that ended below full fidelity.
    """
    rows = []
    for run in runs:
        for r in run.trials.itertuples(index=False):
            curve = _curve(r.curve)
            stopped = r.status == "EARLY_STOPPED" or (r.status == "COMPLETE" and not r.full_fidelity)
            for epoch, value in enumerate(curve, start=1):
                rows.append({"run": run.name, "trial_id": int(r.trial_id), "status": r.status,
                             "early_stopped": bool(stopped), "pattern": r.pattern or "?",
                             "epoch": epoch, "value": value})
    return pd.DataFrame(rows, columns=["run", "trial_id", "status", "early_stopped", "pattern",
                                       "epoch", "value"])


# --------------------------------------------------------------------------
# Predicted against measured latency
# --------------------------------------------------------------------------

def get_latency_prediction_info(runs: Sequence[Run]) -> dict[str, Any]:
    """Trials with both a predicted and a measured latency.

    Returns ``{"points": DataFrame(run, trial_id, pattern, predicted,
    measured), "mape": mean absolute percentage error, "spearman": rank
    correlation}`` (NaN statistics when fewer than two points).
    """
    rows = []
    for run in runs:
        t = run.trials
        both = np.isfinite(t["predicted_latency_ms"]) & np.isfinite(t["latency_ms"])
        for r in t[both].itertuples(index=False):
            rows.append({"run": run.name, "trial_id": int(r.trial_id), "pattern": r.pattern or "?",
                         "predicted": float(r.predicted_latency_ms),
                         "measured": float(r.latency_ms)})
    pts = pd.DataFrame(rows, columns=["run", "trial_id", "pattern", "predicted", "measured"])
    mape = spearman = math.nan
    if len(pts) >= 2:
        mape = float(np.mean(np.abs(pts["predicted"] - pts["measured"]) / pts["measured"]) * 100)
        spearman = float(pts["predicted"].rank().corr(pts["measured"].rank()))
    elif len(pts) == 1:
        mape = float(abs(pts["predicted"].iloc[0] - pts["measured"].iloc[0])
                     / pts["measured"].iloc[0] * 100)
    return {"points": pts, "mape": mape, "spearman": spearman}


# --------------------------------------------------------------------------
# Proxy fidelity (hybridnas fidelity)
# --------------------------------------------------------------------------

def get_fidelity_info(runs: Sequence[Run]) -> dict[str, Any]:
    """The proxy metric against the retrained one, for runs with a fidelity.parquet.

    Returns ``{"points": DataFrame(run, trial_id, pattern, proxy, fidelity),
    "stats": DataFrame(run, n, kendall_tau, spearman, k, top_k_overlap,
    epochs, subset, proxy_epochs), "metric_name": str}``; the rank statistics
    are computed from the points (``hybridnas.search.fidelity.rank_agreement``).
    Both frames are empty when no run has been retrained.
    """
    from ..search.fidelity import rank_agreement

    rows, stats = [], []
    for run in runs:
        f = run.fidelity
        if f is None or not len(f):
            continue
        patterns = dict(zip(run.trials["trial_id"], run.trials["pattern"]))
        pts = f[np.isfinite(pd.to_numeric(f["proxy_metric"], errors="coerce"))
                & np.isfinite(pd.to_numeric(f["fidelity_metric"], errors="coerce"))]
        for r in pts.itertuples(index=False):
            rows.append({"run": run.name, "trial_id": int(r.trial_id),
                         "pattern": patterns.get(int(r.trial_id)) or "?",
                         "proxy": float(r.proxy_metric), "fidelity": float(r.fidelity_metric)})
        maximize = bool(run.fidelity_summary.get("maximize", True))
        agree = rank_agreement(pts["proxy_metric"].to_numpy(float),
                               pts["fidelity_metric"].to_numpy(float),
                               k=run.fidelity_summary.get("k"), maximize=maximize)
        stats.append({"run": run.name, **agree, "epochs": int(f["epochs"].max()),
                      "subset": int(f["subset"].max()),
                      "proxy_epochs": run.fidelity_summary.get("proxy_epochs")})
    points = pd.DataFrame(rows, columns=["run", "trial_id", "pattern", "proxy", "fidelity"])
    stats_df = pd.DataFrame(stats, columns=["run", "n", "kendall_tau", "spearman", "k",
                                            "top_k_overlap", "epochs", "subset", "proxy_epochs"])
    return {"points": points, "stats": stats_df, "metric_name": _metric_name(runs)}


# --------------------------------------------------------------------------
# Trials table
# --------------------------------------------------------------------------

TABLE_COLUMNS = ["run", "trial_id", "status", "pattern", "metric", "latency_ms",
                 "predicted_latency_ms", "params", "macs", "epochs", "max_epochs",
                 "device_seconds", "on_front", "reference", "arch_id", "error"]


def get_trials_table(runs: Sequence[Run], x: str | None = None) -> pd.DataFrame:
    """The table shown at the bottom of the page: one row per trial."""
    x = x or choose_x(runs)
    objectives = run_objectives(runs, x)
    frames = []
    for run in runs:
        t = run.trials.copy()
        t["run"] = run.name
        t["on_front"] = front_mask(t, objectives=objectives, limits=run.limits)
        frames.append(t)
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]
