"""Attention blocks: the pre-norm transformer (CoAtNet relative attention,
ViT global attention) and the interleaved conv-attention block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import StageSpec
from .base import Block, register_block
from .conv import patch_downsample
from .layers import (Attention, DropPath, Linear, Mlp, RelPosBias, conv_nd, depthwise_input,
                     faster, forward_cached, hooked, inference_cached, layer_scale, make_norm_last,
                     packed_for, packing, partition, plain_inference, residual, unpartition)

#: Logit added where shifted windows must not attend (Swin's value: finite, so
#: a row that is all padding still has a defined softmax).
SHIFT_MASK_VALUE = -100.0

#: Whether the fused encoder layer runs faster than the block written out,
#: per input shape, heads, MLP width and threads, timed in this process
#: (``TransformerBlock._fuse``).
_FUSED_FASTER: dict[tuple, bool] = {}


def shifted_window_mask(h: int, w: int, wh: int, ww: int, sh: int, sw: int,
                        device: torch.device) -> torch.Tensor:
    """Additive mask (nW, N, N) for Swin's shifted windows on an h x w map
    (padded to multiples of wh x ww, rolled by (-sh, -sw)): a query attends
    only to keys of its own pre-shift region that are not padding."""
    hp, wp = h + (-h) % wh, w + (-w) % ww
    region = torch.zeros(hp, wp, device=device)
    rows = (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)) if sh else (slice(None),)
    cols = (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)) if sw else (slice(None),)
    n = 0
    for r in rows:
        for c in cols:
            region[r, c] = n
            n += 1
    valid = torch.zeros(hp, wp, device=device)
    valid[:h, :w] = 1.0
    valid = torch.roll(valid, (-sh, -sw), (0, 1))
    nh, nw = hp // wh, wp // ww
    grid = torch.stack([region, valid], -1)
    win = grid.view(nh, wh, nw, ww, 2).permute(0, 2, 1, 3, 4).reshape(nh * nw, wh * ww, 2)
    region_w, valid_w = win[..., 0], win[..., 1]
    blocked = (region_w[:, :, None] != region_w[:, None, :]) | (valid_w[:, None, :] == 0)
    return blocked.float() * SHIFT_MASK_VALUE


def grid_size(x: torch.Tensor) -> tuple[int, int]:
    """(H, W) of a channels-last map; (1, L) for 1-D maps; (0, 0) for tokens."""
    if x.ndim == 4:
        return x.shape[1], x.shape[2]
    return (0, 0)


class TokenMixer(nn.Module):
    """Self-attention over a channels-last map with an optional relative
    position bias and optional window partitioning (``grid=True``: MaxViT's
    grid partition instead of blocks). Used by every block that attends over a
    grid, so masking and bias handling live in one place."""

    def __init__(self, dim: int, heads: int, out_dim: int | None = None, rel_window: int = 0,
                 window: int = 0, dims: int = 2, grid: bool = False, shift: int = 0):
        super().__init__()
        self.attn = Attention(dim, heads, out_dim=out_dim, attn_dim=out_dim or dim)
        self.window = window
        self.grid = grid
        self.shift = shift  # Swin: windows shifted by this many cells (masked), 0 for none
        self._mask_cache: dict[tuple, torch.Tensor] = {}
        self._bias_cache: dict[tuple, tuple] = {}
        self.dims = dims
        table = rel_window if not window else window
        self.rel = None
        if rel_window or window:
            self.rel = RelPosBias(heads, (table, table) if dims == 2 else (1, table))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.ndim == 3 and self.dims == 1 and self.rel is not None:
            x = x.unsqueeze(1)  # (B, L, C) -> (B, 1, L, C): a 1 x L grid
        if x.ndim == 4 and self.window and self.shift and max(x.shape[1:3]) > self.window:
            y = self._shifted(x)
        elif x.ndim == 4 and self.window:
            win, mask, info = partition(x, self.window, grid=self.grid)
            bias = self.rel(info[4], info[5]) if self.rel is not None else None
            y = unpartition(self.attn(win, bias, mask), info)
        else:
            b, c = x.shape[0], x.shape[-1]
            bias = None
            if self.rel is not None:
                if x.ndim != 4:
                    raise ValueError("relative position bias needs a grid, not tokens")
                bias = self.rel(x.shape[1], x.shape[2])
            y = self.attn(x.reshape(b, -1, c), bias)
            y = y.reshape(*x.shape[:-1], -1)
        return y.reshape(*shape[:-1], -1)

    def _shifted(self, x: torch.Tensor) -> torch.Tensor:
        """Swin's shifted-window attention: roll by -shift (per axis, only
        where the map is larger than the window), attend within windows under
        the region/padding mask, roll back."""
        b, h, w, _ = x.shape
        wh, ww = min(self.window, h), min(self.window, w)
        sh = self.shift if h > self.window else 0
        sw = self.shift if w > self.window else 0
        ph, pw = (-h) % wh, (-w) % ww
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
        x = torch.roll(x, (-sh, -sw), (1, 2))
        nh, nw = x.shape[1] // wh, x.shape[2] // ww
        win = x.view(b, nh, wh, nw, ww, -1).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw,
                                                                              wh * ww, -1)
        mask = forward_cached(self._mask_cache, (h, w, str(x.device)),
                              lambda: shifted_window_mask(h, w, wh, ww, sh, sw, x.device))
        bias = mask[:, None]  # (nW, 1, N, N); one per window, shared by the batch
        if self.rel is not None:
            rel = self.rel
            bias = inference_cached(self._bias_cache, (h, w, str(x.device), rel.table.dtype),
                                    (rel.table,), lambda: mask[:, None] + rel(wh, ww)[None])
        y = self.attn(win, bias)
        y = y.view(b, nh, nw, wh, ww, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * wh, nw * ww, -1)
        y = torch.roll(y, (sh, sw), (1, 2))
        return y[:, :h, :w] if (ph or pw) else y


@register_block("transformer")
class TransformerBlock(Block):
    """Pre-norm attention + MLP on channels-last maps or tokens.

    attention='rel': CoAtNet relative attention (bias table sized for
    ``window``); 'global': plain multi-head attention (ViT). A stride-2 or
    width-changing first block follows CoAtNet: ``Proj(Pool(x)) +
    Attn(Pool(Norm(x)))``, the attention projecting to the new width."""

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        out = stage.width
        self.dims = dims
        self.stride = stride
        self.pool = None
        if stride > 1:
            pool = nn.AvgPool2d if dims == 2 else nn.AvgPool1d
            self.pool = pool(stride, stride, ceil_mode=True, count_include_pad=False)
        self.proj = Linear(in_ch, out) if in_ch != out else nn.Identity()
        self.norm1 = make_norm_last(stage.norm, in_ch)
        rel = stage.window if stage.attention == "rel" else 0
        self.mixer = TokenMixer(in_ch, stage.heads, out_dim=out, rel_window=rel, dims=dims)
        self.ls1 = layer_scale(out, stage.layer_scale)
        self.norm2 = make_norm_last(stage.norm, out)
        self.mlp = Mlp(out, int(round(out * stage.mlp_ratio)), act=stage.act)
        self.ls2 = layer_scale(out, stage.layer_scale)
        self.drop_path = DropPath(drop_path)
        # ViT's block exactly (global attention, LayerNorm, GELU, no layer
        # scale, same width): inference runs it as PyTorch's fused encoder
        # layer does (nn.TransformerEncoderLayer's fast path, same kernel).
        self.fusable = (self.pool is None and in_ch == out and not rel
                        and not stage.layer_scale and stage.norm == "ln"
                        and stage.act == "gelu" and self.mixer.attn.qkv.bias is not None)

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        attn, mlp = self.mixer.attn, self.mlp
        y = torch._transformer_encoder_layer_fwd(
            x.reshape(x.shape[0], -1, x.shape[-1]), attn.heads * attn.head_dim, attn.heads,
            attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, True, True,
            self.norm1.eps, self.norm1.weight, self.norm1.bias, self.norm2.weight,
            self.norm2.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
            None, None)
        return y.reshape(x.shape)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.movedim(-1, 1)).movedim(1, -1)

    def _fuse(self, x: torch.Tensor) -> bool:
        """Whether this inference call runs the fused encoder layer:
        nn.TransformerEncoderLayer's conditions, and on the CPU where it is
        the faster of the two for this input shape. There the block written
        out runs its linears packed where that pays (``layers.linear``), and
        then often beats the fused layer (ViT-B/16 at 197 tokens: 0.88x on one
        thread), while on small token grids the fused layer's lower overhead
        wins (64 wide, 49 tokens: 0.67x of the block written out). Once the
        qkv projection has decided how to run this shape the two are timed
        (``layers.faster``) and the faster kept for the process."""
        attn, mlp = self.mixer.attn, self.mlp
        if not (self.fusable and not self.training and plain_inference()
                and not torch.is_autocast_enabled(x.device.type)
                and x.dtype == self.norm1.weight.dtype
                and not hooked(self.norm1, self.mixer, attn, attn.qkv, attn.proj, self.norm2, mlp,
                               mlp.fc1, mlp.fc2)):  # the fused kernel would skip their hooks
            return False
        if not (x.is_cpu and packing(x)):
            return True
        key = (tuple(x.shape), self.mixer.attn.heads, self.mlp.fc1.out_features,
               torch.get_num_threads())
        fuse = _FUSED_FASTER.get(key)
        if fuse is None:
            if packed_for(self.mixer.attn.qkv, x) is None:
                return False  # the written-out block runs until its linears have decided
            fuse = _FUSED_FASTER[key] = faster(lambda: self._written(x), lambda: self._fused(x))
        return fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fused(x) if self._fuse(x) else self._written(x)

    def _written(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            shortcut = self.proj(self._pool(x))
            y = self.mixer(self._pool(self.norm1(x)))
        else:
            shortcut = self.proj(x)
            y = self.mixer(self.norm1(x))
        x = residual(shortcut, self.drop_path(self.ls1(y)))
        return residual(x, self.drop_path(self.ls2(self.mlp(self.norm2(x)))))


@register_block("interleaved")
class InterleavedBlock(Block):
    """Local then global then channel mixing, each pre-norm with a residual:
    depthwise kxk conv over the 2-D token grid (+ linear), self-attention
    (global, relative-bias or windowed), FFN. Stages that downsample or
    change width start with LayerNorm + a stride x stride conv."""

    layout = "nhwc"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__(in_ch, stage, stride=stride, drop_path=drop_path, dims=dims)
        dim = stage.width
        k = stage.kernel
        self.norm_local = make_norm_last(stage.norm, dim)
        self.dwconv = conv_nd(dims)(dim, dim, k, padding=k // 2, groups=dim)
        self.local_proj = Linear(dim, dim)
        self.norm_attn = make_norm_last(stage.norm, dim)
        rel = stage.window if stage.attention == "rel" else 0
        win = stage.window if stage.attention == "window" else 0
        self.mixer = TokenMixer(dim, stage.heads, rel_window=rel, window=win, dims=dims)
        self.norm_ffn = make_norm_last(stage.norm, dim)
        self.mlp = Mlp(dim, int(round(dim * stage.mlp_ratio)), act=stage.act)
        self.ls1 = layer_scale(dim, stage.layer_scale)
        self.ls2 = layer_scale(dim, stage.layer_scale)
        self.ls3 = layer_scale(dim, stage.layer_scale)
        self.drop_path = DropPath(drop_path)

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        return patch_downsample(in_ch, stage, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_local(x).movedim(-1, 1)
        h = self.dwconv(depthwise_input(self.dwconv, h)).movedim(1, -1)
        x = residual(x, self.drop_path(self.ls1(self.local_proj(h))))
        x = residual(x, self.drop_path(self.ls2(self.mixer(self.norm_attn(x)))))
        return residual(x, self.drop_path(self.ls3(self.mlp(self.norm_ffn(x)))))
