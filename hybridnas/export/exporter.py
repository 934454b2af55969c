"""Export architectures of a search run into self-contained folders.

    >>> from hybridnas.export import export_run, load
    >>> results = export_run("results/my-run", pareto=True)           # doctest: +SKIP
    >>> model = load(results[0].dir)                                  # doctest: +SKIP

One folder per architecture (``<out>/trial_<id>``)::

    spec.yaml          the ArchSpec: hybridnas.create_model(folder) builds it
    model.safetensors  trained weights (only when the run kept the trial's checkpoint)
    meta.json          num_classes, in_chans, input_shape, dataset, metric, run, trial,
                       and the parity checks below
    model.ts           TorchScript (traced on the export input shape)
    model.onnx         ONNX (dynamic batch), checked in ONNX Runtime against PyTorch
    README.md          model card

A checkpoint folder is a subset of an export folder, so ``load`` reads both.
The TorchScript and ONNX files are checked after writing: each is loaded back
and run on the same random input as the PyTorch model; the max abs
difference goes into meta.json and the card.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import UserError
from ..spec import ArchSpec, check_input_size
from .checkpoint import (
    META_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    _json_safe,
    front_trial_ids,
    load_checkpoint,
    read_meta,
    read_run_config,
    read_trials,
    run_objectives,
    save_checkpoint,
)

__all__ = [
    "FORMATS", "ExportResult", "export_run", "export_model", "select_trials", "load",
    "example_input_shape", "model_card_info", "render_model_card", "ONNX_TOLERANCE",
]

FORMATS = ("spec", "pytorch", "torchscript", "onnx")
FORMAT_FILES = {"spec": SPEC_FILE, "pytorch": WEIGHTS_FILE, "torchscript": "model.ts",
                "onnx": "model.onnx"}
CARD_FILE = "README.md"
#: Max abs difference allowed between ONNX Runtime and PyTorch in float32.
ONNX_TOLERANCE = 1e-4
#: TorchScript runs the same kernels as eager: allow only float reordering noise.
TORCHSCRIPT_TOLERANCE = 1e-5
SORT_KEYS = ("metric", "latency")
#: Trial states whose architectures can be exported (EARLY_STOPPED: low fidelity, said so).
EXPORTABLE = ("COMPLETE", "EARLY_STOPPED")


@dataclass
class ExportResult:
    """What ``export_model``/``export_run`` wrote for one architecture."""

    dir: Path
    trial_id: int | None = None
    files: dict[str, str] = field(default_factory=dict)   # format -> file name
    trained: bool = False
    checks: dict[str, float] = field(default_factory=dict)  # format -> max abs difference
    errors: dict[str, str] = field(default_factory=dict)  # format -> one-line reason

    @property
    def ok(self) -> bool:
        limits = {"onnx": ONNX_TOLERANCE, "torchscript": TORCHSCRIPT_TOLERANCE}
        return not self.errors and all(
            math.isfinite(v) and v <= limits.get(k, ONNX_TOLERANCE) for k, v in self.checks.items())


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------

def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"spec,onnx"`` or a list -> a tuple of known formats (UserError for unknown ones)."""
    if formats is None:
        return FORMATS
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    items = [f for f in items if f]
    aliases = {"torch": "pytorch", "safetensors": "pytorch", "weights": "pytorch", "ts": "torchscript",
               "jit": "torchscript", "yaml": "spec", "all": ",".join(FORMATS)}
    out: list[str] = []
    for f in items:
        for g in aliases.get(f, f).split(","):
            if g not in FORMATS:
                raise UserError(f"--format {f!r} is not one of {', '.join(FORMATS)}")
            if g not in out:
                out.append(g)
    if not out:
        raise UserError(f"--format is empty; choose from {', '.join(FORMATS)}")
    return tuple(out)


