"""The weight-sharing supernet of a search space.

    >>> from hybridnas.supernet import Supernet
    >>> net = Supernet("stagewise", resolution=28, num_classes=10, in_chans=1,
    ...                width_mult=0.25)                                # doctest: +SKIP
    >>> spec = net.space.sample(0)
    >>> net.activate(spec); logits = net(x)         # the subnet, inherited weights
    >>> model = net.extract(spec)                   # build_model(spec) with those weights

Every point of the space is a subnet: per stage one branch per block type
the space allows, each holding max-size tensors that the elastic choices
(depth, width, kernel, expansion / MLP ratio, heads, stem layers and widths)
slice (see ``hybridnas.supernet.elastic``). The union of tensor names and
their largest shapes is found when the supernet is made, by building (on the
meta device, costing no memory) the networks at the extremes of every
decision and a seeded random sample; ``activate`` refuses, with the tensor's
name, a spec that needs more than the supernet holds.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..blocks import BLOCKS, Stage, build_stem
from ..blocks.base import unlink
from ..blocks.layers import trunc_normal_init
from ..builder import build_model
from ..errors import UserError
from ..spec import ArchSpec, SpecError, StageSpec, StemSpec
from .elastic import NOT_ELASTIC, SliceContext, down_tag, find_rule, head_key, shared_key, stage_key, stem_key, stem_roles

__all__ = ["Supernet", "SupernetLayout", "space_layout", "max_abs_diff"]

_TEMPLATES = 64  # networks kept built (meta device) for re-activation
_MAX_DEPTH = 1024


@dataclass
class SupernetLayout:
    """Shared tensors of a space: key -> largest shape (params and buffers
    apart), the kernel sizes each conv key is used at, and for each key the
    network part (stem, stage or head) that uses its largest shape: its
    initial values come from a real build of that part."""

    params: dict[str, tuple[int, ...]]
    buffers: dict[str, tuple[tuple[int, ...], torch.dtype]]
    kernel_sizes: dict[str, set[int]]
    init_from: dict[str, "_Part"]
    largest: ArchSpec
    smallest: ArchSpec


_LAYOUTS: dict[tuple, SupernetLayout] = {}


def _space_key(space, num_classes: int, in_chans: int, samples: int, seed: int) -> tuple:
    return (space.path, space.resolution, space.width_mult, space.depth_mult, num_classes,
            in_chans, samples, seed)


def _numeric(dim) -> bool:
    vals = dim.values()
    if vals is None:
        return True
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


def _extreme(dim, hi: bool):
    vals = dim.values()
    if vals is None:
        return dim.high if hi else dim.low
    if _numeric(dim):
        return max(vals) if hi else min(vals)
    return vals[-1] if hi else vals[0]


def _decode(space, params: dict) -> ArchSpec | None:
    try:
        spec = space.decode(params)
    except (UserError, SpecError, ValueError, KeyError):
        return None
    return None if spec.problems(space.resolution) else spec


def _probe_specs(space, samples: int, seed: int) -> Iterator[ArchSpec]:
    """Specs that together use every shared tensor at its largest shape:
    each decision at each of its values around the all-largest and the
    all-smallest points, then a seeded random sample of the space (drawn
    without the constraints: the supernet may hold more than the space)."""
    import numpy as np

    dims = space.dimensions
    for hi in (True, False):
        base = {d.label: _extreme(d, hi) for d in dims}
        yield from filter(None, [_decode(space, base)])
        for d in dims:
            vals = d.values()
            if vals is None:
                vals = [d.low, d.high]
            for v in vals:
                spec = _decode(space, {**base, d.label: v})
                if spec is not None:
                    yield spec
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        spec = _decode(space, {d.label: d.draw(rng) for d in dims})
        if spec is not None:
            yield spec
    # points drawn as proposals are (valid by construction): they reach
    # combinations the independent draws above rarely decode to, such as an
    # attention stage early with the attention stages it must be followed by
    for _ in range(samples):
        try:
            yield space.sample(rng)
        except UserError:  # a space whose constraints no draw satisfies
            break
    for spec in space.references(space.resolution).values():
        yield spec


def _meta_build(spec: ArchSpec, num_classes: int, in_chans: int) -> nn.Module:
    with torch.device("meta"):
        return build_model(spec, num_classes=num_classes, in_chans=in_chans)


@dataclass(frozen=True)
class _Part:
    """One part of a network: the stem, a stage with its input width, or the
    head on the last width. A part's tensors depend on nothing else, so the
    layout builds each distinct part once instead of whole networks."""

    kind: str  # "stem" | "stage" | "head"
    spec: Any  # StemSpec | StageSpec | HeadSpec
    in_ch: int
    dims: int = 2
    index: int = 0

    def _short(self) -> tuple[Any, bool]:
        """(stage spec to build, whether block 1 stands for every later block):
        a family that builds every block after the first alike is built with
        two blocks, whose shapes hold for any depth."""
        st = self.spec
        cls = BLOCKS[st.block]
        if all(cls.variant(st, j) is cls.variant(st, 1) for j in range(2, st.depth)):
            return dataclasses.replace(st, depth=2), True
        return st, False

    def build(self, num_classes: int, in_chans: int,
              init: bool = True) -> tuple[nn.Module, bool]:
        """(module, whether its block 1 stands for all later blocks);
        ``init=False`` skips the builder's weight initialisation (shapes only)."""
        if self.kind == "stem":
            return build_stem(self.spec, in_chans, self.dims), False
        if self.kind == "stage":
            st, repeat = self._short()
            stage = Stage(st, self.in_ch, [0.0] * st.depth, self.dims)
            if init:
                trunc_normal_init(stage)  # as HybridNet initialises its stages
            return stage, repeat
        # The head's tensors depend on the head spec and the last width only.
        stand_in = ArchSpec(stem=StemSpec(kind="conv", widths=(8,)),
                            head=dataclasses.replace(self.spec, pool="avg"),
                            stages=(StageSpec("convnext", depth=1, width=self.in_ch, stride=1),))
        model = build_model(stand_in, num_classes=num_classes, in_chans=in_chans)
        head = nn.Module()
        for name, child in model.named_children():
            if name not in ("stem", "stages"):
                head.add_module(name, child)
        return head, False

    def tensors(self, num_classes: int, in_chans: int, meta: bool = True):
        """(shared key, tensor, is a parameter, is a conv kernel, repeat) of
        the part; ``repeat``: the key names block 1 of a stage and stands for
        blocks 1, 2, ... (``expand`` gives their keys)."""
        with torch.device("meta" if meta else "cpu"):
            module, repeat_family = self.build(num_classes, in_chans, init=not meta)
        roles = stem_roles(self.spec, module) if self.kind == "stem" else {}
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            conv = name.endswith("weight") and t.ndim >= 3 and isinstance(owner, (nn.Conv1d,
                                                                                  nn.Conv2d))
            is_param = isinstance(t, nn.Parameter)
            if self.kind == "stem":
                yield stem_key(self.spec, roles, name), t, is_param, conv, False
            elif self.kind == "head":
                yield head_key(self.spec, name), t, is_param, conv, False
            else:
                repeat = repeat_family and name.startswith("blocks.1.")
                if name.startswith("blocks.") and not repeat and \
                        int(name.split(".")[1]) >= self.spec.depth:
                    continue
                yield (stage_key(self.index, self.spec.block, name, down_tag(self.spec)), t,
                       is_param, conv, repeat)

    def expand(self, key: str, depth: int) -> list[str]:
        """Keys of blocks 1 .. depth-1 for a ``repeat`` key of block 1."""
        head = stage_key(self.index, self.spec.block, "blocks.1.")
        rest = key[len(head):]
        return [stage_key(self.index, self.spec.block, f"blocks.{j}.{rest}")
                for j in range(1, depth)]


