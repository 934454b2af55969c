"""The dedicated latency measurer of a search run (isolation).

Latency measured while other trials load the same device is noise. During a search every measurement therefore goes through one
``LatencyService``, which guarantees two things:

1. **One measurement at a time.** Measurements take an exclusive file lock
   (``<workdir>/measure.lock``) for their whole duration, whichever process
   or Ray worker asks; with ``actor=True`` they also run in one Ray actor
   that holds the target device (``num_gpus=1`` for a CUDA target), so no
   training trial is ever placed on it.
2. **No training on the device while measuring.** Training processes
   register themselves (``with service.trainer(): ...``); while a
   measurement runs, the measurer suspends every registered process on its
   host (``SIGSTOP``, children included) and resumes them afterwards
   (``SIGCONT``, in a ``finally``). Trials need no hook in their training
   loop: they simply stop for the second a measurement takes. This was
   chosen over a cooperative "pause between steps" flag because it needs no
   change to the training loop and cannot be delayed by a long step;
   ``benchmarks/bench_latency.py`` shows the effect on repeatability. Turn
   it off (``pause_trainers=False``) when the latency device is not shared
   with training (e.g. measuring on ``cuda:1`` while trials train elsewhere).

Figures are cached by architecture id + settings (``LatencyCache``), so an
architecture seen before costs one SQLite lookup.

Usage in a search (the runner creates the service once; trials call it)::

    from hybridnas.latency import LatencyService

    service = LatencyService(run_dir / "latency", device="cpu", resolution=32,
                             num_classes=10, predictor="latency_table.json")
    # pass `service` (picklable) to the trainable, or its workdir string and
    # LatencyService.open(workdir) inside the trial.
    def trainable(config):
        with service.trainer():                # paused while a measurement runs
            ms = service.predict(spec)         # None without a predictor
            if ms is not None and ms > max_latency_ms: ...reject before training...
            result = service.measure(spec)     # cached, serialised, isolated
            fit(...)
    service.close()                            # at the end of the run

For a CUDA target (``--latency-device cuda``) or to keep measurements in
one process, call ``service.start_actor()`` after ``ray.init()``: trials
then reach the named actor, which holds the device.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from typing import Any, Iterator

from .._io import write_atomic
from ..errors import UserError
from ..spec import ArchSpec
from ._cache import LatencyCache
from ._measure import LatencyResult, measure
from .settings import SEARCH

__all__ = ["LatencyService", "pause_processes"]

_CONFIG = "service.json"


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (e.g. DataLoader workers), from /proc."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(_children(kid))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resume(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _start_guard(pids: list[int], max_pause_s: float) -> int:
    """Fork a watchdog that resumes ``pids`` if this process dies (even by
    SIGKILL) or the pause outlasts ``max_pause_s``; kill it to disarm.

    Without it a measurer killed mid-measurement (a trial timed out, an
    OOM kill) would leave every trainer stopped for good.
    """
    parent = os.getpid()
    child = os.fork()
    if child:
        return child
    try:  # the child only sleeps and sends signals: safe after fork
        deadline = time.monotonic() + max_pause_s
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.02)
        _resume(pids)
    finally:
        os._exit(0)


@contextlib.contextmanager
def pause_processes(pids: list[int], max_pause_s: float = 300.0) -> Iterator[list[int]]:
    """Suspend ``pids`` and their descendants for the block; always resume.

    Yields the process ids actually stopped. Waits until each is really
    stopped (state 'T'), so the measurement starts on a quiet machine. A
    forked watchdog resumes them if this process dies inside the block or
    the block lasts longer than ``max_pause_s``.
    """
    me = os.getpid()
    targets: list[int] = []
    for pid in pids:
        for p in [pid] + _children(pid):
            if p != me and p not in targets:
                targets.append(p)
    stopped: list[int] = []
    guard = _start_guard(targets, max_pause_s) if targets else 0
    try:
        for p in targets:
            try:
                os.kill(p, signal.SIGSTOP)
                stopped.append(p)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 1.0
        for p in stopped:
            while time.monotonic() < deadline and _state(p) not in ("T", "t", "Z", "X", None):
                time.sleep(0.001)
        yield stopped
    finally:
        _resume(stopped)
        if guard:
            with contextlib.suppress(ProcessLookupError):
                os.kill(guard, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(guard, 0)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # "pid (comm) S ...": comm may contain spaces, so split after ')'.
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class LatencyService:
    """The one latency measurer of a search run; a small picklable handle.

    ``workdir``: a folder for the lock, the trainer registry and the
    service's config (the search puts it in the run directory). The
    measurement settings (device, batch_size, resolution, in_chans,
    num_classes, threads, warmup, repeats, backend, clock) are fixed here, so every
    trial's figure is comparable. ``cache``: SQLite path (default
    ``<workdir>/latency.db``; share one across runs to reuse figures).
    ``predictor``: a calibrated table (``hybridnas latency calibrate``) for
    ``predict``. ``pause_trainers``: suspend registered training processes
    while measuring (see the module docstring). ``clock``: 'auto' (default)
    takes the thread's CPU time for one-thread eager CPU measurements and
    wall time otherwise: with trainers paused, CPU time is what still varies
    least on a machine shared with other work (``benchmarks/bench_latency.py``
    compares the clocks).
    """

    def __init__(self, workdir: str | os.PathLike, device: str = "cpu", batch_size: int = 1,
                 resolution: int = 224, in_chans: int = 3, num_classes: int = 1000,
                 threads: int | None = None, warmup: int = SEARCH.warmup,
                 repeats: int = SEARCH.repeats, backend: str = "eager", clock: str = SEARCH.clock,
                 cache: str | os.PathLike | None = None,
                 predictor: str | os.PathLike | None = None, pause_trainers: bool = True,
                 _write: bool = True):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.settings = {"device": device, "batch_size": int(batch_size),
                         "resolution": resolution, "in_chans": int(in_chans),
                         "num_classes": int(num_classes), "threads": threads,
                         "warmup": int(warmup), "repeats": int(repeats), "backend": backend,
                         "clock": clock}
        self.cache_path = os.fspath(cache) if cache else os.path.join(self.workdir, "latency.db")
        self.predictor_path = os.fspath(predictor) if predictor else None
        self.pause_trainers = bool(pause_trainers)
        self.actor_name: str | None = None
        self._predictor = None
        self._cache: LatencyCache | None = None
        if _write:
            os.makedirs(os.path.join(self.workdir, "trainers"), exist_ok=True)
            self._save_config()
            self.cache  # noqa: B018 - create the cache file now, not in racing trials

    # ---- construction from a folder (inside trials) ---------------------
    def _save_config(self) -> None:
        data = {"settings": self.settings, "cache": self.cache_path,
                "predictor": self.predictor_path, "pause_trainers": self.pause_trainers,
                "actor_name": self.actor_name}
        write_atomic(os.path.join(self.workdir, _CONFIG),
                     lambda tmp: tmp.write_text(json.dumps(data, indent=2), encoding="utf-8"))

    @classmethod
    def open(cls, workdir: str | os.PathLike) -> "LatencyService":
        """The service a runner created in ``workdir`` (reads its service.json)."""
        path = os.path.join(os.fspath(workdir), _CONFIG)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError:
            raise UserError(f"{path}: no latency service here (create one with "
                            f"LatencyService(workdir, ...))") from None
        service = cls(workdir, **data["settings"], cache=data["cache"],
                      predictor=data["predictor"], pause_trainers=data["pause_trainers"],
                      _write=False)
        service.actor_name = data.get("actor_name")
        return service

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_predictor"] = None
        state["_cache"] = None
        state.pop("_actor", None)  # trials reach the actor by name
        return state

    # ---- the parts ------------------------------------------------------
    @property
    def cache(self) -> LatencyCache:
        if self._cache is None:
            self._cache = LatencyCache(self.cache_path)
        return self._cache

    @property
    def predictor(self):
        if self._predictor is None and self.predictor_path:
            from ._predictor import LatencyPredictor

            self._predictor = LatencyPredictor.load(self.predictor_path)
        return self._predictor

    def _trainer_file(self, pid: int) -> str:
        return os.path.join(self.workdir, "trainers", f"{socket.gethostname()}.{pid}")

    def register_trainer(self, pid: int | None = None) -> None:
        """Mark a process (default: this one) as training: it is suspended
        while a measurement runs on this host."""
        open(self._trainer_file(pid or os.getpid()), "w").close()

    def unregister_trainer(self, pid: int | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._trainer_file(pid or os.getpid()))

    @contextlib.contextmanager
    def trainer(self) -> Iterator["LatencyService"]:
        """``with service.trainer(): fit(...)``: this process trains and is
        paused while any measurement runs."""
        self.register_trainer()
        try:
            yield self
        finally:
            self.unregister_trainer()

    def trainers(self) -> list[int]:
        """Live registered training processes on this host (stale entries removed)."""
        host = socket.gethostname()
        folder = os.path.join(self.workdir, "trainers")
        pids = []
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            h, _, pid = name.rpartition(".")
            if h != host or not pid.isdigit():
                continue
            if _alive(int(pid)):
                pids.append(int(pid))
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
        return pids

    # ---- measuring ------------------------------------------------------
    def _query(self, spec: ArchSpec) -> dict[str, Any]:
        from ._measure import device_name, resolve_clock, resolve_device

        device = resolve_device(self.settings["device"])
        s = dict(self.settings, device=device, device_name=device_name(device), dtype="float32")
        s["threads"] = (int(s["threads"]) if s["threads"] else 1) if device == "cpu" else None
        s["clock"] = resolve_clock(s["clock"], device, s["threads"], s["backend"])
        return s

    def measure(self, spec: ArchSpec | str, model=None, **overrides: Any) -> LatencyResult:
        """Latency of ``spec`` with the service's settings (``overrides``
        change single settings, e.g. ``resolution=64``): from the cache if
        this architecture was measured before, else measured in isolation and
        cached. ``result.settings['cached']`` says which. ``model``: the
        network of ``spec`` already built with the service's ``in_chans`` and
        ``num_classes`` (a trial's), timed instead of building it again; its
        mode and device are restored afterwards. Ignored when measurements run
        in the service's actor."""
        if isinstance(spec, str):
            from .. import get_spec

            spec = get_spec(spec)
        if self.actor_name:
            cached = self._lookup(spec, overrides)
            if cached is not None:
                return cached
            import ray

            actor = ray.get_actor(self.actor_name)
            return LatencyResult.from_dict(ray.get(actor.measure.remote(spec.to_dict(),
                                                                        overrides)))
        return self._measure_here(spec, overrides, model)

    def _lookup(self, spec: ArchSpec, overrides: dict[str, Any]) -> LatencyResult | None:
        service = self._with(overrides)
        return self.cache.get(spec.arch_id, service._query(spec))

    def _with(self, overrides: dict[str, Any]) -> "LatencyService":
        if not overrides:
            return self
        unknown = set(overrides) - set(self.settings)
        if unknown:
            raise UserError(f"unknown latency setting(s) {sorted(unknown)}; "
                            f"known: {sorted(self.settings)}")
        clone = LatencyService.__new__(LatencyService)
        clone.__dict__.update(self.__getstate__())
        clone.settings = dict(self.settings, **overrides)
        return clone

    def _measure_here(self, spec: ArchSpec, overrides: dict[str, Any],
                      model=None) -> LatencyResult:
        service = self._with(overrides)
        query = service._query(spec)
        cached = self.cache.get(spec.arch_id, query)
        if cached is not None:
            return cached
        if model is None:
            # Build before taking the lock: building is not measured and can be slow.
            from ..builder import build_model

            model = build_model(spec, num_classes=query["num_classes"],
                                in_chans=query["in_chans"])
        with self._exclusive():
            # Another process may have measured the same architecture while we waited.
            cached = self.cache.get(spec.arch_id, query)
            if cached is not None:
                return cached
            pids = self.trainers() if self.pause_trainers else []
            with pause_processes(pids) as paused:
                t0 = time.time()  # from here on the trainers are stopped
                result = measure(model, device=query["device"], batch_size=query["batch_size"],
                                 resolution=query["resolution"], in_chans=query["in_chans"],
                                 num_classes=query["num_classes"], threads=query["threads"],
                                 warmup=query["warmup"], repeats=query["repeats"],
                                 backend=query["backend"], clock=query["clock"])
                t1 = time.time()
        result.settings.update(arch_id=spec.arch_id, paused_trainers=len(paused),
                               started_at=t0, finished_at=t1, cached=False)
        self.cache.put(spec.arch_id, result)
        return result

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        os.makedirs(self.workdir, exist_ok=True)
        with open(os.path.join(self.workdir, "measure.lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def predict(self, spec: ArchSpec | str, **overrides: Any) -> float | None:
        """Predicted latency (ms) from the calibrated table, or ``None``
        without a predictor. Cheap (no model is built)."""
        if self.predictor is None:
            return None
        if isinstance(spec, str):
            from .. import get_spec

            spec = get_spec(spec)
        s = dict(self.settings, **overrides)
        return self.predictor.predict(spec, resolution=s["resolution"],
                                      batch_size=s["batch_size"], num_classes=s["num_classes"],
                                      in_chans=s["in_chans"])

    # ---- Ray actor ------------------------------------------------------
    def start_actor(self, name: str | None = None, num_cpus: float = 0) -> "LatencyService":
        """Run measurements in one named Ray actor (call after ``ray.init``).

        For a CUDA target the actor asks Ray for ``num_gpus=1``, so the GPU
        it measures on is never given to a training trial. ``num_cpus``
        defaults to 0 because trainers are paused while it measures; give it
        1 to reserve a core instead. Returns self (now pointing at the actor;
        pickle it into trials, or use ``LatencyService.open(workdir)``).
        """
        import ray

        gpus = 1 if str(self.settings["device"]).startswith("cuda") else 0
        self.actor_name = name or f"hybridnas-latency-{abs(hash(self.workdir)) % 10**8}"
        remote = ray.remote(num_cpus=num_cpus, num_gpus=gpus, max_concurrency=1)(_Measurer)
        inside = dict(self.settings)
        if gpus:
            inside["device"] = "cuda"  # Ray exposes the assigned GPU as cuda:0
        self._actor = remote.options(name=self.actor_name, get_if_exists=True).remote(
            self.workdir, inside, self.cache_path, self.pause_trainers)
        ray.get(self._actor.ready.remote())
        self._save_config()
        return self

    def close(self) -> None:
        """Stop the actor, if any. (Trainers are always resumed after each
        measurement, so there is nothing else to undo.)"""
        if self.actor_name:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(self.actor_name))
            self.actor_name = None
            self.__dict__.pop("_actor", None)
            self._save_config()


class _Measurer:
    """Ray actor body: measures serially with the service's settings."""

    def __init__(self, workdir: str, settings: dict, cache: str, pause_trainers: bool):
        self.service = LatencyService(workdir, **settings, cache=cache,
                                      pause_trainers=pause_trainers, _write=False)

    def ready(self) -> bool:
        return True

    def measure(self, spec_dict: dict, overrides: dict) -> dict:
        result = self.service._measure_here(ArchSpec.from_dict(spec_dict), overrides)
        return {**result.to_dict(), "settings": result.settings}
