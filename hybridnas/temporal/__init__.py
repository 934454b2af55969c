"""Temporal search space for multi-asset daily series (issue #8).

Layout:
- ``model``: ``PanelNet`` (a ``HybridNet`` that folds the asset axis around
  its stages; what ``build_model`` returns for ``assets=True`` specs) and
  ``SeedFinancialHybrid`` (the design document's module, as written).
- ``features``: per-asset daily features built without look-ahead, and the
  per-window normalisation.
- ``splits``: walk-forward train / validation / test blocks with a gap.
- ``data``: the ``sp500-20`` dataset (skfolio's bundled prices; optional
  extra ``hybridnas[finance]``) and the panel ``Dataset``.
- ``task``: the ``returns`` task (MSE loss, information coefficient).
- ``baselines``: zero / mean / ridge / seed FinancialHybrid on the same splits.

A plug-in: ``hybridnas.plugins`` imports this package, which registers its
datasets and ``PanelNet`` (for ``assets=True`` specs); the core never imports
it. Importing it does not import torch or skfolio.
"""
from __future__ import annotations

from ..plugins import register_network
from . import data as _data  # noqa: F401  (registers sp500-20)
from .features import FEATURES, daily_features, forward_returns, normalise_windows
from .splits import Split, walk_forward_splits

__all__ = [
    "PanelNet", "SeedFinancialHybrid", "ReturnsTask", "information_coefficient", "panel_bundle",
    "PanelDataset", "FEATURES", "daily_features", "forward_returns", "normalise_windows",
    "Split", "walk_forward_splits", "compute_baselines",
]

_LAZY = {
    "PanelNet": "model", "SeedFinancialHybrid": "model", "ReturnsTask": "task",
    "information_coefficient": "task", "panel_bundle": "data", "PanelDataset": "data",
    "compute_baselines": "baselines",
}


def _panel_net():
    from .model import PanelNet

    return PanelNet


register_network("assets", _panel_net)  # build_model of assets=True specs


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hybridnas.temporal' has no attribute {name!r}")
