"""One writer per run directory (issue 17, item 1): ``hybridnas.runlock``.

Two processes cannot hold a run at once; the refusal names the holder; a
holder killed with SIGKILL leaves a stale record that the next taker
detects. The SQLite study URL of a run is stored relative to the run, so a
copied run directory is its own run.
"""
from __future__ import annotations

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
