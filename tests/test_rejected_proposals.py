"""Rejected proposals teach the sampler: told as infeasible, not as failed."""
from __future__ import annotations

import optuna

from hybridnas.search.storage import REJECTED_CONSTRAINT, make_sampler, tell_rejected

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rejections(tell, asks: int = 80) -> int:
    """Asks of a TPE study whose best completed points lie next to a region
    the 'space' rejects (x > 0.6); how many proposals fell in it."""
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=make_sampler("tpe", seed=0, population_size=10))
    rejected = 0
    for _ in range(asks):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        if x > 0.6:
            rejected += 1
            tell(study, trial)
        else:
            study.tell(trial, [(1.0 - x) ** 2, 0.1 * x])
    return rejected


def test_a_rejected_proposal_is_an_infeasible_pruned_trial():
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    tell_rejected(study, trial)
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert frozen.constraints == {REJECTED_CONSTRAINT: 1.0}


def test_tpe_learns_to_avoid_what_is_rejected():
    as_failed = _rejections(lambda s, t: s.tell(t, state=optuna.trial.TrialState.FAIL))
    as_infeasible = _rejections(tell_rejected)
    # told as FAIL, TPE never sees the rejections and keeps proposing next to its best points
    assert as_infeasible < 0.5 * as_failed, (as_infeasible, as_failed)
