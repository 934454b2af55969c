"""Latency: measured on the target device, isolated from training, cached,
and predicted.

    >>> from hybridnas.latency import measure
    >>> r = measure("coatnet_0", device="cpu", resolution=64, repeats=20)
    >>> r.median_ms, r.p10_ms, r.p90_ms, r.settings["threads"]   # doctest: +SKIP

- ``measure(model_or_spec, device, batch_size, resolution, threads, warmup,
  repeats, backend)`` -> ``LatencyResult`` (median/p10/p90 ms + settings).
- ``LatencyCache(path)``: SQLite, keyed by arch_id + settings; safe across
  processes.
- ``LatencyService``: the one measurer of a search run: measurements are
  serialised (one at a time, node-wide), training processes that registered
  with ``service.trainer()`` are paused while one runs, results are cached.
  Optional Ray actor holding the target device (``start_actor``).
- ``LatencyPredictor``: per-part lookup table + fitted whole-network
  correction; ``calibrate``/``calibrate_space`` build it,
  ``LatencyPredictor.load(path).predict(spec, resolution)`` answers in well
  under a millisecond without torch.

Search integration (the runner creates the service, trials call it)::

    service = LatencyService(run_dir / "latency", device=args.latency_device,
                             resolution=res, num_classes=n, predictor=table_or_None)
    if device.startswith("cuda"): service.start_actor()   # after ray.init()
    def trainable(config):          # inside Ray Tune
        with service.trainer():     # this process is paused while measuring
            if (p := service.predict(spec)) is not None and p > max_latency_ms:
                ...                 # REJECTED before training
            lat = service.measure(spec)   # LatencyResult; settings['cached']
            ...train...
    service.close()

``LatencyService.open(workdir)`` rebuilds the handle from its folder when
only a path can be passed.
"""
from __future__ import annotations

from ._cache import LatencyCache
from ._measure import BACKENDS, LatencyResult, measure
from ._predictor import LatencyPredictor, calibrate, calibrate_space, check, spec_parts
from ._service import LatencyService

__all__ = ["measure", "LatencyResult", "LatencyCache", "LatencyService", "LatencyPredictor",
           "calibrate", "calibrate_space", "check", "spec_parts", "BACKENDS"]
