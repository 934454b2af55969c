"""Stage-start downsamplers a stage names with ``StageSpec.downsample``
(instead of its block's own way of downsampling):

- ``conv``: ``down_kernel`` x ``down_kernel`` strided conv + ``down_norm``
  (the design document's CoAtNetStyle: 3x3 stride-2 conv + BN; a 1x1 conv
  without a norm is the R50+ViT hybrid's projection to the token width);
- ``pool_proj``: average pool + 1x1 conv with bias (CoAtNet's shortcut);
- ``patch_merge``: Swin's patch merging -- each stride x stride patch
  concatenated, ``down_norm`` over the concatenation, linear without bias;
- ``max_pool``: ``down_kernel`` max pool, width unchanged (the ResNet stem's
  pool; the stage's first block then changes the width).

Every one gives ceil(n / stride) outputs, like the rest of hybridnas.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import StageSpec
from .layers import ConvSequence, Linear, make_conv, make_norm2d, make_norm_last, pooled_projection

__all__ = ["PatchMerging", "build_downsampler", "downsampler_width"]


class PatchMerging(nn.Module):
    """Swin's patch merging on channels-last maps (B, H, W, C) or (B, L, C):
    the far side is zero-padded to a multiple of ``stride``, each patch's
    stride x stride cells are concatenated (Swin's order: row offset fastest),
    normalised and projected to ``out_ch`` without bias."""

    layout = "nhwc"

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str = "ln"):
        super().__init__()
        self.stride = stride
        merged = in_ch * stride * stride
        self.merged = merged
        self.norm = make_norm_last(norm, merged)
        self.reduction = Linear(merged, out_ch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if x.ndim == 3:  # 1-D: (B, L, C)
            b, n, c = x.shape
            if n % s:
                x = F.pad(x, (0, 0, 0, (-n) % s))
            x = x.reshape(b, -1, s * c)
            merged = c * s
        else:
            b, h, w, c = x.shape
            ph, pw = (-h) % s, (-w) % s
            if ph or pw:
                x = F.pad(x, (0, 0, 0, pw, 0, ph))
            x = x.reshape(b, (h + ph) // s, s, (w + pw) // s, s, c).permute(0, 1, 3, 4, 2, 5)
            x = x.flatten(3)
            merged = c * s * s
        if merged != self.merged:
            raise ValueError(f"PatchMerging got {c} channels, built for {self.merged // s // s}")
        return self.reduction(self.norm(x))


class ConvDownsample(ConvSequence):
    """Strided conv + norm (bias only when there is no norm)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, norm: str, dims: int):
        super().__init__(make_conv(dims, in_ch, out_ch, kernel, stride, bias=norm == "none"),
                         make_norm2d(norm, out_ch, dims))


def _max_pool(dims: int, kernel: int, stride: int) -> nn.Module:
    pool = nn.MaxPool2d if dims == 2 else nn.MaxPool1d
    return pool(kernel, stride, padding=kernel // 2)


def downsampler_width(in_ch: int, stage: StageSpec) -> int:
    """Channels after the stage's named downsampler."""
    return in_ch if stage.downsample == "max_pool" else stage.width


def build_downsampler(in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
    """The module ``stage.downsample`` names (None for the block's own)."""
    kind, s, out = stage.downsample, stage.stride, stage.width
    if kind is None:
        return None
    if kind == "conv":
        return ConvDownsample(in_ch, out, stage.down_kernel, s, stage.down_norm, dims)
    if kind == "pool_proj":
        return pooled_projection(in_ch, out, s, dims)
    if kind == "patch_merge":
        return PatchMerging(in_ch, out, s, stage.down_norm)
    if kind == "max_pool":
        return _max_pool(dims, stage.down_kernel, s)
    raise ValueError(f"unknown downsample {kind!r}")
