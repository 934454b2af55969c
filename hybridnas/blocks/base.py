"""Block registry and the stage container.

A block type is one ``Block`` subclass registered under the key that
``hybridnas.spec.BLOCK_SCHEMAS`` uses for its parameters::

    @register_block("mbconv")
    class MBConv(Block):
        layout = "nchw"
        def __init__(self, in_ch, stage, *, stride, drop_path, dims=2): ...

``layout`` says which memory layout ``forward`` takes and returns: ``"nchw"``
(channels first) or ``"nhwc"`` (channels last; transformer-type blocks, which
also accept (B, N, C) tokens). The stage converts between layouts only where
consecutive modules differ, so a run of transformer blocks pays no permutes.

A block class may define ``downsample(in_ch, stage, dims)`` returning a
module that runs once at the start of the stage (ConvNeXt's LN + 2x2 conv,
LeViT's shrink attention); the blocks then all run at the stage's width and
stride 1. Otherwise the first block takes ``in_ch`` and the stage stride.
A stage that names a downsampler (``StageSpec.downsample``, see
``blocks.downsample``) runs that first; it takes the stride, and the block's
own ``downsample`` only sees what width change is left.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import BLOCK_SCHEMAS, StageSpec
from .downsample import build_downsampler, downsampler_width
from .layers import cpu_channels_last, to_nchw, to_nhwc

__all__ = ["Block", "BLOCKS", "register_block", "Stage", "link", "unlink"]

BLOCKS: dict[str, type["Block"]] = {}


def register_block(key: str):
    """Class decorator: register a ``Block`` under ``key`` (must have a schema)."""

    def deco(cls: type[Block]) -> type[Block]:
        if key not in BLOCK_SCHEMAS:
            raise KeyError(f"block {key!r} has no entry in hybridnas.spec.BLOCK_SCHEMAS")
        if key in BLOCKS and BLOCKS[key] is not cls:
            raise KeyError(f"block {key!r} is registered twice")
        cls.key = key
        BLOCKS[key] = cls
        return cls

    return deco


class Block(nn.Module):
    key: str = ""
    layout: str = "nchw"

    def __init__(self, in_ch: int, stage: StageSpec, *, stride: int = 1,
                 drop_path: float = 0.0, dims: int = 2):
        super().__init__()

    @classmethod
    def downsample(cls, in_ch: int, stage: StageSpec, dims: int) -> nn.Module | None:
        return None

    @classmethod
    def variant(cls, stage: StageSpec, index: int) -> type["Block"]:
        """The class that builds block ``index`` of ``stage``: this one, unless
        the family mixes two kinds within a stage (EfficientFormer's Meta4D
        blocks followed by ``attn_blocks`` Meta3D blocks)."""
        return cls


def _convert(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    # Contiguous in the new layout: a permuted view would stay permuted through
    # every residual add, and each linear on it would copy (or fall back to
    # one small matmul per row). Channels-first maps on the CPU are kept in
    # channels-last memory order (``cpu_maps``), which a (B, H, W, C) map
    # already is: no copy in either direction.
    if src == dst:
        return x
    if dst == "nhwc":
        return to_nhwc(x).contiguous()
    x = to_nchw(x)
    return x.contiguous(memory_format=torch.channels_last if cpu_channels_last(x)
                        else torch.contiguous_format)


class _Chain(nn.Module):
    """A named downsampler followed by the block's own (layouts converted)."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second
        self.in_layout = getattr(first, "layout", "nchw")
        self.layout = getattr(second, "layout", "nchw")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(_convert(self.first(x), self.in_layout, self.layout))