def _parts(spec: ArchSpec, in_chans: int) -> Iterator[_Part]:
    """The stem, each stage and the head of ``spec``."""
    yield _Part("stem", spec.stem, in_chans, spec.dims)
    ch = spec.stem.out_channels or in_chans
    for i, st in enumerate(spec.stages):
        yield _Part("stage", st, ch, spec.dims, i)
        ch = st.width
    yield _Part("head", spec.head, ch, spec.dims)


_PART_SHAPES: dict[tuple, list[tuple[str, tuple, bool, bool, torch.dtype, bool]]] = {}


def _part_shapes(part: _Part, num_classes: int, in_chans: int):
    """(key, shape, is a parameter, is a conv kernel, dtype, repeat) of a part (cached)."""
    cache_key = (part, num_classes, in_chans)
    if cache_key not in _PART_SHAPES:
        _PART_SHAPES[cache_key] = [(k, tuple(t.shape), p, c, t.dtype, r)
                                   for k, t, p, c, r in part.tensors(num_classes, in_chans)]
    return _PART_SHAPES[cache_key]


def _param_count(spec: ArchSpec, num_classes: int, in_chans: int) -> int:
    total = 0
    for part in _parts(spec, in_chans):
        for _, shape, is_param, _, _, repeat in _part_shapes(part, num_classes, in_chans):
            if is_param:
                total += math.prod(shape) * (max(part.spec.depth - 1, 0) if repeat else 1)
    return total


