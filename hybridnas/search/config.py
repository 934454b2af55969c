"""Search options: one dataclass, filled from defaults < ``--config`` YAML < flags.

The resolved options are written to ``config.yaml`` in the run directory, so
a run can be repeated or resumed from that file alone.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UserError

__all__ = ["SearchConfig", "parse_duration", "OBJECTIVES", "SAMPLERS", "IDENTITY_FIELDS"]

#: Objectives the user may add to the validation metric (always first).
OBJECTIVES = ("latency", "params", "macs")
SAMPLERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("asha", "none")
STRATEGIES = ("trials", "oneshot")
KEEP = ("all", "pareto", "none")

#: Options that define what a run searches; --resume refuses to change them.
IDENTITY_FIELDS = ("space", "dataset", "resolution", "subset", "objectives", "epochs",
                   "space_options", "seed", "val_fraction", "strategy")


@dataclass
class SearchConfig:
    """Every option of a search run (see ``hybridnas search --help``)."""

    # what to search
    space: str = "stagewise"
    space_options: dict = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    dataset_fallback: str | None = None
    resolution: int | None = None
    subset: int | None = None
    val_fraction: float = 0.1
    # how each trial trains (the proxy)
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    max_batches_per_epoch: int | None = None
    max_val_batches: int | None = None
    amp: bool = False
    # objectives and search strategy
    objectives: list = field(default_factory=lambda: ["latency"])
    sampler: str = "nsga2"
    population_size: int = 10
    scheduler: str = "asha"
    asha_grace_epochs: int = 1
    asha_reduction_factor: int = 2
    seed: int = 0
    with_references: bool = False
    # one-shot strategy (--strategy oneshot): supernet, then inherited-weight ranking
    strategy: str = "trials"
    supernet_epochs: int = 10
    sandwich_random: int = 2
    supernet_workers: int = 1
    retrain_top: int = 3
    retrain_epochs: int = 3
    # budget
    budget_gpu_hours: float | None = None
    budget_trials: int | None = None
    time_limit: float | None = None
    # resources and cluster
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    threads_per_trial: int | None = None
    address: str | None = None
    # latency measurement
    latency_device: str | None = None
    latency_batch_size: int = 1
    latency_repeats: int = 20
    latency_threads: int = 1
    latency_table: str | None = None
    # outputs
    name: str | None = None
    results_dir: str = "results"
    storage: str | None = None
    keep_checkpoints: str = "pareto"
    dashboard_every: int = 5
    verbose: int = 0
    # testing hook: trial ids (Optuna numbers) whose training raises on purpose
    inject_failure: list = field(default_factory=list)

    # ------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> "SearchConfig":
        """Build from a dict (YAML file or flags); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in data.items():
            k = key.replace("-", "_")
            if k not in known:
                raise UserError(f"{source}: unknown option {key!r} (known: {', '.join(sorted(known))})")
            clean[k] = value
        return cls().merged(clean, source)

    def merged(self, overrides: Mapping[str, Any], source: str = "flags") -> "SearchConfig":
        data = dataclasses.asdict(self)
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = SearchConfig(**data)
        cfg.check(source)
        return cfg

    def check(self, source: str = "config") -> None:
        """Raise ``UserError`` naming the first bad option."""
        if isinstance(self.objectives, str):
            self.objectives = [o for o in re.split(r"[,\s]+", self.objectives) if o]
        self.objectives = [o for o in self.objectives if o not in ("metric", "accuracy")]
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise UserError(f"{source}: objectives={o!r} is not one of {list(OBJECTIVES)}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"{source}: sampler={self.sampler!r} is not one of {list(SAMPLERS)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"{source}: strategy={self.strategy!r} is not one of {list(STRATEGIES)}")
        for name in ("supernet_epochs", "supernet_workers"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{source}: {name}={getattr(self, name)} must be >= 1")
        if self.retrain_top < 0 or self.retrain_epochs < 1 or self.sandwich_random < 0:
            raise UserError(f"{source}: retrain_top={self.retrain_top} must be >= 0, "
                            f"retrain_epochs={self.retrain_epochs} >= 1, "
                            f"sandwich_random={self.sandwich_random} >= 0")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"{source}: scheduler={self.scheduler!r} is not one of {list(SCHEDULERS)}")
        if self.keep_checkpoints not in KEEP:
            raise UserError(f"{source}: keep_checkpoints={self.keep_checkpoints!r} "
                            f"is not one of {list(KEEP)}")
        if self.time_limit is not None:
            self.time_limit = parse_duration(self.time_limit, "time_limit")
        for name in ("epochs", "batch_size", "population_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{source}: {name}={getattr(self, name)} must be >= 1")
        for name in ("budget_gpu_hours", "budget_trials"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"{source}: {name}={value} must be > 0")
        if self.cpus_per_trial <= 0:
            raise UserError(f"{source}: cpus_per_trial={self.cpus_per_trial} must be > 0")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise UserError(f"{source}: gpus_per_trial={self.gpus_per_trial} must be >= 0")
        if not isinstance(self.space_options, dict):
            raise UserError(f"{source}: space_options={self.space_options!r} must be a mapping")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise UserError(f"{source}: val_fraction={self.val_fraction} must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1.5h"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(value).lower())
        if not m or m.group(2) not in _UNITS:
            raise UserError(f"{name}={value!r} is not a duration (e.g. 600, 90s, 10m, 1h)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise UserError(f"{name}={value!r} must be positive")
    return seconds
