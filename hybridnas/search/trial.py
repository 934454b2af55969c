"""One search trial, run by a Ray Tune worker: build, measure, short-train.

``search_trial`` is the Tune function trainable; it reports every epoch and
turns any failure of its own into a FAILED report, so one bad architecture
never stops the search and the reused actor survives for the next trial.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from datetime import datetime, timezone
from typing import Any

from .settings import TrialLatency, TrialSettings

__all__ = ["search_trial", "measure_latency", "latency_resolution", "InjectedFault",
           "CHECKPOINT_MISSING", "read_progress"]

#: Starts the ``error`` of a trained trial whose checkpoint could not be written.
CHECKPOINT_MISSING = "checkpoint not written"


class InjectedFault(RuntimeError):
    """Raised on purpose in trials listed in ``inject_failure`` (tests)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def latency_service(lat: TrialLatency):
    """The run's ``LatencyService`` (one measurer per run: serialised, trainers
    paused while it measures), or None when its folder is not reachable from
    this node (then the trial measures by itself)."""
    workdir = lat.service_dir
    if not workdir:
        return None
    from ..errors import UserError
    from ..latency import LatencyService

    try:
        return LatencyService.open(workdir)
    except UserError:
        return None


def latency_resolution(input_shape, spec=None) -> int | tuple[int, ...]:
    """The ``resolution`` a network is timed at for per-sample inputs of
    ``input_shape`` (channels first): the side of square images or the length
    of a 1-D sequence (an int); (H, W) of other images; (assets, time) of a
    multi-asset panel (features, assets, time), so the whole panel is timed
    even when it happens to be square (``spec.assets``)."""
    dims = tuple(int(s) for s in input_shape[1:])
    if len(dims) == 1:
        return dims[0]
    if len(set(dims)) > 1 or bool(getattr(spec, "assets", False)):
        return dims
    return dims[0]


def measure_latency(spec, model, resolution, in_chans: int, num_classes: int,
                    lat: TrialLatency, service=None) -> dict[str, Any]:
    """Latency of one trial's network: the one place a search measures latency.

    ``resolution``: the trial's own input size (``latency_resolution`` of
    its bundle's input shape; a temporal trial's lookback is a decision of
    the space, so it may differ from the run's default). Through the run's
    isolated ``service`` when there is one (cached by arch id and settings),
    else ``hybridnas.latency.measure`` in this worker with the same settings
    (the clock included, so figures of both paths compare).
    Returns the trials-table columns ``latency_ms``, ``latency_p10_ms``,
    ``latency_p90_ms``, ``latency_device`` and ``predicted_latency_ms``
    (NaN without a calibrated table).
    """
    predicted = math.nan
    if service is not None:
        at = {"resolution": resolution}
        result = service.measure(spec, model=model, **at)
        p = service.predict(spec, **at)
        predicted = float(p) if p is not None else math.nan
    else:
        from ..latency import measure

        result = measure(model, device=lat.device, batch_size=lat.batch_size,
                         resolution=resolution, in_chans=in_chans, num_classes=num_classes,
                         threads=lat.threads, warmup=lat.warmup, repeats=lat.repeats,
                         clock=lat.clock)
    s = result.settings
    return {"latency_ms": float(result.median_ms), "latency_p10_ms": float(result.p10_ms),
            "latency_p90_ms": float(result.p90_ms), "predicted_latency_ms": predicted,
            "latency_device": str(s.get("device_name") or s.get("device") or "cpu")}


_SHARED: dict[str, Any] = {}  # the run's dataset, fetched once per worker


def data_key(data: dict[str, Any]) -> str:
    """A canonical string of dataset settings (which bundle a trial needs)."""
    return json.dumps(data, sort_keys=True, default=str)


def _load_bundle(data: dict[str, Any], shared=None):
    """The trial's dataset: the driver's shared bundle when the settings match
    (fetched once per worker), else ``load_dataset`` (cached per process)."""
    if shared is not None:
        key, (ref,) = shared
        if key == data_key(data):
            if key not in _SHARED:
                import ray

                _SHARED.clear()  # one run's dataset at a time
                _SHARED[key] = ray.get(ref)
            return _SHARED[key]
    from ..data import load_dataset

    return load_dataset(**data)


