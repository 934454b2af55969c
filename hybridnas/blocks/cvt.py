"""CvT block (Wu et al. 2021, "CvT: Introducing Convolutions to Vision
Transformers", arXiv:2103.15808).

A CvT stage starts with a convolutional token embedding (a ``kernel x
kernel`` conv with the stage stride, then LayerNorm); its blocks are pre-norm
transformers whose Q, K and V come from a depthwise 3x3 conv + BatchNorm over
the token grid followed by a linear projection. K and V are taken with
stride ``kv_stride``, so the attention has fewer keys than queries (computed
with ``layers.attend``, which accepts different lengths).
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .layers import (ConvSequence, DropPath, LayerNorm2d, Linear, Mlp, attend, make_norm_last,
                     residual)

__all__ = ["CvTBlock", "ConvAttention", "conv_embedding"]

#: Kernel of the depthwise Q/K/V projections (3 in every CvT model).
PROJ_KERNEL = 3


def conv_embedding(in_ch: int, out_ch: int, kernel: int, stride: int) -> ConvSequence:
    """CvT's convolutional token embedding on channels-first maps.

    Padded so that the output is ceil(n / stride) for any n, the same
    arithmetic as ``ArchSpec.stage_resolutions`` (for k7 s4 this is CvT's own
    padding at 224). Even kernels get the extra pixel on the bottom/right.
    """
    total = kernel - 1
    before, after = total // 2, total - total // 2
    layers: list[nn.Module] = []
    if before != after:
        layers.append(nn.ZeroPad2d((before, after, before, after)))
        before = 0
    layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=before),
               LayerNorm2d(out_ch, eps=1e-5)]
    return ConvSequence(*layers)


def _dw_projection(dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(dim, dim, PROJ_KERNEL, stride=stride, padding=PROJ_KERNEL // 2, groups=dim,
                  bias=False),
        nn.BatchNorm2d(dim),
    )


class ConvAttention(nn.Module):
    """Multi-head attention whose Q/K/V projections are depthwise conv + BN
    then Linear (CvT's "convolutional projection"); channels-last maps in/out.
    """

    def __init__(self, dim: int, heads: int, kv_stride: int = 2, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads={heads} does not divide width {dim}")
        self.heads = heads
        self.conv_q = _dw_projection(dim, 1)
        self.conv_k = _dw_projection(dim, kv_stride)
        self.conv_v = _dw_projection(dim, kv_stride)
        self.proj_q = Linear(dim, dim, bias=qkv_bias)
        self.proj_k = Linear(dim, dim, bias=qkv_bias)
        self.proj_v = Linear(dim, dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def _tokens(self, conv: nn.Module, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = conv(x).flatten(2).transpose(1, 2)  # (B, N, C)
        b, n, c = y.shape
        return linear(y).view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        maps = x.movedim(-1, 1)
        q = self._tokens(self.conv_q, self.proj_q, maps)
        k = self._tokens(self.conv_k, self.proj_k, maps)
        v = self._tokens(self.conv_v, self.proj_v, maps)
        out = attend(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


@register_block("cvt")
class CvTBlock(Block):
    """Pre-norm convolutional-projection attention + MLP (``mlp_ratio`` x,
    GELU), each with a residual. The stage's ``kernel`` and ``stride`` belong
    to its convolutional token embedding (``downsample``), which every CvT
    stage starts with; ``kv_stride`` subsamples keys and values."""

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        self.norm1 = make_norm_last(stage.norm, dim)
        self.attn = ConvAttention(dim, stage.heads, kv_stride=stage.kv_stride)
        self.norm2 = make_norm_last(stage.norm, dim)
        self.mlp = Mlp(dim, int(round(dim * stage.mlp_ratio)), act=stage.act)
        self.drop_path = DropPath(drop_path)

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module:
        return conv_embedding(in_ch, stage.width, stage.kernel, stage.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual(x, self.drop_path(self.attn(self.norm1(x))))
        return residual(x, self.drop_path(self.mlp(self.norm2(x))))
