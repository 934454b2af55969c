"""The search engine: ``hybridnas search`` and its Python API.

    >>> import hybridnas
    >>> from hybridnas.search import SearchConfig
    >>> cfg = SearchConfig(space="stagewise", dataset="digits", epochs=2,
    ...                    budget_trials=4, name="demo")          # doctest: +SKIP
    >>> result = hybridnas.run_search(cfg)                         # doctest: +SKIP
    >>> result.trials.head()                                       # doctest: +SKIP

``hybridnas.run_search`` hands the search export's and dashboard's callbacks
(``hooks.SearchHooks``); ``run_search`` here writes the run directory only.
Modules: ``config`` (options), ``runner`` (the run; its docstring names the
modules it uses for each job), ``searcher`` (Tune searcher over Optuna
ask/tell), ``trial`` (what runs in a worker), ``settings``, ``budget``,
``progress`` (the driver's record and progress lines), ``estimate`` (the
cost printed before a run, and by ``--dry-run``), ``cli``. The run
directory itself is ``hybridnas.rundir``. Ray and Optuna load only when a
search runs.
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