def _val_metrics(epoch_result: Any) -> dict[str, float]:
    """Validation metrics (``val_*`` keys) from a training EpochResult."""
    for attr in ("val_metrics", "metrics", "val"):
        value = getattr(epoch_result, attr, None)
        if isinstance(value, dict):
            return {(k if k.startswith("val_") else f"val_{k}"): float(v)
                    for k, v in value.items() if isinstance(v, (int, float))}
    if isinstance(epoch_result, dict):
        return {k: float(v) for k, v in epoch_result.items() if k.startswith("val_")}
    return {}


def _resolve_device(settings: TrialSettings) -> tuple[str, float]:
    """(device, accelerators held): the trial's GPU share if it has one."""
    import torch

    gpus = float(settings.gpus_per_trial or 0.0)
    if gpus > 0 and torch.cuda.is_available():
        return "cuda", gpus
    return "cpu", 1.0


def _import_trial_modules() -> None:
    import torch._dynamo  # noqa: F401 - torch's optimizers import it on their first step (~5 s)

    from .. import builder, complexity, training  # noqa: F401
    from ..data import load_dataset  # noqa: F401
    from ..latency import measure  # noqa: F401


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (direct calls in tests)
        return ""


def _describe_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    name = type(e).__name__
    if "out of memory" in text.lower() or isinstance(e, MemoryError):
        name = f"OutOfMemory ({name})"
    return f"{name}: {text}"[:500]


