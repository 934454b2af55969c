"""Search results a person can read: a run's Pareto front as a table, the
commands that follow a search, and an overview of the runs under a folder.

Pure functions over what a run directory holds (the trials frame and
summary.json); ``hybridnas runs`` prints them, and a search can print
:func:`format_results` when it ends.

    >>> from hybridnas.report import read_run, format_results, list_runs, format_runs
    >>> trials, summary, config = read_run("results/quickstart")    # doctest: +SKIP
    >>> print(format_results(trials, summary, "results/quickstart"))  # doctest: +SKIP
    >>> print(format_runs(list_runs("results")))                    # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

__all__ = ["front_rows", "format_front", "next_commands", "format_results", "read_run",
           "run_overview", "list_runs", "format_runs", "FRONT_HEADER"]

FRONT_HEADER = ["trial", "pattern", "params", "MACs", "latency", "metric", "fidelity"]


def _run_dir_api():
    """The run directory's owner module (the one place this room imports it from)."""
    from . import rundir

    return rundir


def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def _int(v) -> int:
    v = _num(v)
    return int(v) if math.isfinite(v) else 0


def _3(v: float) -> str:
    """Three significant digits, trailing zeros kept: 700, 5.70, 33.0."""
    if v == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def _si(v) -> str:
    """700 k, 5.70 M, 1.20 G; blank for a missing value."""
    v = _num(v)
    if not math.isfinite(v):
        return ""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{_3(v / div)} {suffix}"
    return _3(v)


