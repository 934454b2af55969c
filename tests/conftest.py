import os

import pytest

# Tests run on 2 CPU cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    yield


def _ray_up(ray):
    os.environ.setdefault("RAY_worker_niceness", "0")
    if ray.is_initialized():
        return False
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=f"/tmp/rt_{os.getpid()}",
             log_to_driver=False, logging_level="ERROR")
    return True


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for the tests of one module (short temp dir, no dashboard,
    workers at normal priority); shut down afterwards unless it was already up."""
    ray = pytest.importorskip("ray")
    started = _ray_up(ray)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_search_run(tmp_path_factory):
    """One real search (Ray + Optuna, digits at 8x8, a tiny stand-in space),
    run once per session for the rooms that read run directories (dashboard,
    export). Rewrites its dashboard every 2 trials and keeps the front's
    checkpoints. Ray is shut down again before the tests use the files."""
    ray = pytest.importorskip("ray")
    from search_standin import TinySpace

    from hybridnas import run_search
    from hybridnas.search.config import SearchConfig

    started = _ray_up(ray)
    try:
        cfg = SearchConfig(space="tiny", dataset="digits", resolution=8, subset=200, epochs=2,
                           batch_size=64, latency_repeats=5, max_concurrent=2,
                           dashboard_every=2, budget_trials=6, with_references=True, scheduler="none",
                           keep_checkpoints="pareto", name="tiny_real",
                           results_dir=str(tmp_path_factory.mktemp("tiny_search")))
        return run_search(cfg, space=TinySpace(), stream=None).run_dir
    finally:
        if started:
            ray.shutdown()