def search_trial(config: dict[str, Any], shared_data=None, save_checkpoint=None) -> None:
    """Tune function trainable: one architecture, trained at the proxy setting.

    ``config`` carries the architecture (``spec`` as a dict,
    ``space_params``, ``trial_id`` = the Optuna trial number, ``reference``)
    and ``settings`` (``settings.TrialSettings`` as a dict). Each epoch it
    calls ``tune.report`` with the trials-table columns: arch id, params,
    MACs, latency, the best validation metric so far (``metric``), the epoch
    count (``epochs``, the fidelity ASHA schedules on) and the device-seconds
    used since the data was in memory (a fresh worker's imports and first
    read of the dataset are orchestration, not the trial's device time);
    ``train_seconds`` is training and validation alone. Params and MACs come
    with the config (``cost``, counted by the searcher) when it could count
    them. A trial that raises (NaN loss and out-of-memory included) reports
    once more with ``status='FAILED'`` and the reason and returns normally;
    Tune stops a trial by raising ``SystemExit`` inside ``tune.report``,
    which is not caught.

    ``shared_data``: the run's loaded dataset from the driver (through Ray's
    object store, fetched once per worker), or None; trials with other data
    settings (a temporal trial's lookback) load theirs with
    ``hybridnas.data.load_dataset``, cached per process. ``save_checkpoint``:
    ``SearchHooks.save_checkpoint`` (None: no checkpoint is written).
    """
    import torch
    from ray import tune

    # Heavy imports first: a fresh worker pays them once (actors are reused),
    # and they are orchestration overhead, not device time of this trial.
    # An import error is reported as this trial's failure below.
    try:
        _import_trial_modules()
    except Exception:  # noqa: BLE001
        pass
    settings = TrialSettings.from_dict(config["settings"])
    trial_id = int(config["trial_id"])
    max_epochs = int(settings.epochs)
    device, devices = _resolve_device(settings)
    torch.set_num_threads(max(1, int(settings.threads or 1)))
    state: dict[str, Any] = {
        "trial_id": trial_id, "status": "RUNNING", "arch_id": config.get("arch_id", ""),
        "params": 0, "macs": 0, "latency_ms": math.nan, "latency_p10_ms": math.nan,
        "latency_p90_ms": math.nan, "latency_device": "", "predicted_latency_ms": math.nan, "metric": math.nan,
        "metric_name": settings.metric_name, "curve": "[]", "epochs": 0,
        "max_epochs": max_epochs, "full_fidelity": False, "device_seconds": 0.0,
        "train_seconds": 0.0, "accelerator": device, "error": "", "checkpoint": "",
        "started_at": now_iso(), "finished_at": "", "node_id": _node_id(),
    }
    sign = 1.0 if settings.maximize else -1.0
    curve: list[float] = []
    # An interrupted trial continues (``--resume``) from its per-epoch state,
    # its earlier device time charged; none when the run dir is not writable here.
    partial = _partial_dir(settings, trial_id)
    before = read_progress(partial)
    if before.get("started_at"):
        state["started_at"] = str(before["started_at"])
    spent_before = [float(before.get("device_seconds") or 0.0)]

    t0: float | None = None  # the device clock starts once the data is in memory

    def device_seconds() -> float:
        return spent_before[0] + (0.0 if t0 is None else (time.perf_counter() - t0) * devices)

    stack = contextlib.ExitStack()
    try:
        from ..builder import build_model
        from ..complexity import cost
        from ..spec import ArchSpec
        from ..training import fit
        from ..training_progress import ProgressLine

        spec = ArchSpec.from_dict(config["spec"])
        # Cached per worker: only a fresh worker's first trial fetches or reads it.
        bundle = _load_bundle(dict(settings.data), shared_data)
        t0 = time.perf_counter()
        in_chans = int(bundle.input_shape[0])
        # this trial's own input (a temporal trial draws its lookback)
        resolution = latency_resolution(bundle.input_shape, spec)
        model = build_model(spec, num_classes=bundle.num_outputs, in_chans=in_chans)
        counted = config.get("cost")  # counted by the searcher while the last trial trained
        if not counted:
            c = cost(model, tuple(bundle.input_shape), num_classes=bundle.num_outputs)
            counted = {"params": c.params, "macs": c.macs}
        state.update(params=int(counted["params"]), macs=int(counted["macs"]),
                     arch_id=spec.arch_id)
        service = latency_service(settings.latency)
        trainer = service.trainer() if service is not None else contextlib.nullcontext()
        stack.enter_context(trainer)  # paused while another trial measures latency
        state.update(measure_latency(spec, model, resolution, in_chans, bundle.num_outputs,
                                     settings.latency, service))
        train_start = time.perf_counter()
        # Time spent inside tune.report (the driver handling the report; a
        # function trainable waits for it) is orchestration, not training.
        waited = [0.0]
        inject = trial_id in settings.inject_failure

        # A kill after the last epoch's state was saved but before it was
        # reported leaves nothing to train: that epoch is reported on resume.
        unreported: list = []

        def on_resume(history) -> None:
            # epochs the checkpoint holds beyond the last progress record (a kill in between)
            missed = history[int(before.get("epochs") or 0):]
            spent_before[0] += sum(float(getattr(h, "seconds", 0.0)) for h in missed) * devices
            if history and len(history) >= max_epochs:
                unreported[:] = history[-1:]
                history = history[:-1]
                _print_line(f"[trial {trial_id}] had trained all {max_epochs} epochs; reporting them")
            else:
                _print_line(f"[trial {trial_id}] continues from epoch {len(history)}")
            curve[:] = [_val_metrics(h).get(settings.metric_name, math.nan) for h in history]

        def on_checkpoint_error(e: OSError) -> None:
            _print_line(f"[trial {trial_id}] per-epoch state not saved ({e}); a kill now "
                        f"restarts this trial from epoch 0")

        def on_epoch(epoch_result) -> None:
            vals = _val_metrics(epoch_result)
            value = vals.get(settings.metric_name, math.nan)
            curve.append(value)
            finite = [v for v in curve if math.isfinite(v)]
            best = (max(finite) if sign > 0 else min(finite)) if finite else math.nan
            epochs = len(curve)
            state.update(vals)
            state.update(metric=best, curve=json.dumps(curve), epochs=epochs,
                         full_fidelity=epochs >= max_epochs,
                         train_seconds=time.perf_counter() - train_start - waited[0])
            if inject:
                raise InjectedFault(f"fault injected into trial {trial_id} (inject_failure)")
            if epochs >= max_epochs:
                if settings.keep_checkpoints != "none" \
                        and save_checkpoint is not None:
                    state["checkpoint"] = _save_checkpoint(save_checkpoint, model, spec, settings,
                                                           trial_id, state, bundle.input_shape)
                state.update(status="COMPLETE", finished_at=now_iso())
            state["device_seconds"] = device_seconds()
            if partial is not None and state["status"] == "RUNNING":
                _write_progress(partial, state)
            reporting = time.perf_counter()
            tune.report(dict(state))
            waited[0] += time.perf_counter() - reporting

        t = settings.train
        fit(model, bundle, epochs=max_epochs, batch_size=t.batch_size, lr=t.lr,
            weight_decay=t.weight_decay, warmup_epochs=t.warmup_epochs,
            label_smoothing=t.label_smoothing, grad_clip=t.grad_clip, device=device, amp=t.amp,
            on_epoch=on_epoch, on_batch=ProgressLine(_progress_log(settings),
                                                     every_s=settings.progress_every_s,
                                                     prefix=f"[trial {trial_id}] "),
            max_batches_per_epoch=t.max_batches_per_epoch,
            max_val_batches=t.max_val_batches, seed=t.seed + trial_id,
            checkpoint_dir=str(partial) if partial is not None else None,
            resume=partial is not None, on_resume=on_resume,
            on_checkpoint_error=on_checkpoint_error)
        if unreported and state["status"] == "RUNNING":
            on_epoch(unreported[0])
    except Exception as e:  # noqa: BLE001 - any fault of one trial must not stop the search
        if device == "cuda":
            torch.cuda.empty_cache()
        state.update(status="FAILED", error=_describe_error(e), finished_at=now_iso(),
                     device_seconds=device_seconds())
        stack.close()
        tune.report(dict(state))
    finally:
        stack.close()


