"""Search options: one dataclass, filled from defaults < ``--config`` YAML < flags.

The resolved options are written to ``config.yaml`` in the run directory, so
a run can be repeated or resumed from that file alone.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UserError
from ..latency.settings import SEARCH
from ..spec import SPEC_LIMITS, short_repr

__all__ = ["SearchConfig", "parse_duration", "OBJECTIVES", "SAMPLERS", "IDENTITY_FIELDS"]

#: Objectives the user may add to the validation metric (always first).
OBJECTIVES = ("latency", "params", "macs")
SAMPLERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("moasha", "asha", "none")
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
    # warm-up and label smoothing keep attention-heavy proxies from collapsing
    # to chance in a few epochs (measured: benchmarks/bench_recipe.py, README)
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    max_batches_per_epoch: int | None = None
    max_val_batches: int | None = None
    amp: bool = False
    # objectives and search strategy
    objectives: list = field(default_factory=lambda: ["latency"])
    sampler: str = "nsga2"
    population_size: int = 10
    scheduler: str = "moasha"
    asha_grace_epochs: int = 1
    asha_reduction_factor: int = 2
    seed: int = 0
    with_references: bool = False
    # one-shot strategy (--strategy oneshot): supernet, then inherited-weight ranking
    strategy: str = "trials"
    supernet_epochs: int = 10
    sandwich_random: int = 2
    sandwich_stage_distill: float = 0.0  # SandwichSettings.stage_distill (0: off)
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
    latency_repeats: int = SEARCH.repeats
    latency_threads: int = SEARCH.threads or 1
    latency_table: str | None = None
    max_latency_ms: float | None = None  # predictor rejects before training; front excludes above
    # outputs
    name: str | None = None
    results_dir: str = "results"
    storage: str | None = None
    keep_checkpoints: str = "pareto"
    dashboard_every: int = 5
    progress_every_s: float = 10.0  # seconds between a trial's progress lines
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
            k = str(key).replace("-", "_")
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
        """Raise ``UserError`` naming the first bad option and its value.

        Types follow the field annotations, floats must be finite and sizes
        stay under sane limits, so that nothing starts (no Ray, no study, no
        run directory) with an option that would fail or allocate later.
        """
        if isinstance(self.objectives, str):
            self.objectives = [o for o in re.split(r"[,\s]+", self.objectives) if o]
        if self.time_limit is not None:
            self.time_limit = parse_duration(self.time_limit, f"{source}: time_limit")
        self._check_types(source)
        self.objectives = [o for o in self.objectives if o not in ("metric", "accuracy")]
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise UserError(f"{source}: objectives={short_repr(o)} is not one of {list(OBJECTIVES)}")
        for name, allowed in (("sampler", SAMPLERS), ("scheduler", SCHEDULERS),
                              ("strategy", STRATEGIES),
                              ("keep_checkpoints", KEEP)):
            if getattr(self, name) not in allowed:
                raise UserError(f"{source}: {name}={short_repr(getattr(self, name))} is not one of "
                                f"{list(allowed)}")
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(low, tuple):  # (bound,) is exclusive
                ok = value > low[0]
            else:
                ok = value >= low
            if not ok or (high is not None and value > high):
                lo = f"> {low[0]}" if isinstance(low, tuple) else f">= {low}"
                hi = f" and <= {high}" if high is not None else ""
                raise UserError(f"{source}: {name}={value} must be {lo}{hi}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"{source}: val_fraction={self.val_fraction} must be in (0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"{source}: label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.name is not None:
            _check_run_name(self.name, source)
        if self.latency_device is not None and not re.fullmatch(r"(cpu|cuda)(:\d+)?",
                                                                self.latency_device):
            raise UserError(f"{source}: latency_device={short_repr(self.latency_device)} is not a "
                            f"device (cpu, cuda or cuda:N)")
        from ..spaces import check_option

        for key, value in self.space_options.items():
            check_option(key, value, f"{source}: space_options")

    def _check_types(self, source: str) -> None:
        """Each option against its annotation (``int | None`` and so on);
        ints are accepted where floats are, booleans nowhere but ``bool``."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = [k.strip() for k in str(f.type).split("|")]
            if value is None:
                if "None" in kinds:
                    continue
                raise UserError(f"{source}: {f.name} must be set (expected {kinds[0]})")
            kind = kinds[0]
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            ok = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
            if not ok:
                raise UserError(f"{source}: {f.name}={short_repr(value)} has the wrong type "
                                f"(expected {_TYPE_NAMES[kind]})")
            if kind == "float" and not math.isfinite(value):
                raise UserError(f"{source}: {f.name}={value} must be a finite number")
            if kind == "str" and len(value) > _MAX_STR:
                raise UserError(f"{source}: {f.name} is {len(value)} characters long, over the "
                                f"limit of {_MAX_STR}")
        for name in ("objectives", "inject_failure"):
            inner, what = (str, "strings") if name == "objectives" else (int, "integers")
            bad = [v for v in getattr(self, name) if not isinstance(v, inner) or isinstance(v, bool)]
            if bad:
                raise UserError(f"{source}: {name} holds {short_repr(bad[0])}, expected only {what}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string",
               "bool": "true or false", "list": "a list", "dict": "a mapping"}
_MAX_STR = 4096
_MAX_NAME = 128

#: (lowest, highest) allowed; a lowest written as (x,) is exclusive; None: no upper bound.
_RANGES: dict[str, tuple[Any, Any]] = {
    "resolution": (1, SPEC_LIMITS.max_resolution),
    "subset": (1, None),
    "epochs": (1, 100_000),
    "batch_size": (1, 1 << 16),
    "lr": ((0.0,), None),
    "weight_decay": (0.0, None),
    "warmup_epochs": (0, None),
    "grad_clip": (0.0, None),
    "max_batches_per_epoch": (1, None),
    "max_val_batches": (1, None),
    "population_size": (1, 1 << 20),
    "asha_grace_epochs": (1, None),
    "asha_reduction_factor": (2, None),
    "seed": (0, 2**32 - 1),
    "budget_gpu_hours": ((0.0,), None),
    "budget_trials": (1, None),
    "supernet_epochs": (1, 100_000),
    "supernet_workers": (1, 4096),
    "sandwich_random": (0, 64),
    "sandwich_stage_distill": (0.0, 100.0),
    "retrain_top": (0, 10_000),
    "retrain_epochs": (1, 100_000),
    "max_latency_ms": ((0.0,), None),
    "cpus_per_trial": ((0.0,), None),
    "gpus_per_trial": (0.0, None),
    "max_concurrent": (1, None),
    "threads_per_trial": (1, None),
    "latency_batch_size": (1, 1 << 16),
    "latency_repeats": (1, 1 << 20),
    "latency_threads": (1, None),
    "dashboard_every": (1, None),
    "progress_every_s": (0.0, None),
    "verbose": (0, None),
}


def _check_run_name(name: str, source: str) -> None:
    """A run name is one folder inside ``results_dir``: no path separators,
    no ``.``/``..``, no control characters."""
    bad = (not name or name in (".", "..") or len(name) > _MAX_NAME
           or any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name))
    if bad:
        raise UserError(f"{source}: name={short_repr(name)} must be one folder name (1 to {_MAX_NAME} "
                        f"characters, no '/', '\\', '..' or control characters)")


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
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{name}={value!r} must be positive")
    return seconds
