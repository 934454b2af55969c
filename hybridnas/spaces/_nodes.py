"""The nodes a space file is parsed into, and the parser that checks it.

A space's ``arch`` section is a template of ``ArchSpec.to_dict()``: every
value is either fixed or replaced by a node below. Parsing checks each value
against the spec field it stands for, so a malformed file fails at load time
with the file, the key path and what is wrong.

Each node is visited by three walks that must agree, which is why they live
side by side here:

- ``build(node, pick)``: ``pick(dim)`` supplies each decision (an Optuna
  trial, a random generator or a params dict); returns a concrete spec dict
  with ``Ref``/``Derive`` placeholders left for the space to resolve;
- ``encode(node, value, ctx)``: yields the decisions that could have produced
  ``value`` (the space keeps the first that decodes back to the spec);
- ``count(node)``: number of points below the node.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import spec as _spec
from ..errors import UserError
from ..spec import (
    ACTS,
    ATTENTION_KINDS,
    BLOCK_PARAM_FIELDS,
    BLOCK_SCHEMAS,
    CONV_NORMS,
    DOWNSAMPLE_KINDS,
    HEAD_POOLS,
    NORMS,
    STEM_KINDS,
    ArchSpec,
    HeadSpec,
    StageSpec,
    StemSpec,
)

__all__ = [
    "Choice",
    "Derive",
    "Dim",
    "Fixed",
    "FloatRange",
    "IntRange",
    "ListNode",
    "MapNode",
    "OneOf",
    "Parser",
    "Ref",
    "SpaceError",
    "build",
    "count",
    "encode",
    "same",
]


class SpaceError(UserError):
    """A space file is malformed, or params/specs do not fit the space. The
    message names the file, the key path and what is wrong."""


# --------------------------------------------------------------------------
# nodes
# --------------------------------------------------------------------------

class Node:
    spath: tuple = ()  # where the value lands in ArchSpec.to_dict()


@dataclass(eq=False)
class Fixed(Node):
    value: Any
    spath: tuple = ()


@dataclass(eq=False)
class Ref(Node):
    """``{ref: stages.-1.width}``: the same value as another field of the
    architecture (after width/depth multipliers)."""
    path: tuple
    text: str
    label: str
    spath: tuple = ()


@dataclass(eq=False)
class Derive(Node):
    """``{derive: grid}``: the side of the stage's token grid at the space's
    resolution (relative-bias tables and position embeddings sized to fit)."""
    kind: str
    label: str
    spath: tuple = ()


@dataclass(eq=False)
class Dim(Node):
    """One decision of the space, named by its stable hierarchical ``label``."""
    label: str
    spath: tuple = ()
    condition: str = ""  # e.g. "stages.2.block=mbconv"; "" when always present

    def values(self) -> list | None:
        """Every value, or None when there are too many to list."""
        raise NotImplementedError

    def contains_value(self, value: Any) -> bool:
        raise NotImplementedError

    def suggest(self, trial) -> Any:
        raise NotImplementedError

    def draw(self, rng) -> Any:
        raise NotImplementedError

    def count(self) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(eq=False)
class Choice(Dim):
    options: tuple = ()

    def values(self) -> list:
        return list(self.options)

    def contains_value(self, value: Any) -> bool:
        return any(same(value, o) for o in self.options)

    def suggest(self, trial) -> Any:
        return trial.suggest_categorical(self.label, list(self.options))

    def draw(self, rng) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def count(self) -> float:
        return len(self.options)

    def describe(self) -> str:
        return "{" + ", ".join(_fmt(o) for o in self.options) + "}"


@dataclass(eq=False)
class IntRange(Dim):
    low: int = 0
    high: int = 0
    step: int = 1
    log: bool = False

    def values(self) -> list | None:
        n = self.count()
        return list(range(self.low, self.high + 1, self.step)) if n <= 4096 else None

    def contains_value(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def suggest(self, trial) -> Any:
        return trial.suggest_int(self.label, self.low, self.high, step=self.step, log=self.log)

    def draw(self, rng) -> Any:
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return min(self.high, max(self.low, int(v)))
        return self.low + self.step * int(rng.integers((self.high - self.low) // self.step + 1))

    def count(self) -> float:
        return (self.high - self.low) // self.step + 1

    def describe(self) -> str:
        extra = f" step {self.step}" if self.step != 1 else ""
        return f"int [{self.low}, {self.high}]{extra}{' log' if self.log else ''}"


@dataclass(eq=False)
class FloatRange(Dim):
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False

    def values(self) -> list | None:
        if self.step is None or self.count() > 4096:
            return None
        return [self._snap(self.low + i * self.step) for i in range(int(self.count()))]

    def _snap(self, v: float) -> float:
        return round(v, 10)

    def contains_value(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-9

    def suggest(self, trial) -> Any:
        return trial.suggest_float(self.label, self.low, self.high, step=self.step, log=self.log)

    def draw(self, rng) -> Any:
        if self.step is not None:
            return self._snap(self.low + self.step * int(rng.integers(int(self.count()))))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def count(self) -> float:
        if self.step is None:
            return math.inf
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    def describe(self) -> str:
        extra = f" step {self.step}" if self.step is not None else ""
        return f"float [{self.low}, {self.high}]{extra}{' log' if self.log else ''}"


@dataclass(eq=False)
class OneOf(Dim):
    """``{oneof: {key: template, ...}}``: a categorical decision among
    sub-templates; decisions inside option ``key`` are labelled ``<path>.key.*``.

    ``default`` (``default: key`` in the file, or None) is the option a space
    had before the others were added: its decisions keep the labels they had
    (no ``key.`` part), and params without this decision's label take it, so
    params recorded before the union still decode."""
    options: dict = field(default_factory=dict)
    default: str | None = None

    def values(self) -> list:
        return list(self.options)

    def contains_value(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options

    def suggest(self, trial) -> Any:
        return trial.suggest_categorical(self.label, list(self.options))

    def draw(self, rng) -> Any:
        keys = list(self.options)
        return keys[int(rng.integers(len(keys)))]

    def count(self) -> float:
        return sum(count(o) for o in self.options.values())

    def describe(self) -> str:
        return "one of {" + ", ".join(self.options) + "}"


@dataclass(eq=False)
class MapNode(Node):
    """A mapping; ``switches[f][v]`` holds the fields that exist only when
    field ``f`` takes value ``v`` (written ``by_f: {v: {...}}`` in the file)."""
    fields: dict
    switches: dict = field(default_factory=dict)
    spath: tuple = ()


@dataclass(eq=False)
class ListNode(Node):
    """A list; with ``length`` (a Dim) only the first ``length`` items exist."""
    items: list
    length: Dim | None = None
    spath: tuple = ()


def same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML and specs mix the two)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _fmt(v: Any) -> str:
    return "null" if v is None else str(v)


# --------------------------------------------------------------------------
# the three walks
# --------------------------------------------------------------------------

def build(node: Node, pick: Callable[[Dim], Any], seen: dict | None = None) -> Any:
    """Concrete value of ``node`` with every decision taken by ``pick``.

    ``seen`` (optional) collects the values built so far by spec path
    (fixed values and decisions alike, in build order: stem, then stage by
    stage), so that ``pick`` can condition a decision on earlier ones."""
    if isinstance(node, Fixed):
        v = node.value
        if seen is not None and node.spath:
            seen[node.spath] = v
        return list(v) if isinstance(v, (list, tuple)) else v
    if isinstance(node, (Ref, Derive)):
        return node
    if isinstance(node, OneOf):
        return build(node.options[pick(node)], pick, seen)
    if isinstance(node, Dim):
        v = pick(node)
        if seen is not None and node.spath:
            seen[node.spath] = v
        return v
    if isinstance(node, MapNode):
        out = {k: build(child, pick, seen) for k, child in node.fields.items()}
        for name, branches in node.switches.items():
            branch = branches.get(out[name])
            if branch is not None:
                out.update(build(branch, pick, seen))
        return out
    if isinstance(node, ListNode):
        n = pick(node.length) if node.length is not None else len(node.items)
        if seen is not None and node.spath:
            seen[node.spath + ("length",)] = n
        return [build(node.items[i], pick, seen) for i in range(n)]
    raise TypeError(f"not a space node: {node!r}")


@dataclass
class EncodeContext:
    """What ``encode`` needs besides the template: how to list the values of
    a decision that could have produced an observed value, and where to note
    why the first attempt failed."""
    candidates: Callable[[Dim, Any], list]
    failure: str = ""

    def fail(self, msg: str) -> None:
        if not self.failure:
            self.failure = msg


def encode(node: Node, value: Any, ctx: EncodeContext) -> Iterator[dict]:
    """Yield decision dicts (label -> value) under which ``node`` could give
    ``value``. Numeric fixed values are not compared here: multipliers and
    the proxy stem change them, so the caller decodes and compares instead."""
    if isinstance(node, Fixed):
        if isinstance(node.value, (str, bool)) and not same(value, node.value):
            ctx.fail(f"{_spath(node.spath)}={value!r} but the space fixes it to {node.value!r}")
            return
        yield {}
    elif isinstance(node, (Ref, Derive)):
        yield {}
    elif isinstance(node, OneOf):
        for key, option in node.options.items():
            for d in encode(option, value, ctx):
                yield {node.label: key, **d}
    elif isinstance(node, Dim):
        cands = ctx.candidates(node, value)
        if not cands:
            ctx.fail(f"{_spath(node.spath)}={value!r} is not a value of {node.label} "
                     f"{node.describe()}")
        for c in cands:
            yield {node.label: c}
    elif isinstance(node, MapNode):
        if not isinstance(value, dict):
            ctx.fail(f"{_spath(node.spath)}: expected a mapping, got {value!r}")
            return
        parts: list[tuple[Node, Any]] = [(child, value.get(k)) for k, child in node.fields.items()]
        yield from _encode_map(node, parts, value, 0, {}, ctx)
    elif isinstance(node, ListNode):
        if not isinstance(value, (list, tuple)):
            ctx.fail(f"{_spath(node.spath)}: expected a list, got {value!r}")
            return
        n = len(value)
        head: dict = {}
        if node.length is not None:
            if not node.length.contains_value(n):
                ctx.fail(f"{_spath(node.spath)} has {n} entries; {node.length.label} allows "
                         f"{node.length.describe()}")
                return
            head = {node.length.label: n}
        elif n != len(node.items):
            ctx.fail(f"{_spath(node.spath)} has {n} entries; the space has {len(node.items)}")
            return
        yield from _encode_seq([(node.items[i], value[i]) for i in range(n)], 0, head, ctx)


def _encode_seq(parts, i, acc, ctx) -> Iterator[dict]:
    if i == len(parts):
        yield acc
        return
    node, v = parts[i]
    for d in encode(node, v, ctx):
        yield from _encode_seq(parts, i + 1, {**acc, **d}, ctx)


def _encode_map(node: MapNode, parts, value, i, acc, ctx) -> Iterator[dict]:
    for d in _encode_seq(parts, 0, acc, ctx):
        branches = [(b, value) for name, bs in node.switches.items()
                    if (b := bs.get(value.get(name))) is not None]
        yield from _encode_seq(branches, 0, d, ctx)


def _spath(spath: tuple) -> str:
    out = ""
    for p in spath:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "spec"


def count(node: Node) -> float:
    """Number of points below ``node`` (math.inf with a continuous range)."""
    if isinstance(node, (Fixed, Ref, Derive)):
        return 1
    if isinstance(node, Dim):
        return node.count()
    if isinstance(node, MapNode):
        total = 1
        for k, child in node.fields.items():
            if k in node.switches:
                vals = child.values() if isinstance(child, Dim) else [child.value]
                total *= sum(count(node.switches[k][v]) if v in node.switches[k] else 1
                             for v in vals)
            else:
                total *= count(child)
        return total
    if isinstance(node, ListNode):
        if node.length is None:
            return math.prod(count(i) for i in node.items)
        return sum(math.prod(count(i) for i in node.items[:n]) for n in node.length.values())
    raise TypeError(node)


def walk_dims(node: Node) -> Iterator[Dim]:
    """Every decision below ``node``, parents before children."""
    if isinstance(node, Dim):
        yield node
    if isinstance(node, OneOf):
        for o in node.options.values():
            yield from walk_dims(o)
    elif isinstance(node, MapNode):
        for k, child in node.fields.items():
            yield from walk_dims(child)
            for branch in node.switches.get(k, {}).values():
                yield from walk_dims(branch)
    elif isinstance(node, ListNode):
        if node.length is not None:
            yield node.length
        for item in node.items:
            yield from walk_dims(item)


# --------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------

DIM_KEYS = ("choice", "int", "float", "oneof")
SPECIAL_KEYS = DIM_KEYS + ("ref", "derive", "list", "include")
DERIVE_KINDS = ("grid",)

_FIELD_TYPES = {
    # ArchSpec fields besides stem/stages/head (e.g. assets for temporal specs)
    "arch": {f.name: str(f.type) for f in dataclasses.fields(ArchSpec)
             if f.name not in ("stem", "stages", "head", "name", "dims")},
    "stem": {f.name: str(f.type) for f in dataclasses.fields(StemSpec)},
    "stage": {f.name: str(f.type) for f in dataclasses.fields(StageSpec)},
    "head": {f.name: str(f.type) for f in dataclasses.fields(HeadSpec)},
}
_ENUMS = {
    ("stem", "kind"): STEM_KINDS, ("stem", "norm"): CONV_NORMS, ("stem", "act"): ACTS,
    ("stage", "block"): tuple(BLOCK_SCHEMAS), ("stage", "norm"): CONV_NORMS, ("stage", "act"): ACTS,
    ("stage", "downsample"): DOWNSAMPLE_KINDS, ("stage", "down_norm"): NORMS,
    ("stage", "attention"): ATTENTION_KINDS,
    ("stage", "axis"): tuple(getattr(_spec, "AXES", ())) or None,
    ("head", "pool"): HEAD_POOLS, ("head", "norm"): NORMS, ("head", "hidden_act"): ACTS,
}
# Smallest legal value of integer fields (levit stages may have depth 0).
_MIN_INT = {"depth": 0, "width": 1, "widths": 1, "stride": 1, "strides": 1, "kernel": 1,
            "heads": 1, "head_dim": 1, "window": 1, "key_dim": 1, "kv_stride": 1,
            "attn_blocks": 0, "proj": 0, "hidden": 0, "outputs": 0, "down_kernel": 1}


class Parser:
    """Turns the ``arch`` (or ``data``) section of a space file into nodes.

    ``where`` prefixes every error (the file name); ``include(name)`` returns
    the raw ``arch`` section of another space file (for ``{include: name}``).
    """

    def __init__(self, where: str, include: Callable[[str, str], Any] | None = None):
        self.where = where
        self.include = include
        self.labels: dict[str, str] = {}  # label -> key path (duplicates break Optuna)
        self._including: list[str] = []

    def error(self, kpath: str, msg: str) -> SpaceError:
        return SpaceError(f"{self.where}: {kpath}: {msg}")

    # ---- entry points ---------------------------------------------------
    def arch(self, raw: Any) -> Node:
        return self._arch(raw, "arch", "", "")

    def data(self, raw: Any) -> MapNode:
        if not isinstance(raw, dict):
            raise self.error("data", f"expected a mapping of name -> values, got {raw!r}")
        fields = {}
        for name, v in raw.items():
            fields[name] = self._value(v, f"data.{name}", f"data.{name}", ("data", name), None,
                                       "", data=True)
        return MapNode(fields, {}, ("data",))

    # ---- structure ------------------------------------------------------
    def _arch(self, raw: Any, kpath: str, label: str, cond: str) -> Node:
        if isinstance(raw, dict) and "include" in raw:
            return self._include(raw, kpath, label, cond)
        if isinstance(raw, dict) and "oneof" in raw:
            if label and raw.get("label"):  # an included union: its label under the includer's
                raw = {**raw, "label": _join(label, str(raw["label"]))}
            return self._oneof(raw, kpath, label or "arch", (), cond,
                               lambda v, kp, lb, c: self._arch(v, kp, lb, c), prefix=label)
        if not isinstance(raw, dict):
            raise self.error(kpath, f"expected a mapping with stem/stages/head, got {raw!r}")
        extra = _FIELD_TYPES["arch"]
        unknown = set(raw) - {"stem", "stages", "head"} - set(extra)
        if unknown:
            raise self.error(kpath, f"unknown key(s) {sorted(unknown)}; allowed: "
                                    f"{sorted({'stem', 'stages', 'head', *extra})}")
        if "stages" not in raw:
            raise self.error(kpath, "missing key 'stages'")
        fields: dict[str, Node] = {}
        if "stem" in raw:
            fields["stem"] = self._map(raw["stem"], f"{kpath}.stem", _join(label, "stem"),
                                       ("stem",), "stem", cond)
        fields["stages"] = self._stages(raw["stages"], f"{kpath}.stages", _join(label, "stages"),
                                        cond)
        if "head" in raw:
            fields["head"] = self._map(raw["head"], f"{kpath}.head", _join(label, "head"),
                                       ("head",), "head", cond)
        for key in extra:
            if key in raw:
                fields[key] = self._value(raw[key], f"{kpath}.{key}", _join(label, key), (key,),
                                          ("arch", key), cond)
        return MapNode(fields, {}, ())

    def _include(self, raw: dict, kpath: str, label: str, cond: str) -> Node:
        if set(raw) != {"include"}:
            raise self.error(kpath, "an include stands alone: {include: <space name>}")
        name = raw["include"]
        if self.include is None:
            raise self.error(kpath, "include is not available here")
        if name in self._including:
            raise self.error(kpath, f"include cycle: {' -> '.join(self._including + [name])}")
        self._including.append(name)
        try:
            return self._arch(self.include(name, f"{self.where}: {kpath}"), f"{kpath}<{name}>",
                              label, cond)
        finally:
            self._including.pop()

    def _stages(self, raw: Any, kpath: str, label: str, cond: str) -> ListNode:
        def item(v, i):
            return self._map(v, f"{kpath}[{i}]", _join(label, str(i)), ("stages", i), "stage", cond)
        return self._list(raw, kpath, label, ("stages",), cond, item)

    def _list(self, raw: Any, kpath: str, label: str, spath: tuple, cond: str, item) -> ListNode:
        length = None
        if isinstance(raw, dict) and "list" in raw:
            unknown = set(raw) - {"list", "length"}
            if unknown:
                raise self.error(kpath, f"unknown key(s) {sorted(unknown)} next to 'list' "
                                        f"(allowed: list, length)")
            items_raw = raw["list"]
            if not isinstance(items_raw, list) or not items_raw:
                raise self.error(f"{kpath}.list", "expected a non-empty list of templates")
            if "length" in raw:
                length = self._dim(raw["length"], f"{kpath}.length", f"{label}.length", spath,
                                   None, cond)
                if not isinstance(length, (Choice, IntRange)):
                    raise self.error(f"{kpath}.length", "must be a choice or an int range")
                vals = length.values() or []
                bad = [n for n in vals if not isinstance(n, int) or not 1 <= n <= len(items_raw)]
                if bad:
                    raise self.error(f"{kpath}.length", f"{bad} outside 1..{len(items_raw)} "
                                                        f"(the number of templates in 'list')")
        elif isinstance(raw, list):
            items_raw = raw
        else:
            raise self.error(kpath, f"expected a list (or {{list: [...], length: ...}}), got {raw!r}")
        if not items_raw:
            raise self.error(kpath, "must not be empty")
        items = [item(v, i) for i, v in enumerate(items_raw)]
        return ListNode(items, length, spath)

    def _map(self, raw: Any, kpath: str, label: str, spath: tuple, kind: str, cond: str,
             block: str | None = None, branch: bool = False) -> Node:
        if isinstance(raw, dict) and "oneof" in raw:
            return self._oneof(raw, kpath, label, spath, cond,
                               lambda v, kp, lb, c: self._map(v, kp, lb, spath, kind, c, block),
                               prefix=label)
        if not isinstance(raw, dict):
            raise self.error(kpath, f"expected a mapping of {kind} fields, got {raw!r}")
        types = _FIELD_TYPES[kind]
        fields: dict[str, Node] = {}
        switch_raw = {}
        for key, v in raw.items():
            if isinstance(key, str) and key.startswith("by_"):
                switch_raw[key[3:]] = v
                continue
            if key not in types or key in ("name",):
                raise self.error(f"{kpath}.{key}", f"unknown {kind} field; allowed: "
                                                   f"{sorted(types)}")
            if block is not None and kind == "stage" and key == "block":
                raise self.error(f"{kpath}.{key}", "a by_block branch cannot set block again")
            fields[key] = self._value(v, f"{kpath}.{key}", _join(label, key), spath + (key,),
                                      (kind, key), cond)
        if kind == "stage" and not branch and "block" not in fields:
            raise self.error(kpath, "missing key 'block'")
        if kind == "stage":
            self._check_block_params(fields, kpath, block)
        switches: dict[str, dict[str, Node]] = {}
        for name, branches in switch_raw.items():
            sw = fields.get(name)
            if sw is None:
                raise self.error(f"{kpath}.by_{name}", f"dangling dependency: no field '{name}' "
                                                       f"in this mapping to depend on")
            if not isinstance(sw, (Choice, Fixed)) or isinstance(getattr(sw, "value", None), list):
                raise self.error(f"{kpath}.by_{name}", f"'{name}' must be a fixed value or a "
                                                       f"choice to have branches")
            options = sw.values() if isinstance(sw, Choice) else [sw.value]
            if not isinstance(branches, dict):
                raise self.error(f"{kpath}.by_{name}", f"expected a mapping of {name} value -> "
                                                       f"fields, got {branches!r}")
            switches[name] = {}
            for value, braw in branches.items():
                bk = f"{kpath}.by_{name}.{value}"
                if not any(same(value, o) for o in options):
                    raise self.error(bk, f"dangling dependency: {value!r} is not an option of "
                                         f"{name} {[_fmt(o) for o in options]}")
                if braw is None:
                    braw = {}
                if not isinstance(braw, dict):
                    raise self.error(bk, f"expected a mapping of fields, got {braw!r}")
                bcond = _and(cond, f"{_join(label, name)}={value}")
                switches[name][value] = self._map(braw, bk, _join(label, str(value)), spath, kind,
                                                  bcond, block=value if name == "block" else block,
                                                  branch=True)
                if kind == "stage" and name != "block":
                    self._check_block_params({**fields, **switches[name][value].fields}, bk, block)
        return MapNode(fields, switches, spath)

    def _check_block_params(self, fields: dict, kpath: str, block: str | None) -> None:
        blocks = [block] if block else None
        if blocks is None:
            b = fields.get("block")
            blocks = b.values() if isinstance(b, Choice) else [b.value] if isinstance(b, Fixed) \
                else None
        if not blocks:
            return
        for key in fields:
            if key not in BLOCK_PARAM_FIELDS:
                continue  # stage-level fields (depth, width, stride, axis) suit every block
            takers = [b for b in blocks if key not in BLOCK_SCHEMAS[b].params]
            if takers:
                raise self.error(f"{kpath}.{key}", f"block {takers[0]!r} takes no {key!r} (it "
                                                   f"takes {sorted(BLOCK_SCHEMAS[takers[0]].params)}"
                                                   f"); put it under by_block.<block>")

    def _oneof(self, raw: dict, kpath: str, label: str, spath: tuple, cond: str, sub,
               prefix: str) -> OneOf:
        unknown = set(raw) - {"oneof", "label", "default"}
        if unknown:
            raise self.error(kpath, f"unknown key(s) {sorted(unknown)} next to 'oneof'")
        label = str(raw.get("label") or label)
        opts = raw["oneof"]
        if not isinstance(opts, dict) or not opts:
            raise self.error(f"{kpath}.oneof", "expected a non-empty mapping of option name -> "
                                               "template")
        default = raw.get("default")
        if default is not None and default not in opts:
            raise self.error(f"{kpath}.default", f"{default!r} is not an option of this oneof "
                                                 f"{sorted(map(str, opts))}")
        self._claim(label, kpath)
        options = {}
        for key, v in opts.items():
            if not isinstance(key, str):
                raise self.error(f"{kpath}.oneof", f"option names must be strings, got {key!r}")
            options[key] = sub(v, f"{kpath}.oneof.{key}",
                               prefix if key == default else _join(prefix, key),
                               _and(cond, f"{label}={key}"))
        return OneOf(label=label, spath=spath, condition=cond, options=options, default=default)

    # ---- values ---------------------------------------------------------
    def _value(self, raw: Any, kpath: str, label: str, spath: tuple, field_key, cond: str,
               data: bool = False) -> Node:
        kind, name = field_key if field_key else (None, None)
        ftype = _FIELD_TYPES[kind][name] if kind else ""
        if isinstance(raw, dict):
            special = [k for k in SPECIAL_KEYS if k in raw]
            if not special:
                raise self.error(kpath, f"a mapping here must be one of "
                                        f"{{{', '.join(SPECIAL_KEYS[:-1])}}}, got keys {sorted(raw)}")
            key = special[0]
            if key == "ref":
                if data:
                    raise self.error(kpath, "ref is not available in the data section")
                return self._ref(raw, kpath, label, spath)
            if key == "derive":
                if set(raw) != {"derive"} or raw["derive"] not in DERIVE_KINDS:
                    raise self.error(kpath, f"expected {{derive: one of {list(DERIVE_KINDS)}}}, "
                                            f"got {raw!r}")
                if kind != "stage":
                    raise self.error(kpath, "derive: grid only applies to stage fields")
                return Derive(raw["derive"], label, spath)
            if key == "list":
                if "tuple" not in ftype:
                    raise self.error(kpath, "a variable-length list only fits a list field "
                                            "(stem.widths, stem.strides)")
                return self._list(raw, kpath, label, spath, cond,
                                  lambda v, i: self._value(v, f"{kpath}[{i}]", _join(label, str(i)),
                                                           spath + (i,), field_key, cond))
            if key == "oneof":
                return self._oneof(raw, kpath, label, spath, cond,
                                   lambda v, kp, lb, c: self._value(v, kp, lb, spath, field_key, c,
                                                                    data), prefix=label)
            if key == "include":
                raise self.error(kpath, "include only replaces a whole architecture")
            return self._dim(raw, kpath, label, spath, field_key, cond)
        if isinstance(raw, list):
            if kind and "tuple" not in ftype:
                raise self.error(kpath, f"a list is not a value of this field (write "
                                        f"{{choice: {raw}}} for a decision)")
            return ListNode([self._value(v, f"{kpath}[{i}]", _join(label, str(i)), spath + (i,),
                                         field_key, cond, data) for i, v in enumerate(raw)],
                            None, spath)
        if kind:
            self._check_scalar(raw, kpath, field_key)
        return Fixed(raw, spath)

    def _ref(self, raw: dict, kpath: str, label: str, spath: tuple) -> Ref:
        if set(raw) != {"ref"} or not isinstance(raw["ref"], str):
            raise self.error(kpath, f"expected {{ref: <field path such as stages.-1.width>}}, "
                                    f"got {raw!r}")
        text = raw["ref"]
        parts: list = []
        for p in text.split("."):
            try:
                parts.append(int(p))
            except ValueError:
                parts.append(p)
        ok = bool(parts) and parts[0] in ("stem", "stages", "head")
        if ok and parts[0] == "stages":
            ok = len(parts) == 3 and isinstance(parts[1], int) and parts[2] in _FIELD_TYPES["stage"]
        elif ok:
            sect = _FIELD_TYPES[parts[0]]
            ok = len(parts) in (2, 3) and parts[1] in sect and (len(parts) == 2 or
                                                                isinstance(parts[2], int))
        if not ok:
            raise self.error(kpath, f"dangling reference {text!r}: expected stem.<field>[.<i>], "
                                    f"stages.<i>.<field> or head.<field>")
        return Ref(tuple(parts), text, label, spath)

    def _dim(self, raw: Any, kpath: str, label: str, spath: tuple, field_key, cond: str) -> Dim:
        if not isinstance(raw, dict):
            if isinstance(raw, list):
                raise self.error(kpath, f"write {{choice: {raw}}} for a decision")
            raise self.error(kpath, f"expected a decision ({{choice: [...]}}, {{int: [lo, hi]}} or "
                                    f"{{float: [lo, hi]}}), got {raw!r}")
        label = str(raw.get("label") or label)
        if "choice" in raw:
            unknown = set(raw) - {"choice", "label"}
            if unknown:
                raise self.error(kpath, f"unknown key(s) {sorted(unknown)} next to 'choice'")
            opts = raw["choice"]
            if not isinstance(opts, list) or not opts:
                raise self.error(f"{kpath}.choice", f"expected a non-empty list, got {opts!r}")
            for o in opts:
                if not isinstance(o, (bool, int, float, str, type(None))):
                    raise self.error(f"{kpath}.choice", f"option {o!r} is not a plain value; use "
                                                        f"{{oneof: {{name: template}}}} for "
                                                        f"structured options")
                if field_key and field_key[0] in _FIELD_TYPES:
                    self._check_scalar(o, f"{kpath}.choice", field_key, element="tuple" in
                                       _FIELD_TYPES[field_key[0]][field_key[1]])
            if len({repr(o) for o in opts}) != len(opts):
                raise self.error(f"{kpath}.choice", f"repeated option in {opts}")
            self._claim(label, kpath)
            return Choice(label=label, spath=spath, condition=cond, options=tuple(opts))
        kind = "int" if "int" in raw else "float" if "float" in raw else None
        if kind is None:
            raise self.error(kpath, f"expected choice, int or float, got keys {sorted(raw)}")
        unknown = set(raw) - {kind, "step", "log", "label"}
        if unknown:
            raise self.error(kpath, f"unknown key(s) {sorted(unknown)} next to '{kind}'")
        bounds = raw[kind]
        num = (int,) if kind == "int" else (int, float)
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, num) and not isinstance(b, bool) for b in bounds)):
            raise self.error(f"{kpath}.{kind}", f"bad range {bounds!r}: expected [low, high] "
                                                f"{kind}s")
        lo, hi = bounds
        if lo > hi:
            raise self.error(f"{kpath}.{kind}", f"bad range [{lo}, {hi}]: low > high")
        log = bool(raw.get("log", False))
        step = raw.get("step")
        if log and lo <= 0:
            raise self.error(f"{kpath}.{kind}", f"bad range [{lo}, {hi}]: log needs low > 0")
        if step is not None and (not isinstance(step, num) or isinstance(step, bool) or step <= 0):
            raise self.error(f"{kpath}.step", f"step={step!r} must be a positive {kind}")
        if log and step not in (None, 1):
            raise self.error(f"{kpath}.step", "log ranges take no step (Optuna)")
        if field_key and field_key[0] in _FIELD_TYPES:
            ftype = _FIELD_TYPES[field_key[0]][field_key[1]]
            if kind == "int" and not ("int" in ftype or "float" in ftype):
                raise self.error(kpath, f"an int range does not fit field type {ftype}")
            if kind == "float" and "float" not in ftype:
                raise self.error(kpath, f"a float range does not fit field type {ftype}")
            self._check_scalar(lo, f"{kpath}.{kind}", field_key, element="tuple" in ftype)
        self._claim(label, kpath)
        if kind == "int":
            return IntRange(label=label, spath=spath, condition=cond, low=lo, high=hi,
                            step=int(step or 1), log=log)
        return FloatRange(label=label, spath=spath, condition=cond, low=float(lo), high=float(hi),
                          step=float(step) if step is not None else None, log=log)

    def _check_scalar(self, v: Any, kpath: str, field_key, element: bool = False) -> None:
        kind, name = field_key
        if kind not in _FIELD_TYPES:
            return
        ftype = _FIELD_TYPES[kind][name]
        if "tuple" in ftype:
            ok = isinstance(v, int) and not isinstance(v, bool)
            base = "int"
        else:
            base = ftype.split("|")[0].strip()
            allowed = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}[base]
            ok = (isinstance(v, allowed) and (base == "bool" or not isinstance(v, bool))) or \
                (v is None and "None" in ftype)
        if not ok:
            raise self.error(kpath, f"{v!r} is not a valid {name} (expected {base})")
        enum = _ENUMS.get((kind, name))
        if enum and v is not None and v not in enum:
            what = "unknown block" if name == "block" else f"unknown {name}"
            raise self.error(kpath, f"{what} {v!r}; known: {sorted(enum)}")
        if base == "int" and v is not None and v < _MIN_INT.get(name, 0):
            raise self.error(kpath, f"{name}={v} must be >= {_MIN_INT.get(name, 0)}")
        if base == "float" and v is not None and v < 0:
            raise self.error(kpath, f"{name}={v} must be >= 0")

    def _claim(self, label: str, kpath: str) -> None:
        if label in self.labels:
            raise self.error(kpath, f"label {label!r} is already used at {self.labels[label]} "
                                    f"(labels must be unique: Optuna keys parameters by them)")
        self.labels[label] = kpath


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _and(cond: str, more: str) -> str:
    return f"{cond}, {more}" if cond else more
