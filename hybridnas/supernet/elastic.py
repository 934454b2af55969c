"""Elastic weights: how one shared max-size tensor becomes a subnet's tensor.

The supernet never re-implements a block's forward. For the active subnet it
builds the standard network (``hybridnas.builder.build_model``, on the meta
device: no memory) and runs it with ``torch.func.functional_call``, feeding
every parameter and buffer as a *view* of a shared max-size tensor. So the
supernet's forward and the extracted network compute exactly the same thing,
and a new block family works as soon as its tensors slice the default way.

Default slicing (Once-for-All / AutoFormer): the leading entries of every
dimension (first channels, first heads, first hidden units). Exceptions are
rules registered here by (module class, local tensor name); a family whose
tensors mean something else registers one rule::

    @slice_rule(MyAttention, "qkv.weight")
    def _qkv(store, shape, ctx): ...

Built-in rules: convolution kernels take the centre of the largest kernel,
passed through Once-for-All's learned kernel transform (one k²×k² matrix per
smaller size, shared by the channels, initialised to the identity); fused
q/k/v projections slice q, k and v separately; relative-position tables take
their centre; LeViT offset tables their top-left corner; learned position
embeddings are resized to the subnet's token grid.

Shared names (``shared_key``): a stage's tensors are shared per block type
(``stages.2.mbconv.blocks.0.conv1.weight``), so each stage holds one branch
per block type it allows; the first *d* blocks of a branch are a depth-*d*
stage. A stage-start downsampler named by the spec (conv, pool + projection,
patch merging) is one branch per stage and kind, shared by every block type
of the stage (``stages.2.down_patch_merge_s2.reduction.weight``; see
``stage_key``). Stem tensors are shared per stem kind and per conv layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.base import Stage
from ..blocks.downsample import PatchMerging
from ..blocks.layers import Attention, OffsetBias, RelPosBias

__all__ = ["NOT_ELASTIC", "slice_rule", "find_rule", "SliceContext", "shared_key", "down_tag", "stage_key", "stem_key",
           "head_key", "stem_roles", "lead", "centre"]

Rule = Callable[[torch.Tensor, tuple, "SliceContext"], torch.Tensor]
_RULES: dict[tuple[type, str], Rule] = {}

#: Block families a supernet cannot hold, with the reason. A family is
#: elastic when each block's tensors depend only on its own stage's spec and
#: input width, and blocks 1, 2, ... of a stage are built alike: the supernet
#: then finds every tensor's largest shape from a few networks.
NOT_ELASTIC: dict[str, str] = {
    "levit": "LeViT's shrink attention takes its head count from the previous stage's "
             "width (in_ch // key_dim), so its shapes depend on two stages' decisions at once",
    "efficientformer": "EfficientFormer puts its Meta3D attention blocks at the last "
                       "attn_blocks positions, so block j changes kind with the depth",
}


@dataclass
class SliceContext:
    """What a rule may need besides the shared tensor and the target shape:
    the module that owns the tensor in the subnet, the shared key and the
    kernel transforms of that key (kernel size -> k²×k² matrix)."""

    module: nn.Module
    key: str
    transforms: dict[int, torch.Tensor]


def slice_rule(module_type: type, name: str):
    """Register ``fn(shared, target_shape, ctx) -> tensor`` for tensor
    ``name`` (relative to a module of ``module_type``, e.g. ``"qkv.weight"``)."""

    def deco(fn: Rule) -> Rule:
        _RULES[(module_type, name)] = fn
        return fn

    return deco


def find_rule(root: nn.Module, name: str) -> tuple[Rule, nn.Module]:
    """The rule for tensor ``name`` of ``root``: the innermost owner with a
    registered rule wins; otherwise the leading slice."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        prefix, local = ".".join(parts[:cut]), ".".join(parts[cut:])
        module = root.get_submodule(prefix) if prefix else root
        for klass in type(module).__mro__:
            rule = _RULES.get((klass, local))
            if rule is not None:
                return rule, module
    return (lambda shared, shape, ctx: lead(shared, shape)), root


