"""Distributed search: a real two-node Ray cluster on this machine, and the
Optuna study kept in a real PostgreSQL server (started on loopback by the
test), then resumed from it.

The cluster's processes are started by this test (``ray start --block`` in
their own process groups) and ended by their process group id, so other Ray
sessions on the machine are left alone.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from search_standin import TinySpace  # tests/ is on the path: pytest's rootdir conftest

from hybridnas.search.config import SearchConfig

TINY = dict(space="tiny", dataset="digits", resolution=8, subset=200, epochs=1, batch_size=64,
            latency_repeats=5, dashboard_every=100, scheduler="none")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc, grace: float = 20.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            # children of `ray start` share its process group: wait for them too
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.2)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            if sig == signal.SIGKILL:
                return
            continue


@pytest.fixture()
def two_node_cluster(tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_worker_niceness="0",
               OMP_NUM_THREADS="1")
    temp = f"/tmp/rt_c{port}"
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    head = subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
                             f"--temp-dir={temp}", *common], env=env, start_new_session=True,
                            stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the head is up when the worker can join
            if "Ray runtime started" in (tmp_path / "head.log").read_text():
                break
            if head.poll() is not None:
                pytest.fail("ray head did not start:\n" + (tmp_path / "head.log").read_text())
            time.sleep(0.5)
        worker = subprocess.Popen([ray_bin, "start", f"--address={address}", *common], env=env,
                                  start_new_session=True, stdout=open(tmp_path / "worker.log", "w"),
                                  stderr=subprocess.STDOUT)
        procs.append(worker)
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline:
                pytest.fail("the second node did not join:\n" + (tmp_path / "worker.log").read_text())
            time.sleep(0.5)
        ray.shutdown()
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for p in reversed(procs):
            _stop_group(p)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.cluster
@pytest.mark.slow
def test_search_across_a_two_node_cluster(two_node_cluster, tmp_path):
    import optuna

    import hybridnas
    from hybridnas import run_search

    cfg = SearchConfig(**TINY, budget_trials=4, max_concurrent=2, cpus_per_trial=1,
                       address=two_node_cluster, name="cluster", results_dir=str(tmp_path))
    res = run_search(cfg, space=TinySpace())
    df = hybridnas.load_run(res.run_dir)
    assert len(df) == 4 and (df.status == "COMPLETE").all()
    study = optuna.load_study(study_name="cluster", storage=f"sqlite:///{res.run_dir / 'study.db'}")
    nodes = {t.user_attrs.get("node_id") for t in study.trials}
    assert len(nodes - {None}) == 2, f"trials ran on {nodes}"   # one CPU per node: both used


def _pg_tools() -> str | None:
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir(
            "/usr/lib/postgresql") else []:
        b = f"/usr/lib/postgresql/{d}/bin"
        if os.path.exists(f"{b}/initdb"):
            return b
    return None


@pytest.fixture()
def postgres_url():
    """A throwaway PostgreSQL cluster on loopback, run as the 'postgres' user
    (initdb refuses root) in a temp folder that user can reach."""
    import tempfile

    pytest.importorskip("psycopg2")
    tools = _pg_tools()
    if tools is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_pg = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="hnas_pg_")
    data = os.path.join(root, "data")
    if as_pg:
        shutil.chown(root, "postgres")
    port = _free_port()

    def run(*cmd):
        done = subprocess.run([*as_pg, *cmd], capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"{' '.join(cmd)} failed: {done.stderr or done.stdout}")

    try:
        run(f"{tools}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
        run(f"{tools}/pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "pg.log"), "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        try:
            run(f"{tools}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "hnas")
            yield f"postgresql://postgres@127.0.0.1:{port}/hnas"
        finally:
            subprocess.run([*as_pg, f"{tools}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                           capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.slow
def test_study_in_postgres_and_resume_from_it(postgres_url, tmp_path):
    import optuna
    import ray

    import hybridnas
    from hybridnas import run_search

    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir="/tmp/rt_hpg", log_to_driver=False,
             logging_level="ERROR")
    try:
        cfg = SearchConfig(**TINY, budget_trials=2, max_concurrent=1, storage=postgres_url,
                           name="pg", results_dir=str(tmp_path))
        first = run_search(cfg, space=TinySpace())
        assert not (first.run_dir / "study.db").exists()     # the study lives in PostgreSQL
        before = hybridnas.load_run(first.run_dir)
        second = run_search(resume=first.run_dir, overrides={"budget_trials": 4}, space=TinySpace())
    finally:
        ray.shutdown()
    after = hybridnas.load_run(second.run_dir)
    assert len(before) == 2 and len(after) == 4
    kept = after.set_index("trial_id").loc[before.trial_id]
    assert kept.finished_at.tolist() == before.finished_at.tolist()   # not re-run
    import yaml

    url = yaml.safe_load((second.run_dir / "config.yaml").read_text())["storage_url"]
    assert url.split("@", 1)[1] == postgres_url.split("@", 1)[1]
    study = optuna.load_study(study_name="pg", storage=url)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert {t.number for t in complete} >= set(after.trial_id)
    assert all(len(t.values) == 2 for t in complete)                 # accuracy, latency
