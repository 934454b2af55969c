"""Stems: patchify (ViT/ConvNeXt) and stacked strided convs (Xiao et al.'s
ViT_C stem, CoAtNet S0, MaxViT, EfficientFormer and LeViT stems)."""
from __future__ import annotations

from torch import nn

from ..spec import StemSpec
from .layers import ConvSequence, conv_nd, make_act, make_conv, make_norm2d


def build_stem(spec: StemSpec, in_chans: int, dims: int = 2) -> nn.Module:
    conv = conv_nd(dims)
    if spec.kind == "none":
        return nn.Identity()
    if spec.kind == "patchify":
        k = spec.kernel
        return ConvSequence(conv(in_chans, spec.widths[0], k, stride=k, bias=spec.bias),
                        make_norm2d(spec.norm, spec.widths[0], dims))
    layers: list[nn.Module] = []
    prev = in_chans
    last = len(spec.widths) - 1
    for j, (width, stride) in enumerate(zip(spec.widths, spec.strides)):
        # norm='gn': weight-standardised convs (the R50 stem of the R50+ViT hybrid)
        layers.append(make_conv(dims, prev, width, spec.kernel, stride, bias=spec.bias,
                                norm=spec.norm))
        if j < last or spec.last_norm:
            layers.append(make_norm2d(spec.norm, width, dims))
        if j < last or spec.last_act:
            layers.append(make_act(spec.act))
        prev = width
    if spec.proj:
        layers.append(conv(prev, spec.proj, 1, bias=True))
    return ConvSequence(*layers)
