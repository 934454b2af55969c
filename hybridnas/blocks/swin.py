"""Swin Transformer block (Liu et al. 2021, "Swin Transformer: Hierarchical
Vision Transformer using Shifted Windows", arXiv:2103.14030): pre-norm
window attention with a relative position bias, then an MLP; every second
block of a stage shifts its windows by half a window, with the cells that
the shift brings together from far apart masked out. Stages that downsample
or change width start with patch merging.

Windows adapt to the map as in MaxViT: a map smaller than the window shrinks
the window to it (and is not shifted along that axis); other maps are padded
to a multiple of the window and the padding is masked.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .downsample import PatchMerging
from .maxvit import PartitionAttention

__all__ = ["SwinBlock", "ShiftedSwinBlock"]


@register_block("swin")
class SwinBlock(Block):
    """Window attention (``heads`` x ``head_dim``, ``window`` x ``window``,
    relative position bias) + MLP (``mlp_ratio``), each pre-norm with a
    residual, on channels-last maps. Odd blocks of a stage are
    ``ShiftedSwinBlock``."""

    layout = "nhwc"
    shifted = False

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        if in_ch != stage.width or stride != 1:
            raise ValueError("a swin block runs at the stage width and stride 1 "
                             "(the stage's downsampler changes them)")
        shift = stage.window // 2 if self.shifted else 0
        self.attn = PartitionAttention(stage.width, stage, grid=False, drop_path=drop_path,
                                       shift=shift)

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        if stage.stride == 1 and in_ch == stage.width:
            return None
        return PatchMerging(in_ch, stage.width, stage.stride)

    @classmethod
    def variant(cls, stage: StageSpec, index: int) -> type[Block]:
        return ShiftedSwinBlock if index % 2 else SwinBlock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class ShiftedSwinBlock(SwinBlock):
    """Swin block whose windows are shifted by ``window // 2``."""

    shifted = True