def _extreme_spec(space, hi: bool, num_classes: int, in_chans: int) -> ArchSpec:
    """The largest (or smallest) network of the space: every numeric
    decision at its extreme, then each categorical decision (block type,
    stem kind...) set in turn to the value with the most (fewest) parameters."""
    params = {d.label: _extreme(d, hi) for d in space.dimensions}
    best = _decode(space, params)
    for d in space.dimensions:
        if _numeric(d) or len(d.values()) < 2:
            continue
        scored = []
        for v in d.values():
            spec = _decode(space, {**params, d.label: v})
            if spec is not None:
                scored.append((_param_count(spec, num_classes, in_chans), v, spec))
        if scored:
            _, params[d.label], best = (max if hi else min)(scored, key=lambda s: s[0])
    if best is None:
        raise UserError(f"space {space.name!r}: its extreme decisions do not form a valid "
                        f"network at resolution {space.resolution}")
    return best


def _check_elastic(space, seed: int) -> None:
    """Refuse early (before any build) a space with a block family the
    supernet cannot hold."""
    for spec in _probe_specs(space, 0, seed):
        for i, st in enumerate(spec.stages):
            if st.block in NOT_ELASTIC:
                raise UserError(f"space {space.name!r}: the supernet cannot hold block "
                                f"{st.block!r} (stages.{i}): {NOT_ELASTIC[st.block]}; search this "
                                f"space with --strategy trials, or drop that family from it")


def space_layout(space, num_classes: int, in_chans: int, samples: int = 48,
                 seed: int = 0) -> SupernetLayout:
    """The shared tensors a supernet of ``space`` needs (cached per space setting)."""
    key = _space_key(space, num_classes, in_chans, samples, seed)
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    _check_elastic(space, seed)
    largest = _extreme_spec(space, True, num_classes, in_chans)
    smallest = _extreme_spec(space, False, num_classes, in_chans)
    found: dict[_Part, None] = {}
    depth: dict[tuple[int, str], int] = {}  # (stage, block) -> deepest
    widths_in: dict[int, set[int]] = {}  # stage -> every input width it gets
    downs: dict[int, set[tuple]] = {}  # stage -> every stage-start downsampler it takes
    widths_at: dict[int, set[int]] = {}  # stage -> every width it takes
    for spec in [largest, smallest, *_probe_specs(space, samples, seed)]:
        for part in _parts(spec, in_chans):
            found[part] = None
            if part.kind == "stage":
                at = (part.index, part.spec.block)
                depth[at] = max(depth.get(at, 0), part.spec.depth)
                widths_in.setdefault(part.index, set()).add(part.in_ch)
                st = part.spec
                downs.setdefault(part.index, set()).add((st.downsample, st.down_kernel,
                                                         st.down_norm))
                widths_at.setdefault(part.index, set()).add(st.width)
    # A stage's only tie to the rest of the network is its input width (it
    # decides, e.g., whether the first block has a projection shortcut): so
    # every stage probed is also built at every input width its stage gets.
    parts: dict[_Part, None] = {}
    for part in found:
        if part.kind != "stage":
            parts[part] = None
            continue
        # ... and with every downsampler its stage takes (a separate decision,
        # so samples need not pair each block with each downsampler)
        # and at every width its stage takes (widths are decided apart from the
        # block's other choices, so samples need not pair them all)
        for (ds, kernel, norm), width in itertools.product(
                sorted(downs[part.index], key=repr), sorted(widths_at[part.index])):
            try:
                st = dataclasses.replace(part.spec, downsample=ds, down_kernel=kernel,
                                         down_norm=norm, width=width)
            except (ValueError, TypeError):  # not a downsampler or width this block takes
                continue
            for c in sorted(widths_in[part.index]):
                variant = dataclasses.replace(part, spec=st, in_ch=c)
                if variant in found or st == part.spec:
                    parts[variant] = None
                    continue
                try:
                    _part_shapes(variant, num_classes, in_chans)
                except Exception:  # noqa: BLE001 - a combination the block cannot build
                    continue
                parts[variant] = None
    params: dict[str, tuple[int, ...]] = {}
    buffers: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    kernels: dict[str, set[int]] = {}
    init_from: dict[str, tuple[int, _Part]] = {}
    for part in parts:
        for k, shape, is_param, conv, dtype, repeat in _part_shapes(part, num_classes, in_chans):
            keys = part.expand(k, depth[(part.index, part.spec.block)]) if repeat else [k]
            for k in keys:
                if is_param:
                    old = params.get(k)
                    params[k] = shape if old is None else _union(old, shape, k)
                    if conv:
                        kernels.setdefault(k, set()).add(int(shape[-1]))
                    if math.prod(shape) > init_from.get(k, (-1, None))[0]:
                        init_from[k] = (math.prod(shape), part)
                else:
                    old_b = buffers.get(k)
                    buffers[k] = (shape if old_b is None else _union(old_b[0], shape, k), dtype)
    layout = SupernetLayout(params, buffers, kernels, {k: p for k, (_, p) in init_from.items()},
                            largest, smallest)
    _LAYOUTS[key] = layout
    return layout


def _union(a: tuple, b: tuple, key: str) -> tuple:
    if len(a) != len(b):
        raise UserError(f"supernet: tensor {key!r} has shapes {a} and {b} of different rank "
                        f"in two subnets; it cannot be shared")
    return tuple(max(x, y) for x, y in zip(a, b))


def _escape(key: str) -> str:
    return key.replace(".", "/")


def _load_space(space, resolution, width_mult, depth_mult):
    from .. import spaces

    if isinstance(space, str):
        return spaces.load(space, resolution=resolution, width_mult=width_mult,
                           depth_mult=depth_mult)
    if resolution is not None or width_mult is not None or depth_mult is not None:
        return space.at(resolution, width_mult, depth_mult)
    return space


class _Plan:
    """One activated subnet: its network (built on the meta device) and,
    per tensor, the shared key and the slicing rule."""

    def __init__(self, spec: ArchSpec, template: nn.Module, net: "Supernet"):
        self.spec = spec
        self.template = template
        self.entries: list[tuple[str, str, Any, SliceContext, tuple, bool]] = []
        for name, t in list(template.named_parameters()) + list(template.named_buffers()):
            is_param = isinstance(t, nn.Parameter)
            key = shared_key(spec, name, template.stem)
            holder = net._shape_of(key, is_param)
            if holder is None or any(a > b for a, b in zip(t.shape, holder)) \
                    or len(t.shape) != len(holder):
                raise UserError(
                    f"supernet of space {net.space.name!r}: {spec.name or spec.arch_id} needs "
                    f"tensor {key} of shape {tuple(t.shape)}, the supernet holds "
                    f"{holder}; is the spec a point of the space at resolution "
                    f"{net.space.resolution}?")
            rule, owner = find_rule(template, name)
            ctx = SliceContext(owner, key, net._transforms(key) if is_param else {})
            self.entries.append((name, key, rule, ctx, tuple(t.shape), is_param))