class Stage(nn.Module):
    """``depth`` blocks of one type; input and output are channels-first maps
    (unless ``link`` wired the stage to a neighbour), except a stage with a
    class token, which returns tokens (B, 1 + N, C)."""

    __jit_unused_properties__ = ["entry_layout", "exit_layout"]

    def __init__(self, spec: StageSpec, in_ch: int, drop_paths: Sequence[float], dims: int = 2):
        super().__init__()
        cls = BLOCKS[spec.block]
        self.spec = spec
        self.out_channels = spec.width
        stride = spec.stride
        named = build_downsampler(in_ch, spec, dims)
        if named is not None:
            in_ch, stride = downsampler_width(in_ch, spec), 1
            down = cls.downsample(in_ch, dataclasses.replace(spec, stride=1), dims)
            down = named if down is None else _Chain(named, down)
        else:
            down = cls.downsample(in_ch, spec, dims)
        self.down = down if down is not None else nn.Identity()
        self.has_down = down is not None
        self.down_layout = getattr(down, "layout", "nchw")
        self.down_in_layout = getattr(down, "in_layout", self.down_layout)
        if down is not None and down is not named:
            in_ch, stride = spec.width, 1
        blocks = []
        for j in range(spec.depth):
            blocks.append(cls.variant(spec, j)(in_ch if j == 0 else spec.width, spec,
                              stride=stride if j == 0 else 1,
                              drop_path=drop_paths[j] if j < len(drop_paths) else 0.0, dims=dims))
        self.blocks = nn.ModuleList(blocks)
        self.block_layout = cls.layout
        # Layouts at the stage's edges: channels first, unless the model holding
        # the stage hands maps to the next stage in the layout both use inside
        # (``link``): a channels-last stage followed by another then skips two
        # copies at the boundary.
        self.takes = "nchw"
        self.gives = "nchw"
        # Token extras (ViT-style stages): learned position embedding sized for a
        # window x window grid, resized to the actual grid; optional class token.
        self.use_tokens = bool(spec.pos_embed or spec.cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.width)) if spec.cls_token else None
        if spec.pos_embed:
            n = spec.window * (spec.window if dims == 2 else 1) + (1 if spec.cls_token else 0)
            self.pos_embed = nn.Parameter(torch.zeros(1, n, spec.width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None

    def _add_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-first map -> tokens (B, [1 +] N, C) with position embedding."""
        b, c = x.shape[:2]
        grid = x.shape[2:]
        tokens = x.flatten(2).transpose(1, 2)
        if self.pos_embed is not None:
            pos = self.pos_embed
            extra = 1 if self.cls_token is not None else 0
            pos_cls, pos_grid = pos[:, :extra], pos[:, extra:]
            w = self.spec.window
            resized = tuple(grid) != ((w, w) if len(grid) == 2 else (w,))
            if resized:
                if len(grid) == 2:
                    pos_grid = pos_grid.reshape(1, w, w, c).permute(0, 3, 1, 2)
                    pos_grid = F.interpolate(pos_grid, size=tuple(grid), mode="bicubic",
                                             align_corners=False)
                else:
                    pos_grid = F.interpolate(pos_grid.transpose(1, 2), size=tuple(grid),
                                             mode="linear", align_corners=False)
                pos_grid = pos_grid.flatten(2).transpose(1, 2)
            if self.cls_token is not None:
                tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
                tokens = tokens + (torch.cat([pos_cls, pos_grid], dim=1) if resized else pos)
            else:
                tokens = tokens + pos_grid
        elif self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        return tokens

    @property
    def entry_layout(self) -> str:
        """The layout the stage's first module takes."""
        if self.use_tokens:
            return "nchw"
        return self.down_in_layout if self.has_down else self.blocks[0].layout

    @property
    def exit_layout(self) -> str:
        """The layout the stage's last module returns."""
        return "nchw" if self.use_tokens else self.blocks[-1].layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_down:
            x = self.down(_convert(x, self.takes, self.down_in_layout))
            layout = self.down_layout
        else:
            layout = self.takes
        if self.use_tokens:
            x = _convert(x, layout, "nchw")
            grid = x.shape[2:]
            x = self._add_tokens(x)
            for blk in self.blocks:
                x = blk(x)
            if self.cls_token is not None:
                return x
            return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        for blk in self.blocks:
            x = blk(_convert(x, layout, blk.layout))
            layout = blk.layout
        return _convert(x, layout, self.gives)


def link(stages: Sequence[Stage]) -> None:
    """Let consecutive stages pass maps in the layout the first returns and
    the second takes when that is not channels first. The last stage still
    returns channels first (``forward_features``' contract), and a stage on
    its own keeps channels-first input and output."""
    for a, b in zip(stages, stages[1:]):
        if a.exit_layout == b.entry_layout != "nchw":
            a.gives = b.takes = a.exit_layout


def unlink(stages: Sequence[Stage]) -> None:
    """Undo ``link``: every stage takes and returns channels-first maps again
    (for code that reads or replaces a stage's input or output)."""
    for s in stages:
        s.takes = s.gives = "nchw"
