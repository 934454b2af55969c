"""Stems: patchify (ViT/ConvNeXt) and stacked strided convs (Xiao et al.'s
ViT_C stem, CoAtNet S0, MaxViT, EfficientFormer and LeViT stems)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..spec import StemSpec
from .layers import (bn_tensors, conv_nd, fold_conv_bn, fresh_act, inference_cached, make_act,
                     make_conv, make_norm2d, plain_inference, timed_conv)


class ConvStem(nn.Sequential):
    """Convs with their norms and activations, in order (an ``nn.Sequential``:
    the same parameter names). In plain inference a conv followed by an
    eval-mode BatchNorm runs as one conv with the norm folded in (computed
    once, kept until a parameter changes), each 2-D conv in the memory layout
    timed faster for its shape (``layers.timed_conv``), and activations work
    in place."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self._folded: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not plain_inference():
            return super().forward(x)
        mods = list(self)
        i, fresh = 0, False
        while i < len(mods):
            m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
            if (type(m) in (nn.Conv1d, nn.Conv2d) and isinstance(nxt, _BatchNorm)
                    and not nxt.training):
                params = (m.weight, *([] if m.bias is None else [m.bias]), *bn_tensors(nxt))
                w, b = inference_cached(self._folded, (i, str(x.device), x.dtype), params,
                                        lambda m=m, bn=nxt: fold_conv_bn(m, bn))
                x, fresh = timed_conv(m, x, w, b), True
                i += 2
                continue
            if type(m) is nn.Conv2d:
                x = timed_conv(m, x, m.weight, m.bias)
            else:
                x = fresh_act(m, x) if fresh else m(x)  # in place only for activations
            fresh = isinstance(m, (nn.Conv1d, nn.Conv2d, _BatchNorm))
            i += 1
        return x


def build_stem(spec: StemSpec, in_chans: int, dims: int = 2) -> nn.Module:
    conv = conv_nd(dims)
    if spec.kind == "none":
        return nn.Identity()
    if spec.kind == "patchify":
        k = spec.kernel
        return ConvStem(conv(in_chans, spec.widths[0], k, stride=k, bias=spec.bias),
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
    return ConvStem(*layers)
