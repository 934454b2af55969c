"""Latency measurement of one model on one device.

``measure`` times the forward pass only (no data loading, no transfers of the
output), in eval mode under ``torch.inference_mode``, after a warm-up:

- CPU: ``time.perf_counter_ns`` around each call with a fixed intra-op
  thread count (restored afterwards), because the thread count changes the
  result more than anything else on a CPU. ``clock="cpu"`` (one thread
  only) times the calling thread's CPU time instead: the time a dedicated
  core would take, blind to preemption by other processes on a shared
  machine (but not to cache or memory-bandwidth contention);
- CUDA: a pair of CUDA events per call, read after a device synchronisation,
  so that the numbers are GPU time and not kernel-launch time.

Torch is imported inside the functions so that ``import hybridnas.latency``
stays cheap.
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import UserError
from ..spec import ArchSpec
from .settings import CLOCKS, MEASURE

__all__ = ["LatencyResult", "measure", "time_callable", "resolve_device", "device_name",
           "settings_key", "resolve_clock", "BACKENDS", "CLOCKS", "KEY_SETTINGS"]

BACKENDS = ("eager", "compile", "onnxruntime")

#: Settings that change a latency figure: the cache key and the predictor's
#: compatibility check use exactly these.
KEY_SETTINGS = ("device", "device_name", "backend", "batch_size", "resolution", "in_chans",
                "num_classes", "threads", "dtype", "clock")


def resolve_clock(clock: str, device: str, threads: int | None, backend: str = "eager") -> str:
    """'auto' -> 'cpu' for one-thread eager CPU measurements, else 'wall'."""
    if clock != "auto":
        return clock
    return "cpu" if device == "cpu" and (threads or 1) == 1 and backend == "eager" else "wall"


@dataclass(frozen=True)
class LatencyResult:
    """One measurement: median and 10th/90th percentile of the per-call times
    (milliseconds per forward pass of ``batch_size`` samples), and every
    setting used (device, device_name, backend, batch_size, resolution,
    in_chans, num_classes, threads, warmup, repeats, dtype, ...).

    ``samples_ms`` holds the raw per-call times (empty when read from a cache).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    settings: dict[str, Any]
    samples_ms: tuple[float, ...] = field(default=(), compare=False, repr=False)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: a quick repeatability figure."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms,
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyResult":
        return cls(float(data["median_ms"]), float(data["p10_ms"]), float(data["p90_ms"]),
                   dict(data["settings"]))


def settings_key(settings: dict[str, Any]) -> str:
    """Canonical string of the settings that change a latency figure."""
    import json

    return json.dumps({k: settings.get(k) for k in KEY_SETTINGS}, sort_keys=True,
                      separators=(",", ":"))


def resolve_device(device: str | None) -> str:
    """'cpu', 'cuda' or 'cuda:N' -> a concrete device string; ``UserError``
    when the device does not exist here."""
    import torch

    name = str(device or "cpu").strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device={device!r}: no CUDA device is available on this machine "
                            f"(use --device cpu)")
        index = int(name.split(":", 1)[1]) if ":" in name else torch.cuda.current_device()
        if not 0 <= index < torch.cuda.device_count():
            raise UserError(f"device={device!r}: this machine has {torch.cuda.device_count()} "
                            f"CUDA device(s)")
        return f"cuda:{index}"
    raise UserError(f"device={device!r} is not one of 'cpu', 'cuda', 'cuda:N'")


