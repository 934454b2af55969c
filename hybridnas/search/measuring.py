"""Latency measurement for a run: the trials' settings and the run's service.

One ``LatencyService`` per run (folder ``<run>/latency``) serialises
measurements, pauses training trials on the host while one runs and caches
figures by arch id; defaults come from ``hybridnas.latency.settings.SEARCH``.
"""
from __future__ import annotations

import logging

from ..errors import UserError
from ..latency import LatencyService
from ..latency.settings import SEARCH
from .settings import TrialLatency
from .trial import latency_resolution

log = logging.getLogger("hybridnas.search")

__all__ = ["latency_settings", "check_latency_device", "latency_screen"]


def check_latency_device(device: str | None, option: str = "--latency-device") -> None:
    """UserError unless ``device`` is cpu, cuda or cuda:N (None: chosen later)."""
    if device is None:
        return
    name = str(device).strip().lower()
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise UserError(f"{option} {device!r} is not one of 'cpu', 'cuda', 'cuda:N'")


def _service_resolution(bundle, resolution):
    """The service's default input size, at the run's default input shape:
    the resolution, or (assets, time) for a temporal panel (features, assets,
    time). Each trial passes its own (``trial.latency_resolution``), since a
    temporal space draws the lookback per trial."""
    return latency_resolution(bundle.input_shape) if len(bundle.input_shape) >= 2 else resolution


def latency_settings(cfg, run, gpus, bundle, resolution) -> tuple[TrialLatency, LatencyService]:
    """Latency settings for the trials and the run's one ``LatencyService``
    (see the module docstring). A CUDA target gets a dedicated Ray actor
    holding the device, so no training trial is placed on it."""
    device = cfg.latency_device or ("cuda" if gpus > 0 else "cpu")
    service = LatencyService(run.path / "latency", device=device,
                             batch_size=cfg.latency_batch_size,
                             resolution=_service_resolution(bundle, resolution),
                             in_chans=int(bundle.input_shape[0]),
                             num_classes=int(bundle.num_outputs), threads=cfg.latency_threads,
                             warmup=SEARCH.warmup, repeats=cfg.latency_repeats,
                             clock=SEARCH.clock, predictor=cfg.latency_table)
    if device.startswith("cuda"):
        service.start_actor()
    lat = TrialLatency(device=device, batch_size=cfg.latency_batch_size,
                       repeats=cfg.latency_repeats, threads=cfg.latency_threads,
                       warmup=SEARCH.warmup, clock=SEARCH.clock, service_dir=str(service.workdir))
    return lat, service


def latency_screen(service: LatencyService, max_latency_ms: float | None):
    """The searcher's check before training for ``--max-latency-ms``: a
    function (spec, input_shape) -> the reason to reject, or None; None
    itself when there is no limit or no calibrated table
    (``--latency-table``) to predict with. A spec the table cannot predict
    is not rejected (its measured latency still keeps it off the front)."""
    if max_latency_ms is None or service.predictor is None:
        return None
    limit = float(max_latency_ms)

    def screen(spec, input_shape) -> str | None:
        try:
            ms = service.predict(spec, resolution=latency_resolution(input_shape, spec))
        except Exception as e:  # noqa: BLE001 - no prediction: train and measure it
            log.info("no latency prediction for %s: %s: %s", spec.arch_id, type(e).__name__, e)
            return None
        if ms is not None and ms > limit:
            return (f"predicted latency {ms:.3g} ms > max_latency_ms {limit:g} "
                    f"(latency table {service.predictor_path})")
        return None

    return screen
