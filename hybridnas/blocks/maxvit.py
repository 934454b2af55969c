"""MaxViT block (Tu et al. 2022, "MaxViT: Multi-Axis Vision Transformer",
arXiv:2204.01697): MBConv, then block (window) attention + FFN, then grid
attention + FFN, both with a relative position bias.

Block attention mixes tokens inside non-overlapping ``window x window``
blocks (local); grid attention mixes a ``window x window`` grid of tokens
strided across the whole map (sparse global). Maps that are not a multiple
of the window are zero-padded and the padding is masked out of the keys;
maps smaller than the window shrink it (``layers.partition``), so the block
runs at any resolution.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .conv import MBConv
from .layers import DropPath, Mlp, layer_scale, make_norm_last, residual
from .transformer import TokenMixer

__all__ = ["MaxViTBlock", "PartitionAttention"]


class PartitionAttention(nn.Module):
    """Pre-norm window (``grid=False``) or grid (``grid=True``) attention with
    a relative position bias, then a pre-norm FFN; channels-last maps in/out.
    ``shift`` > 0 shifts the windows (Swin)."""

    def __init__(self, dim: int, stage: StageSpec, grid: bool, drop_path: float = 0.0,
                 shift: int = 0):
        super().__init__()
        self.norm1 = make_norm_last(stage.norm, dim)
        self.mixer = TokenMixer(dim, stage.heads, window=stage.window, grid=grid, shift=shift)
        self.ls1 = layer_scale(dim, stage.layer_scale)
        self.norm2 = make_norm_last(stage.norm, dim)
        self.mlp = Mlp(dim, int(round(dim * stage.mlp_ratio)), act=stage.act)
        self.ls2 = layer_scale(dim, stage.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual(x, self.drop_path(self.ls1(self.mixer(self.norm1(x)))))
        return residual(x, self.drop_path(self.ls2(self.mlp(self.norm2(x)))))


@register_block("maxvit")
class MaxViTBlock(Block):
    """MBConv (BN, expansion, SE; carries the stage stride) -> block attention
    + FFN -> grid attention + FFN.

    ``se_ratio`` is relative to the block's output width, as in MaxViT (the SE
    hidden width is ``width * se_ratio``, not ``width * expansion * se_ratio``).
    ``heads`` = ``width / head_dim`` (head_dim 32 by default); ``window`` is
    both the block size and the grid size (7 in the paper).
    """

    layout = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        conv_stage = StageSpec("mbconv", depth=1, width=stage.width, stride=stride,
                               kernel=stage.kernel, expansion=stage.expansion,
                               se_ratio=stage.se_ratio / stage.expansion, norm="bn",
                               act=stage.act)
        self.conv = MBConv(in_ch, conv_stage, stride=stride, drop_path=drop_path, dims=dims)
        self.block_attn = PartitionAttention(stage.width, stage, grid=False, drop_path=drop_path)
        self.grid_attn = PartitionAttention(stage.width, stage, grid=True, drop_path=drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).movedim(1, -1)
        x = self.grid_attn(self.block_attn(x))
        return x.movedim(-1, 1)
