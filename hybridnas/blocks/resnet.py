"""ResNet bottleneck block (He et al. 2016, "Deep Residual Learning for Image
Recognition", arXiv:1512.03385), as torchvision/timm build it (stride on the
3x3 conv). ``norm='gn'`` gives BiT's variant (Kolesnikov et al. 2020,
arXiv:1912.11370): GroupNorm with weight-standardised convs, which the
R50+ViT hybrid of Dosovitskiy et al. uses."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .layers import (DropPath, dense_conv, fresh_act, group_norm_input, make_act, make_conv,
                     make_norm2d)

__all__ = ["ResNetBottleneck"]


@register_block("resnet")
class ResNetBottleneck(Block):
    """1x1 conv to ``width / expansion`` -> norm act -> kxk conv (carries the
    stride) -> norm act -> 1x1 conv to ``width`` -> norm, plus the shortcut
    (1x1 strided conv + norm when the stride or width changes), then act."""

    layout = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        out, norm, k = stage.width, stage.norm, stage.kernel
        mid = max(1, int(round(out / stage.expansion)))
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or in_ch != out:
            self.shortcut = nn.Sequential(make_conv(dims, in_ch, out, 1, stride, norm=norm),
                                          make_norm2d(norm, out, dims))
        self.conv1 = make_conv(dims, in_ch, mid, 1, norm=norm)
        self.norm1 = make_norm2d(norm, mid, dims)
        self.conv2 = make_conv(dims, mid, mid, k, stride, norm=norm)
        self.norm2 = make_norm2d(norm, mid, dims)
        self.conv3 = make_conv(dims, mid, out, 1, norm=norm)
        self.norm3 = make_norm2d(norm, out, dims)
        self.act = make_act(stage.act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = group_norm_input(self.norm1, x)
        shortcut = self.shortcut(x)
        x = fresh_act(self.act, self.norm1(self.conv1(x)))
        x = fresh_act(self.act, self.norm2(dense_conv(self.conv2, x)))
        x = self.norm3(self.conv3(x))
        return fresh_act(self.act, shortcut + self.drop_path(x))
