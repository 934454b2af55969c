"""Shared building blocks: norms, activations, drop-path, SE, MLP and attention.

Every block in ``hybridnas.blocks`` is assembled from these, so a fix here
reaches all of them. Norms and activations are created from the names used in
specs (``'bn'``, ``'ln'``, ``'gelu'``...).
"""
from __future__ import annotations

import contextlib
import math
import operator
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "make_act", "fresh_act", "residual", "make_norm2d", "make_norm_last", "LayerNorm2d",
    "DropPath", "SqueezeExcite", "Mlp", "Attention", "RelPosBias", "OffsetBias", "to_nhwc",
    "to_nchw", "cpu_maps", "cpu_channels_last", "depthwise_input", "group_norm_input",
    "dense_conv", "timed_conv", "ConvSequence", "Linear",
    "linear", "packing", "packed_for", "fresh_scale", "laid_out", "pointwise_conv", "hooked",
]

_ACTS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


#: In-place versions of the activations (``fresh_act``).
_INPLACE_ACTS = {
    # the aten binding: torch.ops' Python dispatch costs ~2 us a call, which
    # made the in-place GELU slower than F.gelu on small tensors
    nn.GELU: lambda m, x: torch._C._nn.gelu_(x, approximate=m.approximate),
    nn.ReLU: lambda m, x: x.relu_(),
    nn.SiLU: lambda m, x: F.silu(x, inplace=True),
    nn.Hardswish: lambda m, x: F.hardswish(x, inplace=True),
}


