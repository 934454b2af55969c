"""Latency predictor: a per-part lookup table plus a whole-network correction.

A network is cut into parts whose latency depends little on the rest of it:

- ``stem``: the stem at the input size;
- ``first``: a stage at depth 1 (its downsampler, its first block, which
  changes width/stride, and the layout conversions at its ends);
- ``block``: one more block of that stage at stride 1 (a stage of depth d
  costs ``first + (d - 1) * block``);
- ``stage``: a whole stage, for stages whose blocks differ (EfficientFormer
  stages with attention blocks, LeViT shrink-only stages).

Each part is keyed by its block type, every block parameter, its input
shape, width, stride and batch size. ``calibrate`` runs each sample
architecture whole on the target device and times every part inside it
(hooks at stage and block boundaries; a part met in several networks gets
the median): measured alone, a part runs with hot caches and comes out
faster than inside a network, by amounts that differ per network (figures:
README, "Latency"). The
whole-network times then fit ``total = scale * sum(parts) + offset +
head_coef * head_size`` by least squares on relative error: the correction
absorbs the per-call overhead between parts and the classifier head, which
is not a part.

``predict`` needs no torch and builds nothing: it walks the spec, looks the
parts up, and applies the correction. A part missing from the table is
estimated by a non-negative fit of latency on MACs, weights, activations
and a constant, fitted per family (same kind, block and block parameters at
any width and grid; else same block type; else same kind); a missing first
block measured after another input width is that measurement scaled by the
fit (``benchmarks/bench_latency.py`` measures the prediction error).
``explain`` says which parts were looked up
and which were estimated; ``fill`` measures missing parts on the spot and
adds them to the table.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

from .._io import FileLimits, parse_json, read_text, write_atomic
from ..errors import UserError
from ..spec import ArchSpec, StageSpec

__all__ = ["LatencyPredictor", "Part", "spec_parts", "calibrate", "calibrate_space", "check",
           "summarise_check", "measure_part", "measure_in_context", "estimate_errors"]

FORMAT_VERSION = 2


@dataclass(frozen=True)
class Part:
    """One lookup-table entry of a spec: ``kind`` (stem/first/block/stage),
    ``key`` (canonical JSON), how many times it occurs, and what building
    and feeding it needs (``build``: kind-specific recipe)."""

    kind: str
    key: str
    count: int
    build: dict[str, Any]


def _stage_fields(stage: StageSpec, drop_depth: bool = True) -> dict[str, Any]:
    out = {f.name: getattr(stage, f.name) for f in fields(stage)
           if getattr(stage, f.name) is not None}
    if drop_depth:
        out.pop("depth", None)
    return out


def _homogeneous(stage: StageSpec) -> bool:
    # Blocks after the first are identical except where the stage mixes kinds.
    return not (stage.attn_blocks or 0) and stage.depth >= 1


def _key(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def spec_parts(spec: ArchSpec, resolution: int, batch_size: int = 1,
               in_chans: int = 3) -> list[Part]:
    """The parts of ``spec`` at ``resolution`` (see the module docstring)."""
    dims = spec.dims
    size = [resolution] if dims == 1 else [resolution, resolution]
    parts: list[Part] = []
    chans = in_chans
    if spec.stem.kind != "none":
        stem = {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in spec.stem.__dict__.items()}
        build = {"stem": stem, "in": [batch_size, chans] + size, "dims": dims}
        parts.append(Part("stem", _key({"kind": "stem", **build}), 1, build))
        for s in spec.stem.strides:
            size = [-(-n // s) if s > 1 else n for n in size]
        chans = spec.stem.out_channels
    for stage in spec.stages:
        fields_ = _stage_fields(stage)
        shape_in = [batch_size, chans] + size
        size = [-(-n // stage.stride) if stage.stride > 1 else n for n in size]
        if _homogeneous(stage):
            build = {"stage": fields_, "in": shape_in, "dims": dims}
            parts.append(Part("first", _key({"kind": "first", **build}), 1, build))
            if stage.depth > 1:
                bbuild = {"stage": fields_, "in": [batch_size, stage.width] + size, "dims": dims}
                parts.append(Part("block", _key({"kind": "block", **bbuild}), stage.depth - 1,
                                  bbuild))
        else:
            build = {"stage": _stage_fields(stage, drop_depth=False), "in": shape_in,
                     "dims": dims}
            parts.append(Part("stage", _key({"kind": "stage", **build}), 1, build))
        chans = stage.width
    return parts


def _features(part: Part) -> list[float]:
    """Size features of one occurrence for the fallback fit (millions):
    multiply-accumulates, weights (memory traffic per call at batch 1),
    activations written, and a constant (per-call overhead)."""
    b = part.build
    n_in = math.prod(b["in"][2:])
    batch, c_in = b["in"][0], b["in"][1]
    if part.kind == "stem":
        st = b["stem"]
        k2 = st["kernel"] ** b["dims"]
        pix, prev, mac, weights = n_in, c_in, 0.0, 0.0
        for w, s in zip(st["widths"], st["strides"]):
            pix = pix / (s ** b["dims"])
            mac += pix * prev * w * k2
            weights += prev * w * k2
            prev = w
        return [batch * mac / 1e6, weights / 1e6, batch * pix * prev / 1e6, 1.0]
    s = b["stage"]
    width = s["width"]
    stride = s.get("stride", 1) if part.kind != "block" else 1
    n_out = n_in / (stride ** b["dims"])
    ratio = s.get("expansion") or s.get("mlp_ratio") or 4.0
    kk = (s.get("kernel") or 1) ** b["dims"]
    mult = s.get("depth", 1) if part.kind == "stage" else 1
    mac = n_out * width * width * ratio * 2 + n_out * width * ratio * kk
    weights = width * width * ratio * 2 + width * ratio * kk
    if s.get("heads") is not None or s.get("attention"):
        window = s.get("window") or 0
        span = min(n_out, window ** b["dims"]) if s.get("attention") in ("window", "grid") \
            else n_out
        mac += n_out * span * width * 2 + n_out * width * width * 4
        weights += 4 * width * width
    if part.kind != "block":  # the transition from the previous width
        mac += n_in * c_in * width
        weights += c_in * width
    act = n_out * width * ratio
    return [batch * mult * mac / 1e6, mult * weights / 1e6, batch * mult * act / 1e6,
            float(mult)]


def _levels(part: Part) -> list[str]:
    """Groups of similar parts, finest first, each with its own fallback fit:
    same kind, block and block parameters at any width/grid; same kind and
    block type; same kind."""
    if part.kind == "stem":
        return ["stem:" + part.build["stem"]["kind"], "stem"]
    s = part.build["stage"]
    fixed = {k: v for k, v in s.items() if k not in ("width", "stride", "depth", "heads", "window")}
    return [f"{part.kind}:" + _key(fixed), f"{part.kind}:{s['block']}", part.kind]


def _near_family(part: Part) -> str | None:
    """Parts that differ from ``part`` only in input channels (a stage after a
    different width): the best reference for a missing first block."""
    if part.kind == "stem":
        return None
    b = part.build
    return _key({"kind": part.kind, "stage": b["stage"], "in": [b["in"][0]] + b["in"][2:]})


def _nnls(rows: list[list[float]], targets: list[float]) -> list[float]:
    import numpy as np
    from scipy.optimize import nnls

    a = np.asarray(rows, dtype=float)
    y = np.asarray(targets, dtype=float)
    # Relative error matters, not absolute: weight each row by 1 / target.
    w = 1.0 / np.maximum(y, 1e-6)
    coef, _ = nnls(a * w[:, None], y * w)
    return coef.tolist()


#: Tables hold one entry per measured block setting: larger than a spec.
_TABLE_LIMITS = FileLimits(max_bytes=256 << 20, max_nodes=50_000_000)


class LatencyPredictor:
    """Per-part latency table + whole-network correction for one device and
    setting (``settings``: device, device_name, backend, threads, ...).

    ``LatencyPredictor.load(path).predict(spec, resolution)`` -> ms.
    """

    def __init__(self, settings: dict[str, Any], table: dict[str, float] | None = None,
                 correction: dict[str, float] | None = None,
                 fallback: dict[str, list[float]] | None = None,
                 report: dict[str, Any] | None = None):
        self.settings = dict(settings)
        self.table: dict[str, float] = dict(table or {})
        self.correction = dict(correction or {"scale": 1.0, "offset": 0.0, "head": 0.0})
        self.fallback = dict(fallback or {})
        self.report = dict(report or {})
        self._families: dict[str, list[tuple[float, list[float]]]] | None = None

    # ---- persistence ----------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = {"format": "hybridnas-latency-table", "version": FORMAT_VERSION,
                "settings": self.settings, "correction": self.correction,
                "fallback": self.fallback, "report": self.report, "table": self.table}
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, sort_keys=True),
                                                      encoding="utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyPredictor":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise UserError(f"{path}: no latency table (build one with "
                            f"`hybridnas latency calibrate`)")
        # a table may come from another machine: read within the limits
        data = parse_json(read_text(path, limits=_TABLE_LIMITS), path, limits=_TABLE_LIMITS)
        if not isinstance(data, dict) or data.get("format") != "hybridnas-latency-table":
            raise UserError(f"{path}: not a hybridnas latency table (format field missing)")
        if data.get("version") != FORMAT_VERSION:
            raise UserError(f"{path}: latency table version={data.get('version')!r}; this "
                            f"hybridnas reads version {FORMAT_VERSION} (recalibrate)")
        return cls(data["settings"], data["table"], data["correction"], data.get("fallback"),
                   data.get("report"))

    # ---- prediction -----------------------------------------------------
    def _part_ms(self, part: Part) -> tuple[float, str]:
        if part.key in self.table:
            return self.table[part.key], "table"
        level = next((lv for lv in _levels(part) if lv in self.fallback), None)
        if level is None:
            raise UserError(f"latency table has no entry for a {part.kind} part and no "
                            f"fallback fit (calibrate with more architectures)")
        coef = self.fallback[level]
        estimate = max(1e-6, sum(c * f for c, f in zip(coef, _features(part))))
        # A first block measured after another width is a better reference
        # than any fit: scale it by the fit's ratio (only the transition
        # differs). Elsewhere the per-family fit alone was the more accurate
        # in leave-one-out tests (a nearest part differs in width and grid).
        near = self._near(part)
        if near is not None:
            near_ms, near_feats = near
            near_est = max(1e-6, sum(c * f for c, f in zip(coef, near_feats)))
            return near_ms * estimate / near_est, "estimate"
        return estimate, "estimate"

    def _near(self, part: Part) -> tuple[float, list[float]] | None:
        """The measured part that differs from ``part`` only in input
        channels, the closest in channels; None if there is none."""
        if self._families is None:
            self._families = {}
            for key, ms in self.table.items():
                data = json.loads(key)
                other = Part(data.pop("kind"), key, 1, data)
                family = _near_family(other)
                if family is not None:
                    self._families.setdefault(family, []).append(
                        (other.build["in"][1], ms, _features(other)))
        family = _near_family(part)
        members = self._families.get(family, ()) if family is not None else ()
        if not members:
            return None
        c_in = part.build["in"][1]
        _, ms, feats = min(members, key=lambda m: abs(m[0] - c_in))
        return ms, feats

    def _head_size(self, spec: ArchSpec, batch_size: int, num_classes: int | None) -> float:
        outputs = spec.head.outputs or num_classes or self.settings.get("num_classes") or 1000
        width = spec.stages[-1].width
        return batch_size * width * (outputs + (spec.head.hidden or 0)) / 1e6

    def explain(self, spec: ArchSpec, resolution: int | None = None, batch_size: int | None = None,
                in_chans: int | None = None, num_classes: int | None = None
                ) -> list[dict[str, Any]]:
        """Per-part breakdown: kind, count, ms (per occurrence), source
        ('table' or 'estimate')."""
        resolution, batch_size, in_chans = self._defaults(resolution, batch_size, in_chans)
        rows = []
        for part in spec_parts(spec, resolution, batch_size, in_chans):
            ms, source = self._part_ms(part)
            rows.append({"kind": part.kind, "count": part.count, "ms": ms, "source": source,
                         "key": part.key})
        return rows

    def _defaults(self, resolution, batch_size, in_chans) -> tuple[int, int, int]:
        s = self.settings
        return (int(resolution or s.get("resolution") or 224), int(batch_size or
                s.get("batch_size") or 1), int(in_chans or s.get("in_chans") or 3))

    def predict(self, spec: ArchSpec, resolution: int | None = None, batch_size: int | None = None,
                in_chans: int | None = None, num_classes: int | None = None) -> float:
        """Predicted forward latency (ms) of ``spec``; no model is built."""
        rows = self.explain(spec, resolution, batch_size, in_chans, num_classes)
        total = sum(r["ms"] * r["count"] for r in rows)
        _, batch_size, _ = self._defaults(resolution, batch_size, in_chans)
        return self._correct(total, self._head_size(spec, batch_size, num_classes))

    def coverage(self, spec: ArchSpec, **kw: Any) -> float:
        """Share of the spec's parts (weighted by count) found in the table."""
        rows = self.explain(spec, **kw)
        n = sum(r["count"] for r in rows)
        return sum(r["count"] for r in rows if r["source"] == "table") / n if n else 1.0

    def _correct(self, parts_ms: float, head: float) -> float:
        c = self.correction
        return c["scale"] * parts_ms + c["offset"] + c.get("head", 0.0) * head

    # ---- growing the table ----------------------------------------------
    def fill(self, spec: ArchSpec, resolution: int | None = None, batch_size: int | None = None,
             in_chans: int | None = None) -> int:
        """Measure ``spec`` (on this machine, with the table's device and
        settings) and add its parts missing from the table, timed inside the
        network as calibration times them; returns how many were added."""
        resolution, batch_size, in_chans = self._defaults(resolution, batch_size, in_chans)
        missing = {p.key for p in spec_parts(spec, resolution, batch_size, in_chans)
                   if p.key not in self.table}
        if missing:
            times, _ = measure_in_context(spec, self.settings, resolution, batch_size, in_chans)
            self.table.update({k: v for k, v in times.items() if k in missing})
        self._families = None
        return len(missing)


