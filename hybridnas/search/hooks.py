"""Callbacks through which a search reaches the rooms above it.

The search writes the run directory; saving a trained network as a checkpoint,
pruning checkpoints off the front and redrawing the dashboard belong to
``hybridnas.export`` and ``hybridnas.dashboard``, which read that directory.
Data flows one way, so the search never imports them: the caller (the CLI,
or ``hybridnas.run_search``) hands their functions in as ``SearchHooks``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["SearchHooks"]


@dataclass(frozen=True)
class SearchHooks:
    """What a search calls outside itself; every field may be None (skipped).

    ``save_checkpoint(folder, model, spec, meta)``: runs in the trial's worker
    after the last epoch (so it must pickle: a module-level function).
    ``prune_checkpoints(run_dir, keep)``: at the end of a run, unless
    ``keep_checkpoints='all'``. ``write_dashboard(run_dir)``: every few
    finished trials and at the end; must not raise.
    """

    save_checkpoint: Optional[Callable[[Path, Any, Any, dict], Any]] = None
    prune_checkpoints: Optional[Callable[[str, str], Any]] = None
    write_dashboard: Optional[Callable[[str | os.PathLike], Any]] = None