def device_name(device: str) -> str:
    """Hardware name, so that a shared cache never mixes two machines' figures."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(int(device.split(":")[1]))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Fix torch's intra-op thread count for the block; restore it afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _percentile(sorted_values: list[float], q: float) -> float:
    # Linear interpolation between closest ranks (numpy's default).
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarise(samples_ms: list[float], settings: dict[str, Any]) -> LatencyResult:
    values = sorted(samples_ms)
    return LatencyResult(statistics.median(values), _percentile(values, 0.1),
                         _percentile(values, 0.9), settings, tuple(samples_ms))


def time_callable(fn: Callable[[], Any], device: str, warmup: int, repeats: int,
                  clock: str = "wall") -> list[float]:
    """Per-call times (ms) of ``fn()`` after ``warmup`` untimed calls.

    On CUDA each call is bracketed by two events and the device is
    synchronised before the first and after the last call, so queued work of
    one call is never charged to another.
    """
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        with torch.cuda.device(dev):
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize(dev)
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
            for start, end in zip(starts, ends):
                start.record()
                fn()
                end.record()
            torch.cuda.synchronize(dev)
            return [start.elapsed_time(end) for start, end in zip(starts, ends)]
    for _ in range(warmup):
        fn()
    now = time.thread_time_ns if clock == "cpu" else time.perf_counter_ns
    times = []
    for _ in range(repeats):
        t0 = now()
        fn()
        times.append((now() - t0) / 1e6)
    return times


def _as_model(model_or_spec: Any, num_classes: int, in_chans: int):
    """(module, spec or None, arch_id or None, named resolution or None)."""
    from torch import nn

    if isinstance(model_or_spec, nn.Module):
        spec = getattr(model_or_spec, "spec", None)
        spec = spec if isinstance(spec, ArchSpec) else None
        return model_or_spec, spec, (spec.arch_id if spec else None), None
    named_resolution = None
    if isinstance(model_or_spec, str):
        from .. import get_spec

        spec = get_spec(model_or_spec)
        try:
            from ..zoo import get_named

            named_resolution = get_named(model_or_spec).resolution
        except KeyError:
            pass
    elif isinstance(model_or_spec, ArchSpec):
        spec = model_or_spec
    else:
        raise UserError(f"measure() takes an nn.Module, an ArchSpec or a name, "
                        f"got {type(model_or_spec).__name__}")
    from ..builder import build_model

    return build_model(spec, num_classes=num_classes, in_chans=in_chans), spec, spec.arch_id, \
        named_resolution


def measure(model_or_spec: Any, device: str = "cpu", batch_size: int = 1,
            resolution: int | tuple[int, int] | None = None, in_chans: int = 3,
            num_classes: int = 1000, threads: int | None = None, warmup: int = MEASURE.warmup,
            repeats: int = MEASURE.repeats, backend: str = "eager",
            clock: str = MEASURE.clock) -> LatencyResult:
    """Forward-pass latency of a model, spec or named architecture.

    ``device``: 'cpu', 'cuda' or 'cuda:N'. ``resolution``: input size (square
    image side, or sequence length for 1-D specs); defaults to a named
    architecture's resolution, else 224. ``threads`` (CPU only): intra-op
    threads, default 1 (the most repeatable figure, and the one that does not
    depend on how many cores the machine has). ``backend``: 'eager',
    'compile' (``torch.compile``, compiled during warm-up) or 'onnxruntime'.
    ``clock``: 'wall' (default), 'cpu' (thread CPU time; CPU, eager and
    one thread only; see the module docstring) or 'auto' (cpu where allowed).

    Returns a ``LatencyResult`` (median, p10, p90 in ms per batch) whose
    ``settings`` say exactly what was measured; the model is left in the
    mode and on the device it came in with.
    """
    import torch

    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r} is not one of {list(BACKENDS)}")
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be >= 1")
    if repeats < 1 or warmup < 0:
        raise UserError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    dev = resolve_device(device)
    threads = int(threads) if threads else 1
    if threads < 1:
        raise UserError(f"threads={threads} must be >= 1")
    if clock not in CLOCKS:
        raise UserError(f"clock={clock!r} is not one of {list(CLOCKS)}")
    clock = resolve_clock(clock, dev, threads, backend)
    if clock == "cpu" and (dev != "cpu" or threads != 1 or backend != "eager"):
        raise UserError(f"clock='cpu' needs device='cpu', threads=1 and backend='eager' "
                        f"(got {dev}, threads={threads}, backend={backend!r})")
    model, spec, arch_id, named_res = _as_model(model_or_spec, num_classes, in_chans)
    if resolution is None:
        resolution = named_res or 224
    if spec is not None:
        spec.validate(resolution)
    dims = spec.dims if spec is not None else 2
    size = (resolution,) if dims == 1 and isinstance(resolution, int) else (
        (resolution, resolution) if isinstance(resolution, int) else tuple(resolution))
    chans = getattr(model, "in_chans", in_chans)
    settings: dict[str, Any] = {
        "device": dev, "device_name": device_name(dev), "backend": backend,
        "batch_size": batch_size, "resolution": resolution if isinstance(resolution, int)
        else list(resolution), "in_chans": chans,
        "num_classes": getattr(model, "num_classes", num_classes),
        "threads": threads if dev == "cpu" else None, "dtype": "float32", "clock": clock,
        "warmup": warmup, "repeats": repeats, "arch_id": arch_id,
        "torch": torch.__version__, "host": platform.node(),
    }
    first = next(model.parameters(), None)
    old_device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    threads_ctx = cpu_threads(threads) if dev == "cpu" else contextlib.nullcontext()
    try:
        with threads_ctx, torch.inference_mode():
            x = torch.randn((batch_size, chans) + size)
            if backend == "onnxruntime":
                fn = _onnx_runner(model.to("cpu"), x, dev, threads)
            else:
                model.to(dev)
                x = x.to(dev)
                run = torch.compile(model) if backend == "compile" else model
                fn = lambda: run(x)  # noqa: E731
                if backend == "compile":
                    try:
                        fn()  # compile now, so a failure names the backend
                    except Exception as e:  # inductor needs a C++ compiler on CPU
                        raise UserError(f"backend='compile' failed on {dev}: "
                                        f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
            samples = time_callable(fn, dev, warmup, repeats, clock)
        settings["measured_at"] = time.time()
    finally:
        model.train(was_training)
        model.to(old_device)
    return summarise(samples, settings)


def _onnx_runner(model, x, device: str, threads: int) -> Callable[[], Any]:
    """Export to ONNX in a temp dir and return a callable running one inference."""
    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory(prefix="hnas_onnx_") as tmp:
        path = os.path.join(tmp, "model.onnx")
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
                    contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, input_names=["input"], verbose=False,
                                  output_names=["output"], dynamo=True, external_data=False)
        except Exception as e:
            raise UserError(f"backend='onnxruntime': ONNX export failed: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError("backend='onnxruntime' on CUDA needs onnxruntime-gpu "
                                "(CUDAExecutionProvider is not available)")
            providers = [("CUDAExecutionProvider", {"device_id": int(device.split(":")[1])})]
        session = ort.InferenceSession(path, opts, providers=providers)
    feed = {"input": x.numpy()}
    return lambda: session.run(None, feed)