def example_input_shape(spec: ArchSpec, meta: dict[str, Any] | None = None,
                        resolution: int | None = None) -> tuple[int, ...]:
    """Per-sample input shape for an architecture: ``meta['input_shape']`` when the
    checkpoint recorded it, else ``(in_chans, resolution[, resolution])``."""
    meta = meta or {}
    if resolution is None and meta.get("input_shape"):
        shape = tuple(int(s) for s in meta["input_shape"])
        check_input_size(shape, spec.dims, "meta.input_shape", UserError)
        return shape
    res = resolution or meta.get("resolution")
    if not res:
        raise UserError(f"no input resolution known for {spec.name or spec.arch_id} "
                        f"(meta has no input_shape/resolution); pass --resolution")
    chans = int(meta.get("in_chans") or 3)
    if spec.dims == 1:
        if getattr(spec, "assets", False):  # multi-asset panels: (features, assets, time)
            shape: tuple[int, ...] = (chans, int(meta.get("assets") or 4), int(res))
        else:
            shape = (chans, int(res))
    else:
        shape = (chans, int(res), int(res))
    check_input_size(shape, spec.dims, "input shape", UserError)  # before any tensor exists
    return shape


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, deprecation notes and tracer warnings:
    the parity numbers we print are what tells the user whether it worked."""
    # torch.export logs a failed dynamic-batch attempt at ERROR level, with a
    # traceback, before export_onnx falls back to a fixed batch.
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export",
                                              "torch._dynamo", "torch._guards",
                                              "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _max_abs_diff(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).max()) if a.size else 0.0


def export_torchscript(model, example, path: Path) -> float:
    """Trace ``model`` on ``example``, save it, load it back and return the max abs
    difference to eager on a second input with another batch size."""
    import torch

    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        check = torch.randn((example.shape[0] + 1,) + tuple(example.shape[1:]),
                            generator=torch.Generator().manual_seed(1))
        return _max_abs_diff(loaded(check).numpy(), model(check).numpy())


def export_onnx(model, example, path: Path) -> tuple[float, bool]:
    """Export ``model`` to ONNX with a dynamic batch axis (static if the graph
    does not allow one), run it in ONNX Runtime on a fresh input and return
    (max abs difference to PyTorch, dynamic batch?)."""
    import onnxruntime as ort
    import torch

    # Inline weights unless the file would pass protobuf's 2 GiB limit.
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    kwargs = dict(dynamo=True, input_names=["input"], output_names=["logits"],
                  external_data=big, verbose=False)
    dynamic = True
    # torch.export specialises a dimension of size 1: trace with a batch of 2.
    example = example.expand((2,) + tuple(example.shape[1:])).contiguous()
    with _quiet():
        try:
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(model, (example,), str(path), dynamic_shapes=({0: batch},), **kwargs)
        except Exception:  # noqa: BLE001 - some graphs specialise the batch: export it fixed
            dynamic = False
            torch.onnx.export(model, (example,), str(path), **kwargs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch_size = example.shape[0] + 1 if dynamic else example.shape[0]
    check = torch.randn((batch_size,) + tuple(example.shape[1:]),
                        generator=torch.Generator().manual_seed(2))
    (got,) = session.run(None, {session.get_inputs()[0].name: check.numpy()})[:1]
    with torch.no_grad():
        want = model(check).numpy()
    return _max_abs_diff(got, want), dynamic


# --------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------

def export_model(model_or_spec, out_dir: str | os.PathLike, formats=FORMATS, *,
                 meta: dict[str, Any] | None = None, input_shape: Sequence[int] | None = None,
                 resolution: int | None = None, num_classes: int | None = None,
                 in_chans: int | None = None, trained: bool | None = None,
                 card: dict[str, Any] | None = None) -> ExportResult:
    """Write one architecture into ``out_dir`` in ``formats``.

    ``model_or_spec`` is a built model (its weights are exported) or an
    ``ArchSpec``/named architecture (built with fresh weights: marked
    untrained). ``input_shape`` (per sample, e.g. ``(3, 32, 32)``) or
    ``resolution`` fixes the example input for tracing. ``card`` adds run
    facts to the model card (see ``model_card_info``). Format failures do
    not raise: they are in ``result.errors``; parity in ``result.checks``.
    """
    from .. import get_spec
    from ..builder import build_model

    formats = parse_formats(formats)
    meta = dict(meta or {})
    if isinstance(model_or_spec, (ArchSpec, str)):
        spec = get_spec(model_or_spec)
        model = build_model(spec, num_classes=num_classes or int(meta.get("num_classes") or 1000),
                            in_chans=in_chans or int(meta.get("in_chans") or 3))
        trained = bool(trained)
    else:
        model, spec = model_or_spec, model_or_spec.spec
        trained = True if trained is None else trained
    # Export runs on CPU in eval mode; the caller's model is put back afterwards.
    first = next(model.parameters(), None)
    device, was_training = (first.device if first is not None else None), model.training
    model = model.cpu().eval()
    try:
        return _export(model, spec, out_dir, formats, meta, input_shape, resolution, trained, card)
    finally:
        if device is not None:
            model.to(device)
        model.train(was_training)


def _export(model, spec, out_dir, formats, meta, input_shape, resolution, trained,
            card) -> ExportResult:
    import torch

    meta["num_classes"] = int(getattr(model, "num_classes", 0) or 0)
    meta["in_chans"] = int(getattr(model, "in_chans", 3))
    shape = tuple(input_shape) if input_shape else example_input_shape(spec, meta, resolution)
    meta["input_shape"] = list(shape)
    if len(shape) >= 2 and meta.get("resolution") is None:
        meta["resolution"] = shape[-1]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FORMAT_FILES.values():  # a re-export must not keep files of an earlier one
        if (out / name).exists() and name != SPEC_FILE:
            (out / name).unlink()
    result = ExportResult(dir=out, trial_id=meta.get("trial_id"), trained=trained)
    meta.update(trained=trained, arch_id=spec.arch_id)
    # spec.yaml + meta.json always: load() and create_model(folder) need them.
    if "pytorch" in formats and trained:
        save_checkpoint(out, model, spec, meta)
        result.files["pytorch"] = WEIGHTS_FILE
    else:
        # Untrained weights are not worth a file: the card says how to retrain.
        spec.save(str(out / SPEC_FILE))
    result.files["spec"] = SPEC_FILE
    example = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(0))
    for fmt, fn in (("torchscript", export_torchscript), ("onnx", export_onnx)):
        if fmt not in formats:
            continue
        try:
            value = fn(model, example, out / FORMAT_FILES[fmt])
        except Exception as e:  # noqa: BLE001 - report which block could not export, go on
            result.errors[fmt] = _one_line(e)
            (out / FORMAT_FILES[fmt]).unlink(missing_ok=True)
            continue
        if fmt == "onnx":
            value, meta["onnx_dynamic_batch"] = value
        result.checks[fmt] = value
        result.files[fmt] = FORMAT_FILES[fmt]
    meta["files"] = dict(result.files)
    meta["parity_max_abs_diff"] = dict(result.checks)
    if result.errors:
        meta["export_errors"] = dict(result.errors)
    info = model_card_info(spec, meta, model=model, run=card)
    (out / CARD_FILE).write_text(render_model_card(info), encoding="utf-8")
    (out / META_FILE).write_text(json.dumps(_json_safe(meta), indent=2, sort_keys=True) + "\n",
                                 encoding="utf-8")
    return result


def _one_line(e: BaseException) -> str:
    """A one-line reason; for torch.onnx's long reports, the exception summary
    and the innermost hybridnas source line (which block could not export)."""
    import re

    raw = str(e)
    if "## Exception summary" in raw:
        summary = raw.split("## Exception summary", 1)[1]
        frames = re.findall(r'File "([^"]*hybridnas[/\\][^"]+)", line (\d+)', summary)
        summary = re.split(r"While executing|Original traceback|\(Refer to", summary)[0]
        where = f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
        return f"{type(e).__name__}: {' '.join(summary.split())[:300]}{where}"
    text = " ".join(raw.split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


# --------------------------------------------------------------------------
# Model card: the data (tested), then the Markdown
# --------------------------------------------------------------------------

def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def model_card_info(spec: ArchSpec, meta: dict[str, Any], model=None,
                    run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the model card shows, as plain data.

    ``run`` holds the trial's facts from the run (its trials row as a dict,
    plus ``run``, ``front_position``, ``front_size``, ``rank``, ``ranked``).
    """
    from ..complexity import cost

    run = dict(run or {})
    shape = tuple(meta["input_shape"])
    c = cost(model if model is not None else spec, input_size=shape,
             num_classes=meta.get("num_classes") or 1000, in_chans=shape[0], per_stage=True)
    res = meta.get("resolution")
    sizes = spec.stage_resolutions(int(res)) if res and spec.dims == 2 else [None] * len(spec.stages)
    stages = []
    for i, (st, hw) in enumerate(zip(spec.stages, sizes)):
        counted = c.by_module.get(f"stages.{i}", {})
        stages.append({"stage": i, "block": st.block, "depth": st.depth, "width": st.width,
                       "stride": st.stride,
                       "resolution": "x".join(map(str, hw)) if hw else "",
                       "params": counted.get("params"), "macs": counted.get("macs"),
                       # the block's own hyper-parameters (kernel, heads, ...), not weights
                       "settings": {k: v for k, v in st.params().items()
                                    if v not in (None, False)}})
    epochs, max_epochs = run.get("epochs", meta.get("epochs")), run.get("max_epochs",
                                                                        meta.get("max_epochs"))
    full = run.get("full_fidelity")
    if full is None and epochs is not None and max_epochs:
        full = int(epochs) >= int(max_epochs)
    return {
        "name": spec.name or f"arch {spec.arch_id}", "arch_id": spec.arch_id,
        "pattern": spec.pattern, "dims": spec.dims,
        "params": int(c.params), "macs": int(c.macs), "input_shape": list(shape),
        "num_classes": meta.get("num_classes"), "in_chans": meta.get("in_chans"),
        "dataset": meta.get("dataset") or run.get("dataset"),
        "metric_name": run.get("metric_name") or meta.get("metric_name") or "metric",
        "metric": _finite(run.get("metric", meta.get("metric"))),
        "epochs": epochs, "max_epochs": max_epochs, "full_fidelity": full,
        "status": run.get("status"),
        "latency_ms": _finite(run.get("latency_ms")),
        "latency_p10_ms": _finite(run.get("latency_p10_ms")),
        "latency_p90_ms": _finite(run.get("latency_p90_ms")),
        "latency_device": run.get("latency_device"),
        "predicted_latency_ms": _finite(run.get("predicted_latency_ms")),
        "run": run.get("run") or meta.get("run"), "run_dir": run.get("run_dir"),
        "trial_id": run.get("trial_id", meta.get("trial_id")),
        "reference": run.get("reference"),
        "front_position": run.get("front_position"), "front_size": run.get("front_size"),
        "rank": run.get("rank"), "ranked": run.get("ranked"),
        "trained": bool(meta.get("trained")),
        "files": dict(meta.get("files", {})),
        "parity": dict(meta.get("parity_max_abs_diff", {})),
        "onnx_dynamic_batch": meta.get("onnx_dynamic_batch"),
        "errors": dict(meta.get("export_errors", {})),
        "stages": stages,
    }


