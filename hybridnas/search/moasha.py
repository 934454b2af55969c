"""Multi-objective asynchronous successive halving (MOASHA) for Ray Tune.

ASHA (Li et al. 2020, arXiv:1810.05934) stops a trial at a rung when its
validation metric is below the rung's top 1/``reduction_factor``. In a
search that trades accuracy against latency that stops exactly the fast,
slightly less accurate candidates the Pareto front needs. MOASHA (Schmucker
et al. 2021, "Multi-objective Asynchronous Successive Halving",
arXiv:2106.12639; Syne Tune's ``MOASHA``) ranks the trials at a rung by
non-dominated sorting of (metric at that rung, costs) instead, with the
NSGA-II crowding distance breaking ties inside a front. The costs (latency,
params, MACs) are known before training, so only the metric changes from
rung to rung.

    >>> from hybridnas.search.moasha import make_scheduler
    >>> sched = make_scheduler("moasha", mode="max", max_t=4, costs=["latency_ms"])
    >>> type(sched).__name__
    'MOASHAScheduler'

The scheduler is written on Tune's public ``TrialScheduler`` hooks
(subclassing ``FIFOScheduler``, as Ray's own ``AsyncHyperBandScheduler``
does). A trial it stops ends as Tune's early stop: the searcher records it
as EARLY_STOPPED and tells Optuna PRUNED, so it never enters the front.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..errors import UserError
from ..pareto import crowding_distance, nondominated_ranks

__all__ = ["SCHEDULER_NAMES", "MOASHAScheduler", "continues", "make_scheduler", "rung_milestones"]

SCHEDULER_NAMES = ("moasha", "asha", "none")

# A cost is a key of the trial's reports (e.g. "latency_ms"), else a dotted
# path into its config (e.g. "cost.macs"); or a function (config, result) -> value.
Cost = Union[str, Callable[[Mapping[str, Any], Mapping[str, Any]], float]]


def rung_milestones(grace_period: float, max_t: float, reduction_factor: float) -> list[float]:
    """Values of the time attribute at which trials are compared, ascending:
    ``grace_period * reduction_factor**k`` up to ``max_t`` (Ray's ASHA rungs
    with one bracket, so ``asha`` and ``moasha`` stop at the same epochs)."""
    n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(n)]


def continues(points, maximize: Sequence[bool], index: int, reduction_factor: float) -> bool:
    """The promotion rule of one rung: whether row ``index`` of ``points``
    (one row per trial that reached the rung, this one included; one column
    per objective, directions in ``maximize``) may go on.

    The rows are ordered by non-dominated rank, then by crowding distance
    (larger first); the trial continues when fewer than
    ``ceil(n / reduction_factor)`` rows come strictly before it. Like ASHA,
    a tie favours the trial that arrives (the first at a rung always
    continues), and the decision is taken once, when the trial reaches the
    rung. A row with a NaN is ranked after every front.
    """
    pts = np.asarray(points, dtype=float)
    ranks = nondominated_ranks(pts, maximize)
    crowd = crowding_distance(pts, maximize, ranks)
    better = (ranks < ranks[index]) | ((ranks == ranks[index]) & (crowd > crowd[index]))
    return int(better.sum()) < math.ceil(len(pts) / reduction_factor)


class MOASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving on several objectives.

    ``metric``/``mode``: the reported value trained for (e.g. ``"metric"``,
    ``"max"``); ``costs``/``cost_modes``: the objectives known before
    training (``"latency_ms"``, ``"params"``, ``"macs"`` or a ``Cost``
    function; each ``"min"`` unless told). ``time_attr``, ``max_t``,
    ``grace_period``, ``reduction_factor`` and ``stop_last_trials`` mean
    what they mean in Ray's ``ASHAScheduler``. A report without
    ``time_attr`` or ``metric`` is let through without a decision. A cost
    that cannot be read counts as NaN (the trial ranks after every front).
    """

    def __init__(self, time_attr: str = "epochs", metric: str | None = None,
                 mode: str | None = None, costs: Cost | Sequence[Cost] = "latency_ms",
                 cost_modes: str | Sequence[str] = "min", max_t: float = 100,
                 grace_period: float = 1, reduction_factor: float = 2,
                 stop_last_trials: bool = True):
        if max_t <= 0 or grace_period <= 0 or grace_period > max_t:
            raise UserError(f"MOASHA: need 0 < grace_period ({grace_period}) <= max_t ({max_t})")
        if reduction_factor <= 1:
            raise UserError(f"MOASHA: reduction_factor={reduction_factor} must be > 1")
        if mode not in (None, "min", "max"):
            raise UserError(f"MOASHA: mode={mode!r} must be 'min' or 'max'")
        costs = [costs] if isinstance(costs, str) or callable(costs) else list(costs)
        modes = [cost_modes] * len(costs) if isinstance(cost_modes, str) else list(cost_modes)
        if len(modes) != len(costs) or any(m not in ("min", "max") for m in modes):
            raise UserError(f"MOASHA: cost_modes={cost_modes!r} must give 'min' or 'max' for "
                            f"each of the {len(costs)} cost(s)")
        super().__init__()
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._costs = costs
        self._cost_max = [m == "max" for m in modes]
        self._max_t = max_t
        self._rf = reduction_factor
        self._stop_last_trials = stop_last_trials
        # milestone -> {trial_id: objective values at that rung}
        self._rungs: dict[float, dict[str, list[float]]] = {
            m: {} for m in rung_milestones(grace_period, max_t, reduction_factor)}
        self._num_stopped = 0

    # ---- Tune's hooks ---------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._metric or self._mode not in ("min", "max"):
            raise UserError(f"MOASHA needs a metric and a mode ('min' or 'max'), got "
                            f"metric={self._metric!r}, mode={self._mode!r}")

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if self._stop_last_trials and result[self._time_attr] >= self._max_t:
            action = TrialScheduler.STOP
        else:
            action = self._decide(trial, result)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        # a trial that ends by itself still sets the bar at the rung it reached
        if result and self._time_attr in result and self._metric in result:
            self._decide(trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        pass  # its rung entries stay: they were real observations

    def debug_string(self) -> str:
        rungs = " | ".join(f"{m:g}: {len(r)} trials" for m, r in self._rungs.items())
        return f"Using MOASHA: num_stopped={self._num_stopped}\nRungs: {rungs}"

    def save(self, checkpoint_path: str) -> None:
        state = {"rungs": [[m, r] for m, r in self._rungs.items()],
                 "num_stopped": self._num_stopped}
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as f:
            state = json.load(f)
        rungs = {float(m): {str(k): [float(x) for x in v] for k, v in r.items()}
                 for m, r in state["rungs"]}
        if set(rungs) != set(self._rungs):
            raise UserError(f"{checkpoint_path}: MOASHA rungs {sorted(rungs)} differ from this "
                            f"scheduler's {sorted(self._rungs)}")
        self._rungs = rungs
        self._num_stopped = int(state.get("num_stopped", 0))

    # ---- the rule -------------------------------------------------------------
    def objectives(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> list[float]:
        """(metric, *costs) of one report, as compared at a rung."""
        out = [_number(result.get(self._metric))]
        for cost in self._costs:
            if callable(cost):
                out.append(_number(cost(config, result)))
            elif cost in result:
                out.append(_number(result[cost]))
            else:
                out.append(_number(_lookup(config, cost)))
        return out

    def _decide(self, trial, result: dict) -> str:
        now = result[self._time_attr]
        for milestone in sorted(self._rungs, reverse=True):
            recorded = self._rungs[milestone]
            if now < milestone or trial.trial_id in recorded:
                continue
            recorded[trial.trial_id] = self.objectives(trial.config, result)
            ids = list(recorded)
            maximize = [self._mode == "max", *self._cost_max]
            if continues([recorded[i] for i in ids], maximize, ids.index(trial.trial_id),
                         self._rf):
                return TrialScheduler.CONTINUE
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def make_scheduler(name: str, *, metric: str = "metric", mode: str = "max", max_t: int,
                   grace_period: int = 1, reduction_factor: float = 2,
                   time_attr: str = "epochs", costs: Cost | Sequence[Cost] = "latency_ms",
                   cost_modes: str | Sequence[str] = "min") -> TrialScheduler | None:
    """The early-stopping scheduler a search runs with, by ``name``:

    - ``"moasha"``: ``MOASHAScheduler`` on (``metric``, ``costs``);
    - ``"asha"``: Ray's ``ASHAScheduler`` on ``metric`` alone;
    - ``"none"``: None (every trial trains ``max_t`` epochs).

    Both schedulers compare trials at ``grace_period * reduction_factor**k``
    epochs (``time_attr``). None too when ``max_t <= grace_period`` (no rung
    before the end). An unknown name raises ``UserError``.
    """
    if name not in SCHEDULER_NAMES:
        raise UserError(f"scheduler={name!r} is not one of {list(SCHEDULER_NAMES)}")
    if name == "none" or max_t <= grace_period:
        return None
    if name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                             grace_period=grace_period, reduction_factor=reduction_factor)
    return MOASHAScheduler(time_attr=time_attr, metric=metric, mode=mode, costs=costs,
                           cost_modes=cost_modes, max_t=max_t, grace_period=grace_period,
                           reduction_factor=reduction_factor)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _lookup(config: Mapping[str, Any], path: str) -> Any:
    cur: Any = config
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur
