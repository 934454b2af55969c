"""The ``Space`` class: decisions over an ``ArchSpec``, with Optuna define-by-run
sampling, encode/decode, containment, random sampling, mutation and size.

See ``hybridnas.spaces`` for the file format and the proxy-scale mapping.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from typing import Any

from ..spec import BLOCK_SCHEMAS, ArchSpec, SpecError, StemSpec, downsampled, stage_letter
from ._nodes import (
    Derive,
    Choice,
    Dim,
    EncodeContext,
    Fixed,
    IntRange,
    ListNode,
    MapNode,
    Node,
    OneOf,
    Ref,
    SpaceError,
    build,
    count,
    encode,
    same,
    walk_dims,
)

__all__ = ["Constraints", "Containment", "Space"]


@dataclass(frozen=True)
class Containment:
    """Answer of ``Space.contains``/``Space.check``: truthy when the spec is a
    point of the space; ``reason`` says why not; ``params`` are its decisions
    (``None`` when it is not a point)."""

    ok: bool
    reason: str = ""
    params: dict | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "contained" if self.ok else f"not contained: {self.reason}"


@dataclass(frozen=True)
class Constraints:
    """The ``constraints:`` section of a space file.

    Resolution-dependent checks (attention grid, params, MACs) are made on
    the architecture decoded at ``resolution`` (default: the space's
    reference resolution), so a space holds the same architectures at every
    proxy resolution.
    """

    no_conv_after_attention: bool = False
    heads_divide_width: bool = False
    attention_min_grid: int = 0
    attention_max_grid: int = 0
    min_params: float = 0
    max_params: float = 0
    min_macs: float = 0
    max_macs: float = 0
    resolution: int | None = None
    num_classes: int = 1000

    @classmethod
    def parse(cls, raw: Any, where: str) -> Constraints:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise SpaceError(f"{where}: constraints: expected a mapping, got {raw!r}")
        names = {f.name: f for f in dc_fields(cls)}
        kw = {}
        for key, v in raw.items():
            if key not in names:
                raise SpaceError(f"{where}: constraints.{key}: unknown constraint; known: "
                                 f"{sorted(names)}")
            want = bool if str(names[key].type) == "bool" else (int, float)
            if want is not bool and isinstance(v, str):
                try:  # YAML 1.1 reads 80.0e6 (no exponent sign) as a string
                    v = float(v)
                except ValueError:
                    pass
            if v is not None and (not isinstance(v, want) or (want is not bool and
                                                             isinstance(v, bool))):
                raise SpaceError(f"{where}: constraints.{key}={v!r} has the wrong type")
            if want is not bool and v is not None and v < 0:
                raise SpaceError(f"{where}: constraints.{key}={v} must be >= 0")
            kw[key] = v
        c = cls(**kw)
        for lo, hi in (("min_params", "max_params"), ("min_macs", "max_macs"),
                       ("attention_min_grid", "attention_max_grid")):
            if getattr(c, hi) and getattr(c, lo) > getattr(c, hi):
                raise SpaceError(f"{where}: constraints.{lo}={getattr(c, lo)} exceeds "
                                 f"{hi}={getattr(c, hi)}")
        return c

    def describe(self) -> list[str]:
        out = []
        if self.no_conv_after_attention:
            out.append("no convolution after attention (stage letters C <= I <= T)")
        if self.heads_divide_width:
            out.append("heads divide width")
        if self.attention_min_grid or self.attention_max_grid:
            out.append(f"attention where the token grid is in [{self.attention_min_grid}, "
                       f"{self.attention_max_grid or 'inf'}]")
        for name in ("min_params", "max_params", "min_macs", "max_macs"):
            if getattr(self, name):
                out.append(f"{name} {getattr(self, name):.3g}")
        return out


_LETTER_RANK = {"C": 0, "I": 1, "T": 2}


class Space:
    """A search space loaded from a YAML file (see ``hybridnas.spaces.load``).

    Attributes: ``name``, ``path``, ``dims`` (1 or 2, as in ``ArchSpec``),
    ``resolution`` (the size the decoded architectures are built for),
    ``reference_resolution`` (the size the named architectures are defined
    at), ``width_mult``/``depth_mult``, ``constraints`` and ``dimensions``
    (every decision, with its label, domain and condition).
    """

    def __init__(self, *, name: str, path: str, arch: Node, data: MapNode | None, dims: int,
                 reference_resolution: int, resolution: int | None, min_grid: int,
                 named: list[str], constraints: Constraints, description: str = "",
                 width_mult: float = 1.0, depth_mult: float = 1.0):
        self.name = name
        self.path = path
        self.arch = arch
        self.data = data
        self.dims = dims
        self.reference_resolution = reference_resolution
        self.resolution = resolution or reference_resolution
        self.min_grid = min_grid
        self._named = list(named)
        self.constraints = constraints
        self.description = description
        self.width_mult = float(width_mult)
        self.depth_mult = float(depth_mult)
        self.dimensions: list[Dim] = list(walk_dims(arch))
        if data is not None:
            self.dimensions += list(walk_dims(data))
        self._by_label = {d.label: d for d in self.dimensions}
        self._cache: dict[tuple, int] = {}  # (arch_id, what, resolution, classes) -> count
        # conditional choice sets (see _offer), by label; shared by at() copies
        self._variants: dict[str, Dim] = {}
        self._stage_strides = _stage_strides(arch)
        self._fixed_resolution = data is None or not any(walk_dims(data))

    def __repr__(self) -> str:
        mult = ""
        if self.width_mult != 1 or self.depth_mult != 1:
            mult = f", width_mult={self.width_mult}, depth_mult={self.depth_mult}"
        return f"Space({self.name!r}, resolution={self.resolution}{mult})"

    def at(self, resolution: int | None = None, width_mult: float | None = None,
           depth_mult: float | None = None) -> Space:
        """The same space at another resolution and/or multipliers (a copy;
        the decisions, and so the params of every point, are unchanged)."""
        other = copy.copy(self)
        if resolution is not None:
            other.resolution = int(resolution)
        if width_mult is not None:
            other.width_mult = float(width_mult)
        if depth_mult is not None:
            other.depth_mult = float(depth_mult)
        return other

    # ---- the four ways of taking decisions --------------------------------
    def suggest(self, trial) -> ArchSpec:
        """Define-by-run: call ``trial.suggest_*`` for every active decision
        (labels such as ``stages.2.block``; block parameters only for the
        drawn block, e.g. ``stages.2.mbconv.kernel``; ``data.*`` decisions
        too) and return the architecture. Only ``suggest_*`` is called, so it
        works inside Ray Tune's OptunaSearch define-by-run function.

        Choices that the constraints or the resolution rule out are not
        offered (see "Valid by construction" in ``hybridnas.spaces``): a
        stage after attention offers only attention blocks, under its own
        label (``stages.3.block_after_T``). What cannot be known while
        deciding (a parameter budget) may still be broken: ``suggest``
        cannot redraw inside one Optuna trial without changing what the
        trial records, so the caller checks ``space.check(spec)`` and
        rejects the trial before any training.

        With Ray Tune: ``OptunaSearch(space=lambda t: space.suggest(t) and None,
        metric=[...], mode=[...])``; the trainable rebuilds the spec with
        ``space.decode(config)``.
        """
        spec = self._build(lambda d, base, why: d.suggest(trial))[0]
        if self.data is not None:
            build(self.data, lambda d: d.suggest(trial))
        return spec

    def decode(self, params: Mapping[str, Any]) -> ArchSpec:
        """The architecture for ``params`` (label -> value, as in
        ``trial.params``; extra keys such as ``data.*`` are ignored)."""
        return self._build(self._picker(params))[0]

    def build(self, pick) -> ArchSpec:
        """The architecture with every decision taken by ``pick(dim)``, where
        ``dim`` is the decision as offered at this setting (its choice set
        already conditioned on the earlier decisions and the resolution)."""
        return self._build(lambda d, base, why: pick(d))[0]

    def sample(self, rng: Any = None, max_tries: int = 1000) -> ArchSpec:
        """A random architecture that satisfies every constraint.

        ``rng`` is a ``numpy.random.Generator`` or a seed. Draws that break a
        constraint are redrawn from the same generator, so a seed always
        gives the same architecture.
        """
        rng = _rng(rng)
        reasons: dict[str, int] = {}
        for _ in range(max_tries):
            spec = self._build(lambda d, base, why: d.draw(rng))[0]
            ok = self.check(spec)
            if ok:
                return spec
            key = ok.reason.split(":")[0][:80]
            reasons[key] = reasons.get(key, 0) + 1
        worst = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
        raise SpaceError(f"{self.path}: no architecture satisfies the constraints in {max_tries} "
                         f"draws; most common reasons: {worst}")

    def mutate(self, spec: ArchSpec, rng: Any = None, max_tries: int = 200) -> ArchSpec:
        """A neighbour of ``spec``: one decision redrawn (new conditional
        decisions, e.g. the parameters of a new block type, drawn at random),
        different from ``spec`` and satisfying the constraints."""
        rng = _rng(rng)
        params = self.encode(spec)
        labels = [k for k in params if not k.startswith("data.")]
        for _ in range(max_tries):
            label = labels[int(rng.integers(len(labels)))]
            dim = self._by_label.get(label) or self._variants[label]
            new = dim.draw(rng)
            if same(new, params[label]):
                continue
            out = self._build(self._picker({**params, label: new}, rng))[0]
            if out != spec and self.check(out):
                return out
        raise SpaceError(f"{self.path}: found no valid neighbour of {spec.name or spec.arch_id} "
                         f"in {max_tries} tries")

    # ---- points -------------------------------------------------------------
    def encode(self, spec: ArchSpec, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The decisions (label -> value) that give ``spec``: exactly what
        ``suggest`` puts in ``trial.params`` for it. ``data`` adds the values
        of the ``data.*`` decisions (by name). Raises ``SpaceError`` (saying
        why) when the spec is not a point of the space."""
        params, reason = self._encode(spec)
        if params is None:
            raise SpaceError(f"{spec.name or spec.arch_id} is not a point of space {self.name!r}: "
                             f"{reason}")
        if data is not None:
            params.update(self._encode_data(data))
        return params

    def contains(self, spec: ArchSpec) -> Containment:
        """Whether ``spec`` is a point of the space that satisfies the
        constraints; ``.reason`` says why not, ``.params`` holds its decisions."""
        params, reason = self._encode(spec)
        if params is None:
            return Containment(False, reason)
        ok = self.check(spec)
        return Containment(ok.ok, ok.reason, params)

    def check(self, spec: ArchSpec) -> Containment:
        """Whether a spec drawn from this space may be trained: it validates
        at the space's resolution and meets every constraint of the file.
        (Does not check that the spec is a point of the space: see contains.)"""
        problems = spec.problems(self.resolution)
        if problems:
            return Containment(False, problems[0])
        c = self.constraints
        if c.no_conv_after_attention:
            highest = None
            for i, st in enumerate(spec.stages):
                letter = stage_letter(st)
                if highest is not None and _LETTER_RANK.get(letter, 0) < _LETTER_RANK[highest[1]]:
                    return Containment(False, f"stages[{i}].block={st.block!r} ({letter}) follows "
                                              f"stages[{highest[0]}] ({highest[1]}): the space "
                                              f"has no_conv_after_attention")
                if highest is None or _LETTER_RANK.get(letter, 0) > _LETTER_RANK[highest[1]]:
                    highest = (i, letter)
        if c.heads_divide_width:
            for i, st in enumerate(spec.stages):
                if BLOCK_SCHEMAS[st.block].attention and st.heads and "key_dim" not in \
                        BLOCK_SCHEMAS[st.block].params and st.width % st.heads:
                    return Containment(False, f"stages[{i}].heads={st.heads} does not divide "
                                              f"width={st.width} (heads_divide_width)")
        res = c.resolution or self.reference_resolution
        need_ref = bool(c.attention_min_grid or c.attention_max_grid or c.min_params or
                        c.max_params or c.min_macs or c.max_macs)
        if not need_ref:
            return Containment(True)
        if res == self.resolution and self.width_mult == 1 and self.depth_mult == 1:
            ref = spec
        else:
            params, reason = self._encode(spec)
            if params is None:
                return Containment(False, reason)
            ref = self.at(res, 1.0, 1.0).decode(params)
            problems = ref.problems(res)
            if problems:  # valid only thanks to the multipliers' rounding
                return Containment(False, f"{problems[0]} (at resolution {res} without "
                                          f"multipliers, where the constraints are checked)")
        at = f"at resolution {res}"
        if ref is not spec:  # say which size was checked and which one this search builds
            at = f"at the reference resolution {res}, where the constraints are checked"
        if c.attention_min_grid or c.attention_max_grid:
            built = spec.stage_resolutions(self.resolution)
            for i, (st, hw) in enumerate(zip(ref.stages, ref.stage_resolutions(res))):
                if stage_letter(st) == "C":
                    continue
                grid = min(hw) if ref.dims == 2 else hw[0]
                if grid < c.attention_min_grid or (c.attention_max_grid and
                                                   grid > c.attention_max_grid):
                    here = ""
                    if ref is not spec:
                        g = min(built[i]) if spec.dims == 2 else built[i][0]
                        here = f" ({g}x{g} at this search's resolution {self.resolution})"
                    return Containment(False, f"stages[{i}].block={st.block!r} attends over a "
                                              f"{grid}x{grid} grid {at}{here}; the space allows "
                                              f"attention on grids in [{c.attention_min_grid}, "
                                              f"{c.attention_max_grid or 'inf'}]")
        for what, lo, hi in (("params", c.min_params, c.max_params),
                             ("macs", c.min_macs, c.max_macs)):
            if not (lo or hi):
                continue
            value = self._count(ref, what, res, c.num_classes)
            if value < lo or (hi and value > hi):
                here = "" if ref is spec else f"; this search builds it at {self.resolution}"
                return Containment(False, f"{what}={value:,} {at} ({c.num_classes} classes) is "
                                          f"outside [{lo:.4g}, {hi or math.inf:.4g}]{here}")
        return Containment(True)

    def data_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Values of the ``data:`` decisions (e.g. ``{"lookback": 64}``) from
        ``params``; fixed data values are included. Empty without a data section."""
        if self.data is None:
            return {}
        return build(self.data, self._picker(params))

    # ---- facts --------------------------------------------------------------
    def size(self) -> int | float:
        """Exact number of points before constraints (a Python int, however
        large; ``math.inf`` with a continuous range). ``format_size`` prints
        it as a log10 when huge."""
        n = count(self.arch) * (count(self.data) if self.data is not None else 1)
        return n if math.isinf(n) else int(n)

    def named(self) -> list[str]:
        """Named architectures the file declares as points of the space."""
        return list(self._named)

    def references(self, resolution: int | None = None) -> dict[str, ArchSpec]:
        """The named architectures at ``resolution`` (default: the space's)
        with this space's multipliers: each is decoded from the decisions of
        the published architecture, so it is contained in the space at that
        setting. Keys and ``spec.name`` are the architecture names."""

        return self._references(resolution)[0]

    def unfit_references(self, resolution: int | None = None) -> dict[str, str]:
        """Named architectures that are no points at ``resolution`` (e.g. five
        stride-2 steps on 8x8 images), each with the reason; ``references``
        leaves them out."""
        return self._references(resolution)[1]

    def _references(self, resolution: int | None) -> tuple[dict[str, ArchSpec], dict[str, str]]:
        from ..zoo import get_spec

        base = self.at(self.reference_resolution, 1.0, 1.0)
        target = self.at(resolution)
        out, unfit = {}, {}
        for name in self._named:
            params, reason = base._encode(get_spec(name))
            if params is None:
                raise SpaceError(f"{self.path}: named architecture {name!r} is not a point of the "
                                 f"space: {reason}")
            try:
                out[name] = target.decode(params).replace(name=name)
            except (SpaceError, SpecError) as e:
                unfit[name] = str(e)
        return out, unfit

    # ---- internals ----------------------------------------------------------
    def _count(self, spec: ArchSpec, what: str, resolution: int, num_classes: int) -> int:
        key = (spec.arch_id, what, resolution, num_classes)
        if key not in self._cache:
            if what == "params":
                self._cache[key] = count_params(spec, num_classes)
            else:
                from ..complexity import cost

                self._cache[key] = cost(spec, resolution, num_classes=num_classes).macs
        return self._cache[key]

    def _picker(self, params: Mapping[str, Any], rng: Any = None):
        """``pick`` for ``_build``: values from ``params``; a missing one is an
        error, or drawn from ``rng`` when given (new conditional decisions).
        A conditioned decision takes its value under its own label, the
        unconditioned one or another condition's (params from another
        resolution); a value the condition rules out is an error that says
        why (or redrawn from ``rng``)."""
        def pick(dim: Dim, base: Dim | None = None, why: str = "") -> Any:
            base = base or dim
            label = dim.label if dim.label in params else base.label if base.label in params \
                else next((k for k in params if _variant_of(k) == base.label), None)
            if label is None and getattr(base, "default", None) in getattr(dim, "options", ()):
                return base.default  # params from before the union was added
            if label is None and rng is not None:
                return dim.draw(rng)
            if label is None:
                raise SpaceError(f"space {self.name!r}: params have no value for {dim.label!r}"
                                 + (f" (needed when {dim.condition})" if dim.condition else ""))
            v = params[label]
            if hasattr(v, "item") and not isinstance(v, (str, bytes)):
                v = v.item()  # numpy scalars from Ray Tune configs
            if not dim.contains_value(v):
                if rng is not None and base.contains_value(v):
                    return dim.draw(rng)  # an earlier decision changed what is offered here
                if why and base.contains_value(v):
                    raise SpaceError(f"space {self.name!r}: {base.label}={v!r} {why}")
                raise SpaceError(f"space {self.name!r}: {dim.label}={v!r} is not in "
                                 f"{dim.describe()}")
            return v
        return pick

    # ---- valid by construction ---------------------------------------------------
    def _build(self, pick) -> tuple[ArchSpec, dict[str, Any]]:
        """(spec, params) with every decision taken by ``pick(offered, base,
        why)``: ``base`` is the decision of the file, ``offered`` the same with
        the choices ruled out by earlier decisions or the resolution removed
        (``why`` says why; ``offered is base`` when nothing is ruled out).
        ``params`` are the decisions by offered label, as ``suggest`` records them."""
        seen: dict[tuple, Any] = {}
        used: dict[str, Any] = {}

        def conditioned(dim: Dim) -> Any:
            offered, why = self._offer(dim, seen)
            v = pick(offered, dim, why)
            used[offered.label] = v
            return v

        return self._finish(build(self.arch, conditioned, seen)), used

    def _offer(self, dim: Dim, seen: dict[tuple, Any]) -> tuple[Dim, str]:
        """The decision ``dim`` as offered given the values ``seen`` so far.

        A stage's block and stride keep only the choices that can still give
        a valid architecture: no convolution after attention
        (``no_conv_after_attention``), no attention on a grid below
        ``attention_min_grid`` (at the constraints' resolution), no stride
        that shrinks a map below 1x1 at this resolution (later stages at
        their smallest stride). A narrowed choice gets its own label
        (``<label>_after_T``, ``<label>_no_attn``, ``<label>_max_1``):
        Optuna keeps one set of choices per parameter name.
        """
        sp = dim.spath
        if isinstance(dim, OneOf) and sp == () and self._fixed_resolution and self.min_grid >= 2:
            # architecture families whose fixed strides cannot fit this resolution
            fits = {k: _template_fits(o, self.resolution) for k, o in dim.options.items()}
            dropped = [k for k, ok in fits.items() if not ok]
            if not dropped or len(dropped) == len(fits):
                return dim, ""
            label = f"{dim.label}_no_{'_'.join(dropped)}"
            if label not in self._variants:
                self._variants[label] = dataclasses.replace(
                    dim, label=label, options={k: o for k, o in dim.options.items() if fits[k]},
                    condition=f"{', '.join(dropped)} cannot fit {self.resolution}px")
            return self._variants[label], (f"cannot fit resolution {self.resolution}: its stage "
                                           f"strides shrink a map below 1x1")
        info = self._stage_strides.get(id(dim))
        if not isinstance(dim, Choice) or info is None or sp[2] not in ("block", "stride"):
            return dim, ""
        i, mins = info
        mins = mins[: seen.get(("stages", "length"), len(mins))]
        c = self.constraints
        ordered = c.no_conv_after_attention
        top, at = 0, None  # highest letter so far (with no_conv_after_attention)
        for j in range(i + (sp[2] == "stride")):
            r = _LETTER_RANK.get(_lowest_letter(seen, j), 0)
            if r > top:
                top, at = r, j
        earlier = [seen.get(("stages", j, "stride"), 2) for j in range(i)]
        ref_res = c.resolution or self.reference_resolution
        ref_stem = _stem_reduction(seen) if c.attention_min_grid else None

        def grids(own: int) -> tuple[int, int]:
            """(this stage's grid, the last stage's) at the constraints' resolution."""
            g = _shrink(ref_res, [ref_stem] + earlier + [own])
            return g, _shrink(g, mins[i + 1:])

        def attention_fits(own: int, this_attends: bool) -> bool:
            if ref_stem is None:
                return True
            here, last = grids(own)
            if this_attends and here < c.attention_min_grid:
                return False
            # after attention every later stage attends too
            return not (ordered and (this_attends or top) and last < c.attention_min_grid)

        if sp[2] == "block":
            keep, parts, whys = list(dim.options), [], []
            if ordered and top:
                letter = "CIT"[top]
                keep = [o for o in keep if _LETTER_RANK.get(_highest_letter(o), 0) >= top]
                parts.append(f"after_{letter}")
                whys.append(f"would follow attention ({letter}) in stages[{at}]: the space has "
                            f"no_conv_after_attention")
            if ref_stem is not None and not attention_fits(mins[i], True):
                keep = [o for o in keep if not _attends(o)]
                parts.append("no_attn")
                whys.append(f"would attend over a {grids(mins[i])[0]}x{grids(mins[i])[0]} grid "
                            f"(or leave one for a later stage) at {self._checked_at(ref_res)}; "
                            f"the space has attention_min_grid {c.attention_min_grid}")
            return self._narrowed(dim, keep, "_".join(parts), "; ".join(whys))
        attends = _attends(seen.get(("stages", i, "block")))
        floor = _stem_floor(seen, self.min_grid) if self._fixed_resolution else None
        size = _shrink(self.resolution, [floor] + earlier) if floor is not None else None
        options = [o for o in dim.options if isinstance(o, int)]
        by_size = [o for o in options if size is None or _fits(size, [o] + mins[i + 1:])]
        by_grid = [o for o in options if attention_fits(o, attends)]
        keep = [o for o in by_size if o in by_grid]
        whys = []
        if len(by_size) < len(options):
            whys.append(f"would shrink a {size}x{size} map below 1x1 by the last stage at "
                        f"resolution {self.resolution}")
        if len(by_grid) < len(options):
            whys.append(f"would leave attention a grid below attention_min_grid "
                        f"{c.attention_min_grid} at {self._checked_at(ref_res)}")
        return self._narrowed(dim, keep, f"max_{max(keep)}" if keep else "", " or ".join(whys))

    def _checked_at(self, ref_res: int) -> str:
        """Where a grid rule was checked, naming this search's own resolution too."""
        if ref_res == self.resolution:
            return f"resolution {ref_res}"
        return (f"the reference resolution {ref_res}, where the constraints are checked "
                f"(this search's resolution is {self.resolution})")

    def _narrowed(self, dim: Choice, keep: list, suffix: str, why: str) -> tuple[Dim, str]:
        if not keep or len(keep) == len(dim.options):
            return dim, ""  # nothing left to offer: check() explains the rejection
        label = f"{dim.label}_{suffix}"
        if label not in self._variants:
            cond = f"{dim.condition}, {suffix}" if dim.condition else suffix
            self._variants[label] = dataclasses.replace(dim, label=label, options=tuple(keep),
                                                        condition=cond)
        return self._variants[label], why

    def _encode(self, spec: ArchSpec, limit: int = 256) -> tuple[dict | None, str]:
        if spec.dims != self.dims:
            return None, f"dims={spec.dims} but the space is {self.dims}-D"
        target = spec.to_dict()
        target.pop("name", None)
        target.pop("dims", None)
        ctx = EncodeContext(self._candidates)
        diff = ""
        for i, params in enumerate(encode(self.arch, target, ctx)):
            if i >= limit:
                break
            try:
                got, used = self._build(self._picker(params))
            except (SpaceError, SpecError) as e:
                diff = diff or str(e)
                continue
            if got == spec:
                return used, ""
            diff = diff or _first_difference(got.to_dict(), spec.to_dict())
        return None, diff or ctx.failure or "no decisions of the space give this spec"

    def _encode_data(self, data: Mapping[str, Any]) -> dict:
        assert self.data is not None
        out = {}
        for name, node in self.data.fields.items():
            if isinstance(node, Dim):
                if name not in data:
                    raise SpaceError(f"space {self.name!r}: data value {name!r} missing")
                out[node.label] = data[name]
        return out

    def _candidates(self, dim: Dim, observed: Any) -> list:
        """Values of ``dim`` that may have produced ``observed`` at this
        setting: the exact match first, then (for fields that multipliers or
        the proxy stem change) the nearest values."""
        vals = dim.values()
        if vals is not None:
            exact = [v for v in vals if same(v, observed)]
        else:
            exact = [observed] if dim.contains_value(observed) else []
        kind = _field_kind(dim.spath)
        if kind is None or isinstance(observed, bool) or not isinstance(observed, (int, float)):
            return exact
        mult = {"width": self.width_mult, "depth": self.depth_mult}.get(kind, 1.0)
        if kind in ("width", "depth", "clipped") and self.depth_mult == 1.0 and mult == 1.0:
            return exact
        if vals is None:
            step = getattr(dim, "step", None) or 1
            center = observed / mult
            base = [round(center / step) * step + k * step for k in (0, -1, 1, -2, 2)]
            vals = [type(observed)(v) for v in base if dim.contains_value(type(observed)(v))]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if kind in ("stem_kernel", "stem_stride"):
            more = sorted(v for v in nums if observed >= 1 and v > observed and
                          v % observed == 0)
        elif kind == "clipped":  # attn_blocks: cut to the scaled depth
            more = sorted(v for v in nums if v > observed)
        elif kind == "depth":  # an unscaled match is no preimage here: only images count
            more = [v for v in nums if (max(1, math.ceil(v * mult)) if v > 0 else 0) == observed]
            return sorted(more, key=lambda v: abs(v * mult - observed))
        else:
            # the rounding quantum depends on the stage (heads, head_dim): keep
            # values whose image under some quantum dividing the width matches
            quanta = [q for q in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
                      if isinstance(observed, int) and observed % q == 0] or [8]
            more = [v for v in nums if any(_scale(v, mult, q) == observed for q in quanta)]
            return sorted(more, key=lambda v: abs(v * mult - observed))
        return exact + [v for v in more if not any(same(v, e) for e in exact)]

    def _finish(self, raw: dict) -> ArchSpec:
        """Concrete spec dict (fresh from ``build``) -> ArchSpec at this
        setting: multipliers, references, heads/head_dim, proxy stem, grids."""
        d = raw
        stages = d["stages"]
        if self.width_mult != 1.0:
            self._scale_widths(d)
        if self.depth_mult != 1.0:
            for st in stages:
                if isinstance(st.get("depth"), int) and st["depth"] > 0:
                    st["depth"] = max(1, math.ceil(st["depth"] * self.depth_mult))
                    if isinstance(st.get("attn_blocks"), int):
                        st["attn_blocks"] = min(st["attn_blocks"], st["depth"])
        _resolve_refs(d, d, self)
        for st in stages:
            schema = BLOCK_SCHEMAS.get(st.get("block"))
            # A space that decides heads keeps head_dim = width / heads (the
            # schema default head_dim would otherwise be filled in).
            if (schema is not None and "heads" in st and "head_dim" not in st
                    and "head_dim" in schema.params and isinstance(st.get("heads"), int)
                    and st["heads"] > 0 and st.get("width", 0) % st["heads"] == 0):
                st["head_dim"] = st["width"] // st["heads"]
        self._proxy_stem(d)
        derived = [(i, k) for i, st in enumerate(stages) for k, v in st.items()
                   if isinstance(v, Derive)]
        if derived:
            for i, k in derived:
                stages[i][k] = 1
            grids = ArchSpec.from_dict(d, source=f"space {self.name}").stage_resolutions(
                self.resolution)
            for i, k in derived:
                stages[i][k] = max(1, grids[i][0])
        d["dims"] = self.dims
        return ArchSpec.from_dict(d, source=f"space {self.name}")

    def _scale_widths(self, d: dict) -> None:
        m = self.width_mult

        def scale(w: Any, q: int = 8) -> Any:
            if not isinstance(w, int) or isinstance(w, bool) or w <= 0:
                return w
            return _scale(w, m, q)

        stem = d.get("stem")
        if isinstance(stem, dict):
            if isinstance(stem.get("widths"), list):
                stem["widths"] = [scale(w) for w in stem["widths"]]
            if stem.get("proj"):
                stem["proj"] = scale(stem["proj"])
        for st in d["stages"]:
            schema = BLOCK_SCHEMAS.get(st.get("block"))
            q = 8
            if schema is not None and schema.attention and "key_dim" not in schema.params:
                # keep heads x head_dim = width exact
                unit = st.get("head_dim") if "head_dim" in st else st.get("heads") if "heads" in st \
                    else schema.params.get("head_dim")
                if isinstance(unit, int) and unit > 0:
                    q = math.lcm(8, unit)
            st["width"] = scale(st.get("width"), q)
        head = d.get("head")
        if isinstance(head, dict) and head.get("hidden"):
            head["hidden"] = scale(head["hidden"])

    def _proxy_stem(self, d: dict) -> None:
        """Remove stem downsampling until the last stage's grid at this
        resolution is at least ``min_grid`` (see the package docstring)."""
        stem = d.setdefault("stem", {})
        if stem.get("kind", "conv") == "none" or not self.min_grid:
            return
        stage_strides = [st.get("stride", 2) for st in d["stages"]]
        while True:
            spec_stem = StemSpec(**stem)
            size = self.resolution
            for s in list(spec_stem.strides) + stage_strides:
                size = downsampled(size, s)
            if size >= self.min_grid or spec_stem.reduction <= 1:
                return
            if spec_stem.kind == "patchify":
                k = spec_stem.kernel
                if k % 2:
                    return
                stem["kernel"] = k // 2
                if "strides" in stem:
                    stem["strides"] = [k // 2]
            else:
                strides = list(spec_stem.strides)
                j = max(i for i, s in enumerate(strides) if s > 1)
                strides[j] = strides[j] // 2 if strides[j] % 2 == 0 else 1
                stem["strides"] = strides


_VARIANT = re.compile(r"^(.*?)_(after_[CIT](_no_attn)?|no_\w+|max_\d+)$")


def _variant_of(label: str) -> str | None:
    """The label a narrowed decision's label was made from (None if none)."""
    m = _VARIANT.match(label)
    return m.group(1) if m else None


def _highest_letter(block: Any) -> str:
    """The highest stage letter a block can give (an efficientformer stage is
    C, I or T depending on its attn_blocks)."""
    if block == "efficientformer":
        return "T"
    schema = BLOCK_SCHEMAS.get(block)
    return schema.letter if schema is not None else "?"


def _lowest_letter(seen: dict[tuple, Any], j: int) -> str:
    """Stage ``j``'s letter as far as its decisions tell (the lower one when
    the depth multiplier may still change it)."""
    block = seen.get(("stages", j, "block"))
    if block == "efficientformer":
        attn, depth = seen.get(("stages", j, "attn_blocks")), seen.get(("stages", j, "depth"))
        if isinstance(attn, int) and isinstance(depth, int):
            return "T" if attn >= depth else "I" if attn else "C"
        return "C"
    return _highest_letter(block)


def _attends(block: Any) -> bool:
    """Whether a stage of this block always attends (an efficientformer stage
    may be all convolution)."""
    return block != "efficientformer" and _highest_letter(block) in ("I", "T")


def _smallest_stride(node: Node | None) -> int:
    """The smallest stride a stage's ``stride`` node can give."""
    if node is None:
        return 2  # StageSpec's default stride
    if isinstance(node, Fixed) and isinstance(node.value, int):
        return node.value
    if isinstance(node, Choice):
        return min((o for o in node.options if isinstance(o, int)), default=1)
    if isinstance(node, IntRange):
        return node.low
    return 1


def _stage_strides(arch: Node) -> dict[int, tuple[int, list[int]]]:
    """For the block and stride choices of every stage: (stage index, the
    smallest stride each stage can take), by ``id`` of the choice."""
    out: dict[int, tuple[int, list[int]]] = {}

    def visit(node: Node) -> None:
        if isinstance(node, OneOf):
            for o in node.options.values():
                visit(o)
        elif isinstance(node, MapNode):
            for child in node.fields.values():
                visit(child)
        elif isinstance(node, ListNode) and node.spath == ("stages",):
            items = [it if isinstance(it, MapNode) else MapNode({}) for it in node.items]
            mins = [_smallest_stride(it.fields.get("stride")) for it in items]
            for i, it in enumerate(items):
                for key in ("block", "stride"):
                    if isinstance(it.fields.get(key), Choice):
                        out[id(it.fields[key])] = (i, mins)

    visit(arch)
    return out


def _template_fits(node: Node, resolution: int) -> bool:
    """Whether an architecture template can fit ``resolution`` at all: its
    stages at their smallest strides after the least stem downsampling the
    proxy can leave (for a proxy with ``min_grid >= 2``)."""
    if not isinstance(node, MapNode) or not isinstance(node.fields.get("stages"), ListNode):
        return True  # nested unions and the like: not judged here
    stem = node.fields.get("stem")
    fixed = {k: v.value for k, v in (stem.fields.items() if isinstance(stem, MapNode) else ())
             if isinstance(v, Fixed)}
    floor = _stem_floor({("stem", k): v for k, v in fixed.items()}, 2)
    if floor is None or "kind" not in fixed:
        floor = 1  # a decided stem kind: assume the least downsampling
    stages = node.fields["stages"]
    n = min(stages.length.values() or [len(stages.items)]) if stages.length is not None \
        else len(stages.items)
    mins = [_smallest_stride(it.fields.get("stride")) if isinstance(it, MapNode) else 1
            for it in stages.items[:n]]
    return _fits(_shrink(resolution, [floor]), mins)


def _stem_reduction(seen: dict[tuple, Any]) -> int | None:
    """The stem's downsampling as decided (no proxy), or None when ``seen``
    does not tell it. Used at the constraints' resolution, where the stem
    keeps its downsampling whenever the last grid there is >= min_grid."""
    kind = seen.get(("stem", "kind"), StemSpec.kind)
    if kind == "none":
        return 1
    if kind == "patchify":
        k = seen.get(("stem", "kernel"), StemSpec.kernel)
        return k if isinstance(k, int) else None
    strides = [v for k, v in seen.items() if k[:2] == ("stem", "strides") and len(k) == 3
               and isinstance(k[2], int)]
    if not strides or not all(isinstance(v, int) for v in strides):
        return None
    return math.prod(strides)


def _stem_floor(seen: dict[tuple, Any], min_grid: int) -> int | None:
    """The least downsampling the proxy stem can come down to (see "Proxy
    scale"), or None when it cannot be told from ``seen``."""
    kind = seen.get(("stem", "kind"), StemSpec.kind)
    if kind == "none":
        return 1
    if min_grid < 2:
        return None  # the proxy keeps the stem as it is: not known before the end
    if kind == "patchify":
        k = seen.get(("stem", "kernel"), StemSpec.kernel)
        while isinstance(k, int) and k > 1 and k % 2 == 0:
            k //= 2
        return k if isinstance(k, int) else None
    return 1


def _shrink(size: int, strides: list) -> int:
    for s in strides:
        size = downsampled(size, s) if isinstance(s, int) else size
    return size


def _fits(size: int, strides: list[int]) -> bool:
    """Whether ``strides`` in a row never shrink a ``size`` map below 1x1 (as
    ``ArchSpec.problems`` checks it)."""
    for s in strides:
        if s > 1 and size < s:
            return False
        size = downsampled(size, s)
    return True


def _scale(width: int, mult: float, quantum: int) -> int:
    """``width * mult`` rounded to a multiple of ``quantum`` (at least one)."""
    return max(quantum, round(width * mult / quantum) * quantum)


def count_params(spec: ArchSpec, num_classes: int = 1000) -> int:
    """Parameter count of the built model, built on the meta device (no
    memory, no initialisation: far cheaper than a CPU build; see
    ``benchmarks/bench_spaces.py``)."""
    import torch

    from ..builder import build_model

    try:
        with torch.device("meta"):
            model = build_model(spec, num_classes=num_classes)
    except (RuntimeError, NotImplementedError, TypeError):
        # A block whose constructor needs real tensor values: count on the CPU.
        model = build_model(spec, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def _field_kind(spath: tuple) -> str | None:
    """Which transformation may change the value at ``spath``."""
    if not spath:
        return None
    if spath[0] == "stem" and len(spath) >= 2:
        if spath[1] in ("widths", "proj"):
            return "width"
        if spath[1] == "kernel":
            return "stem_kernel"
        if spath[1] == "strides":
            return "stem_stride"
    if spath[0] == "stages" and len(spath) == 3:
        if spath[2] == "width":
            return "width"
        if spath[2] == "depth":
            return "depth"
        if spath[2] == "attn_blocks":
            return "clipped"
    if spath[:2] == ("head", "hidden"):
        return "width"
    return None


def _lookup(d: Any, path: tuple) -> Any:
    cur = d
    for p in path:
        if isinstance(p, int) and isinstance(cur, list) and -len(cur) <= p < len(cur) or isinstance(p, str) and isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise KeyError(p)
    return cur


def _resolve_refs(node: Any, root: dict, space: Space, depth: int = 0) -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            node[k] = _resolve_refs(v, root, space, depth)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            node[i] = _resolve_refs(v, root, space, depth)
    elif isinstance(node, Ref):
        if depth > 16:
            raise SpaceError(f"{space.path}: reference cycle through {node.text!r}")
        try:
            target = _lookup(root, node.path)
        except KeyError:
            if node.path[0] in ("stem", "head") and len(node.path) == 2:
                target = _spec_default(node.path)  # a field left at its default
            else:
                raise SpaceError(f"{space.path}: {node.label}: ref {node.text!r} points to nothing "
                                 f"in this architecture") from None
        return _resolve_refs(target, root, space, depth + 1)
    return node


def _spec_default(path: tuple) -> Any:
    from ..spec import HeadSpec

    obj = StemSpec() if path[0] == "stem" else HeadSpec()
    return getattr(obj, path[1])


def _first_difference(got: Any, want: Any, where: str = "") -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        for k in list(want) + [k for k in got if k not in want]:
            if k == "name":
                continue
            sub = f"{where}.{k}" if where else k
            if k not in got or k not in want:
                return f"{sub}: the spec has {want.get(k)!r}, the space gives {got.get(k)!r}"
            r = _first_difference(got[k], want[k], sub)
            if r:
                return r
        return ""
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want)):
            r = _first_difference(g, w, f"{where}[{i}]")
            if r:
                return r
        return ""
    if not same(got, want):
        return f"{where}: the spec has {want!r}, the space gives {got!r}"
    return ""


def _rng(rng: Any):
    import numpy as np

    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def format_size(n: float) -> str:
    """``1,536`` for small spaces, ``10^17.3`` for huge ones, ``inf`` for continuous."""
    if math.isinf(n):
        return "inf (continuous)"
    if n < 1e6:
        return f"{int(n):,}"
    return f"10^{math.log10(n):.1f}"
