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

#: A page draws at most this many trials (summed over its runs) as points,
#: curves and table rows; the front, retrained and reference trials and the
#: best by metric are always among them (``shown_mask``). One-shot runs hold
#: tens of thousands of evaluated subnets.
MAX_SHOWN = 2000
#: The best trials by metric drawn in full in a thinned run.
TOP_SHOWN = 200
#: Parameter importance is fitted on at most this many trials (a seeded sample
#: of trials.parquet beyond it: fANOVA's cost grows faster than linearly).
IMPORTANCE_MAX_TRIALS = 200


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


def stable_order(trial_ids) -> np.ndarray:
    """A fixed pseudo-random key per trial id (Fibonacci hashing): the rows of
    a thinned run with the smallest keys are the sample, so a trial drawn
    once stays drawn as the run grows and every page of the run agrees."""
    ids = np.asarray(trial_ids, dtype=np.int64).astype(np.uint64)
    return (ids + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) >> np.uint64(17)


def shown_mask(run: Run, objectives: tuple[Sequence[str], Sequence[bool]],
               limit: int | None, top: int = TOP_SHOWN) -> np.ndarray:
    """Boolean mask over ``run.trials``: the trials a page draws.

    Every trial when ``limit`` is None or the run has at most ``limit``
    trials. Otherwise, always: the front (of ``objectives``, columns and
    maximize), the 2-D front of metric vs each cost, references, trials
    retrained standalone and running ones; then the ``top`` best by metric
    (at most a quarter of ``limit``);
    then a stable sample (``stable_order``) up to ``limit`` in all.
    """
    t = run.trials
    n = len(t)
    if limit is None or n <= limit:
        return np.ones(n, dtype=bool)
    columns, maximize = objectives
    keep = front_mask(t, objectives=(columns, maximize), limits=run.limits)
    for col in columns[1:]:
        keep |= front_mask(t, col, limits=run.limits)
    keep |= t["reference"].notna().to_numpy() | (t["status"] == "RUNNING").to_numpy()
    keep |= np.isfinite(t["standalone_metric"].to_numpy(dtype=float))
    metric = t["metric"].to_numpy(dtype=float)
    score = np.where(np.isfinite(metric), metric if maximize[0] else -metric, -np.inf)
    best = np.argsort(-score, kind="stable")[:min(top, limit // 4)]
    keep[best[np.isfinite(score[best])]] = True
    room = limit - int(keep.sum())
    if room > 0:
        rest = np.flatnonzero(~keep)
        order = np.argsort(stable_order(t["trial_id"].to_numpy()[rest]), kind="stable")
        keep[rest[order[:room]]] = True
    return keep


def _limit_per_run(runs: Sequence[Run], limit: int | None) -> int | None:
    return None if limit is None else max(1, int(limit) // max(1, len(runs)))


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


def _fidelity_text(t: pd.DataFrame) -> list[str]:
    """How each trial's metric was obtained, e.g. ``12/12 epochs (full)``,
    ``inherited weights`` or ``inherited; retrained 8/8 epochs``."""
    out = []
    for ep, mx, full, kind, alone in zip(
            t["epochs"].to_numpy(dtype=float), t["max_epochs"].to_numpy(dtype=float),
            t["full_fidelity"].to_numpy(dtype=bool), t["fidelity"].to_numpy(dtype=object),
            t["standalone_metric"].to_numpy(dtype=float)):
        epochs = (f"{int(ep)}/{int(mx)} epochs" if math.isfinite(ep) and math.isfinite(mx)
                  else "? epochs")
        if kind == "inherited":
            out.append(f"inherited; retrained {epochs}" if math.isfinite(alone)
                       else "inherited weights")
        else:
            out.append(epochs + (" (full)" if full else " (low fidelity)"))
    return out


FRONT_COLUMNS = ["run", "trial_id", "status", "pattern", "metric", "x", "params", "macs",
                 "latency_ms", "fidelity", "full_fidelity", "summary", "reference", "on_front",
                 "on_line", "fidelity_kind", "standalone_metric", "shown"]


def get_front_info(runs: Sequence[Run], x: str | None = None,
                   max_shown: int | None = None) -> dict[str, Any]:
    """Points of the front figure.

    Returns ``{"x", "x_label", "metric_name", "objectives", "points",
    "n_shown", "n_points"}``; ``points`` has one row per trial with a metric
    and a cost: run, trial_id, status, pattern, metric, x, params, macs,
    fidelity (how the metric was obtained, as text), summary (of the
    architecture; empty for points not shown), reference,
    on_front (on the front of the runs' own objectives, as in pareto.csv),
    on_line (on the 2-D metric-vs-x front; the same unless a run has a third
    objective), fidelity_kind (proxy | inherited | standalone),
    standalone_metric (a one-shot subnet retrained on its own; NaN if not)
    and shown (drawn: every point unless the runs hold more than
    ``max_shown`` trials, see ``shown_mask``), sorted by run then x. A
    one-shot subnet whose latency was not measured (only those near the
    front are) stands at its predicted latency when x is latency_ms, its
    fidelity text saying so; it is never on the front.
    """
    x = x or choose_x(runs)
    objectives = run_objectives(runs, x)
    limit = _limit_per_run(runs, max_shown)
    frames = []
    for run in runs:
        t = run.trials
        on_front = front_mask(t, objectives=objectives, limits=run.limits)
        on_line = front_mask(t, x, limits=run.limits)
        shown = shown_mask(run, objectives, limit)
        cost = t[x].to_numpy(dtype=float)
        predicted = np.zeros(len(t), dtype=bool)
        if x == "latency_ms":  # one-shot: latency is measured near the front only
            predicted = ((t["fidelity"] == "inherited").to_numpy() & ~np.isfinite(cost)
                         & np.isfinite(t["predicted_latency_ms"].to_numpy(dtype=float)))
            cost = np.where(predicted, t["predicted_latency_ms"].to_numpy(dtype=float), cost)
        has = np.isfinite(t["metric"].to_numpy(dtype=float)) & np.isfinite(cost)
        s = t[has]
        fidelity = _fidelity_text(s)
        fidelity = [f + "; latency predicted" if p else f for f, p in zip(fidelity, predicted[has])]
        frames.append(pd.DataFrame({
            "run": run.name, "trial_id": s["trial_id"].astype(int).to_numpy(),
            "status": s["status"].to_numpy(),
            "pattern": [p or "?" for p in s["pattern"]],
            "metric": s["metric"].to_numpy(dtype=float), "x": cost[has],
            "params": s["params"].to_numpy(), "macs": s["macs"].to_numpy(),
            "latency_ms": s["latency_ms"].to_numpy(), "fidelity": fidelity,
            "full_fidelity": s["full_fidelity"].to_numpy(dtype=bool),
            "summary": [arch_summary(v) if keep else "" for v, keep in
                        zip(s["spec"], shown[has])],
            "reference": s["reference"].to_numpy(dtype=object),
            "on_front": on_front[has], "on_line": on_line[has],
            "fidelity_kind": s["fidelity"].fillna("proxy").to_numpy(dtype=object),
            "standalone_metric": s["standalone_metric"].to_numpy(dtype=float),
            "shown": shown[has]}, columns=FRONT_COLUMNS))
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FRONT_COLUMNS)
    if len(points):
        points = points.sort_values(["run", "x", "metric"], kind="stable").reset_index(drop=True)
    return {"x": x, "x_label": X_LABELS.get(x, x), "metric_name": _metric_name(runs),
            "objectives": objectives[0], "points": points,
            "n_shown": int(points["shown"].sum()) if len(points) else 0,
            "n_points": int(len(points))}


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
        sign = np.where(np.asarray(maximize), -1.0, 1.0)
        front = np.zeros((0, len(columns)))
        hv = 0.0
        hvs, sizes = np.zeros(len(done)), np.zeros(len(done), dtype=int)
        chunk = np.zeros(0, dtype=bool)
        for k in range(len(done)):
            if k % 256 == 0:
                # Trials the front already dominates stay dominated (it only
                # improves): one vectorised test per 256 trials skips them.
                p, f = pts[k:k + 256] * sign, front * sign
                chunk = (np.all(f[None] <= p[:, None], axis=2)
                         & np.any(f[None] < p[:, None], axis=2)).any(axis=1)
            if eligible[k] and not chunk[k % 256]:
                p, f = pts[k] * sign, front * sign  # minimisation: quick dominance test
                if not np.any(np.all(f <= p, axis=1) & np.any(f < p, axis=1)):
                    cand = np.vstack([front, pts[k]])
                    front = cand[pareto_mask(cand, maximize)]
                    hv = hypervolume(front, maximize, ref) if ref is not None else 0.0
            hvs[k], sizes[k] = hv, len(front)
        rows.append(pd.DataFrame({
            "run": run.name, "trial_id": done["trial_id"].astype(int).to_numpy(),
            "finished_at": done["finished_at"].to_numpy(), "budget_hours": budget,
            "hypervolume": hvs, "front_size": sizes}))
    columns_out = ["run", "trial_id", "finished_at", "budget_hours", "hypervolume", "front_size"]
    curve = (pd.concat(rows, ignore_index=True)[columns_out] if rows
             else pd.DataFrame(columns=columns_out))
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


def get_importance_info(run: Run, evaluator: Any = None, min_trials: int = 4,
                        max_trials: int | None = None) -> dict[str, Any]:
    """Parameter importance for each objective of the run's Optuna study.

    Opens ``study.db`` (study name = run directory name; ``storage`` from
    config.yaml when it names a URL) and uses Optuna's importance evaluator
    (``evaluator``, default fANOVA) on the full-fidelity COMPLETE trials only:
    early-stopped trials reach Optuna as COMPLETE with low-fidelity values
    that would mix two fidelities into one importance.

    With ``max_trials`` and more full-fidelity COMPLETE trials than that in
    the trials table, the study is not opened (reading tens of thousands of
    trials from SQLite takes longer than the page may): importance is fitted
    on a seeded sample of ``max_trials`` of them, their parameters from
    ``space_params`` and their objective values from the run's objective
    columns (a one-shot subnet without a measured latency counts its
    predicted one, as its study was told).

    Returns ``{"importances": DataFrame(objective, param, importance),
    "n_trials": int, "n_eligible": int, "sampled": bool, "note": str |
    None}``; ``note`` says why the table is empty (no study, too few trials).
    """
    empty = pd.DataFrame(columns=["objective", "param", "importance"])
    t = run.trials
    eligible = t[(t["status"] == "COMPLETE") & t["full_fidelity"]]
    if max_trials is not None and len(eligible) > max_trials:
        return _sampled_importance(run, eligible, evaluator, min_trials, max_trials)
    url = _study_url(run)
    if url is None:
        return {"importances": empty, "n_trials": 0, "n_eligible": len(eligible),
                "sampled": False, "note": "no study.db in the run directory"}
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
            return {"importances": empty, "n_trials": 0, "n_eligible": len(eligible),
                    "sampled": False, "note": f"no study named {study_name!r} in {url}"}
        study = optuna.load_study(study_name=names[0], storage=url)
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # Keep full-fidelity COMPLETE trials (trial_id = Optuna's trial number);
    # trials the table does not know count only if the study says COMPLETE
    # (the search marks duplicates and early stops in user_attrs["status"]).
    table_ids = set(t["trial_id"])
    full = set(eligible["trial_id"])
    trials = [tr for tr in trials if tr.user_attrs.get("status", "COMPLETE") == "COMPLETE"
              and (tr.number in full or tr.number not in table_ids)]
    trials = [tr for tr in trials if tr.values is not None and all(map(math.isfinite, tr.values))]
    info = _fit_importance(trials, study.directions, _objective_names(run, study), evaluator,
                           min_trials)
    return {**info, "n_eligible": len(eligible), "sampled": False}


def _fit_importance(trials: list, directions: Sequence, objectives: Sequence[str],
                    evaluator: Any, min_trials: int) -> dict[str, Any]:
    """Importance per objective of frozen ``trials`` (Optuna's evaluator, default fANOVA)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    empty = pd.DataFrame(columns=["objective", "param", "importance"])
    if len(trials) < min_trials:
        return {"importances": empty, "n_trials": len(trials),
                "note": f"{len(trials)} full-fidelity trials; importance needs {min_trials}"}
    sub = optuna.create_study(directions=directions)
    sub.add_trials(trials)
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


def _distribution(values: list) -> Any:
    """An Optuna distribution that holds every value of one parameter."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    kinds = {type(v) for v in values}
    if kinds == {int} and min(values) < max(values):
        return IntDistribution(min(values), max(values))
    if kinds <= {int, float} and float in kinds and min(values) < max(values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted(set(values), key=lambda v: (str(type(v)), v)))


def _param_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, default=str)  # lists and dicts: one category each


def _sampled_importance(run: Run, eligible: pd.DataFrame, evaluator: Any, min_trials: int,
                        max_trials: int) -> dict[str, Any]:
    import optuna

    columns, maximize = rundir.run_objectives(run.config, run.summary)
    values = []
    for col in columns:
        v = pd.to_numeric(eligible[col], errors="coerce").to_numpy(dtype=float)
        if col == "latency_ms":
            v = np.where(np.isfinite(v), v, eligible["predicted_latency_ms"].to_numpy(dtype=float))
        values.append(v)
    vals = np.stack(values, axis=1) if values else np.zeros((len(eligible), 0))
    ok = np.isfinite(vals).all(axis=1) & eligible["space_params"].notna().to_numpy()
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(stable_order(eligible["trial_id"].to_numpy()[idx]), kind="stable")]
    params: list[dict] = []
    rows: list[int] = []
    for i in idx:
        p = _spec_dict(eligible["space_params"].iloc[i])
        if p:
            params.append({k: _param_value(v) for k, v in p.items()})
            rows.append(int(i))
        if len(rows) == max_trials:
            break
    seen: dict[str, list] = {}
    for p in params:
        for k, v in p.items():
            seen.setdefault(k, []).append(v)
    dists = {k: _distribution(v) for k, v in seen.items()}
    trials = [optuna.trial.create_trial(params=p, distributions={k: dists[k] for k in p},
                                        values=vals[i].tolist()) for p, i in zip(params, rows)]
    names = [run.metric_name if c == "metric" else str(c) for c in columns]
    directions = ["maximize" if m else "minimize" for m in maximize]
    info = _fit_importance(trials, directions, names, evaluator, min_trials)
    return {**info, "n_eligible": len(eligible), "sampled": True}


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


