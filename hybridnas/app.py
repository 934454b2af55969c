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


def run_search(cfg=None, resume=None, **kwargs: Any):
    """A search of any strategy, with checkpoints and the dashboard
    (``hooks`` defaults to ``search_hooks()``): ``hybridnas.search.run_search``
    (multi-trial, ``strategy: trials``) or the one-shot supernet search
    (``strategy: oneshot``, ``hybridnas.supernet.search.run_oneshot``, which
    takes no ``space`` object). A resumed run keeps the strategy it was
    started with. Same arguments and result as ``hybridnas.search.run_search``."""
    kwargs.setdefault("hooks", search_hooks())
    if _strategy(cfg, resume) == "oneshot":
        from .supernet.search import run_oneshot

        kwargs.pop("space", None)
        return run_oneshot(cfg, resume=resume, **kwargs)
    from .search import run_search as _run

    return _run(cfg, resume=resume, **kwargs)


def _strategy(cfg, resume) -> str:
    if resume is not None:
        from .errors import UserError
        from .rundir import RunDir

        try:
            return str(RunDir(resume).read_config().get("strategy") or "trials")
        except UserError:
            return "trials"  # the multi-trial resume names what is wrong
    return str(getattr(cfg, "strategy", None) or "trials")