def fresh_act(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` for an ``x`` that nothing else holds (the output a layer
    has just made): during plain inference it is overwritten in place, which
    saves an allocation and a pass over memory (a ViT-B MLP's first layer
    with its GELU: ~5 % on one CPU thread); otherwise ``act(x)``."""
    inplace = _INPLACE_ACTS.get(type(act))
    if inplace is not None and plain_inference():
        return inplace(act, x)
    return act(x)


def residual(shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``shortcut + branch`` for a ``branch`` that nothing else holds: added in
    place during plain inference (as ``fresh_act``) when it has the sum's
    shape, dtype and memory layout (the shortcut's strides; dense, channels
    first or channels-last), so the result is laid out as the sum would be."""
    if (plain_inference() and branch.shape == shortcut.shape and branch.dtype == shortcut.dtype
            and branch.stride() == shortcut.stride()
            and (branch.is_contiguous() or branch.is_contiguous(memory_format=torch.channels_last))):
        return branch.add_(shortcut)
    return shortcut + branch


def make_act(name: str) -> nn.Module:
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTS)}") from None


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW (or NCL) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


#: GroupNorm groups of ``norm='gn'`` (BiT / timm ResNetV2), fewer when the
#: channel count is not a multiple.
GN_GROUPS = 32


def make_norm2d(name: str, channels: int, dims: int = 2) -> nn.Module:
    """Norm for channels-first tensors (NCHW, or NCL when dims=1)."""
    if name == "gn":
        return nn.GroupNorm(math.gcd(GN_GROUPS, channels), channels, eps=1e-5)
    if name == "bn":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if name == "ln":
        return LayerNorm2d(channels, eps=1e-6)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}")


class _BatchNormLast(nn.BatchNorm1d):
    """BatchNorm over the last dim of a channels-last tensor of any rank."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


def make_norm_last(name: str, channels: int) -> nn.Module:
    """Norm for channels-last tensors (NHWC, NLC or tokens)."""
    if name == "ln":
        return nn.LayerNorm(channels, eps=1e-6)
    if name == "bn":
        return _BatchNormLast(channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}")


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def _eager() -> bool:
    """Not tracing (``torch.jit.trace``, TorchScript-based ONNX export) or
    compiling (``torch.compile``, ``torch.export``): export sees the plain
    graph. Asked in most layers' forward, so kept to two calls (the public
    ``torch.jit.is_tracing`` adds two Python frames); compiling is asked
    first, so Dynamo folds it without reaching the C call."""
    return not (torch.compiler.is_compiling() or torch._C._is_tracing())


def hooked(*modules: nn.Module) -> bool:
    """Whether calling any of ``modules`` runs forward hooks, its own or
    global ones (``torch.nn.utils.prune`` and weight norm remake the weight
    in one; feature extractors capture outputs): the inference fast paths
    that call a module's kernel directly (folded norms, kept layouts, 1x1
    convs as linears) call the modules instead, so no hook is skipped."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    for m in modules:
        if m._forward_hooks or m._forward_pre_hooks:
            return True
    return False


def cpu_maps(x: torch.Tensor) -> torch.Tensor:
    """2-D maps (B, C, H, W) on the CPU in channels-last memory order
    (``torch.channels_last``; same shape and values), in eager mode.

    oneDNN's convolutions run faster on channels-last maps, forward and
    backward: depthwise convs 1.3-4x (inference at batch 1 up to 14x), stem
    convs about 1.2x, 1x1 convs the same (``benchmarks/bench_cpu_kernels.py``),
    and a channels-last map turns into (B, H, W, C) maps or (B, N, C) tokens
    without a copy. Convs, norms, pools
    and elementwise ops keep the order, so converting a model's input carries
    it through. Other devices and 1-D maps are returned as they are (on CUDA
    ``train --channels-last`` chooses)."""
    if cpu_channels_last(x):
        return x.contiguous(memory_format=torch.channels_last)
    return x


#: Set False to keep CPU maps channels-first (``cpu_maps``), e.g. to time both.
CPU_CHANNELS_LAST = True


def cpu_channels_last(x: torch.Tensor) -> bool:
    """Whether ``cpu_maps`` lays ``x`` out channels-last."""
    return CPU_CHANNELS_LAST and x.ndim == 4 and x.device.type == "cpu" and _eager()


#: Depthwise convs with a kernel larger than 3x3 and at least this many
#: weights take channels-first input on the CPU while autograd records:
#: oneDNN's channels-last backward for them runs 1.3-6.5x slower than its
#: channels-first one (a 7x7 conv over 768 channels: 20 ms vs 3 ms for a batch
#: of four 4x4 maps), while below the size, and in inference at any size,
#: channels-last is the faster (``benchmarks/bench_cpu_kernels.py``).
DEPTHWISE_CHANNELS_FIRST_MIN = 32768


def depthwise_input(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` laid out for depthwise ``conv`` on the CPU (see ``cpu_maps``):
    channels first for the large kernels whose channels-last backward oneDNN
    runs slowly, when there will be a backward."""
    w = conv.weight
    if (w.shape[-1] * w.shape[-2] > 9 and w.numel() >= DEPTHWISE_CHANNELS_FIRST_MIN
            and torch.is_grad_enabled() and cpu_channels_last(x)):
        return x.contiguous()
    return x


#: A dense kxk conv with more than this many times as many weights as its
#: input has values runs channels-first while training (``dense_conv``).
DENSE_CHANNELS_FIRST_RATIO = 2


def dense_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a dense (ungrouped) conv on CPU maps (see ``cpu_maps``):
    while autograd records, a kxk conv on a channels-last map with more than
    ``DENSE_CHANNELS_FIRST_RATIO`` times as many weights as the map has
    values (a wide conv over small late-stage maps) runs channels-first and
    hands its output back channels-last, so the layout downstream is
    unchanged. Maps already channels-first (a GroupNorm block's:
    ``group_norm_input``) stay so.

    oneDNN runs a channels-last conv with the weight copied into
    channels-last order, and PyTorch makes that copy (a slow permuting one) in
    the forward, in the backward and for the weight's gradient: four copies a
    step, none of them needed channels-first. With the weights much larger
    than the map those copies cost more than the conv gains from
    channels-last: forward + backward at batch 4 with the conversions, the
    seed's hybrid stem's 3x3 256 -> 768 over 14x14 maps 64.5 -> 42.1 ms,
    EfficientFormer-L1's 224 -> 448 over 7x7 25.5 -> 11.6 ms, CvT-13's
    192 -> 384 embedding 11.0 -> 9.6 ms, while at 1.5-2x as many weights as
    values channels-first is 2-6 % slower (``benchmarks/bench_cpu_kernels.py``
    prints both layouts with the pick). Without autograd the conv runs as
    given, a channels-last map's with the weight kept channels-last
    (``laid_out``; stems and conv downsamplers time their layout in
    inference: ``ConvSequence``, ``timed_conv``); 1x1 convs have the same
    weight in either order."""
    w = conv.weight
    # the size last: while exporting it would put a guard on a symbolic batch
    if (conv.groups == 1 and torch.is_grad_enabled() and cpu_channels_last(x) and _laid_last(x)
            and w[0, 0].numel() > 1 and w.numel() > DENSE_CHANNELS_FIRST_RATIO * x.numel()):
        return relayout(conv(relayout(x, torch.contiguous_format)), torch.channels_last)
    if (type(conv) is nn.Conv2d and conv.groups == 1 and cpu_channels_last(x) and _laid_last(x)
            and plain_inference() and not hooked(conv)):
        # the weight kept channels-last, not copied so on every call (``laid_out``)
        return conv._conv_forward(x, laid_out(conv, w, torch.channels_last), conv.bias)
    return conv(x)


def pointwise_conv(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None, act: nn.Module | None = None) -> torch.Tensor:
    """``act(conv(x))`` with ``weight``/``bias`` (the conv's, or folded from
    it; no ``act``: the conv alone) for a 1x1 conv: in plain CPU inference
    on a channels-last map it runs as a linear layer over the map's pixels
    (``linear``: on a packed weight with the activation fused where that is
    faster), otherwise as the conv, with ``act`` in place on its output.

    With one thread and a batch under 16 PyTorch runs a 1x1 stride-1 conv by
    its own matmul-based kernel, not oneDNN's, and fills the output with the
    bias broadcast first: one slow pass over a map that for an MBConv
    expansion is the block's largest. As a linear layer the bias (and
    activation) come with the matmul: MBConv's 64 -> 384 expansion over
    112x112 with its GELU 9.1 -> 6.3 ms, EfficientFormer-L1's 48 -> 192 over
    56x56 1.0 -> 0.6 ms, wider ones over smaller maps 5-15 % faster. Only
    there (one thread, batch under 16: where latency is measured); elsewhere
    PyTorch runs oneDNN's conv, and so do 1x1 maps (squeeze-excitation) and
    channels-first maps. Values are the conv's to float rounding."""
    if weight is conv.weight and bias is conv.bias and hooked(conv):
        y = conv(x)  # its hooks run (a pruned conv's remakes its weight)
    elif (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.groups == 1 and x.is_cpu and _laid_last(x) and plain_inference()
            and torch.get_num_threads() == 1 and x.shape[0] < 16):
        # the (out, in) matrix, one tensor across calls so that ``linear`` can keep it packed
        rows = _kept(conv, "rows", weight, lambda: weight.reshape(weight.shape[0], -1).contiguous())
        return linear(conv, x.permute(0, 2, 3, 1), rows, bias, act).permute(0, 3, 1, 2)
    else:
        y = conv._conv_forward(x, weight, bias)
    return y if act is None else fresh_act(act, y)


def _laid_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out channels-last (and not also channels-first,
    as maps with one channel or 1x1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _Relayout(torch.autograd.Function):
    """``x.contiguous(memory_format=fmt)``; the gradient goes back in ``x``'s
    order. Written in the ``setup_context`` form with a vmap rule and a jvp,
    so ``torch.func`` transforms and forward-mode AD work through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:  # type: ignore[override]
        return x.contiguous(memory_format=fmt)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, fmt = inputs
        ctx.fmt = fmt
        ctx.back = torch.channels_last if _laid_last(x) else torch.contiguous_format

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad.contiguous(memory_format=ctx.back), None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, _fmt) -> torch.Tensor:  # type: ignore[override]
        return tangent.contiguous(memory_format=ctx.fmt)


def relayout(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``x.contiguous(memory_format=fmt)`` whose gradient goes back in ``x``'s
    memory order. ``contiguous`` passes the gradient through as it comes, so
    the layers before a layout change would run their backward on gradients
    in the other order than their inputs: slow kernels (PyTorch's
    BatchNorm and average-pool backward 3-8x) and copies."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return x.contiguous(memory_format=fmt)
    return _Relayout.apply(x, fmt)


def faster(current: Callable[[], object], other: Callable[[], object], rounds: int = 6,
           min_seconds: float = 0.02, max_rounds: int = 40) -> bool:
    """Whether ``other()`` runs faster than ``current()`` here: one untimed
    call each (first calls build kernels), then at least ``rounds`` rounds
    that time one call of each, more for quick calls (until each side has
    run ``min_seconds``, at most ``max_rounds``). ``other`` wins when the
    median over rounds of its time over ``current``'s is below 1. The two
    calls of a round run back to back, in alternating order, so a burst of
    other work on the machine slows both sides of the round it hits, and
    which side runs second evens out. (Comparing each side's median of three
    separate calls picked plain for ViT-B/16's linears, which run 0.90-0.94x
    packed, in 8 of 64 decisions on fresh layers on a shared 2-core
    machine; this way 1 of 64.) For choices between two ways of computing
    the same values whose speed depends on the CPU and the shape
    (``timed_conv``, ``linear``, ``TransformerBlock``); made once per shape
    and kept, as ``torch.backends.cudnn.benchmark`` does on CUDA."""
    current()
    other()
    fns = (current, other)
    ratios: list[float] = []
    spent = [0.0, 0.0]
    while len(ratios) < rounds or (min(spent) < min_seconds and len(ratios) < max_rounds):
        took = [0.0, 0.0]
        for i in ((0, 1) if len(ratios) % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            fns[i]()
            took[i] = time.perf_counter() - t0
        spent[0] += took[0]
        spent[1] += took[1]
        ratios.append(took[1] / max(took[0], 1e-12))
    return statistics.median(ratios) < 1.0


def group_norm_input(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` laid out for a block whose convs feed GroupNorm ``norm``, on the
    CPU (see ``cpu_maps``): channels first while autograd records. PyTorch's
    channels-last GroupNorm runs forward + backward 1.5-7x slower than its
    channels-first one (64-1024 channels over 7-28 px maps, batch 4), more
    than channels-last convs gain: vit_base_r50_s16's training step (batch 4,
    112 px) 1567 ms vs 1578 ms. In inference channels-last is the faster
    (458 vs 463 ms at 224 px, the stem convs timed per shape), so it stays."""
    if isinstance(norm, nn.GroupNorm) and torch.is_grad_enabled() and cpu_channels_last(x):
        return x.contiguous()
    return x


#: Memory layout each dense conv shape runs faster in, timed in this process
#: (``timed_conv``): key -> True for channels-last.
_CONV_LAYOUTS: dict[tuple, bool] = {}


def timed_conv(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
    """``conv``'s forward with ``weight``/``bias`` (e.g. a BN folded in) on
    ``x`` laid out in the memory order this conv shape runs faster in on
    this CPU, in plain inference on 2-D maps (see ``cpu_maps``).

    oneDNN's dense convs at inference sizes have no layout that wins
    everywhere: a 3x3 stride-2 conv 3 -> 64 over a 224x224 image runs ~7x
    faster channels-last, one 256 -> 768 over 28x28 ~1.7x faster channels
    first (``benchmarks/bench_cpu_kernels.py``), and where the crossover
    sits depends on the CPU. So the first call with a new shape (weights,
    stride, input size and layout, dtype, threads) times both layouts, the
    conversion of the input included, a few calls each, and keeps the
    faster for the process. The output comes in the layout the conv ran in;
    values are the same either way.
    """
    if not (cpu_channels_last(x) and plain_inference() and conv.groups == 1):
        return conv._conv_forward(x, weight, bias)
    key = (tuple(weight.shape), conv.stride, conv.padding, conv.dilation, tuple(x.shape),
           x.is_contiguous(), x.dtype, torch.get_num_threads())
    last = _CONV_LAYOUTS.get(key)
    if last is None:  # timed on copies in each order (only the chosen one is kept)
        first_w = weight.contiguous()
        last_w = weight.contiguous(memory_format=torch.channels_last)
        last = _CONV_LAYOUTS[key] = faster(
            lambda: conv._conv_forward(x.contiguous(), first_w, bias),
            lambda: conv._conv_forward(x.contiguous(memory_format=torch.channels_last), last_w,
                                       bias))
    fmt = torch.channels_last if last else torch.contiguous_format
    return conv._conv_forward(x.contiguous(memory_format=fmt), laid_out(conv, weight, fmt), bias)


def laid_out(conv: nn.Module, weight: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``weight`` (a conv's, or one folded from it) in memory order ``fmt``,
    kept with ``conv`` until the weight changes. oneDNN runs a conv in the
    layout of its input and weight, and PyTorch copies a weight that is not
    in it on every call: a permuting copy, for a kxk conv on channels-last
    maps (the stems' folded weights, the R50 stem's standardised ones)."""
    if weight.dim() != 4 or weight.is_contiguous(memory_format=fmt):
        return weight
    return _kept(conv, fmt, weight, lambda: weight.contiguous(memory_format=fmt))


def _kept(conv: nn.Module, key, weight: torch.Tensor, make) -> torch.Tensor:
    """``make()``, a form of ``weight`` (``laid_out``, ``pointwise_conv``),
    kept with ``conv`` under ``key`` until the weight changes
    (``inference_cached``)."""
    cache = conv.__dict__.get("_laid_out")
    if cache is None:
        cache = conv.__dict__["_laid_out"] = {}
    return inference_cached(cache, key, (weight,), make)


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1)


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float, channels_last: bool = True):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x * self.gamma
        return x * self.gamma.view(-1, *([1] * (x.ndim - 2)))


def layer_scale(dim: int, init: float | None, channels_last: bool = True) -> nn.Module:
    return LayerScale(dim, init, channels_last) if init else nn.Identity()


def fresh_scale(ls: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ls(x)`` (a ``layer_scale``) for an ``x`` that nothing else holds:
    scaled in place during plain inference, as ``fresh_act`` does (ConvNeXt-T
    at batch 1: ~2 % of its forward, the allocation and the extra pass)."""
    if type(ls) is LayerScale and x.dtype == ls.gamma.dtype and plain_inference():
        # (same dtype: under autocast the product is promoted, as ``ls(x)`` gives it)
        gamma = ls.gamma if ls.channels_last else ls.gamma.view(-1, *([1] * (x.ndim - 2)))
        return x.mul_(gamma)
    return ls(x)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation on channels-first maps (reduction relative to ``channels``)."""

    def __init__(self, channels: int, ratio: float = 0.25, act: str = "silu"):
        super().__init__()
        hidden = max(1, int(round(channels * ratio)))
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        s = x.mean(dims, keepdim=True)
        if x.ndim == 3:  # 1-D maps: use the 2-D 1x1 convs on a (B, C, 1, 1) view
            s = s.unsqueeze(-1)
            s = self.fc2(self.act(self.fc1(s))).squeeze(-1)
        else:
            s = self.fc2(self.act(self.fc1(s)))
        return x * torch.sigmoid(s)


#: Set False to run every linear layer with ``F.linear`` in CPU inference
#: (``linear``: no packed weights kept, nothing timed).
CPU_PACKED_LINEAR = True

#: Linear layers with fewer multiply-adds per call run plain without timing:
#: there oneDNN's call costs more than packing saves (a 64 -> 192 linear over
#: 49 tokens, 0.6 M: 1.5x plain's time; ``benchmarks/bench_cpu_kernels.py``),
#: and the proxy models' many small linears skip the checks.
PACKED_MIN_MACS = 1 << 20

#: Linear layers over fewer rows (tokens times batch) run plain without
#: timing. There the matmul streams its weight more than it computes, and in
#: a whole network, where each weight arrives cold from memory, the packed
#: weight ran slower than the plain one even for shapes a warm timing loop
#: found faster packed: LeViT-128S at batch 1 (16 and 49 rows in its later
#: stages) inferred 9-11 % faster with no linear packed than with the timed
#: choice, in three runs that packed 3, 6 and 8 of its 16 shapes.
PACKED_MIN_ROWS = 64

#: Whether each linear shape runs faster on a packed weight, timed in this
#: process (``linear``): key -> True for packed.
_LINEAR_PACKED: dict[tuple, bool] = {}

#: Activations oneDNN applies inside a packed linear: type -> (attr, algorithm).
_PACKED_ACTS = {
    nn.ReLU: lambda m: ("relu", ""),
    nn.GELU: lambda m: ("gelu", m.approximate),
    nn.SiLU: lambda m: ("swish", ""),
    nn.Hardswish: lambda m: ("hardswish", ""),
    nn.Tanh: lambda m: ("tanh", ""),
}


class _PackedSlot:
    """What a module's ``linear`` last saw: its weight (and that weight's
    version and storage), its packed copy, and the last call's shape (rows,
    threads, activation) with the way chosen for it. Copies and pickles of
    the module start empty (a packed weight has no storage to copy)."""

    __slots__ = ("weight", "stamp", "storage", "packed", "call", "use")

    def __init__(self):
        self.weight: torch.Tensor | None = None
        self.stamp: tuple[int, int] = (-1, 0)
        # held so that the stamped storage's address is not reused while the
        # stamp is kept (``p.data = a; p.data = b`` could give b a's address)
        self.storage: object = None
        self.packed: torch.Tensor | None = None
        self.call: tuple | None = None
        self.use = False

    def __reduce__(self):
        return _PackedSlot, ()


def _plain_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  act: nn.Module | None) -> torch.Tensor:
    y = F.linear(x, weight, bias)
    return y if act is None else fresh_act(act, y)


def _packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None,
                   act: nn.Module | None) -> torch.Tensor:
    fused = _PACKED_ACTS.get(type(act))
    attr, algorithm = fused(act) if fused is not None else ("none", "")
    y = torch.ops.mkldnn._linear_pointwise(x, packed, bias, attr, [], algorithm)
    return y if act is None or fused is not None else fresh_act(act, y)


def packing(x: torch.Tensor) -> bool:
    """Whether ``linear`` may run packed on input ``x``: plain inference on
    the CPU in float32 without autocast, with oneDNN present and
    ``CPU_PACKED_LINEAR`` on."""
    return (CPU_PACKED_LINEAR and x.dtype == torch.float32 and x.is_cpu and _MKLDNN
            and plain_inference() and not torch.is_autocast_enabled("cpu"))


def _packable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(.., x, weight)`` may run packed: ``packing(x)``, at
    least ``PACKED_MIN_MACS`` and ``PACKED_MIN_ROWS`` and a float32 weight.
    (``linear`` also never packs an inference tensor: those change in place
    without a version.)"""
    # Cheapest tests first, each asked once: this runs in every linear layer's
    # inference forward (most calls in small models stop at the size). Not the
    # sizes while compiling or tracing, where they would put a guard on a
    # symbolic batch or warn of a tensor turned into a Python value.
    return (CPU_PACKED_LINEAR and _MKLDNN and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and not torch._C._is_tracing() and x.is_cpu
            and x.numel() * weight.shape[0] >= PACKED_MIN_MACS
            and x.numel() >= PACKED_MIN_ROWS * weight.shape[-1]
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu"))


def linear(owner: nn.Module, x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None, act: nn.Module | None = None) -> torch.Tensor:
    """``act(F.linear(x, weight, bias))`` (no ``act``: the linear alone),
    where in plain CPU inference (float32, oneDNN present) the weight may be
    packed once into oneDNN's blocked layout and the activation applied
    inside the matmul.

    A packed weight saves the reordering every call otherwise pays: ViT-B/16's
    linears at 197 tokens run 10-25 % faster on one thread, and the fused
    GELU saves a pass over the MLP's hidden activations. Below
    ``PACKED_MIN_MACS`` the oneDNN call costs more than it saves, and below
    ``PACKED_MIN_ROWS`` rows the weight's trip from memory outweighs what
    packing saves: the linear runs plain. Above them the crossover depends
    on the shape and the CPU, so the first packed call of each shape
    (weight, rows, activation, threads) times both ways a few calls each and
    keeps the faster for the process, as ``timed_conv`` does for conv
    layouts (``benchmarks/bench_cpu_kernels.py`` prints both). ``owner``
    keeps the packed copy (memory: one more copy of its weight) until
    ``weight`` changes; a weight is packed only on its second
    call, so tensors made anew for each call (the supernet's sliced views
    under ``functional_call``) are never packed. Values equal ``F.linear``'s
    to float rounding. Training, autograd, tracing and export, autocast,
    other devices and dtypes run ``F.linear``. Threads sharing a module
    never see a half-updated choice (each call reads the packed copy once
    and runs plain without one)."""
    if not _packable(x, weight):
        return _plain_linear(x, weight, bias, act)
    slot = owner.__dict__.get("_packed")
    call = (x.numel() // x.size(-1), torch.get_num_threads(), act)
    if slot is not None and slot.weight is weight and slot.call == call:
        # this weight and shape decided before: plain needs no more checks,
        # packed that the weight has not changed since it was packed (stamp
        # read before the copy: a reset clears the copy before the stamp)
        if not slot.use:
            return _plain_linear(x, weight, bias, act)
        if slot.stamp == _stamp(weight):
            packed = slot.packed
            if packed is not None:
                return _packed_linear(x, packed, bias, act)
    if weight.is_inference():  # changes in place without a version: never packed (nor
        return _plain_linear(x, weight, bias, act)  # held: a BN-folded one is made per call)
    if slot is None:
        slot = owner.__dict__["_packed"] = _PackedSlot()
    stamp = _stamp(weight)
    if slot.weight is not weight or slot.stamp != stamp:
        slot.call, slot.packed = None, None  # cleared before the new weight shows
        slot.weight, slot.storage, slot.stamp = weight, weight.untyped_storage(), stamp
        return _plain_linear(x, weight, bias, act)  # first sight: pack if it is used again
    slot.use = _choose_packed(x, slot, bias, act, call)
    slot.call = call
    packed = slot.packed
    if slot.use and packed is not None:
        return _packed_linear(x, packed, bias, act)
    return _plain_linear(x, weight, bias, act)


def _choose_packed(x: torch.Tensor, slot: _PackedSlot, bias: torch.Tensor | None,
                   act: nn.Module | None, call: tuple) -> bool:
    """Whether this linear shape runs faster packed (timed once per process)."""
    weight = slot.weight
    assert weight is not None
    fused = _PACKED_ACTS.get(type(act))
    key = (tuple(weight.shape), bias is not None, call[0], call[1],
           fused(act) if fused is not None else type(act))
    use = _LINEAR_PACKED.get(key)
    if use is False:
        return False
    packed = slot.packed
    stamp = slot.stamp  # what the copy is made from (taken before it)
    if packed is None:
        with _outside_inference_mode():
            packed = _reorder(weight.detach())
    if use is None:
        use = _LINEAR_PACKED[key] = faster(lambda: _plain_linear(x, weight, bias, act),
                                           lambda: _packed_linear(x, packed, bias, act))
    # kept only if the weight has not changed meanwhile (another thread's
    # optimizer step and call may have reset the slot while this one packed)
    if use and slot.weight is weight and slot.stamp == stamp == _stamp(weight):
        slot.packed = packed
    return use


def packed_for(fc: nn.Module, x: torch.Tensor) -> bool | None:
    """Whether ``fc``'s ``linear`` call on an input shaped as ``x`` runs
    packed: False where it cannot (``_packable``) or its weight is not the
    one it saw last (a tensor made anew each call, as ``functional_call``
    passes, runs plain), otherwise what its last call of that shape decided,
    None when none has yet."""
    weight = fc.weight
    if not _packable(x, weight) or weight.is_inference():
        return False
    slot = fc.__dict__.get("_packed")
    if slot is None:
        return None
    if slot.weight is not weight:
        return False
    if slot.call is None or slot.call[:2] != (x.numel() // x.shape[-1], torch.get_num_threads()):
        return None
    return slot.use


def _reorder(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (out, in) packed into oneDNN's blocked layout."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, None)


_MKLDNN = torch.backends.mkldnn.is_available()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state) run by ``linear``: in plain
    CPU inference on a packed weight where that is faster. ``act`` (optional)
    is applied to the output, inside the matmul where oneDNN can."""

    def forward(self, x: torch.Tensor, act: nn.Module | None = None) -> torch.Tensor:
        return linear(self, x, self.weight, self.bias, act)


class Mlp(nn.Module):
    """Two linear layers with an activation, on channels-last input."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, act: str = "gelu"):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x, self.act))


def forward_cached(cache: dict, key, make) -> torch.Tensor:
    """``cache[key]``, made by ``make()`` on first use: for tensors a module
    builds in ``forward`` and keeps (index tables). They are made outside
    inference mode even when the forward runs inside it, so a model timed or
    evaluated under ``torch.inference_mode`` trains afterwards (an inference
    tensor kept for backward raises). While tracing or exporting a table
    already made is used and a new one is not kept (``torch.export`` warns
    about tensors assigned to a module during export)."""
    value = cache.get(key)
    if value is not None:
        return value
    if not _eager():
        return make()
    with _outside_inference_mode():
        value = make()
    cache[key] = value
    return value


def _outside_inference_mode():
    """Context for making a tensor a module keeps: outside inference mode
    (without autograd) when the caller is in it, so the tensor is an
    ordinary one, with a version and usable by a later training step."""
    if torch.is_inference_mode_enabled():
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.no_grad())
        return stack
    return contextlib.nullcontext()


def plain_inference() -> bool:
    """Eager forward without autograd (eval/benchmark/serving), where a tensor
    that depends only on parameters can be kept between calls. Not while
    tracing or compiling (export must see the computation)."""
    return not torch.is_grad_enabled() and _eager()


def inference_cached(cache: dict, key, params: tuple[torch.Tensor, ...], make) -> torch.Tensor:
    """``make()``, kept in ``cache[key]`` during plain inference until one of
    ``params`` changes (in-place updates bump a tensor's version: optimizer
    steps, ``load_state_dict``; ``p.data = ...`` changes its storage). The
    cache holds the tensors it was made from, so a tensor made anew (a view
    ``functional_call`` passes) never matches one that has been freed.
    Parameters that are inference tensors (a model built under
    ``torch.inference_mode``) change in place without a version: nothing is
    kept for them. The value is made outside inference mode, so it has a
    version of its own (``linear`` packs such a weight). Attention-bias
    tables gathered per call and BN-folded weights use it, so inference pays
    for them once."""
    if not plain_inference():
        return make()
    hit = cache.get(key)
    # A hit holds the same tensors, so none is an inference tensor (those are
    # never kept): their stamps can be read. One pass, no frame per tensor:
    # this runs in every BN-folded layer's forward.
    if (hit is not None and len(hit[0]) == len(params) and all(map(operator.is_, hit[0], params))
            and [(p._version, p.data_ptr()) for p in params] == hit[1]):
        return hit[2]
    if any(p.is_inference() for p in params):
        return make()
    with _outside_inference_mode():
        value = make()
    # the storages are held so that their addresses are not reused while the
    # stamps are kept (``p.data = a; p.data = b`` could give b a's address)
    cache[key] = (tuple(params), [_stamp(p) for p in params], value,
                  [p.untyped_storage() for p in params])
    return value


def _stamp(t: torch.Tensor) -> tuple[int, int]:
    """What changes when ``t``'s values may have: its version (bumped by
    in-place updates) and its storage (``p.data = ...``); not for inference
    tensors, which have no version. Not seen: values changed in place through
    ``p.data`` (``p.data.mul_(2)``), which PyTorch gives a version counter of
    its own; change parameters under ``torch.no_grad()`` instead, as
    optimizers and ``load_state_dict`` do."""
    return t._version, t.data_ptr()


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == x * scale + shift`` in eval mode."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def bn_tensors(bn: nn.Module) -> tuple[torch.Tensor, ...]:
    """The tensors an eval-mode BatchNorm depends on (for ``inference_cached``)."""
    return tuple(t for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var) if t is not None)


def fold_conv_bn(conv: nn.Module, bn: nn.Module,
                 pre: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``bn(conv(pre(x)))`` in eval mode,
    ``pre`` an optional BatchNorm before a 1x1 (ungrouped) conv."""
    w = conv.weight
    b = conv.bias if conv.bias is not None else w.new_zeros(w.shape[0])
    if pre is not None:
        s0, t0 = bn_scale_shift(pre)
        b = b + (w.flatten(1) * t0).sum(1)
        w = w * s0.view(1, -1, *([1] * (w.ndim - 2)))
    s, t = bn_scale_shift(bn)
    return w * s.view(-1, *([1] * (w.ndim - 1))), b * s + t


def attention_written_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          bias: torch.Tensor | None = None) -> bool:
    """Whether ``attend`` writes these inputs' attention out as matmul +
    softmax rather than calling the fused kernel."""
    if q.device.type != "cpu":
        return False
    if v.shape[-1] != q.shape[-1]:
        return True
    return bias is not None and torch.is_grad_enabled() and q.requires_grad and _eager()


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (B, heads, N, d) inputs, by
    ``F.scaled_dot_product_attention``.

    ``bias`` broadcasts against (B, heads, N, M), or has a leading dim G
    that divides B, for batches laid out as (B / G) x G groups (the windows
    of a map: one bias per window, shared across the batch). A per-head bias
    (heads, N, M) is handed to SDPA as (1, heads, N, M): the fused CPU kernel
    runs faster on a mask with the batch dim present (broadcast) than on the
    same mask without it, and faster than matmul + softmax written out
    (``benchmarks/bench_models.py`` times the named networks).

    Values wider than the keys (LeViT, EfficientFormer) have no fused CPU
    kernel: SDPA would run its unfused path, and the same computation
    written out here has less overhead. Written out too on the CPU while
    autograd records (training) with a bias: there matmul + softmax runs
    10-30 % faster forward and backward than the fused kernel. Without a
    bias the two are level on the head-transposed q/k/v the blocks make
    (written out wins only on contiguous inputs of at most ~100x100 logits,
    which no block produces), so the fused kernel runs
    (``benchmarks/bench_cpu_kernels.py``).
    """
    grouped = bias is not None and bias.ndim == 4 and bias.shape[0] not in (1, q.shape[0])
    if attention_written_out(q, k, v, bias):
        logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if grouped:
            g = bias.shape[0]
            logits = (logits.view(-1, g, *logits.shape[1:]) + bias).view(logits.shape)
        elif bias is not None:
            logits = logits + bias
        return logits.softmax(-1) @ v
    if grouped:
        g = bias.shape[0]
        bias = bias.unsqueeze(0).expand(q.shape[0] // g, *bias.shape).reshape(
            q.shape[0], *bias.shape[1:])
    elif bias is not None and bias.ndim == 3:
        bias = bias.unsqueeze(0)
    if bias is not None and (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        # torch.export (ONNX): with a mask, SDPA's fake kernel derives output
        # strides from strided q/k/v differently from its decomposition, and
        # the head-merging reshape after it then fails; contiguous inputs keep
        # the two consistent (see Attention).
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class RelPosBias(nn.Module):
    """CoAtNet/Swin relative position bias with a table sized for a ``window``.

    The table holds one bias per head and relative offset (2w-1 x 2w-1). For a
    grid smaller than the window the table is cropped around its centre (the
    offsets are a subset); for a larger grid it is resized bilinearly, so the
    block runs at any input resolution.
    """

    def __init__(self, heads: int, window: int | tuple[int, int]):
        super().__init__()
        wh, ww = (window, window) if isinstance(window, int) else window
        self.window = (wh, ww)
        self.heads = heads
        self.table = nn.Parameter(torch.zeros(heads, 2 * wh - 1, 2 * ww - 1))
        nn.init.trunc_normal_(self.table, std=0.02)
        self._index_cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self._bias_cache: dict[tuple, tuple] = {}

    def _index(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        return forward_cached(self._index_cache, (h, w, str(device)),
                              lambda: self._make_index(h, w, device))

    @staticmethod
    def _make_index(h: int, w: int, device: torch.device) -> torch.Tensor:
        coords = torch.stack(torch.meshgrid(
            torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
        )).flatten(1)  # 2, N
        rel = coords[:, :, None] - coords[:, None, :]  # 2, N, N
        return (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)

    def forward(self, h: int, w: int) -> torch.Tensor:
        """Bias of shape (heads, h*w, h*w) for an h x w grid."""
        return inference_cached(self._bias_cache, (h, w, str(self.table.device), self.table.dtype),
                                (self.table,), lambda: self._bias(h, w))

    def _bias(self, h: int, w: int) -> torch.Tensor:
        wh, ww = self.window
        table = self.table
        th, tw = 2 * h - 1, 2 * w - 1
        if (th, tw) != tuple(table.shape[1:]):
            if h <= wh and w <= ww:
                oh, ow = wh - h, ww - w
                table = table[:, oh:oh + th, ow:ow + tw]
            else:
                table = F.interpolate(table.unsqueeze(0), size=(th, tw), mode="bilinear",
                                      align_corners=False).squeeze(0)
        idx = self._index(h, w, table.device)
        return table.flatten(1)[:, idx]


class OffsetBias(nn.Module):
    """LeViT/EfficientFormer attention bias: one learned value per head and
    absolute offset (|dy|, |dx|) in a ``resolution`` x ``resolution`` table.
    Offsets beyond the table are clamped to its edge, so any grid works.
    ``q_stride`` supports LeViT's shrink attention (queries on a subsampled grid).
    """

    def __init__(self, heads: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.table = nn.Parameter(torch.zeros(heads, resolution * resolution))
        self._index_cache: dict[tuple, torch.Tensor] = {}
        self._bias_cache: dict[tuple, tuple] = {}

    def forward(self, h: int, w: int, q_stride: int = 1) -> torch.Tensor:
        key = (h, w, q_stride, str(self.table.device), self.table.dtype)
        return inference_cached(self._bias_cache, key, (self.table,),
                                lambda: self._bias(h, w, q_stride))

    def _bias(self, h: int, w: int, q_stride: int) -> torch.Tensor:
        idx = forward_cached(self._index_cache, (h, w, q_stride, str(self.table.device)),
                             lambda: self._make_index(h, w, q_stride, self.table.device))
        return self.table[:, idx]

    def _make_index(self, h: int, w: int, q_stride: int, dev: torch.device) -> torch.Tensor:
        ky, kx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev),
                                indexing="ij")
        qh, qw = -(-h // q_stride), -(-w // q_stride)
        qy, qx = torch.meshgrid(torch.arange(qh, device=dev) * q_stride,
                                torch.arange(qw, device=dev) * q_stride, indexing="ij")
        r = self.resolution - 1
        dy = (qy.flatten()[:, None] - ky.flatten()[None, :]).abs().clamp(max=r)
        dx = (qx.flatten()[:, None] - kx.flatten()[None, :]).abs().clamp(max=r)
        return dy * self.resolution + dx


class Attention(nn.Module):
    """Multi-head self-attention on channels-last tokens (B, N, C) (``attend``);
    ``bias`` (heads, N, N), or (G, heads, N, N) for a batch of G windows per
    image, is added to the logits when given. Projects ``dim`` to ``out_dim``
    (default ``dim``)."""

    def __init__(self, dim: int, heads: int, out_dim: int | None = None,
                 attn_dim: int | None = None, qkv_bias: bool = True):
        super().__init__()
        attn_dim = attn_dim or dim
        if attn_dim % heads:
            raise ValueError(f"heads={heads} does not divide attention width {attn_dim}")
        self.heads = heads
        self.head_dim = attn_dim // heads
        self.qkv = Linear(dim, 3 * attn_dim, bias=qkv_bias)
        self.proj = Linear(attn_dim, out_dim or dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if bias is not None:
            attn_mask = bias.to(q.dtype)
        if mask is not None:
            neg = torch.zeros_like(mask, dtype=q.dtype).masked_fill(~mask, float("-inf"))
            attn_mask = neg if attn_mask is None else attn_mask + neg
            # torch.export (ONNX): with a batch-dependent mask, SDPA's fake kernel
            # derives output strides from strided q/k/v differently from its
            # decomposition, and the head-merging reshape below then fails to
            # export. Contiguous inputs keep the two consistent.
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = attend(q, k, v, attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


def trunc_normal_init(module: nn.Module) -> None:
    """ViT-style init for linear layers (used by transformer-type blocks)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _WeightStandardised:
    """Convolution with weight standardisation (zero mean, unit variance per
    output filter; Qiao et al. 2019), as BiT and the R50+ViT hybrid pair with
    GroupNorm. Same parameters as the plain conv. In plain inference the
    standardised weights are computed once (kept until the weights change)
    and 2-D convs run in the layout timed faster (``timed_conv``)."""

    eps = 1e-6

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._standardised: dict = {}

    def _standardise(self) -> torch.Tensor:
        w = self.weight
        return F.batch_norm(w.reshape(1, w.shape[0], -1), None, None, training=True,
                            momentum=0.0, eps=self.eps).reshape_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not plain_inference():
            return self._conv_forward(x, self._standardise(), self.bias)
        w = inference_cached(self._standardised, (str(x.device), x.dtype), (self.weight,),
                             self._standardise)
        return timed_conv(self, x, w, self.bias)


class StdConv2d(_WeightStandardised, nn.Conv2d):
    pass


class StdConv1d(_WeightStandardised, nn.Conv1d):
    pass


def make_conv(dims: int, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
              groups: int = 1, bias: bool = False, norm: str = "bn") -> nn.Module:
    """``kernel`` x ``kernel`` conv with 'same'-style padding (output ceil(n /
    stride) for odd kernels), weight-standardised when ``norm='gn'``."""
    if norm == "gn":
        klass = StdConv2d if dims == 2 else StdConv1d
    else:
        klass = conv_nd(dims)
    return klass(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups,
                 bias=bias)


def conv_out(n: int, stride: int) -> int:
    return math.ceil(n / stride)


def conv_nd(dims: int) -> type[nn.Module]:
    """nn.Conv2d for images, nn.Conv1d for sequences."""
    return nn.Conv2d if dims == 2 else nn.Conv1d


def avg_pool(dims: int, stride: int) -> nn.Module:
    """Stride-``stride`` average pooling whose output size is ceil(n / stride)."""
    pool = nn.AvgPool2d if dims == 2 else nn.AvgPool1d
    return pool(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)


def pooled_projection(in_ch: int, out_ch: int, stride: int, dims: int) -> nn.Module:
    """Shortcut for a block that changes stride or width: average pool, then a
    1x1 conv with bias (CoAtNet's ``Proj(Pool(x))``)."""
    layers: list[nn.Module] = []
    if stride > 1:
        layers.append(avg_pool(dims, stride))
    if in_ch != out_ch:
        layers.append(conv_nd(dims)(in_ch, out_ch, 1))
    return nn.Sequential(*layers) if layers else nn.Identity()


def partition(x: torch.Tensor, window: int, grid: bool = False):
    """Split channels-last maps (B, H, W, C) into attention windows.

    ``grid=False``: non-overlapping window x window blocks (MaxViT block
    attention); ``grid=True``: a window x window grid of tokens strided across
    the whole map (MaxViT grid attention). The window shrinks to the map when
    the map is smaller; otherwise the map is zero-padded to a multiple of it
    and the returned key mask (or None) hides the padding.
    Returns (windows (B*nW, N, C), mask (B*nW, 1, 1, N) | None, info).
    """
    b, h, w, c = x.shape
    wh, ww = min(window, h), min(window, w)
    ph, pw = (-h) % wh, (-w) % ww
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    nh, nw = hp // wh, wp // ww
    if grid:
        win = x.view(b, wh, nh, ww, nw, c).permute(0, 2, 4, 1, 3, 5)
    else:
        win = x.view(b, nh, wh, nw, ww, c).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(b * nh * nw, wh * ww, c)
    mask = None
    if ph or pw:
        valid = torch.zeros(hp, wp, dtype=torch.bool, device=x.device)
        valid[:h, :w] = True
        if grid:
            vm = valid.view(wh, nh, ww, nw).permute(1, 3, 0, 2)
        else:
            vm = valid.view(nh, wh, nw, ww).permute(0, 2, 1, 3)
        vm = vm.reshape(1, nh * nw, 1, 1, wh * ww).expand(b, -1, -1, -1, -1)
        mask = vm.reshape(b * nh * nw, 1, 1, wh * ww)
    return win, mask, (b, h, w, c, wh, ww, nh, nw, grid)


def unpartition(win: torch.Tensor, info) -> torch.Tensor:
    """Inverse of ``partition`` (drops the padding)."""
    b, h, w, _, wh, ww, nh, nw, grid = info
    c = win.shape[-1]
    if grid:
        x = win.view(b, nh, nw, wh, ww, c).permute(0, 3, 1, 4, 2, 5)
    else:
        x = win.view(b, nh, nw, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, nh * wh, nw * ww, c)
    if x.shape[1] != h or x.shape[2] != w:
        x = x[:, :h, :w]
    return x


class ConvSequence(nn.Sequential):
    """Convs with their norms and activations, in order (an ``nn.Sequential``:
    the same parameter names): stems, conv downsamplers. In plain inference a
    conv followed by an eval-mode BatchNorm runs as one conv with the norm
    folded in (computed once, kept until a parameter changes), each 2-D conv
    in the memory layout timed faster for its shape (``timed_conv``), and
    activations work in place; while training, dense convs take the layout
    ``dense_conv`` gives them."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self._folded: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not plain_inference():
            for m in self:
                x = dense_conv(m, x) if isinstance(m, nn.Conv2d) else m(x)
            return x
        mods = list(self)
        i, fresh = 0, False
        while i < len(mods):
            m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
            if (type(m) in (nn.Conv1d, nn.Conv2d) and isinstance(nxt, _BatchNorm)
                    and not nxt.training and not hooked(m, nxt)):
                params = (m.weight, *([] if m.bias is None else [m.bias]), *bn_tensors(nxt))
                w, b = inference_cached(self._folded, (i, str(x.device), x.dtype), params,
                                        lambda m=m, bn=nxt: fold_conv_bn(m, bn))
                x, fresh = timed_conv(m, x, w, b), True
                i += 2
                continue
            if type(m) is nn.Conv2d and not hooked(m):
                x = timed_conv(m, x, m.weight, m.bias)
            else:
                x = fresh_act(m, x) if fresh else m(x)  # in place only for activations
            fresh = isinstance(m, (nn.Conv1d, nn.Conv2d, _BatchNorm))
            i += 1
        return x