def _unique(parts: Iterable[Part]) -> list[Part]:
    seen: dict[str, Part] = {}
    for p in parts:
        seen.setdefault(p.key, p)
    return list(seen.values())


# --------------------------------------------------------------------------
# measuring parts (torch from here on)
# --------------------------------------------------------------------------

def _part_module(part: Part):
    """(module, example input) for a part, in eval mode on the CPU."""
    import torch

    from ..blocks import Stage, build_stem

    b = part.build
    dims = b["dims"]
    x = torch.randn(b["in"])
    if part.kind == "stem":
        from ..spec import StemSpec

        st = dict(b["stem"])
        stem = StemSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in st.items()})
        return build_stem(stem, b["in"][1], dims).eval(), x
    fields_ = dict(b["stage"])
    if part.kind == "stage":
        stage = StageSpec(**fields_)
        return Stage(stage, b["in"][1], [0.0] * stage.depth, dims).eval(), x
    if part.kind == "first":
        stage = StageSpec(**fields_, depth=1)
        return Stage(stage, b["in"][1], [0.0], dims).eval(), x
    # "block": the second block of a depth-2 stage at stride 1 and its own
    # width, fed exactly what the stage feeds it (layout, tokens) via a hook.
    stage = StageSpec(**{**fields_, "stride": 1}, depth=2)
    module = Stage(stage, stage.width, [0.0, 0.0], dims).eval()
    captured: list[Any] = []
    handle = module.blocks[1].register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    with torch.inference_mode():
        module(x)
    handle.remove()
    return module.blocks[1], captured[0].clone()


