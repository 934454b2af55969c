"""One-shot search: a weight-sharing supernet generated from a search space.

``Supernet(space)`` holds one branch per block type per stage with
max-size shared tensors (``elastic`` says how a subnet slices them);
``train`` trains it with the sandwich rule and in-place distillation;
``search`` ranks subnets with inherited weights and retrains the best.
"""
from __future__ import annotations

from .supernet import Supernet, max_abs_diff, space_layout

__all__ = ["Supernet", "max_abs_diff", "space_layout"]
