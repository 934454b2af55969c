"""One writer per run directory (issue 17, item 1): ``hybridnas.runlock``.

Two processes cannot hold a run at once; the refusal names the holder; a
holder killed with SIGKILL leaves a stale record that the next taker
detects. The SQLite study URL of a run is stored relative to the run, so a
copied run directory is its own run.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from hybridnas.runlock import (
    RunLock,
    RunLockError,
    portable_storage_url,
    read_holder,
    resolve_storage_url,
)

HOLD = textwrap.dedent("""
    import sys, time
    from hybridnas.runlock import RunLock
    lock = RunLock(sys.argv[1], command="hybridnas search").acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
""")


def _holder_process(run_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_with_the_holders_pid_and_host(tmp_path):
    run = tmp_path / "run"
    proc = _holder_process(run)
    try:
        with pytest.raises(RunLockError) as err:
            RunLock(run).acquire()
        msg = str(err.value)
        assert f"pid {proc.pid} on host {socket.gethostname()} (hybridnas search)" in msg
        assert "\n" not in msg and str(run) in msg
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        proc.wait(timeout=30)
    with RunLock(run) as lock:  # free again once released
        assert lock.held and lock.stale is None
        assert read_holder(run).pid == os.getpid()
    assert read_holder(run) is None


def test_lock_of_a_killed_process_is_detected_as_stale(tmp_path):
    run = tmp_path / "run"
    proc = _holder_process(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert read_holder(run).pid == proc.pid  # its record survives the kill ...
    lock = RunLock(run).acquire()  # ... but the kernel released the lock itself
    try:
        assert lock.stale is not None and lock.stale.pid == proc.pid
        assert read_holder(run).pid == os.getpid()
    finally:
        lock.release()


def test_one_process_cannot_take_a_run_twice(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLockError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()


def test_copied_run_resolves_its_own_study(tmp_path):
    run = tmp_path / "results" / "run-a"
    run.mkdir(parents=True)
    (run / "study.db").write_bytes(b"original")
    url = f"sqlite:///{run / 'study.db'}"
    stored = portable_storage_url(url, run)
    assert stored == "sqlite:///{run_dir}/study.db"
    assert resolve_storage_url(stored, run) == f"sqlite:///{run.resolve() / 'study.db'}"

    copy = tmp_path / "elsewhere" / "run-a"
    shutil.copytree(run, copy)
    assert resolve_storage_url(stored, copy) == f"sqlite:///{copy.resolve() / 'study.db'}"
    # a config written before URLs were portable: the copy still uses its own file
    assert resolve_storage_url(url, copy) == f"sqlite:///{copy.resolve() / 'study.db'}"


def test_other_storage_urls_are_left_alone(tmp_path):
    pg = "postgresql://user@host/db"
    assert portable_storage_url(pg, tmp_path) == pg and resolve_storage_url(pg, tmp_path) == pg
    outside = f"sqlite:///{tmp_path / 'shared.db'}"
    run = tmp_path / "run"
    run.mkdir()
    assert portable_storage_url(outside, run) == outside
    assert resolve_storage_url(outside, run) == outside
    query = f"sqlite:///{run / 'study.db'}?timeout=30"
    assert portable_storage_url(query, run) == "sqlite:///{run_dir}/study.db?timeout=30"


# ---------------------------------------------------------------- wired into the search

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_RUN = dict(space="tiny", dataset="digits", resolution=8, subset=200, epochs=2, batch_size=64,
                latency_repeats=5, max_concurrent=1, scheduler="none", dashboard_every=100,
                seed=2)


def _spawn_search(options: dict, log):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1",
               RAY_TMPDIR="/tmp/rt_hsl", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen([sys.executable, os.path.join(HERE, "search_standin.py"),
                             json.dumps(options)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


@pytest.mark.slow
def test_a_second_search_or_resume_of_a_running_run_is_refused(tmp_path, capsys):
    """Two searches with the same --name started together: the second is
    refused with one line naming the first's pid and host, and so is
    ``--resume`` of the run while it runs; the first's trials are intact."""
    import time

    import optuna

    import hybridnas
    from hybridnas.cli import main

    run = tmp_path / "same"
    with open(tmp_path / "first.log", "w") as log:
        first = _spawn_search(dict(TINY_RUN, name="same", results_dir=str(tmp_path),
                                   budget_trials=3), log)
        try:
            deadline = time.monotonic() + 120
            while read_holder(run) is None:  # the first has its lock, maybe nothing else yet
                assert time.monotonic() < deadline and first.poll() is None, \
                    (tmp_path / "first.log").read_text()[-2000:]
                time.sleep(0.01)
            capsys.readouterr()
            assert main(["search", "--space", "stagewise", "--dataset", "digits", "--name", "same",
                         "--results-dir", str(tmp_path)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err
            assert f"pid {first.pid} on host {socket.gethostname()}" in err
            assert "one process writes a run at a time" in err
            assert main(["search", "--resume", str(run)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"pid {first.pid}" in err
            assert first.wait(timeout=240) == 0, (tmp_path / "first.log").read_text()[-2000:]
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
    df = hybridnas.load_run(run)
    assert (df.status == "COMPLETE").sum() == 3 and df.trial_id.is_unique
    study = optuna.load_study(study_name="same", storage=f"sqlite:///{run / 'study.db'}")
    assert {t.number for t in study.trials if t.state.name == "COMPLETE"} == set(df.trial_id)
    assert read_holder(run) is None  # released at the end


def test_copied_run_resumes_into_its_own_study(ray_session, tmp_path):
    """A finished run copied elsewhere and resumed with a bigger budget
    writes into the copy's study.db; the original's is untouched."""
    import hashlib

    import yaml
    from search_standin import TinySpace

    import hybridnas
    from hybridnas.rundir import TrialsFallbackWarning
    from hybridnas.search import SearchConfig, run_search

    original = tmp_path / "a" / "run"
    run_search(SearchConfig(**TINY_RUN, budget_trials=2, name="run",
                            results_dir=str(tmp_path / "a")), space=TinySpace(), stream=None)
    stored = yaml.safe_load((original / "config.yaml").read_text())["storage_url"]
    assert stored == "sqlite:///{run_dir}/study.db"
    digest = hashlib.sha256((original / "study.db").read_bytes()).hexdigest()
    copy = tmp_path / "b" / "run"
    shutil.copytree(original, copy)
    # damaged derived files do not stop a resume: the CSV copy and the table stand in
    (copy / "summary.json").write_text("{not json")
    (copy / "trials.parquet").write_bytes((copy / "trials.parquet").read_bytes()[:64])
    out = io.StringIO()
    with pytest.warns(TrialsFallbackWarning, match="trials.csv instead"):
        run_search(resume=copy, overrides={"budget_trials": 3}, space=TinySpace(), stream=out)
    assert "summary.json: not valid JSON" in out.getvalue()
    assert hashlib.sha256((original / "study.db").read_bytes()).hexdigest() == digest
    assert len(hybridnas.load_run(original)) == 2 and len(hybridnas.load_run(copy)) == 3


def test_default_run_name_stays_inside_the_results_dir(tmp_path):
    from hybridnas.search.config import SearchConfig
    from hybridnas.search.runner import default_run_name

    name = default_run_name(SearchConfig(space="../../x.yaml", dataset="digits"))
    assert name.startswith("x-digits-") and "/" not in name and ".." not in name
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