def measure_part(part: Part, settings: dict[str, Any]) -> float:
    """Median latency (ms) of one part with the table's settings."""
    import contextlib

    import torch

    from ._measure import cpu_threads, time_callable

    device = settings["device"]
    module, x = _part_module(part)
    threads = cpu_threads(settings.get("threads") or 1) if device == "cpu" \
        else contextlib.nullcontext()
    with threads, torch.inference_mode():
        module.to(device)
        x = x.to(device)
        times = time_callable(lambda: module(x), device, settings.get("warmup", 5),
                              settings.get("part_repeats", settings.get("repeats", 20)),
                              settings.get("clock", "wall"))
    times.sort()
    return times[len(times) // 2] if len(times) % 2 else \
        (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2


def measure_in_context(spec: ArchSpec, settings: dict[str, Any], resolution: int,
                       batch_size: int = 1, in_chans: int = 3, num_classes: int | None = None
                       ) -> tuple[dict[str, float], float]:
    """Time every part of ``spec`` inside the whole network: one forward
    pass per call with a timestamp at each stage and block boundary (hooks).

    Returns ({part key: median ms per occurrence}, median ms of the whole
    call). Why not each part alone: alone, a part runs with its weights and
    input hot in the caches; inside a network they were evicted by the
    other parts, so parts run slower in context than alone, by different
    amounts per network, which no whole-network correction can undo.
    """
    import contextlib

    import torch

    from ..builder import build_model
    from ._measure import cpu_threads

    device = settings["device"]
    cuda = device.startswith("cuda")
    parts = spec_parts(spec, resolution, batch_size, in_chans)
    model = build_model(spec, num_classes=num_classes or settings.get("num_classes") or 1000,
                        in_chans=in_chans).eval()
    if not hasattr(model, "stages") or not hasattr(model, "stem"):
        raise UserError(f"latency tables cover stem-and-stages networks; {spec.arch_id} builds "
                        f"a {type(model).__name__}")
    if cuda:
        def stamp():  # events, read after one synchronisation per call
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event

        def elapsed(a, b):
            return a.elapsed_time(b)
    else:
        now = time.thread_time_ns if settings.get("clock") == "cpu" else time.perf_counter_ns

        def stamp():
            return now()

        def elapsed(a, b):
            return (b - a) / 1e6
    marks: dict[tuple, Any] = {}
    hooks = []

    def watch(module, tag):
        hooks.append(module.register_forward_pre_hook(
            lambda m, a: marks.__setitem__((tag, 0), stamp())))
        hooks.append(module.register_forward_hook(
            lambda m, a, o: marks.__setitem__((tag, 1), stamp())))

    # segments: (part index, [(tag, sign)]): a part's time is the stage's time
    # minus its later blocks' (those are the "block" part).
    segments: list[tuple[int, list[tuple[Any, int]], int]] = []
    i = 0
    if spec.stem.kind != "none":
        watch(model.stem, "stem")
        segments.append((i, [("stem", 1)], 1))
        i += 1
    for j, (stage_spec, stage) in enumerate(zip(spec.stages, model.stages)):
        watch(stage, ("stage", j))
        later = [(("block", j, b), 1) for b in range(1, stage_spec.depth)]
        if _homogeneous(stage_spec) and later:
            for b in range(1, stage_spec.depth):
                watch(stage.blocks[b], ("block", j, b))
            segments.append((i, [(("stage", j), 1)] + [(t, -1) for t, _ in later], 1))
            segments.append((i + 1, later, stage_spec.depth - 1))
            i += 2
        else:
            segments.append((i, [(("stage", j), 1)], 1))
            i += 1
    warmup = settings.get("warmup", 5)
    repeats = settings.get("part_repeats", settings.get("repeats", 20))
    per_part: list[list[float]] = [[] for _ in parts]
    totals: list[float] = []
    threads = cpu_threads(settings.get("threads") or 1) if not cuda \
        else contextlib.nullcontext()
    try:
        with threads, torch.inference_mode():
            model.to(device)
            x = torch.randn([batch_size, in_chans] + [resolution] * spec.dims, device=device)
            for r in range(warmup + repeats):
                marks.clear()
                if cuda:
                    torch.cuda.synchronize(device)
                t0 = stamp()
                model(x)
                t1 = stamp()
                if cuda:
                    torch.cuda.synchronize(device)
                if r < warmup:
                    continue
                totals.append(elapsed(t0, t1))
                for index, terms, count in segments:
                    ms = sum(sign * elapsed(marks[(tag, 0)], marks[(tag, 1)])
                             for tag, sign in terms)
                    per_part[index].append(ms / count)
    finally:
        for h in hooks:
            h.remove()
    times: dict[str, float] = {}
    for part, values in zip(parts, per_part):
        if values:
            times[part.key] = statistics.median(values)
    return times, statistics.median(totals)


# --------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------

def calibrate(specs: list[ArchSpec], device: str = "cpu", resolution: int = 224,
              batch_size: int = 1, in_chans: int = 3, num_classes: int = 1000,
              threads: int | None = None, warmup: int = 5, repeats: int = 20,
              clock: str = "wall", networks: int | None = None, measure_fn: Callable | None = None,
              progress: Callable[[str], None] | None = None) -> LatencyPredictor:
    """Build a predictor for ``device`` from sample architectures.

    Measures each network of ``specs`` whole (``warmup`` + ``repeats``
    calls), timing every part inside it (``measure_in_context``); a part met
    in several networks gets the median. The correction is fitted on the
    whole-network times of the first ``networks`` specs (default: all); with
    ``measure_fn(spec) -> LatencyResult`` those come from it instead (e.g. a
    ``LatencyService``). Returns the predictor; ``predictor.report`` holds
    the fit's statistics.
    """
    from ._measure import device_name, resolve_clock, resolve_device

    if not specs:
        raise UserError("calibrate: no architectures to calibrate on")
    dev = resolve_device(device)
    settings = {"device": dev, "device_name": device_name(dev), "backend": "eager",
                "batch_size": batch_size, "resolution": resolution, "in_chans": in_chans,
                "num_classes": num_classes, "threads": (threads or 1) if dev == "cpu" else None,
                "dtype": "float32", "warmup": warmup, "repeats": repeats,
                "clock": resolve_clock(clock, dev, threads)}
    say = progress or (lambda msg: None)
    predictor = LatencyPredictor(settings)
    t0 = time.time()
    seen: dict[str, list[float]] = {}
    totals = []
    for i, spec in enumerate(specs):
        times, total = measure_in_context(spec, settings, resolution, batch_size, in_chans,
                                          num_classes)
        for key, ms in times.items():
            seen.setdefault(key, []).append(ms)
        totals.append(total)
        if (i + 1) % 25 == 0 or i + 1 == len(specs):
            say(f"networks {i + 1}/{len(specs)} measured, {len(seen)} parts "
                f"({time.time() - t0:.0f} s)")
    predictor.table = {key: statistics.median(values) for key, values in seen.items()}
    parts = _unique(p for s in specs for p in spec_parts(s, resolution, batch_size, in_chans))
    predictor.fallback = _fit_fallback(predictor.table, parts)
    n_net = min(len(specs), networks if networks is not None else len(specs))
    sums, heads, measured = [], [], []
    for i, spec in enumerate(specs[:n_net]):
        measured.append(measure_fn(spec).median_ms if measure_fn is not None else totals[i])
        rows = predictor.explain(spec, resolution, batch_size, in_chans, num_classes)
        sums.append(sum(r["ms"] * r["count"] for r in rows))
        heads.append(predictor._head_size(spec, batch_size, num_classes))
    predictor.correction = _fit_correction(sums, heads, measured)
    errors = [abs(predictor._correct(s, h) - m) / m for s, h, m in zip(sums, heads, measured)]
    predictor.report = {
        "architectures": len(specs), "parts": len(parts), "networks": n_net,
        "calibration_seconds": round(time.time() - t0, 1),
        "fit_within_10pct": (sum(e <= 0.10 for e in errors) / len(errors)) if errors else None,
        "fit_median_rel_error": sorted(errors)[len(errors) // 2] if errors else None,
    }
    return predictor


def _fit_fallback(table: dict[str, float], parts: list[Part], min_parts: int = 8
                  ) -> dict[str, list[float]]:
    """Non-negative fits of latency on ``_features`` for every group of
    ``_levels`` with at least ``min_parts`` measured parts (relative error)."""
    groups: dict[str, list[Part]] = {}
    for p in parts:
        for level in _levels(p):
            groups.setdefault(level, []).append(p)
    out: dict[str, list[float]] = {}
    for level, ps in groups.items():
        if len(ps) >= min_parts or level in ("stem", "first", "block", "stage"):
            out[level] = _nnls([_features(p) for p in ps], [table[p.key] for p in ps])
    return out


def _fit_correction(sums: list[float], heads: list[float], measured: list[float]
                    ) -> dict[str, float]:
    """Least squares on relative error for measured = scale*sum + offset + head*h."""
    import numpy as np

    if len(measured) < 3:
        return {"scale": 1.0, "offset": 0.0, "head": 0.0}
    y = np.asarray(measured)
    w = 1.0 / y
    cols = [np.asarray(sums), np.ones_like(y)]
    use_head = len(set(heads)) > 1 and len(measured) >= 6
    if use_head:
        cols.append(np.asarray(heads))
    a = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    out = {"scale": float(coef[0]), "offset": float(coef[1]),
           "head": float(coef[2]) if use_head else 0.0}
    if not 0.5 <= out["scale"] <= 2.0:
        # The parts are the network, so a scale far from 1 means the whole-
        # network figures were noise (a loaded machine): keep the sum and
        # only a robust (median) overhead.
        gaps = sorted(m - s for m, s in zip(measured, sums))
        out = {"scale": 1.0, "offset": float(gaps[len(gaps) // 2]), "head": 0.0}
    return out


def calibrate_space(space: str, n: int = 100, resolution: int = 32, seed: int = 0,
                    **kw: Any) -> LatencyPredictor:
    """Sample ``n`` architectures from a search space and ``calibrate`` on them."""
    import numpy as np

    sp = load_space(space, resolution)
    specs = _sample_unique(sp, n, np.random.default_rng(seed))
    predictor = calibrate(specs, resolution=resolution, **kw)
    predictor.report.update(space=sp.name, seed=seed)
    return predictor


def load_space(name: str, resolution: int) -> Any:
    """``hybridnas.spaces.load(name, resolution=...)`` (UserError for an unknown name)."""
    from .. import spaces

    return spaces.load(name, resolution=resolution)


def _sample_unique(space: Any, n: int, rng: Any) -> list[ArchSpec]:
    seen: dict[str, ArchSpec] = {}
    for _ in range(n * 20):
        if len(seen) >= n:
            break
        spec = space.sample(rng)
        seen.setdefault(spec.arch_id, spec)
    return list(seen.values())


def check(predictor: LatencyPredictor, specs: list[ArchSpec], repeats: int | None = None,
          measure_fn: Callable | None = None) -> list[dict[str, Any]]:
    """Predicted vs measured for each spec, with the table's settings.

    Returns one dict per spec: arch_id, pattern, predicted_ms, measured_ms,
    rel_error ((predicted - measured) / measured), coverage (share of parts
    looked up rather than estimated), predict_s and measure_s (wall time of
    one prediction and one measurement).
    """
    from ._measure import measure

    s = predictor.settings
    rows = []
    for spec in specs:
        t0 = time.perf_counter()
        predicted = predictor.predict(spec)
        t1 = time.perf_counter()
        if measure_fn is not None:
            result = measure_fn(spec)
        else:
            result = measure(spec, device=s["device"], batch_size=s["batch_size"],
                             resolution=s["resolution"], in_chans=s["in_chans"],
                             num_classes=s["num_classes"], threads=s["threads"],
                             warmup=s.get("warmup", 5), repeats=repeats or s.get("repeats", 20),
                             clock=s.get("clock", "wall"))
        t2 = time.perf_counter()
        rows.append({"arch_id": spec.arch_id, "pattern": spec.pattern,
                     "predicted_ms": predicted, "measured_ms": result.median_ms,
                     "rel_error": (predicted - result.median_ms) / result.median_ms,
                     "coverage": predictor.coverage(spec), "predict_s": t1 - t0,
                     "measure_s": t2 - t1})
    return rows


def summarise_check(rows: list[dict[str, Any]], tolerance: float = 0.10) -> dict[str, Any]:
    """Share within ``tolerance``, median |error|, mean coverage, median costs."""
    if not rows:
        return {"n": 0}
    errs = [abs(r["rel_error"]) for r in rows]
    full = [abs(r["rel_error"]) for r in rows if r["coverage"] >= 1.0]
    return {"n": len(rows), "within": sum(e <= tolerance for e in errs) / len(errs),
            "tolerance": tolerance, "median_abs_error": statistics.median(errs),
            "max_abs_error": max(errs), "coverage": statistics.mean(r["coverage"] for r in rows),
            "within_fully_covered": (sum(e <= tolerance for e in full) / len(full)) if full
            else None, "fully_covered": len(full),
            "predict_ms": statistics.median(r["predict_s"] for r in rows) * 1e3,
            "measure_ms": statistics.median(r["measure_s"] for r in rows) * 1e3}


def estimate_errors(predictor: LatencyPredictor, limit: int = 300, seed: int = 0) -> list[float]:
    """Leave-one-out relative errors of the estimate used for parts missing
    from the table: each (sampled) entry is removed, the fallback refitted
    without it, and the entry estimated from the rest. Needs no measurement;
    says how much coverage gaps cost."""
    import random

    keys = list(predictor.table)
    random.Random(seed).shuffle(keys)
    parts = {}
    for key in keys:
        data = json.loads(key)
        parts[key] = Part(data.pop("kind"), key, 1, data)
    fallback = predictor.fallback
    errors = []
    for key in keys[:limit]:
        truth = predictor.table.pop(key)
        predictor._families = None
        try:
            predictor.fallback = _fit_fallback(predictor.table,
                                               [p for k, p in parts.items() if k != key])
            estimate, _ = predictor._part_ms(parts[key])
        finally:
            predictor.table[key] = truth
            predictor.fallback = fallback
        errors.append((estimate - truth) / truth)
    predictor._families = None
    return errors
