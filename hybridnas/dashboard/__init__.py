"""Pareto-front dashboards for search runs.

One self-contained HTML page per run (or several runs overlaid): the front,
hypervolume against budget, block types per stage, parameter importance,
learning curves, predicted vs measured latency and a sortable trials table.

    >>> from hybridnas.dashboard import render_dashboard
    >>> render_dashboard("results/my_run")                     # doctest: +SKIP
    PosixPath('results/my_run/dashboard.html')

Data and drawing are apart: ``get_*_info`` return plain DataFrames/dicts
(tested on their numbers); ``plot_*`` turn them into plotly figures.
``write_dashboard`` is the search's hook (never raises); ``serve`` serves a
live page; ``write_front_png`` renders the front through kaleido.
Importing this package does not import plotly, optuna or torch.
"""
from __future__ import annotations

from ._data import (
    Run,
    arch_summary,
    front_mask,
    get_block_usage_info,
    get_fidelity_info,
    get_front_info,
    get_hypervolume_info,
    get_importance_info,
    get_latency_prediction_info,
    get_learning_curves_info,
    get_trials_table,
    load_run_dir,
    load_runs,
)
from ._draw import (
    plot_block_usage,
    plot_fidelity,
    plot_front,
    plot_hypervolume,
    plot_importance,
    plot_latency_prediction,
    plot_learning_curves,
)
from ._page import build_html, render_dashboard, write_dashboard
from ._png import find_browser, write_front_png
from ._serve import serve

__all__ = [
    "Run", "load_run_dir", "load_runs", "arch_summary", "front_mask",
    "get_front_info", "get_hypervolume_info", "get_block_usage_info", "get_importance_info",
    "get_learning_curves_info", "get_latency_prediction_info", "get_trials_table",
    "get_fidelity_info", "plot_fidelity",
    "plot_front", "plot_hypervolume", "plot_block_usage", "plot_importance",
    "plot_learning_curves", "plot_latency_prediction",
    "build_html", "render_dashboard", "write_dashboard", "serve",
    "find_browser", "write_front_png",
]
