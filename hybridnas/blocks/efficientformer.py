"""EfficientFormer blocks (Li et al. 2022, "EfficientFormer: Vision
Transformers at MobileNet Speed", arXiv:2206.01191).

A stage is ``depth - attn_blocks`` Meta4D blocks on 4-D maps (PoolFormer's
pooling mixer and a 1x1-conv MLP with BatchNorm, both with layer scale)
followed by ``attn_blocks`` Meta3D blocks on tokens (LayerNorm, attention
with a learned offset bias, LayerNorm, linear MLP). Stages that downsample
or change width start with a 3x3 conv (stride = stage stride) + BatchNorm.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .layers import (ConvSequence, DropPath, Mlp, bn_tensors, fold_conv_bn, fresh_scale, hooked,
                     inference_cached, layer_scale, make_act, plain_inference, pointwise_conv,
                     residual)
from .levit import OffsetAttention

__all__ = ["Meta4D", "Meta3D"]


@register_block("efficientformer")
class Meta4D(Block):
    """``x + ls * (avgpool3x3(x) - x)``, then ``x + ls * BN(conv1x1(act(BN(
    conv1x1(x)))))`` (hidden width ``mlp_ratio`` x). The stage's last
    ``attn_blocks`` blocks are ``Meta3D`` (see ``variant``)."""

    layout = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        k = stage.kernel
        # count_include_pad=False: border tokens average only real neighbours,
        # so pool(x) - x is zero on a constant map of any size.
        self.pool = nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False)
        self.ls1 = layer_scale(dim, stage.layer_scale, channels_last=False)
        hidden = int(round(dim * stage.mlp_ratio))
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), make_act(stage.act),
            nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim),
        )
        self.ls2 = layer_scale(dim, stage.layer_scale, channels_last=False)
        self.drop_path = DropPath(drop_path)
        self._folded: dict = {}

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        if stage.stride == 1 and in_ch == stage.width:
            return None
        return ConvSequence(nn.Conv2d(in_ch, stage.width, 3, stride=stage.stride, padding=1),
                            nn.BatchNorm2d(stage.width))

    @classmethod
    def variant(cls, stage: StageSpec, index: int) -> type[Block]:
        return Meta3D if index >= stage.depth - (stage.attn_blocks or 0) else cls

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        conv1, bn1, act, conv2, bn2 = self.mlp
        if self.training or not plain_inference() or hooked(self.mlp, *self.mlp):
            return self.mlp(x)
        # Inference: each BatchNorm folds into the 1x1 conv before it.
        params = (conv1.weight, conv1.bias, conv2.weight, conv2.bias, *bn_tensors(bn1),
                  *bn_tensors(bn2))
        w1, b1, w2, b2 = inference_cached(self._folded, (str(x.device), x.dtype), params,
                                          lambda: fold_conv_bn(conv1, bn1) + fold_conv_bn(conv2, bn2))
        return pointwise_conv(conv2, pointwise_conv(conv1, x, w1, b1, act), w2, b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual(x, self.drop_path(fresh_scale(self.ls1, self.pool(x) - x)))
        return residual(x, self.drop_path(fresh_scale(self.ls2, self._mlp(x))))


class Meta3D(Block):
    """Pre-LayerNorm attention (``heads`` x ``key_dim``, values
    ``value_ratio * key_dim``, learned offset bias with a ``window`` table)
    and pre-LayerNorm linear MLP, each with layer scale and a residual.
    Channels-last maps in and out (the grid is kept for the bias)."""

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OffsetAttention(dim, stage.heads, stage.key_dim,
                                    int(stage.key_dim * stage.value_ratio),
                                    resolution=stage.window, bn=False)
        self.ls1 = layer_scale(dim, stage.layer_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * stage.mlp_ratio)), act=stage.act)
        self.ls2 = layer_scale(dim, stage.layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual(x, self.drop_path(fresh_scale(self.ls1, self.attn(self.norm1(x)))))
        return residual(x, self.drop_path(fresh_scale(self.ls2, self.mlp(self.norm2(x)))))
