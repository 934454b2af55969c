"""Moved to ``hybridnas.rundir`` (the owner of the run directory); names kept for callers."""
from __future__ import annotations

from ..rundir import (  # noqa: F401
    TRIAL_COLUMNS,
    RunDir,
    empty_row,
    front_of,
    front_summary,
    load_run,
    objective_columns,
    rows_to_frame,
)