PROGRESS_NAME = "progress.json"


def _partial_dir(settings: TrialSettings, trial_id: int):
    """``<run>/partial/trial_<id>`` when the run directory is writable from
    this node, else None (a remote node: no per-epoch state)."""
    import os

    from ..rundir import RunDir

    if not settings.run_dir or not os.access(settings.run_dir, os.W_OK):
        return None
    return RunDir(settings.run_dir).partial_dir(trial_id)


def read_progress(partial) -> dict[str, Any]:
    """What an interrupted run of this trial recorded (epochs, device-seconds,
    start time), or {} (none, or unreadable: the trial then starts afresh)."""
    from .._io import parse_json, read_text
    from ..errors import UserError

    if partial is None or not (partial / PROGRESS_NAME).exists():
        return {}
    try:
        data = parse_json(read_text(partial / PROGRESS_NAME), str(partial / PROGRESS_NAME))
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_progress(partial, state: dict[str, Any]) -> None:
    from .._io import write_atomic

    record = {k: state[k] for k in ("trial_id", "epochs", "device_seconds", "started_at")}
    try:
        write_atomic(partial / PROGRESS_NAME, lambda p: p.write_text(json.dumps(record)))
    except OSError:
        pass  # the checkpoint's history still says how far it got


def _print_line(line: str) -> None:
    """A trial's line on the worker's stdout, which Ray forwards to the
    search console with ``-v``."""
    print(line, flush=True)


def _progress_log(settings: TrialSettings):
    """Where a trial's progress lines go (rate-limited by ProgressLine): the
    worker's stdout (``_print_line``) and the run's logs/search.log, when
    this node can write the run directory (a remote node: stdout only)."""
    import os

    from ..rundir import RunDir

    if not settings.run_dir or not os.access(settings.run_dir, os.W_OK):
        return _print_line
    run = RunDir(settings.run_dir)

    def log(line: str) -> None:
        _print_line(line)
        run.append_log(line)

    return log


def _save_checkpoint(save, model, spec, settings: TrialSettings, trial_id: int,
                     state: dict[str, Any], input_shape) -> str:
    """Save the trained model under the run dir; the path relative to it ("" if it failed).

    The meta says the input the model was trained on (``input_shape`` per
    sample, and ``resolution``: its last axis, the image side or lookback),
    so a checkpoint folder exports on its own, without ``--resolution``."""
    from pathlib import Path

    rel = f"checkpoints/trial_{trial_id}"
    shape = [int(x) for x in input_shape]
    meta = {"trial_id": trial_id, "input_shape": shape,
            "resolution": shape[-1] if len(shape) >= 2 else settings.data.get("resolution"),
            "data": {k: v for k, v in settings.data.items() if k != "data_dir"},
            "dataset": settings.data.get("name"), "metric": state["metric"],
            "metric_name": state["metric_name"], "epochs": state["epochs"]}
    try:
        save(Path(settings.run_dir) / rel, model, spec, meta)
    except Exception as e:  # noqa: BLE001 - a full disk, a remote node without the run dir...
        # ...: the trained trial keeps its metric; the row says why it has no checkpoint
        state["error"] = f"{CHECKPOINT_MISSING}: {_describe_error(e)}"[:500]
        return ""
    return rel