class _Redraw(Exception):
    """A drawn block-type path that a conditioned decision does not offer."""


def _block_stage(label: str) -> int | None:
    """The stage index of a block-type decision (``stages.2.block``, or a
    conditioned variant such as ``stages.3.block_after_T``), else None."""
    parts = label.split(".")
    if len(parts) == 3 and parts[0] == "stages" and parts[1].isdigit() \
            and parts[2].startswith("block"):
        return int(parts[1])
    return None


class Supernet(nn.Module):
    """Weight-sharing supernet of a 2-D search space.

    ``space``: a space name (``"stagewise"``) or a loaded ``Space``;
    ``resolution``/``width_mult``/``depth_mult``: the proxy setting (as in
    ``hybridnas.spaces.load``; default: the space's own). ``num_classes``,
    ``in_chans``: as for ``build_model``. ``kernel_transform``: learn
    Once-for-All kernel transforms (else a smaller kernel is the plain centre).
    ``probe_samples``/``seed``: how many random draws are built (meta device)
    to find the shared tensors, and their seed.

    Methods: ``activate(spec)`` selects a subnet for ``forward``; ``extract(spec)``
    returns ``build_model(spec)`` holding the subnet's weights;
    ``recalibrate_bn(spec, batches)`` re-estimates its batch-norm statistics;
    ``refit_classifier(spec, batches)`` fits its classifier on its own features;
    ``largest``/``smallest`` are the sandwich ends; ``sample(rng)`` a random subnet.
    """

    def __init__(self, space, resolution: int | None = None, num_classes: int = 1000,
                 in_chans: int = 3, *, width_mult: float | None = None,
                 depth_mult: float | None = None, kernel_transform: bool = True,
                 probe_samples: int = 48, seed: int = 0):
        super().__init__()
        space = _load_space(space, resolution, width_mult, depth_mult)
        if space.dims != 2:
            raise UserError(f"space {space.name!r} is {space.dims}-D: the supernet holds 2-D "
                            f"image spaces only (temporal spaces search with --strategy trials)")
        if space.data is not None:
            raise UserError(f"space {space.name!r} has data decisions ({space.data!r}); the "
                            f"supernet shares weights across architecture decisions only")
        self.space = space
        self.num_classes = int(num_classes)
        self.in_chans = int(in_chans)
        layout = space_layout(space, self.num_classes, self.in_chans, probe_samples, seed)
        self.layout = layout
        self.largest, self.smallest = layout.largest, layout.smallest
        # stage index -> the block families its (unconditioned) decision offers
        self._families = {_block_stage(d.label): list(d.values() or [])
                          for d in space.dimensions
                          if _block_stage(d.label) is not None and d.label.endswith(".block")}
        self.weights = nn.ParameterDict()
        self.kernel_transforms = nn.ParameterDict()
        self.stats = nn.Module()
        for key, shape in sorted(layout.params.items()):
            self.weights[_escape(key)] = nn.Parameter(torch.empty(shape))
        for key, (shape, dtype) in sorted(layout.buffers.items()):
            self.stats.register_buffer(_escape(key), torch.zeros(shape, dtype=dtype))
        if kernel_transform:
            for key, sizes in sorted(layout.kernel_sizes.items()):
                biggest = layout.params[key][-1]
                for k in sorted(sizes):
                    if k < biggest:
                        n = k ** (len(layout.params[key]) - 2)
                        self.kernel_transforms[f"{_escape(key)}@{k}"] = nn.Parameter(torch.eye(n))
        self._init_weights(seed)
        self._templates: OrderedDict[str, nn.Module] = OrderedDict()
        self._plan: _Plan | None = None
        #: arch_id -> classifier tensors refitted on the subnet's own features
        #: (``refit_classifier``); used in eval mode and by ``extract``, dropped
        #: as soon as the supernet trains again
        self._classifiers: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.activate(self.largest)

    # ---- construction ------------------------------------------------------
    def _init_weights(self, seed: int) -> None:
        """Initial values as the builder gives them: each shared tensor is
        filled from a real build of the network part that uses it fully
        (constant tensors such as norm weights and layer scales keep their
        constant; others are drawn with the same mean and deviation)."""
        by_part: dict[int, tuple["_Part", list[str]]] = {}
        for key, part in self.layout.init_from.items():
            by_part.setdefault(id(part), (part, []))[1].append(key)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for part, keys in by_part.values():
                torch.manual_seed(seed)
                found = {}
                for k, t, is_param, _, repeat in part.tensors(self.num_classes, self.in_chans,
                                                              meta=False):
                    if is_param:
                        deepest = self.layout.params  # expand to every block the layout holds
                        for e in (part.expand(k, _MAX_DEPTH) if repeat else [k]):
                            if e in deepest:
                                found[e] = t
                used: set[int] = set()
                for key in keys:
                    src, dst = found[key], self.weights[_escape(key)]
                    fresh = id(src) not in used  # deeper blocks stand for copies: redraw
                    used.add(id(src))
                    if src.numel() == dst.numel() and fresh:
                        dst.copy_(src.reshape(dst.shape))
                    elif bool((src == src.flatten()[0]).all()):
                        dst.fill_(float(src.flatten()[0]))
                    else:
                        std = float(src.float().std()) if src.numel() > 1 else 0.02
                        dst.copy_(torch.randn(dst.shape, generator=gen) * std
                                  + float(src.float().mean()))
            for name, buf in self.stats.named_buffers():
                if name.endswith("running_var"):
                    buf.fill_(1.0)

    def _shape_of(self, key: str, param: bool) -> tuple | None:
        store = self.weights if param else self.stats._buffers
        t = store.get(_escape(key)) if param else store.get(_escape(key))
        return None if t is None else tuple(t.shape)

    def _transforms(self, key: str) -> dict[int, torch.Tensor]:
        prefix = f"{_escape(key)}@"
        return {int(k[len(prefix):]): p for k, p in self.kernel_transforms.items()
                if k.startswith(prefix)}

    # ---- subnets -------------------------------------------------------------
    def activate(self, spec: ArchSpec) -> "Supernet":
        """Select ``spec`` as the subnet ``forward`` runs (returns self)."""
        if self._plan is not None and self._plan.spec == spec:
            return self
        self._plan = self._make_plan(spec)
        return self

    def stage_layers(self) -> list[nn.Module]:
        """The active subnet's stem and stage modules (of its template: a
        forward hook there sees the part's output, a channels-first map)."""
        assert self._plan is not None
        t = self._plan.template
        stages = list(getattr(t, "stages", []))
        unlink(stages)  # channels-first maps at every boundary, as the hooks expect
        return [t.stem, *stages]

    @property
    def active(self) -> ArchSpec:
        """The spec of the active subnet."""
        assert self._plan is not None
        return self._plan.spec

    def _make_plan(self, spec: ArchSpec) -> _Plan:
        key = spec.arch_id
        template = self._templates.pop(key, None)
        if template is None:
            try:
                template = _meta_build(spec, self.num_classes, self.in_chans)
            except SpecError as e:
                raise UserError(f"supernet: {spec.name or spec.arch_id} is not a valid "
                                f"network: {e}") from None
        self._templates[key] = template
        while len(self._templates) > _TEMPLATES:
            self._templates.popitem(last=False)
        return _Plan(spec, template, self)

    def subnet_tensors(self, spec: ArchSpec | None = None) -> dict[str, torch.Tensor]:
        """Name -> tensor (views of the shared tensors, with gradients) for
        every parameter and buffer of ``build_model(spec)`` (default: the
        active subnet)."""
        plan = self._plan if spec is None else self._make_plan(spec)
        assert plan is not None
        out = {}
        for name, key, rule, ctx, shape, is_param in plan.entries:
            shared = self.weights[_escape(key)] if is_param else self.stats._buffers[_escape(key)]
            out[name] = rule(shared, shape, ctx)
        if not self.training or spec is not None:
            out.update(self._classifiers.get(plan.spec.arch_id, {}))
        return out

    def train(self, mode: bool = True) -> "Supernet":
        if mode:  # the shared weights are about to change: refitted classifiers go stale
            self._classifiers.clear()
        return super().train(mode)

    @torch.no_grad()
    def refit_classifier(self, spec: ArchSpec, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                         num_classes: int | None = None, ridge: float = 1e-3) -> bool:
        """Fit the classifier of subnet ``spec`` anew on its own features.

        Subnets whose last stages differ (block family, downsampler) hand the
        one shared classifier features in different bases, so inherited
        logits can rank subnets by how well their features happen to line up
        with it rather than by how good they are. This is the classifier's
        counterpart of batch-norm recalibration: ridge regression of one-hot
        labels on the classifier's inputs over ``batches`` ((inputs, labels)
        in eval mode; ``ridge`` times the number of images is the penalty),
        then one temperature so the logits give a fair loss. The result is
        used by this subnet's eval-mode forward and by ``extract`` until the
        supernet trains again. Returns False (nothing changed) when the
        subnet has no linear classifier."""
        self.activate(spec)
        plan = self._plan
        assert plan is not None
        template = plan.template
        fc = getattr(template, "fc", None)
        names = ["fc.weight", "fc.bias"]
        if getattr(template, "fc_dist", None) is not None:  # averaged with fc: give both
            names += ["fc_dist.weight", "fc_dist.bias"]
        held = {entry[0] for entry in plan.entries}
        if not isinstance(fc, nn.Linear) or not all(n in held for n in names):
            return False  # no linear classifier with a bias: keep the inherited one
        self._classifiers.pop(spec.arch_id, None)
        was_training = self.training
        self.eval()
        feats, labels = [], []
        hook = fc.register_forward_hook(lambda m, i, o: feats.append(i[0].detach().double()))
        try:
            for x, y in batches:
                self(x)
                labels.append(y)
        finally:
            hook.remove()
            if was_training:
                super().train(True)
        if not feats:
            return False
        f = torch.cat(feats).flatten(1)
        y = torch.cat(labels).long().to(f.device)
        classes = int(num_classes or fc.out_features)
        ones = torch.ones(len(f), 1, dtype=f.dtype, device=f.device)
        a = torch.cat([f, ones], 1)
        gram = a.T @ a + ridge * len(f) * torch.eye(a.shape[1], dtype=f.dtype, device=f.device)
        w = torch.linalg.solve(gram, a.T @ nn.functional.one_hot(y, classes).to(f.dtype))
        scores = a @ w
        # one temperature: Newton's method on the cross-entropy in log T
        log_t = torch.zeros((), dtype=f.dtype, device=f.device)
        s_true = scores.gather(1, y[:, None])[:, 0]
        for _ in range(25):
            t = log_t.exp()
            p = (scores * t).softmax(-1)
            s_bar = (p * scores).sum(-1)
            grad = (t * (s_bar - s_true)).mean()
            var = (p * scores ** 2).sum(-1) - s_bar ** 2
            hess = (t * (s_bar - s_true) + t * t * var).mean()
            step = grad / hess if hess > 1e-12 else grad
            log_t = (log_t - step.clamp(-2, 2)).clamp(-10, 10)
            if abs(float(step)) < 1e-6:
                break
        w = (w * log_t.exp()).to(fc.weight.dtype)
        weight, bias = w[:-1].T.contiguous(), w[-1].contiguous()
        self._classifiers[spec.arch_id] = {n: weight if n.endswith("weight") else bias
                                           for n in names}
        while len(self._classifiers) > _TEMPLATES:
            self._classifiers.popitem(last=False)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self._plan is not None
        template = self._plan.template
        template.train(self.training)
        return torch.func.functional_call(template, self.subnet_tensors(), (x,), strict=True)

    def extract(self, spec: ArchSpec | None = None) -> nn.Module:
        """``build_model(spec)`` with the subnet's weights and batch-norm
        statistics copied in (default: the active subnet); on the supernet's
        device, in eval mode."""
        spec = spec or self.active
        tensors = self.subnet_tensors(spec)
        device = next(self.parameters()).device
        with torch.device(device):
            model = build_model(spec, num_classes=self.num_classes, in_chans=self.in_chans)
        with torch.no_grad():
            model.load_state_dict({k: v.detach().clone() for k, v in tensors.items()},
                                  strict=True)
        return model.eval()

    def sample(self, rng: Any = None) -> ArchSpec:
        """A random subnet satisfying the space's constraints."""
        return self.space.sample(rng)

    def sandwich_end(self, hi: bool | None, rng: Any = None, tries: int = 50) -> ArchSpec:
        """A subnet of a block-type path drawn uniformly over the valid paths.

        ``hi`` True/False: the largest/smallest on that path (every numeric
        decision -- width, depth, kernel, ratio -- at its extreme); None: the
        other decisions drawn at random too. Categorical decisions
        (downsampler, stem kind) and stage strides are always drawn.
        Uniform over paths, not per decision: under an ordering rule such
        as ``no_conv_after_attention`` per-decision draws reach a late
        convolution stage only when every stage before it is convolutional,
        so those branches would hardly train. Falls back to
        ``largest``/``smallest``/``sample`` when no draw is a valid network
        the supernet holds. An end may exceed the space's parameter cap:
        the ends bracket the space, they need not be points of it."""
        import numpy as np

        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        for _ in range(tries):
            path = {i: f[int(rng.integers(len(f)))] for i, f in self._families.items() if f}

            def pick(d):
                i = _block_stage(d.label)
                if i is not None and i in path:
                    if path[i] not in (d.values() or []):
                        raise _Redraw
                    return path[i]
                if hi is not None and _numeric(d) and not d.label.endswith(".stride"):
                    return _extreme(d, hi)
                return d.draw(rng)

            try:
                spec = self.space.build(pick)
            except (_Redraw, UserError, SpecError, ValueError, KeyError):
                continue
            if spec.problems(self.space.resolution) or (hi is None and not self.space.check(spec)):
                continue
            try:
                self._make_plan(spec)  # held by the layout (probed, not derived)
            except UserError:
                continue
            return spec
        if hi is None:
            return self.sample(rng)
        return self.largest if hi else self.smallest

    # ---- batch norm ----------------------------------------------------------
    @torch.no_grad()
    def recalibrate_bn(self, spec: ArchSpec, batches: Iterable[torch.Tensor]) -> int:
        """Re-estimate the batch-norm statistics of subnet ``spec`` as the
        plain average over ``batches`` (inputs only), written into the shared
        statistics; leaves ``spec`` active. Returns the batches used."""
        self.activate(spec)
        plan = self._plan
        assert plan is not None
        norms = [m for m in plan.template.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return 0
        tensors = self.subnet_tensors()
        for name, t in tensors.items():
            if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                t.zero_()
            elif name.endswith("running_var"):
                t.fill_(1.0)
        momenta = [m.momentum for m in norms]
        was_training = self.training
        for m in norms:
            m.momentum = None  # cumulative average
        n = 0
        try:
            self.train()
            for x in batches:
                self(x)
                n += 1
        finally:
            for m, mom in zip(norms, momenta):
                m.momentum = mom
            self.train(was_training)
        return n

    def has_batch_norm(self, spec: ArchSpec) -> bool:
        plan = self._make_plan(spec)
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plan.template.modules())

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.weights.values())
        return (f"Supernet(space={self.space.name!r}, resolution={self.space.resolution}, "
                f"shared_tensors={len(self.weights)}, params={n:,}, "
                f"active={self.active.name or self.active.arch_id})")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two outputs (the extraction check)."""
    return float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0

