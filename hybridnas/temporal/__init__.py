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

Importing this package does not import torch or skfolio.
"""
from __future__ import annotations

__all__ = ["PanelNet", "SeedFinancialHybrid"]


def __getattr__(name: str):
    if name in ("PanelNet", "SeedFinancialHybrid"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'hybridnas.temporal' has no attribute {name!r}")
