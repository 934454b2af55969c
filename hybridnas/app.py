"""The application layer: the rooms wired together.

A search must not import export or dashboard (they read what it writes), so
this module hands the search their functions as callbacks. The CLI and
``hybridnas.run_search`` use it; ``hybridnas.search.run_search`` alone writes
the run directory without checkpoints or a dashboard.
"""
from __future__ import annotations

from typing import Any

from .search.hooks import SearchHooks

__all__ = ["search_hooks", "run_search"]


def search_hooks() -> SearchHooks:
    """Checkpoints by ``hybridnas.export``, the dashboard by ``hybridnas.dashboard``."""
    from .dashboard import write_dashboard
    from .export import prune_checkpoints, save_checkpoint

    return SearchHooks(save_checkpoint=save_checkpoint, prune_checkpoints=prune_checkpoints,
                       write_dashboard=write_dashboard)


def run_search(*args: Any, **kwargs: Any):
    """``hybridnas.search.run_search`` with checkpoints and the dashboard
    (``hooks`` defaults to ``search_hooks()``); same arguments and result."""
    from .search import run_search as _run

    kwargs.setdefault("hooks", search_hooks())
    return _run(*args, **kwargs)
