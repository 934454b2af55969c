"""What every trial of a run is told: the typed, frozen settings a worker reads.

The driver builds one ``TrialSettings`` from the run's ``SearchConfig`` and
the loaded dataset; the searcher puts it (with the trial's own dataset
settings, e.g. a temporal lookback) into each Tune config as a plain dict
(``to_dict``), and the trial reads it back with ``from_dict``. Fields, not
string keys: a misspelt setting fails when the run starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..latency.settings import SEARCH
from .config import SearchConfig

__all__ = ["TrainSettings", "TrialLatency", "TrialSettings"]


_C = SearchConfig  # the options' defaults, declared there once


@dataclass(frozen=True)
class TrainSettings:
    """The proxy training recipe (``hybridnas.training.fit`` arguments)."""

    batch_size: int = _C.batch_size
    lr: float = _C.lr
    weight_decay: float = _C.weight_decay
    warmup_epochs: int = _C.warmup_epochs
    label_smoothing: float = _C.label_smoothing
    grad_clip: float | None = _C.grad_clip
    amp: bool = _C.amp
    max_batches_per_epoch: int | None = _C.max_batches_per_epoch
    max_val_batches: int | None = _C.max_val_batches
    seed: int = _C.seed

    @classmethod
    def from_config(cls, cfg: SearchConfig) -> "TrainSettings":
        """The recipe of a run's options."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class TrialLatency:
    """How a trial's latency is measured (defaults: ``hybridnas.latency.settings.SEARCH``).
    ``service_dir``: the run's ``LatencyService`` folder (None: each trial measures itself)."""

    device: str = "cpu"
    batch_size: int = SEARCH.batch_size
    repeats: int = SEARCH.repeats
    threads: int | None = SEARCH.threads
    warmup: int = SEARCH.warmup
    clock: str = SEARCH.clock
    service_dir: str | None = None


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial needs besides its architecture."""

    data: Mapping[str, Any]
    num_outputs: int
    epochs: int = _C.epochs
    metric_name: str = "val_accuracy"
    maximize: bool = True
    gpus_per_trial: float = 0.0
    threads: int = 1
    run_dir: str = ""
    keep_checkpoints: str = _C.keep_checkpoints
    progress_every_s: float = _C.progress_every_s
    inject_failure: tuple[int, ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    latency: TrialLatency = field(default_factory=TrialLatency)

    def with_data(self, data: Mapping[str, Any]) -> "TrialSettings":
        """The same settings for a trial with its own dataset settings."""
        return dataclasses.replace(self, data=dict(data))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (what travels in a Tune config)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialSettings":
        d = dict(d)
        d["train"] = TrainSettings(**d.get("train", {}))
        d["latency"] = TrialLatency(**d.get("latency", {}))
        d["inject_failure"] = tuple(int(t) for t in d.get("inject_failure") or ())
        return cls(**d)
