"""MOASHA: the promotion rule on rung results whose answer is known by hand,
the scheduler's bookkeeping with stand-in trials, and one real Tune run."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

pytest.importorskip("ray")

from hybridnas.errors import UserError  # noqa: E402
from hybridnas.pareto import crowding_distance, nondominated_ranks  # noqa: E402
from hybridnas.search.moasha import (  # noqa: E402
    MOASHAScheduler,
    continues,
    make_scheduler,
    rung_milestones,
)

ACC_LAT = [True, False]  # accuracy up, latency down


def test_nondominated_ranks_by_hand():
    pts = [[0.9, 40], [0.8, 30], [0.7, 50], [0.6, 60], [0.5, 10], [math.nan, 1]]
    # front 0: (0.9, 40), (0.8, 30), (0.5, 10); front 1: (0.7, 50); front 2: (0.6, 60)
    assert nondominated_ranks(pts, ACC_LAT).tolist() == [0, 0, 1, 2, 0, 3]


def test_crowding_distance_by_hand():
    pts = [[0.9, 40], [0.8, 30], [0.7, 20], [0.6, 10], [0.65, 15]]
    d = crowding_distance(pts, ACC_LAT)
    assert math.isinf(d[0]) and math.isinf(d[3])  # the front's two ends
    # (0.8, 30): neighbours 0.9/0.7 and 40/20 over spans 0.3 and 30
    assert d[1] == pytest.approx(0.2 / 0.3 + 20 / 30)
    assert d[2] == pytest.approx(0.15 / 0.3 + 15 / 30)
    assert d[4] == pytest.approx(0.1 / 0.3 + 10 / 30)


def test_fast_less_accurate_trial_goes_on_where_asha_stops_it():
    rung = [[0.9, 40], [0.8, 30], [0.7, 20], [0.6, 5]]  # the last one just arrived
    assert continues(rung, ACC_LAT, 3, reduction_factor=2)
    # on the metric alone (ASHA) three trials are better: it stops
    assert not continues([[r[0]] for r in rung], [True], 3, reduction_factor=2)


def test_dominated_trial_stops_and_first_trial_goes_on():
    rung = [[0.9, 40], [0.8, 30], [0.5, 50]]
    assert not continues(rung, ACC_LAT, 2, reduction_factor=2)
    assert continues([[0.1, 99.0]], ACC_LAT, 0, reduction_factor=2)


def test_crowding_breaks_ties_inside_the_front():
    # five non-dominated trials, keep ceil(5/4) = 2
    crowded = [[0.9, 40], [0.8, 30], [0.7, 20], [0.6, 10], [0.65, 15]]
    assert not continues(crowded, ACC_LAT, 4, reduction_factor=4)  # in the crowded middle
    extreme = [[0.9, 40], [0.8, 30], [0.7, 20], [0.6, 10], [0.95, 50]]
    assert continues(extreme, ACC_LAT, 4, reduction_factor=4)  # a new end of the front


def test_nan_metric_ranks_last():
    assert not continues([[0.5, 10], [math.nan, 1]], ACC_LAT, 1, reduction_factor=2)


@dataclass
class FakeTrial:
    trial_id: str
    config: dict = field(default_factory=dict)


def _report(sched, trial, epochs, metric, **extra):
    return sched.on_trial_result(None, trial, {"epochs": epochs, "metric": metric, **extra})


def test_scheduler_rungs_and_config_cost(tmp_path):
    sched = MOASHAScheduler(metric="metric", mode="max", costs="cost.macs", max_t=4,
                            grace_period=1, reduction_factor=2)
    assert rung_milestones(1, 4, 2) == [1, 2, 4]
    a = FakeTrial("a", {"cost": {"macs": 400}})
    b = FakeTrial("b", {"cost": {"macs": 500}})
    c = FakeTrial("c", {"cost": {"macs": 10}})
    for t in (a, b, c):
        sched.on_trial_add(None, t)
    assert _report(sched, a, 1, 0.5) == "CONTINUE"
    assert _report(sched, b, 1, 0.4) == "STOP"  # slower and worse than a
    assert _report(sched, c, 1, 0.1) == "CONTINUE"  # worst metric, cheapest by far
    assert _report(sched, a, 2, 0.6) == "CONTINUE"
    assert _report(sched, c, 2, 0.2) == "CONTINUE"  # both on the rung's front
    assert _report(sched, c, 3, 0.3) == "CONTINUE"  # between rungs: no decision
    assert _report(sched, c, 4, 0.4) == "STOP"  # max_t reached
    assert sched.objectives(c.config, {"metric": 0.4}) == [0.4, 10.0]

    path = tmp_path / "moasha.json"
    sched.save(str(path))
    fresh = MOASHAScheduler(metric="metric", mode="max", costs="cost.macs", max_t=4)
    fresh.restore(str(path))
    assert fresh._rungs == sched._rungs
    d = FakeTrial("d", {"cost": {"macs": 600}})
    assert _report(fresh, d, 1, 0.45) == "STOP"  # the restored rung still holds a, b, c


def test_scheduler_reads_costs_from_reports_and_callables():
    sched = MOASHAScheduler(metric="val_loss", mode="min",
                            costs=["latency_ms", lambda cfg, res: cfg["width"]],
                            cost_modes=["min", "max"], max_t=8)
    assert sched.objectives({"width": 64}, {"val_loss": 1.5, "latency_ms": 3.0}) == [1.5, 3.0, 64]
    assert math.isnan(sched.objectives({"width": 64}, {"val_loss": 1.5})[1])
    # no time attribute or metric in the report: no decision
    assert sched.on_trial_result(None, FakeTrial("x"), {"metric": 1.0}) == "CONTINUE"


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        MOASHAScheduler(metric="m", mode="max", max_t=2, grace_period=3)
    with pytest.raises(UserError):
        MOASHAScheduler(metric="m", mode="max", costs=["a", "b"], cost_modes=["min"])
    with pytest.raises(UserError):
        make_scheduler("hyperband", max_t=4)
    with pytest.raises(UserError):
        MOASHAScheduler(max_t=4).on_trial_add(None, FakeTrial("t"))  # no metric/mode


def test_make_scheduler_names():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    assert isinstance(make_scheduler("moasha", max_t=4), MOASHAScheduler)
    assert isinstance(make_scheduler("asha", max_t=4), AsyncHyperBandScheduler)
    assert make_scheduler("none", max_t=4) is None
    assert make_scheduler("moasha", max_t=1, grace_period=1) is None  # no rung before the end


# ---- a real Tune run ------------------------------------------------------------

def _last_epochs(scheduler_name: str, tmp_path) -> dict[str, int]:
    from ray import tune

    def trainable(config):  # nested: shipped to the workers by value
        for epoch in range(1, 5):
            tune.report({"epochs": epoch, "metric": config["acc"] * epoch / 4,
                         "latency_ms": config["lat"]})

    grid = [{"name": "accurate", "acc": 0.9, "lat": 40.0},
            {"name": "dominated", "acc": 0.5, "lat": 50.0},
            {"name": "fast", "acc": 0.3, "lat": 1.0}]
    sched = make_scheduler(scheduler_name, metric="metric", mode="max", max_t=4,
                           costs="latency_ms")
    tuner = tune.Tuner(
        trainable,
        param_space={"p": tune.grid_search(grid),
                     "acc": tune.sample_from(lambda s: s.config["p"]["acc"]),
                     "lat": tune.sample_from(lambda s: s.config["p"]["lat"])},
        tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / scheduler_name), verbose=0,
                                  log_to_file=False))
    results = tuner.fit()
    return {r.config["p"]["name"]: int(r.metrics["epochs"]) for r in results}


def test_moasha_in_a_real_tune_run(ray_session, tmp_path):
    moasha = _last_epochs("moasha", tmp_path)
    assert moasha == {"accurate": 4, "dominated": 1, "fast": 4}
    asha = _last_epochs("asha", tmp_path)  # the same trials on the metric alone
    assert asha["fast"] == 1 and asha["accurate"] == 4