def _fmt(v, unit: str = "", digits: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def render_model_card(info: dict[str, Any]) -> str:
    """The model card (Markdown) for ``model_card_info``'s data."""
    lines = [f"# {info['name']}", ""]
    origin = []
    if info.get("run"):
        origin.append(f"run `{info['run']}`")
    if info.get("trial_id") is not None:
        origin.append(f"trial {info['trial_id']}")
    if info.get("reference"):
        origin.append(f"reference architecture `{info['reference']}`")
    lines.append(f"Architecture `{info['arch_id']}` (pattern `{info['pattern']}`)"
                 + (f" from {', '.join(origin)}." if origin else "."))
    if not info["trained"]:
        lines += ["", "**Untrained**: the run did not keep this trial's weights; the TorchScript "
                      "and ONNX files carry a fresh initialisation. Retrain with "
                      "`hybridnas train <this folder> --dataset ...`."]
    lines += ["", "| | |", "|---|---|",
              f"| parameters | {info['params'] / 1e6:.3f} M ({info['params']:,}) |",
              f"| MACs | {info['macs'] / 1e6:.2f} M at input {'x'.join(map(str, info['input_shape']))} |",
              f"| classes / input channels | {info['num_classes']} / {info['in_chans']} |"]
    if info.get("latency_ms") is not None:
        spread = ""
        if info.get("latency_p10_ms") is not None and info.get("latency_p90_ms") is not None:
            spread = f" (p10 {info['latency_p10_ms']:.3f}, p90 {info['latency_p90_ms']:.3f})"
        lines.append(f"| measured latency | {info['latency_ms']:.3f} ms{spread} on "
                     f"{info.get('latency_device') or 'unknown device'} |")
    else:
        lines.append("| measured latency | not measured |")
    lines.append(f"| predicted latency | {_fmt(info.get('predicted_latency_ms'), ' ms')} |")
    if info.get("metric") is not None:
        fid = ""
        if info.get("epochs") is not None:
            total = f"/{info['max_epochs']}" if info.get("max_epochs") else ""
            kind = "full fidelity" if info.get("full_fidelity") else "LOW fidelity (stopped early)"
            fid = f" after {info['epochs']}{total} proxy epochs, {kind}"
        lines.append(f"| proxy {info['metric_name']} | {info['metric']:.4f}"
                     f"{' on ' + str(info['dataset']) if info.get('dataset') else ''}{fid} |")
    if info.get("front_size"):
        pos = info.get("front_position")
        where = (f"{pos} of {info['front_size']} on the Pareto front (cheapest first)"
                 if pos else f"not on the Pareto front ({info['front_size']} trials are)")
        lines.append(f"| position | {where} |")
    if info.get("rank"):
        lines.append(f"| rank by {info['metric_name']} | {info['rank']} of {info['ranked']} "
                     f"full-fidelity trials |")
    lines += ["", "## Stages", "",
              "| stage | block | depth | width | stride | resolution | params | MACs | "
              "block settings |", "|---|---|---|---|---|---|---|---|---|"]
    for s in info["stages"]:
        settings = ", ".join(f"{k}={v}" for k, v in s["settings"].items())
        params = f"{s['params'] / 1e6:.3f} M" if s.get("params") is not None else ""
        macs = f"{s['macs'] / 1e6:.2f} M" if s.get("macs") is not None else ""
        lines.append(f"| {s['stage']} | {s['block']} | {s['depth']} | {s['width']} | {s['stride']} | "
                     f"{s['resolution']} | {params} | {macs} | {settings} |")
    lines += ["", "## Files", ""]
    for fmt, name in info["files"].items():
        check = info["parity"].get(fmt)
        note = f" (max abs difference to PyTorch: {check:.2e})" if check is not None else ""
        if fmt == "onnx" and info.get("onnx_dynamic_batch") is not None:
            note += ", dynamic batch" if info["onnx_dynamic_batch"] else ", fixed batch"
        lines.append(f"- `{name}`: {fmt}{note}")
    for fmt, why in info["errors"].items():
        lines.append(f"- {fmt}: not written: {why}")
    shape = ", ".join(map(str, [1] + list(info["input_shape"])))
    lines += ["", "## Use", "", "```python", "import torch", "import hybridnas", ""
              "model = hybridnas.load(\"<this folder>\")   # nn.Module with the weights, eval mode",
              f"logits = model(torch.randn({shape}))", "```", ""]
    if "onnx" in info["files"]:
        lines += ["```python", "import onnxruntime as ort",
                  "session = ort.InferenceSession(\"model.onnx\")",
                  f"logits = session.run(None, {{\"input\": x}})[0]   # x: float32 array ({shape})",
                  "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------

def _ranked(df, maximize: bool = True):
    """Full-fidelity COMPLETE trials with a metric, best first (all COMPLETE
    ones if none ran at full fidelity)."""
    done = df[df["status"] == "COMPLETE"]
    full = done["full_fidelity"].fillna(False).astype(bool)
    done = done[full] if full.any() else done
    done = done[done["metric"].astype(float).notna()]
    return done.sort_values("metric", ascending=not maximize, kind="stable")


def select_trials(df, trials: Sequence[int] | None = None, pareto: bool = False,
                  top: int | None = None, by: str = "metric", front: Sequence[int] = (),
                  run_dir: str = "run", maximize: bool = True) -> list[int]:
    """Trial ids to export: ``trials`` given explicitly, the ``front`` when
    ``pareto``, or the ``top`` K full-fidelity COMPLETE trials ``by`` metric
    (best first; ``maximize`` says which way is better) or latency (lowest
    first). Nothing chosen means the front.
    Raises ``UserError`` for unknown, failed or unfinished trials."""
    chosen = sum(x is not None and x is not False and x != [] for x in (trials, pareto or None, top))
    if chosen > 1:
        raise UserError("choose one of --trial, --pareto and --top")
    if trials:
        known = {int(t): row for t, row in zip(df["trial_id"], df.to_dict("records"))}
        out = []
        for t in trials:
            t = int(t)
            if t not in known:
                ids = sorted(known)
                span = f"{ids[0]}..{ids[-1]}" if ids else "none"
                raise UserError(f"{run_dir}: no trial {t} (trial ids: {span})")
            status = known[t]["status"]
            if status not in EXPORTABLE:
                why = known[t].get("error") or ""
                why = f": {why}" if isinstance(why, str) and why else ""
                raise UserError(f"{run_dir}: trial {t} is {status}{why}; nothing to export "
                                f"(exportable: {', '.join(EXPORTABLE)})")
            if t not in out:
                out.append(t)
        return out
    if top is not None:
        if int(top) < 1:
            raise UserError(f"--top {top} must be >= 1")
        key = {"accuracy": "metric", "latency_ms": "latency"}.get(by, by)
        metric_names = set(df.get("metric_name", []).dropna().astype(str))
        if key in metric_names:
            key = "metric"
        if key not in SORT_KEYS:
            raise UserError(f"--by {by!r} is not one of metric, latency"
                            f"{', ' + ', '.join(sorted(metric_names)) if metric_names else ''}")
        done = _ranked(df, maximize)
        if key == "latency":
            done = done[done["latency_ms"].astype(float).notna()].sort_values("latency_ms",
                                                                              kind="stable")
        if done.empty:
            raise UserError(f"{run_dir}: no COMPLETE trial with a {key} to rank")
        return [int(t) for t in done["trial_id"].head(int(top))]
    if not front:
        raise UserError(f"{run_dir}: the run has no Pareto front yet (no full-fidelity COMPLETE "
                        f"trial); pick trials with --trial")
    return [int(t) for t in front]


def export_run(run_dir: str | os.PathLike, trials: Sequence[int] | None = None,
               pareto: bool = False, top: int | None = None, by: str = "metric",
               formats=FORMATS, out: str | os.PathLike | None = None,
               resolution: int | None = None,
               log: Callable[[str], None] | None = None) -> list[ExportResult]:
    """Export architectures of the run in ``run_dir``.

    Choose them with ``trials`` (ids), ``pareto=True`` or ``top=K`` with
    ``by="metric"|"latency"`` (default: the front). Each goes to
    ``<out>/trial_<id>/`` (``out`` defaults to ``<run_dir>/export``) with the
    trained weights when the run kept them. ``log`` receives one line per
    architecture (with the parity numbers). Returns one ``ExportResult`` each.
    """
    import pandas as pd

    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    formats = parse_formats(formats)
    df = read_trials(run)
    if df.empty:
        raise UserError(f"{run_dir}: the run has no trials yet")
    config = read_run_config(run)
    columns, directions = run_objectives(config)
    front = front_trial_ids(run, df)
    ids = select_trials(df, trials, pareto, top, by, front=front, run_dir=str(run_dir),
                        maximize=directions[0])
    rank_of = {int(t): i + 1 for i, t in enumerate(_ranked(df, directions[0])["trial_id"])}
    # Position along the front, ordered by the cost objective (latency unless the run chose another).
    order = columns[1] if len(columns) > 1 and columns[1] in df.columns else "metric"
    front_df = df[df["trial_id"].isin(front)].sort_values(order, kind="stable")
    front_pos = {int(t): i + 1 for i, t in enumerate(front_df["trial_id"])}
    dest = Path(out) if out is not None else run / "export"
    rows = {int(r["trial_id"]): r for r in df.to_dict("records")}
    results = []
    for t in ids:
        row = {k: (None if isinstance(v, float) and pd.isna(v) and k in ("error", "reference",
                                                                          "checkpoint") else v)
               for k, v in rows[t].items()}
        spec = ArchSpec.from_json(row["spec"], source=f"{run_dir} trial {t} spec")
        ck = run / row["checkpoint"] if row.get("checkpoint") else run / "checkpoints" / f"trial_{t}"
        meta: dict[str, Any] = {}
        model = None
        if (ck / META_FILE).exists():
            meta = read_meta(ck)
            if (ck / WEIGHTS_FILE).exists():
                model, _, meta = load_checkpoint(ck)
        # Trial checkpoints may leave these out (or None): the run's config knows them.
        shape = config.get("input_shape")
        for key, value in (("dataset", config.get("dataset")),
                           ("input_shape", shape),
                           ("resolution", config.get("resolution")),
                           ("num_classes", config.get("num_outputs", config.get("num_classes"))),
                           ("in_chans", shape[0] if shape else config.get("in_chans"))):
            if meta.get(key) is None and value is not None:
                meta[key] = value
        meta.update(run=run.name, trial_id=t, metric=row.get("metric"),
                    metric_name=row.get("metric_name"), epochs=row.get("epochs"),
                    max_epochs=row.get("max_epochs"))
        if model is None and not meta.get("num_classes"):
            raise UserError(f"{run_dir}: trial {t} kept no checkpoint and config.yaml does not "
                            f"say num_classes; cannot rebuild its head")
        card = dict(row, run=run.name, run_dir=str(run), front_position=front_pos.get(t),
                    front_size=len(front), rank=rank_of.get(t), ranked=len(rank_of),
                    dataset=meta.get("dataset"))
        result = export_model(model if model is not None else spec, dest / f"trial_{t}", formats,
                              meta=meta, resolution=resolution, card=card,
                              trained=model is not None)
        result.trial_id = t
        results.append(result)
        if log:
            log(describe(result))
    return results


def describe(result: ExportResult) -> str:
    """One line per exported architecture: where, what, and the parity checks."""
    parts = [f"trial {result.trial_id}" if result.trial_id is not None else "model",
             f"-> {result.dir}", "[" + ", ".join(result.files) + "]"]
    if not result.trained:
        parts.append("untrained (weights not kept)")
    for fmt, diff in result.checks.items():
        limit = ONNX_TOLERANCE if fmt == "onnx" else TORCHSCRIPT_TOLERANCE
        verdict = "ok" if diff <= limit else f"FAILS tolerance {limit:g}"
        parts.append(f"{fmt} max|diff|={diff:.2e} {verdict}")
    for fmt, why in result.errors.items():
        parts.append(f"{fmt} FAILED: {why}")
    return "  ".join(parts)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def load(path: str | os.PathLike, map_location: str = "cpu"):
    """The ``nn.Module`` of an export (or checkpoint) folder with its weights, in eval mode.

    A folder exported without weights (the run did not keep them) gives the
    architecture freshly initialised, with a warning.
    """
    from ..builder import build_model

    folder = Path(path)
    if folder.is_file() and folder.name in (SPEC_FILE, META_FILE, WEIGHTS_FILE, CARD_FILE):
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{path}: no such export folder")
    if not (folder / SPEC_FILE).exists():
        raise UserError(f"{path}: no {SPEC_FILE} here (not an export or checkpoint folder)")
    if (folder / WEIGHTS_FILE).exists():
        model, _, _ = load_checkpoint(folder, map_location=map_location)
        return model
    meta = read_meta(folder)
    warnings.warn(f"{path}: no {WEIGHTS_FILE}; returning the architecture untrained", stacklevel=2)
    spec = ArchSpec.load(str(folder / SPEC_FILE))
    model = build_model(spec, num_classes=int(meta.get("num_classes") or 1000),
                        in_chans=int(meta.get("in_chans") or 3))
    return model.to(map_location).eval()
