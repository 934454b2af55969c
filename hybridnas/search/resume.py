"""Resuming a run: its saved config, and repair after a kill.

``resume`` reloads config.yaml (identity fields may not change), the trials
table and the study; trials that were running when the search died continue
under their own ids from their last finished epoch (``repair_after_interrupt``),
so finished trials are never re-run and an interruption costs no budget slot.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import UserError
from ..rundir import RunDir
from .config import IDENTITY_FIELDS, SearchConfig

__all__ = ["resume_config", "repair_after_interrupt", "awaits_continuation",
           "enqueue_references", "INTERRUPTED", "REQUEUED"]


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


def awaits_continuation(row: dict[str, Any]) -> bool:
    """Whether ``row`` is a trial a stop interrupted, not yet continued or queued again."""
    error = str(row.get("error") or "")
    return row["status"] == "FAILED" and error.startswith(INTERRUPTED) and REQUEUED not in error


def repair_after_interrupt(study, recorder) -> list[dict[str, Any]]:
    """After a kill or Ctrl-C: the rows of trials that were running, to be
    continued under their own trial ids (``ArchSearcher(continued=...)``).

    A trial continues when its Optuna trial is still open; it resumes from its
    last finished epoch when ``partial/trial_<id>`` holds its training state.
    It keeps its row (so its budget slot and device time), which stays
    FAILED ("interrupted") until it starts again. Trials the study already
    closed (runs from before trials could continue) are queued again under a
    new id, as before; open Optuna trials without a row never started and
    are closed as FAIL.
    """
    import optuna

    stale = recorder.close_interrupted(f"{INTERRUPTED}: the search was killed while this trial ran")
    # Trials a Ctrl-C stopped were closed by that session; continue them too.
    stale += [n for n, r in recorder.rows.items() if awaits_continuation(r)]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    running = {n for n, t in by_number.items() if t.state == optuna.trial.TrialState.RUNNING}
    continued = sorted(n for n in set(stale) if n in running and recorder.rows[n].get("spec"))
    requeue = sorted((set(stale) | running) - set(continued))
    for number in sorted(running - set(continued)):
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
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
    if continued:
        at = ", ".join(f"{n} (from epoch {_partial_epochs(recorder.run, n)})" for n in continued)
        recorder.note(f"resumed: interrupted trial(s) continue: {at}")
    if requeue:
        recorder.note(f"resumed: trial(s) {requeue} were interrupted and are queued again")
    return [recorder.rows[n] for n in continued]


def _partial_epochs(run: RunDir, trial_id: int) -> int:
    """Epochs the trial's saved training state holds (0 without one)."""
    from .trial import read_progress

    try:
        return int(read_progress(run.partial_dir(trial_id)).get("epochs") or 0)
    except (TypeError, ValueError):
        return 0
