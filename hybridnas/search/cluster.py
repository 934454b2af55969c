"""Ray for a search: start it (or join a cluster) and check the run's device requests.

Ray starts inside the command unless ``address`` (``auto`` or ``HOST:PORT``)
joins a running cluster. GPU requests (``gpus_per_trial``, a CUDA
``latency_device``) are checked against the cluster's resources when the run
starts, so a machine without a GPU fails at once, naming what it has.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import UserError
from .config import SearchConfig

__all__ = ["init_ray", "check_devices", "trial_concurrency", "local_resources"]


def init_ray(cfg: SearchConfig):
    """Start (or join) Ray; returns True if this call started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray runs workers at nice 15 by default; trials are the work of this
    # command, so a local Ray keeps them at normal priority (override by
    # setting RAY_worker_niceness yourself).
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    if cfg.verbose < 2:
        # Tune's end-of-run analysis looks for result files this run does not
        # write (the driver keeps the trials table); its warning would only confuse.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(logging_level=logging.WARNING if cfg.verbose < 2 else logging.INFO,
                              log_to_driver=cfg.verbose > 0, include_dashboard=False)
    if cfg.address:
        ray.init(address=cfg.address, **kw)
    else:
        ray.init(**kw)
    return True


def check_devices(cfg: SearchConfig, resources: dict[str, float]) -> None:
    """UserError (one line, naming what the cluster has) for a GPU request the
    cluster cannot serve: ``gpus_per_trial`` > 0 or a CUDA ``latency_device``."""
    gpus = float(resources.get("GPU", 0) or 0)
    have = ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU"))
    if cfg.gpus_per_trial and cfg.gpus_per_trial > gpus:
        raise UserError(f"--gpus-per-trial {cfg.gpus_per_trial:g}: the Ray cluster has "
                        f"{gpus:g} GPU(s) (available: {have or 'nothing'})")
    device = str(cfg.latency_device or "").lower()
    if device.startswith("cuda") and gpus < 1:
        raise UserError(f"--latency-device {cfg.latency_device}: the Ray cluster has no GPU "
                        f"(available: {have or 'nothing'}); use --latency-device cpu")


def trial_concurrency(cfg: SearchConfig, resources: dict[str, float], gpus: float) -> int:
    """Trials at once: ``max_concurrent``, else what the CPUs (``cpus_per_trial``
    each) allow; with GPUs, at most what they hold at ``gpus`` per trial."""
    concurrency = cfg.max_concurrent or max(1, int(resources.get("CPU", 1) // cfg.cpus_per_trial))
    if gpus > 0:
        concurrency = min(concurrency, max(1, int(resources.get("GPU", 0) / gpus)))
    return concurrency


def local_resources() -> dict[str, float]:
    """CPUs and GPUs of this machine, as a local Ray would count them (for a
    ``--dry-run``, which starts no Ray)."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"CPU": float(cpus or 1), "GPU": float(torch.cuda.device_count())}
