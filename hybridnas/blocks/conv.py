"""Convolutional blocks: MBConv (CoAtNet/EfficientNet) and ConvNeXt."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..spec import StageSpec
from .base import Block, register_block
from .layers import (DropPath, LayerNorm2d, Linear, SqueezeExcite, bn_tensors, conv_nd,
                     dense_conv, depthwise_input, fold_conv_bn, fresh_act, fresh_scale, hooked, inference_cached,
                     layer_scale, make_act, make_norm2d, plain_inference, pointwise_conv,
                     pooled_projection, residual)


class PatchMerge(nn.Module):
    """Norm, then a stride x stride conv with stride ``stride`` (ConvNeXt's
    downsampler). Odd sizes are zero-padded on the far side first, so the
    output is ceil(n / stride) like every other downsampling in hybridnas
    (``ArchSpec.stage_resolutions`` relies on it)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, dims: int):
        super().__init__()
        self.norm = LayerNorm2d(in_ch, eps=1e-6) if norm == "ln" else make_norm2d(norm, in_ch, dims)
        self.stride = stride
        self.conv = conv_nd(dims)(in_ch, out_ch, stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        s = self.stride
        if s > 1:
            pad: list[int] = []
            for n in reversed(x.shape[2:]):
                pad += [0, (-n) % s]
            if any(pad):
                x = F.pad(x, pad)
        return dense_conv(self.conv, x)


def patch_downsample(in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
    """Stage-start downsampler of ConvNeXt-style blocks (None when nothing changes)."""
    if stage.stride == 1 and in_ch == stage.width:
        return None
    return PatchMerge(in_ch, stage.width, stage.stride, stage.norm, dims)


@register_block("mbconv")
class MBConv(Block):
    """Pre-norm inverted bottleneck: BN -> 1x1 expand -> BN act -> depthwise
    kxk (carries the stride) -> BN act -> SE -> 1x1 project, plus a residual
    (pooled and projected when the stride or width changes). The hidden width
    is ``width * expansion`` (CoAtNet/MaxViT expand the output width)."""

    layout = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        out = stage.width
        mid = int(round(out * stage.expansion))
        conv = conv_nd(dims)
        k = stage.kernel
        self.shortcut = pooled_projection(in_ch, out, stride, dims)
        self.pre_norm = make_norm2d(stage.norm, in_ch, dims)
        self.conv1 = conv(in_ch, mid, 1, bias=False)
        self.norm1 = make_norm2d(stage.norm, mid, dims)
        self.act1 = make_act(stage.act)
        self.conv2 = conv(mid, mid, k, stride=stride, padding=k // 2, groups=mid, bias=False)
        self.norm2 = make_norm2d(stage.norm, mid, dims)
        self.act2 = make_act(stage.act)
        self.se = SqueezeExcite(mid, stage.se_ratio) if stage.se_ratio else nn.Identity()
        self.conv3 = conv(mid, out, 1, bias=True)
        self.drop_path = DropPath(drop_path)
        self._folded: dict = {}

    def _fold(self) -> tuple[torch.Tensor, ...]:
        return fold_conv_bn(self.conv1, self.norm1, self.pre_norm) + fold_conv_bn(self.conv2,
                                                                                  self.norm2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        if not self.training and plain_inference() and isinstance(self.norm1, _BatchNorm) \
                and isinstance(self.pre_norm, _BatchNorm) \
                and not hooked(self.pre_norm, self.conv1, self.norm1, self.conv2, self.norm2):
            # Inference: the three BatchNorms fold into the two convs.
            params = (self.conv1.weight, self.conv2.weight, *bn_tensors(self.pre_norm),
                      *bn_tensors(self.norm1), *bn_tensors(self.norm2))
            w1, b1, w2, b2 = inference_cached(self._folded, (str(x.device), x.dtype), params,
                                              self._fold)
            x = pointwise_conv(self.conv1, x, w1, b1, self.act1)
            x = fresh_act(self.act2, self.conv2._conv_forward(depthwise_input(self.conv2, x), w2,
                                                              b2))
            x = pointwise_conv(self.conv3, self.se(x), self.conv3.weight, self.conv3.bias)
            return residual(shortcut, self.drop_path(x))
        x = fresh_act(self.act1, self.norm1(self.conv1(self.pre_norm(x))))
        x = fresh_act(self.act2, self.norm2(self.conv2(depthwise_input(self.conv2, x))))
        x = self.conv3(self.se(x))
        return shortcut + self.drop_path(x)


@register_block("convnext")
class ConvNeXtBlock(Block):
    """Depthwise kxk -> LayerNorm -> Linear(expansion x) -> act -> Linear ->
    layer scale, plus a residual. Stages that downsample or change width
    start with LayerNorm + a stride x stride conv (ConvNeXt's downsampler)."""

    layout = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        k = stage.kernel
        self.dwconv = conv_nd(dims)(dim, dim, k, padding=k // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6) if stage.norm == "ln" else nn.Identity()
        self.bn = make_norm2d("bn", dim, dims) if stage.norm == "bn" else None
        hidden = int(round(dim * stage.expansion))
        self.fc1 = Linear(dim, hidden)
        self.act = make_act(stage.act)
        self.fc2 = Linear(hidden, dim)
        self.ls = layer_scale(dim, stage.layer_scale)
        self.drop_path = DropPath(drop_path)

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        return patch_downsample(in_ch, stage, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(depthwise_input(self.dwconv, x))
        if self.bn is not None:
            y = self.bn(y)
        y = y.movedim(1, -1)
        y = fresh_scale(self.ls, self.fc2(self.fc1(self.norm(y), self.act)))
        return residual(x, self.drop_path(y.movedim(-1, 1)))
