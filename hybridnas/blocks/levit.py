"""LeViT block (Graham et al. 2021, "LeViT: a Vision Transformer in ConvNet's
Clothing for Faster Inference", arXiv:2104.01136).

LeViT has no LayerNorm: every linear layer is followed by BatchNorm ("BN-
linear"), so at inference the norm folds into the weights. Attention uses a
small key width (``key_dim``), values ``value_ratio`` times wider, a learned
bias per head and absolute offset instead of position embeddings, and
Hardswish before the output projection. A stride-2 stage starts with
*shrink attention*: queries come from every other position, keys and values
from all of them, and the output has the new width (no residual), followed by
an MLP with a residual.

``OffsetAttention`` is shared with EfficientFormer's Meta3D block, which uses
the same attention with plain (biased) linears and no activation.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .layers import (DropPath, Linear, OffsetBias, attend, fresh_act, hooked, inference_cached, linear,
                     make_act, make_norm_last, plain_inference)

__all__ = ["BNLinear", "LeViTBlock", "OffsetAttention", "ShrinkBlock", "bn_linear"]

#: LeViT's shrink attention: values 4x the key width, MLP 2x.
SHRINK_VALUE_RATIO = 4.0
SHRINK_MLP_RATIO = 2.0


class BNLinear(nn.Sequential):
    """Linear (no bias) then BatchNorm over the last dim. In plain inference
    the norm is folded into the linear (one matmul with bias), the folded
    weights kept until a parameter or statistic changes."""

    def __init__(self, in_dim: int, out_dim: int, bn_weight: float = 1.0):
        norm = make_norm_last("bn", out_dim)
        nn.init.constant_(norm.weight, bn_weight)
        super().__init__(Linear(in_dim, out_dim, bias=False), norm)
        self._folded: dict = {}

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        lin, bn = self[0], self[1]
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        return lin.weight * scale[:, None], bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor, act: nn.Module | None = None) -> torch.Tensor:
        """``act(bn(linear(x)))`` (no ``act``: without it)."""
        lin, bn = self._modules.values()  # not self[i]: two Python calls each
        if self.training or bn.running_mean is None or not plain_inference() or hooked(lin, bn):
            y = bn(lin(x))
            return y if act is None else fresh_act(act, y)
        params = (lin.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        w, b = inference_cached(self._folded, (str(x.device), x.dtype), params, self._fold)
        return linear(self, x, w, b, act)


def bn_linear(in_dim: int, out_dim: int, bn_weight: float = 1.0) -> BNLinear:
    """Linear (no bias) + BatchNorm over the last dim. ``bn_weight=0`` makes a
    residual branch start as zero (LeViT initialises its branch outputs so)."""
    return BNLinear(in_dim, out_dim, bn_weight)


class OffsetAttention(nn.Module):
    """Attention with separate key/value widths and a learned offset bias, on
    channels-last maps (B, H, W, C) -> (B, H', W', out_dim).

    ``resolution`` sizes the bias table (``OffsetBias``: offsets beyond it are
    clamped, so any grid works). ``q_stride`` > 1 takes the queries from a
    subsampled grid (positions 0, s, 2s, ...), giving an output of
    ceil(H / s) x ceil(W / s). ``bn=True`` uses LeViT's BN-linears, otherwise
    plain linears with bias (EfficientFormer). ``act`` runs before the output
    projection (LeViT: Hardswish).
    """

    def __init__(self, dim: int, heads: int, key_dim: int, value_dim: int, resolution: int,
                 out_dim: int | None = None, q_stride: int = 1, bn: bool = True,
                 act: str | None = None, proj_bn_weight: float = 1.0):
        super().__init__()
        out_dim = out_dim or dim
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.q_stride = q_stride

        def linear(i: int, o: int, bn_weight: float = 1.0) -> nn.Module:
            return bn_linear(i, o, bn_weight) if bn else Linear(i, o)

        if q_stride == 1:
            self.qkv = linear(dim, heads * (2 * key_dim + value_dim))
        else:
            self.q = linear(dim, heads * key_dim)
            self.kv = linear(dim, heads * (key_dim + value_dim))
        self.act = make_act(act) if act else nn.Identity()
        self.proj = linear(heads * value_dim, out_dim, proj_bn_weight)
        self.bias = OffsetBias(heads, resolution)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # (B, H, W, heads * d) -> (B, heads, H * W, d): per-head channels are contiguous
        b = t.shape[0]
        return t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        kd, vd = self.key_dim, self.value_dim
        if self.q_stride == 1:
            q, k, v = self._heads(self.qkv(x)).split([kd, kd, vd], dim=-1)
            qh, qw = h, w
        else:
            k, v = self._heads(self.kv(x)).split([kd, vd], dim=-1)
            xq = x[:, ::self.q_stride, ::self.q_stride].contiguous()
            qh, qw = xq.shape[1], xq.shape[2]
            q = self._heads(self.q(xq))
        bias = self.bias(h, w, self.q_stride).to(q.dtype)
        out = attend(q, k, v, bias)
        out = out.transpose(1, 2).reshape(b, qh, qw, self.heads * vd)
        return self.proj(fresh_act(self.act, out))


class LeViTMlp(nn.Module):
    """BN-linear -> act -> BN-linear (last BN starts at zero: residual branch)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = bn_linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = bn_linear(hidden, dim, bn_weight=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x, self.act))


class ShrinkBlock(nn.Module):
    """LeViT's stage-start unit: shrink attention to the new width (queries
    subsampled by ``stride``; ``in_ch // key_dim`` heads, values 4x key_dim),
    then an MLP with a residual. Channels-last maps in and out."""

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec):
        super().__init__()
        heads = max(1, in_ch // stage.key_dim)
        self.attn = OffsetAttention(
            in_ch, heads, stage.key_dim, int(stage.key_dim * SHRINK_VALUE_RATIO),
            resolution=stage.window * stage.stride, out_dim=stage.width, q_stride=stage.stride,
            act=stage.act)
        self.mlp = LeViTMlp(stage.width, int(stage.width * SHRINK_MLP_RATIO), stage.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)
        return x + self.mlp(x)


@register_block("levit")
class LeViTBlock(Block):
    """Residual LeViT attention (``heads`` x ``key_dim``, values
    ``value_ratio * key_dim``, learned offset bias with a ``window`` table,
    Hardswish) then residual BN-linear MLP (``mlp_ratio`` x). No LayerNorm.

    ``heads`` is explicit (it need not divide the width). A stage with stride
    > 1 or a new width starts with ``ShrinkBlock``; with stride 2 and depth 0
    a stage is the shrink unit alone (as between LeViT's stages).
    """

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        self.attn = OffsetAttention(dim, stage.heads, stage.key_dim,
                                    int(stage.key_dim * stage.value_ratio),
                                    resolution=stage.window, act=stage.act, proj_bn_weight=0.0)
        self.mlp = LeViTMlp(dim, int(round(dim * stage.mlp_ratio)), stage.act)
        self.drop_path = DropPath(drop_path)

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        if stage.stride == 1 and in_ch == stage.width:
            return None
        return ShrinkBlock(in_ch, stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))
