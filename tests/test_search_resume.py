"""Resume after kill -9: finished trials survive and are not re-run, the budget
continues. The search runs in a subprocess (with its own local Ray) that the
test kills with SIGKILL, process group and all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONS = dict(space="tiny", dataset="digits", resolution=8, subset=300, epochs=3, batch_size=32,
               latency_repeats=5, max_concurrent=1, scheduler="none", dashboard_every=100,
               budget_trials=6, seed=1)


def _spawn(args, log):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1",
               RAY_TMPDIR="/tmp/rt_hsk")
    return subprocess.Popen([sys.executable, os.path.join(HERE, "search_standin.py"), *args],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _rows(run):
    import hybridnas

    try:
        return hybridnas.load_run(run)
    except Exception:  # noqa: BLE001 - not written yet, or mid-rename
        return None


@pytest.mark.slow
def test_resume_after_kill_keeps_finished_trials_and_budget(tmp_path):
    import optuna

    import hybridnas

    run = tmp_path / "killed"
    opts = dict(OPTIONS, name="killed", results_dir=str(tmp_path))
    with open(tmp_path / "first.log", "w") as log:
        proc = _spawn([json.dumps(opts)], log)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                df = _rows(run)
                if (df is not None and df.status.isin(["COMPLETE", "EARLY_STOPPED"]).sum() >= 2
                        and (df.status == "RUNNING").any() and (df.epochs > 0).any()):
                    break
                if proc.poll() is not None:
                    pytest.fail("the search ended before it could be killed:\n" +
                                (tmp_path / "first.log").read_text()[-3000:])
                time.sleep(0.2)
            else:
                pytest.fail("no trial finished in time:\n" + (tmp_path / "first.log").read_text()[-3000:])
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # kill -9: the search and the Ray it started
            proc.wait()
    before = hybridnas.load_run(run)
    finished = before[before.status.isin(["COMPLETE", "EARLY_STOPPED"])]
    interrupted = before[before.status == "RUNNING"]
    assert len(finished) >= 2 and len(interrupted) == 1
    spent_before = before.device_seconds.sum()

    with open(tmp_path / "resume.log", "w") as log:
        proc = _spawn(["{}", str(run)], log)
        assert proc.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    after = hybridnas.load_run(run)
    out = (tmp_path / "resume.log").read_text()
    assert "queued again" in out

    # finished trials are kept exactly, and none was trained again
    kept = after.set_index("trial_id").loc[finished.trial_id]
    for col in ("status", "metric", "started_at", "finished_at", "device_seconds", "arch_id"):
        assert kept[col].tolist() == finished.set_index("trial_id")[col].tolist(), col
    done_after = after[after.status.isin(["COMPLETE", "EARLY_STOPPED"])]
    assert done_after.arch_id.is_unique
    # the interrupted trial is recorded as such and its architecture ran again
    lost = after.set_index("trial_id").loc[interrupted.trial_id.item()]
    assert lost.status == "FAILED" and "interrupted" in lost.error
    assert interrupted.arch_id.item() in set(done_after.arch_id)
    # the trial budget counts both sessions (6 trials that ran, the interrupted one included)
    assert (after.status != "REJECTED").sum() == OPTIONS["budget_trials"]
    # the device budget continues from what was spent before the kill
    summary = json.loads((run / "summary.json").read_text())
    assert summary["budget"]["spent_device_seconds"] == pytest.approx(after.device_seconds.sum())
    assert after.device_seconds.sum() > spent_before
    # the study agrees: no trial left RUNNING, one Optuna trial per table row
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{run / 'study.db'}")
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert {t.number for t in study.trials} >= set(after.trial_id)
