"""The Optuna side of a run: storage URL, storage, sampler.

The study lives in ``study.db`` (SQLite, in WAL mode) or any ``storage`` URL
(PostgreSQL); the study name is the run name.
"""
from __future__ import annotations

from ..errors import UserError

__all__ = ["storage_url_for", "storage_for", "make_sampler", "tell_rejected"]

#: The constraint a rejected proposal violates (``Trial.set_constraint``).
REJECTED_CONSTRAINT = "valid_architecture"


def make_sampler(name: str, seed: int, population_size: int = 10):
    """The Optuna sampler for ``--sampler`` (nsga2 | tpe | random)."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(2, population_size), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=population_size)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"sampler={name!r} is not one of ['nsga2', 'tpe', 'random']")


def tell_rejected(study, trial) -> None:
    """Close a proposal the space or its constraints reject before training.

    Told as FAIL, a sampler learns nothing from it: TPE models completed and
    pruned trials only, so once it has a model it proposed the same
    oversized region again and again (bench_search: 94-212 rejections in a
    1-minute search, all over the parameter cap). So the trial is marked
    infeasible (a violated constraint, Optuna's ``set_constraint``) and told
    as pruned: TPE puts infeasible trials in its "bad" group; NSGA-II and
    random sampling ignore pruned trials as they ignored failed ones."""
    import optuna

    trial.set_constraint(REJECTED_CONSTRAINT, 1.0)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def storage_url_for(url: str) -> str:
    """``url`` with an installed driver: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3; the project installs psycopg2
    (``hybridnas[postgres]``), so such a URL names it when psycopg 3 is absent.
    config.yaml records the result, so every reader of the run can open it."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def storage_for(url: str):
    """The Optuna RDB storage for ``url`` (one line of error if it cannot open)."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except ImportError as e:
        raise UserError(f"--storage {url}: no database driver for this URL ({e.__cause__ or e}); "
                        f"for PostgreSQL: pip install 'hybridnas[postgres]'") from None
    except Exception as e:  # noqa: BLE001 - connection refused, bad credentials, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--storage {url}: cannot open the Optuna storage: {first}") from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine) -> None:
    """WAL journal + synchronous=NORMAL: every suggest_* of a define-by-run
    space is a commit, and with the default rollback journal each one waits
    for an fsync (benchmarks/bench_search.py measures proposals). Commits
    stay durable across a killed process."""
    import sqlalchemy

    def pragmas(conn, _record):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    sqlalchemy.event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened before the listener reconnect with it
