"""Block library: one class per block type, registered by the string key that
specs use. Importing this package registers every block."""
from __future__ import annotations

from .base import BLOCKS, Block, Stage, register_block
from .stems import build_stem
from . import conv, transformer  # noqa: F401  (registration)
from . import maxvit, cvt, levit, efficientformer, resnet, swin  # noqa: F401  (registration)

__all__ = ["BLOCKS", "Block", "Stage", "register_block", "build_stem"]
