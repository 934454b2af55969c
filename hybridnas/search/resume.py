"""Resuming a run: its saved config, and repair after a kill.

``resume`` reloads config.yaml (identity fields may not change), the trials
table and the study; trials that were running when the search died are
marked FAILED ("interrupted") in both and queued again with the same
parameters, so finished trials are never re-run.
"""
from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..rundir import RunDir
from .config import IDENTITY_FIELDS, SearchConfig
from .storage import fail_running_trials

__all__ = ["resume_config", "repair_after_interrupt", "enqueue_references", "INTERRUPTED",
           "REQUEUED"]


def resume_config(run: RunDir, overrides: dict[str, Any]) -> tuple[SearchConfig, dict]:
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


def enqueue_references(study, space, resolution, recorder) -> None:
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


INTERRUPTED = "interrupted"
REQUEUED = " (queued again on --resume)"


def repair_after_interrupt(study, recorder) -> None:
    """After a kill: running trials become FAILED and are queued again."""
    import json

    import optuna

    stale = recorder.close_interrupted(f"{INTERRUPTED}: the search was killed while this trial ran")
    # Trials a Ctrl-C stopped were closed by that session; queue them too, once.
    stale += [n for n, r in recorder.rows.items() if r["status"] == "FAILED"
              and str(r.get("error") or "").startswith(INTERRUPTED) and REQUEUED not in r["error"]]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    running = [t.number for t in by_number.values() if t.state == optuna.trial.TrialState.RUNNING]
    fail_running_trials(study)
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