def front_rows(trials, front_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One dict per front trial, in ``front_ids`` order: ``trial``, ``pattern``,
    ``params``, ``macs``, ``latency_ms``, ``metric``, ``metric_name``,
    ``epochs``, ``max_epochs``, ``full_fidelity``, ``reference`` (plain values,
    NaN where the trial has none). Ids missing from ``trials`` are skipped."""
    by_id = {int(r["trial_id"]): r for r in trials.to_dict("records")}
    out = []
    for tid in front_ids:
        r = by_id.get(int(tid))
        if r is None:
            continue
        ref = r.get("reference")
        out.append({
            "trial": int(tid), "pattern": str(r.get("pattern") or ""),
            # 0 is what the trials table holds for "not counted"
            "params": _num(r.get("params")) or math.nan, "macs": _num(r.get("macs")) or math.nan,
            "latency_ms": _num(r.get("latency_ms")), "metric": _num(r.get("metric")),
            "metric_name": str(r.get("metric_name") or "metric"),
            "epochs": _int(r.get("epochs")), "max_epochs": _int(r.get("max_epochs")),
            "full_fidelity": bool(r.get("full_fidelity")),
            "reference": ref if isinstance(ref, str) and ref else None,
        })
    return out


def format_front(rows: list[dict[str, Any]]) -> str:
    """The front as an aligned text table (columns ``FRONT_HEADER``)."""
    from ._text import table as _table

    if not rows:
        return "(no trial on the front yet: the front holds full-fidelity COMPLETE trials)"
    metric_name = rows[0]["metric_name"]
    lines = []
    for r in rows:
        lat = f"{_3(r['latency_ms'])} ms" if math.isfinite(r["latency_ms"]) else ""
        metric = f"{r['metric']:.4f}" if math.isfinite(r["metric"]) else ""
        fid = f"{r['epochs']}/{r['max_epochs']} ep" + ("" if r["full_fidelity"] else " (low)")
        trial = str(r["trial"]) + (f" ({r['reference']})" if r["reference"] else "")
        lines.append([trial, r["pattern"], _si(r["params"]), _si(r["macs"]), lat, metric, fid])
    header = FRONT_HEADER[:5] + [metric_name, FRONT_HEADER[6]]
    return _table(lines, header)


def next_commands(run_path: str | os.PathLike, front_ids: Sequence[int] = (),
                  dataset: str | None = None) -> list[str]:
    """The commands a user runs after a search of ``run_path``: dashboard,
    export of the front, retraining of the last front trial (the best by
    metric) on ``dataset``."""
    p = shlex.quote(str(run_path))
    cmds = [f"hybridnas dashboard {p}", f"hybridnas export {p} --pareto"]
    if front_ids:
        export = shlex.quote(os.path.join(str(run_path), "export", f"trial_{int(front_ids[-1])}"))
        data = shlex.quote(dataset) if dataset else "DATASET"
        cmds.append(f"hybridnas train {export} --dataset {data} --epochs N")
    return cmds


def format_results(trials, summary: dict[str, Any], run_path: str | os.PathLike,
                   dataset: str | None = None) -> str:
    """What a search prints when it ends: the front table (ids from
    ``summary["front_trial_ids"]``), its hypervolume and the next commands
    (``dataset``: the run's, for the retraining command)."""
    ids = [int(t) for t in summary.get("front_trial_ids") or []]
    rows = front_rows(trials, ids)
    hv = _num(summary.get("hypervolume"))
    head = f"Pareto front of {run_path}: {len(rows)} trial(s)"
    if math.isfinite(hv) and rows:
        head += f", hypervolume {hv:.4g}"
    lines = [head, format_front(rows), "", "next:"]
    lines += [f"  {c}" for c in next_commands(run_path, ids, dataset)]
    return "\n".join(lines)


def read_run(path: str | os.PathLike):
    """(trials frame, summary dict, config dict) of one run directory; the
    summary and config are ``{}`` when the run has not written them. Raises
    UserError when ``path`` holds no trials table."""
    from .errors import UserError

    api = _run_dir_api()
    run = api.RunDir(path)
    try:
        config = run.read_config()
    except UserError:
        config = {}
    return api.load_run(path), run.read_summary(), config


# ---------------------------------------------------------------- runs

# Lines the search writes to logs/search.log when it starts and when it ends.
_LOG_START, _LOG_FINISHED, _LOG_INTERRUPTED = "[search] run ", "[search] finished:", \
    "[search] interrupted:"


def _state(run_path: Path, running_trials: int) -> str:
    """finished / interrupted from the last start or end line of the search
    log; a start with no end is a search still running or killed."""
    last = None
    log = run_path / "logs" / "search.log"
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.split(" ", 1)[1] if " " in line else line
                for marker, state in ((_LOG_START, "running or killed"),
                                      (_LOG_FINISHED, "finished"),
                                      (_LOG_INTERRUPTED, "interrupted")):
                    if text.startswith(marker):
                        last = state
    except OSError:
        pass
    if last is None:
        return "running or killed" if running_trials else "unknown"
    return last


def run_overview(path: str | os.PathLike) -> dict[str, Any]:
    """One run directory summarised: ``name``, ``path``, ``state``, ``trials``
    (counts by status), ``budget_spent_hours``/``budget_total_hours``/
    ``budget_unit``, ``front_size``, ``hypervolume``, ``front_trial_ids``."""
    trials, summary, _config = read_run(path)
    counts = summary.get("trials") or trials["status"].value_counts().to_dict()
    counts = {str(k): int(v) for k, v in counts.items()}
    budget = summary.get("budget") or {}
    return {
        "name": Path(path).name, "path": str(path),
        "state": _state(Path(path), counts.get("RUNNING", 0)),
        "trials": counts,
        "budget_spent_hours": _num(budget.get("spent_hours")),
        "budget_total_hours": _num(budget.get("total_hours")),
        "budget_unit": budget.get("unit") or "",
        "front_size": int(summary.get("front_size") or 0),
        "hypervolume": _num(summary.get("hypervolume")),
        "front_trial_ids": [int(t) for t in summary.get("front_trial_ids") or []],
    }


def _is_run(path: Path) -> bool:
    return any((path / f).is_file() for f in ("trials.parquet", "trials.csv"))


def list_runs(root: str | os.PathLike = "results") -> list[dict[str, Any]]:
    """:func:`run_overview` of every run directory directly under ``root``
    (a folder holding trials.parquet or trials.csv), by name. A run that
    cannot be read is listed with its ``state`` saying why."""
    from .errors import UserError

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    out = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and _is_run(p)):
        try:
            out.append(run_overview(child))
        except (UserError, OSError, ValueError) as e:
            out.append({"name": child.name, "path": str(child), "state": f"unreadable: {e}",
                        "trials": {}, "budget_spent_hours": math.nan,
                        "budget_total_hours": math.nan, "budget_unit": "", "front_size": 0,
                        "hypervolume": math.nan, "front_trial_ids": []})
    return out


def format_runs(runs: list[dict[str, Any]]) -> str:
    """The runs as a text table: run, state, trials, budget, front, HV."""
    from ._text import table as _table

    rows = []
    for r in runs:
        c = r["trials"]
        done = c.get("COMPLETE", 0) + c.get("EARLY_STOPPED", 0)
        trials = f"{done} done" + "".join(f", {c[k]} {k.lower().replace('_', '-')}"
                                          for k in ("FAILED", "REJECTED", "RUNNING") if c.get(k))
        spent, total = r["budget_spent_hours"], r["budget_total_hours"]
        budget = ""
        if math.isfinite(spent):
            budget = f"{spent:.3g}" + (f" / {total:.3g}" if math.isfinite(total) and total else "")
            budget += f" {r['budget_unit'].upper()}-h" if r["budget_unit"] else " h"
        hv = f"{r['hypervolume']:.4g}" if math.isfinite(r["hypervolume"]) else ""
        rows.append([r["name"], r["state"], trials, budget, str(r["front_size"]), hv])
    if not rows:
        return "(no runs)"
    return _table(rows, ["run", "state", "trials", "budget", "front", "HV"])