def lead(t: torch.Tensor, shape: tuple) -> torch.Tensor:
    """The leading ``shape`` block of ``t`` (a view)."""
    if tuple(t.shape) == tuple(shape):
        return t
    return t[tuple(slice(0, n) for n in shape)]


def centre(t: torch.Tensor, dims: tuple[int, ...], sizes: tuple[int, ...]) -> torch.Tensor:
    """The centred window of ``sizes`` along ``dims`` (a view)."""
    index = [slice(None)] * t.ndim
    for d, n in zip(dims, sizes):
        off = (t.shape[d] - n) // 2
        index[d] = slice(off, off + n)
    return t[tuple(index)]


# ---------------------------------------------------------------------------
# built-in rules
# ---------------------------------------------------------------------------

def _conv_weight(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
    """Leading filters and input channels; the kernel shrinks step by step
    through every smaller size the supernet holds, each step taking the
    centre and applying that size's transform (Once-for-All, section 3.2)."""
    w = lead(shared, tuple(shape[:2]) + tuple(shared.shape[2:]))
    target = tuple(shape[2:])
    spatial = tuple(range(2, w.ndim))
    for k in sorted(ctx.transforms, reverse=True):
        if k < target[0]:
            break
        if k >= w.shape[2]:
            continue
        w = centre(w, spatial, (k,) * len(spatial))
        flat = w.reshape(w.shape[0], w.shape[1], -1) @ ctx.transforms[k]
        w = flat.reshape(w.shape)
    if tuple(w.shape[2:]) != target:
        w = centre(w, spatial, target)
    return w


for _conv in (nn.Conv1d, nn.Conv2d):
    slice_rule(_conv, "weight")(_conv_weight)


def _fused_rows(groups: int) -> Rule:
    """q, k and v stacked along the rows: slice each part, then restack."""

    def rule(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
        rows = shape[0] // groups
        parts = shared.reshape(groups, shared.shape[0] // groups, *shared.shape[1:])
        return lead(parts, (groups, rows, *shape[1:])).reshape(shape)

    return rule


slice_rule(Attention, "qkv.weight")(_fused_rows(3))
slice_rule(Attention, "qkv.bias")(_fused_rows(3))


def _merged_channels(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
    """Patch merging concatenates the stride x stride cells of a patch, each
    with all its channels: the last dimension is (cell, channel), so a
    narrower input takes the leading channels of every cell, not the leading
    entries (which would give cell 1's weights to cell 0's last channels).
    The shared key names the stride, so the cell count is the same."""
    module: PatchMerging = ctx.module  # type: ignore[assignment]
    cells = module.stride * module.stride
    lead_dims = tuple(shape[:-1])
    parts = shared.reshape(*shared.shape[:-1], cells, shared.shape[-1] // cells)
    return lead(parts, (*lead_dims, cells, shape[-1] // cells)).reshape(shape)


for _name in ("norm.weight", "norm.bias", "norm.running_mean", "norm.running_var",
              "reduction.weight"):
    slice_rule(PatchMerging, _name)(_merged_channels)


@slice_rule(RelPosBias, "table")
def _rel_table(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
    # Offsets around zero: a smaller window is the centre of a larger one.
    return centre(lead(shared, (shape[0], *shared.shape[1:])), (1, 2), tuple(shape[1:]))


@slice_rule(OffsetBias, "table")
def _offset_table(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
    # Absolute offsets (|dy|, |dx|) from 0: a smaller table is the top-left corner.
    big = int(round(shared.shape[1] ** 0.5))
    small = int(round(shape[1] ** 0.5))
    return shared[:shape[0]].reshape(shape[0], big, big)[:, :small, :small].reshape(shape)


@slice_rule(Stage, "pos_embed")
def _pos_embed(shared: torch.Tensor, shape: tuple, ctx: SliceContext) -> torch.Tensor:
    """Leading channels; the class-token entry kept; the grid part resized
    (bicubic, as ``Stage`` itself resizes) to the subnet's window."""
    stage: Stage = ctx.module  # type: ignore[assignment]
    extra = 1 if stage.cls_token is not None else 0
    c = shape[2]
    t = shared[:, :, :c]
    big = int(round((t.shape[1] - extra) ** 0.5))
    small = int(round((shape[1] - extra) ** 0.5))
    if big * big + extra != t.shape[1] or small * small + extra != shape[1]:
        return lead(t, shape)  # a 1-D grid: leading positions
    if big == small:
        return t
    grid = t[:, extra:].reshape(1, big, big, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(small, small), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, small * small, c)
    return torch.cat([t[:, :extra], grid], dim=1)


# ---------------------------------------------------------------------------
# shared names
# ---------------------------------------------------------------------------

def shared_key(spec, name: str, stem: nn.Module | None = None) -> str:
    """The supernet key of tensor ``name`` of ``build_model(spec)``.

    ``stages.<i>.<rest>`` -> ``stages.<i>.<block>.<rest>`` (one branch per
    block type); stem tensors by kind and conv layer (``stem.conv.layer1.
    batchnorm2d.weight``; the 1x1 projection is ``stem.conv.proj``; ``stem``
    is the built stem, needed for stem tensors); the head's norm by its kind
    (LayerNorm and BatchNorm never share).
    """
    parts = name.split(".")
    if parts[0] == "stages":
        i = int(parts[1])
        return stage_key(i, spec.stages[i].block, ".".join(parts[2:]), down_tag(spec.stages[i]))
    if parts[0] == "stem":
        assert stem is not None, "stem tensors need the built stem"
        return stem_key(spec.stem, stem_roles(spec.stem, stem), ".".join(parts[1:]))
    return head_key(spec.head, name)


def down_tag(stage) -> str | None:
    """How a stage's downsampler names its branch: its kind, and for patch
    merging also the stride (the stride fixes how many cells are merged)."""
    if stage.downsample == "patch_merge":
        return f"patch_merge_s{stage.stride}"
    return stage.downsample


def stage_key(index: int, block: str, local: str, downsample: str | None = None) -> str:
    """``stages.<i>.<block>.<local>``; a stage-start downsampler other than the
    block's own gets a branch of its own per kind (``stages.<i>.down_conv.``,
    ``stages.<i>.down_pool_proj.``), since different downsamplers hold
    different tensors under one name. That branch is shared by every block
    type of the stage: its tensors depend only on the widths around it, and
    a branch per (block type, downsampler) pair would train on a
    blocks-times-smaller share of the steps. The block's own part after it
    (``down.second.``) stays with the block."""
    if downsample and local.startswith("down."):
        rest = local[len("down."):]
        if rest.startswith("second."):
            return f"stages.{index}.{block}.down_{downsample}.{rest}"
        if rest.startswith("first."):
            rest = rest[len("first."):]
        return f"stages.{index}.down_{downsample}.{rest}"
    return f"stages.{index}.{block}.{local}"


def stem_key(stem_spec, roles: dict[str, str], local: str) -> str:
    child, rest = local.split(".", 1)
    return f"stem.{stem_spec.kind}.{roles[child]}.{rest}"


def head_key(head_spec, local: str) -> str:
    """The head's norm by its kind; the classifier by its input: after a
    hidden layer it reads activated hidden units, without one the pooled
    features themselves, so the two never share (one shared classifier
    would be pulled between two inputs and serve neither)."""
    if local.startswith("head_norm."):
        return f"head.norm_{head_spec.norm}.{local[len('head_norm.'):]}"
    if local.startswith("fc.") and head_spec.hidden:
        return f"head.fc_after_{head_spec.hidden_act}.{local[len('fc.'):]}"
    return f"head.{local}"


def stem_roles(stem_spec, stem: nn.Module) -> dict[str, str]:
    """Child index of the built stem -> role (``layer<j>.conv``,
    ``layer<j>.<norm class>``, ``proj``), so the j-th conv layer shares with
    the j-th conv layer of a deeper or shallower stem."""
    roles: dict[str, str] = {}
    n_layers = len(stem_spec.widths)
    j = -1
    for idx, child in stem.named_children():
        if isinstance(child, (nn.Conv1d, nn.Conv2d)):
            j += 1
            roles[idx] = "proj" if j >= n_layers else f"layer{j}.conv"
        else:
            roles[idx] = f"layer{j}.{type(child).__name__.lower()}"
    return roles