def get_learning_curves_info(runs: Sequence[Run], max_shown: int | None = None,
                             x: str | None = None) -> pd.DataFrame:
    """Validation metric per epoch, one row per (trial, epoch).

    Columns: run, trial_id, status, early_stopped, pattern, epoch (1-based),
    value. ``early_stopped`` is True for EARLY_STOPPED trials and for any
    trial that ended below full fidelity. With ``max_shown`` and more
    trials with a curve than that in a run, only the trials ``shown_mask``
    keeps (the front figure's, cost axis ``x``).
    """
    objectives = run_objectives(runs, x or choose_x(runs)) if max_shown is not None else None
    limit = _limit_per_run(runs, max_shown)
    rows = []
    for run in runs:
        t = run.trials
        curves = (t["curve"].notna() & (t["curve"] != "[]")).to_numpy().copy()
        if objectives is not None and curves.sum() > limit:
            curves &= shown_mask(run, objectives, limit)  # else all (one-shot: the retrained)
        for r in t[curves].itertuples(index=False):
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

def get_latency_prediction_info(runs: Sequence[Run], max_shown: int | None = None,
                                x: str | None = None) -> dict[str, Any]:
    """Trials with both a predicted and a measured latency.

    Returns ``{"points": DataFrame(run, trial_id, pattern, predicted,
    measured, shown), "mape": mean absolute percentage error, "spearman":
    rank correlation}`` (NaN statistics when fewer than two points; both over
    every point). ``shown``: drawn (every point, unless a run has more than
    ``max_shown``: then those ``shown_mask`` keeps, cost axis ``x``).
    """
    objectives = run_objectives(runs, x or choose_x(runs)) if max_shown is not None else None
    limit = _limit_per_run(runs, max_shown)
    cols = ["run", "trial_id", "pattern", "predicted", "measured", "shown"]
    frames = []
    for run in runs:
        t = run.trials
        both = (np.isfinite(t["predicted_latency_ms"]) & np.isfinite(t["latency_ms"])).to_numpy()
        shown = (shown_mask(run, objectives, limit)
                 if objectives is not None and both.sum() > limit else np.ones(len(t), dtype=bool))
        s = t[both]
        frames.append(pd.DataFrame({
            "run": run.name, "trial_id": s["trial_id"].astype(int).to_numpy(),
            "pattern": [p or "?" for p in s["pattern"]],
            "predicted": s["predicted_latency_ms"].to_numpy(dtype=float),
            "measured": s["latency_ms"].to_numpy(dtype=float), "shown": shown[both]},
            columns=cols))
    pts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
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
    Both frames are empty when no run has been retrained. A one-shot run
    without fidelity.parquet contributes its retrained subnets: proxy = the
    inherited-weight metric, fidelity = ``standalone_metric`` (stats column
    ``proxy_kind`` "inherited"; "proxy" otherwise).
    """
    from ..search.fidelity import rank_agreement

    rows, stats = [], []
    for run in runs:
        f = run.fidelity
        kind = "proxy"
        if f is None or not len(f):
            f = _retrained_as_fidelity(run.trials)
            kind = "inherited"
            if not len(f):
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
                      "proxy_epochs": run.fidelity_summary.get("proxy_epochs"),
                      "proxy_kind": kind})
    points = pd.DataFrame(rows, columns=["run", "trial_id", "pattern", "proxy", "fidelity"])
    stats_df = pd.DataFrame(stats, columns=["run", "n", "kendall_tau", "spearman", "k",
                                            "top_k_overlap", "epochs", "subset", "proxy_epochs",
                                            "proxy_kind"])
    return {"points": points, "stats": stats_df, "metric_name": _metric_name(runs)}


def _retrained_as_fidelity(t: pd.DataFrame) -> pd.DataFrame:
    """A one-shot run's retrained subnets in fidelity.parquet's columns."""
    alone = t[(t["fidelity"] == "inherited") & np.isfinite(t["standalone_metric"])]
    return pd.DataFrame({"trial_id": alone["trial_id"], "proxy_metric": alone["metric"],
                         "fidelity_metric": alone["standalone_metric"],
                         "epochs": alone["epochs"].fillna(0).astype(int), "subset": 0})


# --------------------------------------------------------------------------
# Trials table
# --------------------------------------------------------------------------

TABLE_COLUMNS = ["run", "trial_id", "status", "pattern", "metric", "standalone_metric", "fidelity",
                 "latency_ms",
                 "predicted_latency_ms", "params", "macs", "epochs", "max_epochs",
                 "device_seconds", "on_front", "reference", "arch_id", "error"]


def get_trials_table(runs: Sequence[Run], x: str | None = None,
                     max_shown: int | None = None) -> pd.DataFrame:
    """The table shown at the bottom of the page: one row per trial (with
    ``max_shown``, the trials ``shown_mask`` keeps)."""
    x = x or choose_x(runs)
    objectives = run_objectives(runs, x)
    limit = _limit_per_run(runs, max_shown)
    frames = []
    for run in runs:
        t = run.trials.copy()
        t["run"] = run.name
        t["on_front"] = front_mask(t, objectives=objectives, limits=run.limits)
        frames.append(t[shown_mask(run, objectives, limit)])
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]
