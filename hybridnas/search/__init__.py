"""The search engine: ``hybridnas search`` and its Python API.

    >>> from hybridnas.search import SearchConfig, run_search
    >>> cfg = SearchConfig(space="stagewise", dataset="digits", epochs=2,
    ...                    budget_trials=4, name="demo")          # doctest: +SKIP
    >>> result = run_search(cfg)                                   # doctest: +SKIP
    >>> result.trials.head()                                       # doctest: +SKIP

Modules: ``config`` (options), ``runner`` (Ray Tune + Optuna orchestration;
its docstring records the design decisions), ``searcher`` (the Optuna-backed
Tune searcher), ``trial`` (what runs in a worker), ``budget``, ``progress``
(the driver's record and progress lines), ``run`` (the run directory and
``load_run``), ``cli``. Ray and Optuna load only when a search runs.
"""
from __future__ import annotations

from ..rundir import load_run
from .config import SearchConfig

__all__ = ["SearchConfig", "run_search", "load_run", "SearchResult"]


def run_search(*args, **kwargs):
    from .runner import run_search as _run

    return _run(*args, **kwargs)


def __getattr__(name):
    if name == "SearchResult":
        from .runner import SearchResult

        return SearchResult
    raise AttributeError(name)
