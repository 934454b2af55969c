"""Resume after kill -9: finished trials survive and are not re-run, the budget
continues. The search runs in a subprocess (with its own local Ray) that the
test kills with SIGKILL, process group and all."""
from __future__ import annotations

import json
import os
import re
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


def _interrupted_mid_trial(run):
    """(trial id, epochs) of a trial with saved per-epoch state that the
    table does not show finished, once two trials have finished; else None."""
    df = _rows(run)
    if df is None or df.status.isin(["COMPLETE", "EARLY_STOPPED"]).sum() < 2:
        return None
    finished = set(df[df.status != "RUNNING"].trial_id)
    for progress in (run / "partial").glob("trial_*/progress.json"):
        try:
            record = json.loads(progress.read_text())
        except (OSError, ValueError):
            continue
        if record["trial_id"] not in finished and record["epochs"] >= 1:
            return record["trial_id"], record["epochs"]
    return None


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGKILL", "SIGINT"])
def test_resume_after_kill_continues_the_interrupted_trial(tmp_path, stop):
    """kill -9 (or Ctrl-C) mid-trial, then --resume: finished trials are kept
    and not re-run, the interrupted trial continues under its own id from its
    last epoch with its device time charged, and the budget gets every trial."""
    import optuna

    import hybridnas

    run = tmp_path / "killed"
    opts = dict(OPTIONS, name="killed", results_dir=str(tmp_path))
    with open(tmp_path / "first.log", "w") as log:
        proc = _spawn([json.dumps(opts)], log)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                caught = _interrupted_mid_trial(run)
                if caught:
                    break
                if proc.poll() is not None:
                    pytest.fail("the search ended before it could be killed:\n" +
                                (tmp_path / "first.log").read_text()[-3000:])
                time.sleep(0.02)
            else:
                pytest.fail("no trial finished in time:\n" + (tmp_path / "first.log").read_text()[-3000:])
        finally:
            if stop == "SIGINT":  # Ctrl-C: the search stops gracefully, closing its rows
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # kill -9: the search and the Ray it started
            except ProcessLookupError:  # the whole group ended after Ctrl-C
                pass
            proc.wait()
    tid, _ = caught
    proc_pid = proc.pid
    time.sleep(1.0)  # a Ray worker may outlive its driver's kill by an epoch
    before = hybridnas.load_run(run)
    finished = before[before.status.isin(["COMPLETE", "EARLY_STOPPED"])]
    assert tid not in set(finished.trial_id)
    spent_before = json.loads((run / "partial" / f"trial_{tid}" / "progress.json").read_text())[
        "device_seconds"]

    with open(tmp_path / "resume.log", "w") as log:
        proc = _spawn(["{}", str(run)], log)
        assert proc.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    after = hybridnas.load_run(run)
    out = (tmp_path / "resume.log").read_text()
    if stop == "SIGKILL":  # the dead holder's lock record is noticed and replaced
        assert f"was last written by pid {proc_pid} on host" in out
    done_epochs = int(re.search(rf"continue: .*\b{tid} \(from epoch (\d+)\)", out).group(1))
    assert 1 <= done_epochs < OPTIONS["epochs"]

    # finished trials are kept exactly, and none was trained again
    kept = after.set_index("trial_id").loc[finished.trial_id]
    for col in ("status", "metric", "started_at", "finished_at", "device_seconds", "arch_id"):
        assert kept[col].tolist() == finished.set_index("trial_id")[col].tolist(), col
    assert after[after.status == "COMPLETE"].arch_id.is_unique
    # the interrupted trial finished under its own id, continuing after its saved epochs
    cont = after.set_index("trial_id").loc[tid]
    assert cont.status == "COMPLETE" and cont.epochs == OPTIONS["epochs"]
    assert len(json.loads(cont.curve)) == OPTIONS["epochs"]
    for epoch in range(1, done_epochs + 1):  # those epochs were not trained again
        assert f"trial {tid} epoch {epoch}/" not in out
    assert cont.device_seconds > spent_before  # its time before the kill is charged
    # interruption cost no trial slot: the budget's trials all completed
    assert (after.status == "COMPLETE").sum() == OPTIONS["budget_trials"]
    assert (after.status != "REJECTED").sum() == OPTIONS["budget_trials"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["budget"]["spent_device_seconds"] == pytest.approx(after.device_seconds.sum())
    # the study agrees: trial tid COMPLETE, none left RUNNING; no training state left behind
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{run / 'study.db'}")
    states = {t.number: t.state.name for t in study.trials}
    assert states[tid] == "COMPLETE" and "RUNNING" not in states.values()
    assert not list((run / "partial").glob("trial_*"))


def test_trial_killed_after_its_last_epoch_was_saved_reports_it_on_resume(tmp_path, monkeypatch):
    """A kill between saving the last epoch's state and reporting it leaves a
    checkpoint with every epoch: the resumed trial trains nothing and still
    reports its result (COMPLETE, the whole curve), instead of ending silently."""
    pytest.importorskip("ray")
    from ray import tune

    from hybridnas.search import trial as trial_module
    from hybridnas.search.settings import TrainSettings, TrialLatency, TrialSettings
    from hybridnas.spec import ArchSpec, StageSpec, StemSpec

    spec = ArchSpec(stem=StemSpec(kind="conv", widths=(8,), strides=(1,)),
                    stages=(StageSpec(block="mbconv", depth=1, width=8, stride=2),))
    data = {"name": "digits", "data_dir": None, "resolution": 8, "subset": 96, "seed": 0,
            "val_fraction": 0.25}
    settings = TrialSettings(data=data, num_outputs=10, epochs=2, threads=1, run_dir=str(tmp_path),
                             keep_checkpoints="none", train=TrainSettings(batch_size=32),
                             latency=TrialLatency(repeats=2, warmup=1))
    config = {"spec": spec.to_dict(), "trial_id": 4, "settings": settings.to_dict()}
    monkeypatch.setattr(trial_module, "_node_id", lambda: "")  # it would start a Ray here

    def killed_at_the_end(state):
        if state["status"] != "RUNNING":
            raise SystemExit(1)  # as Tune stops a function trainable

    monkeypatch.setattr(tune, "report", killed_at_the_end)
    with pytest.raises(SystemExit):
        trial_module.search_trial(config)
    progress = json.loads((tmp_path / "partial" / "trial_4" / "progress.json").read_text())
    assert progress["epochs"] == 1  # the last record is from epoch 1; the state holds both

    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda state: reports.append(dict(state)))
    trial_module.search_trial(config)
    assert len(reports) == 1, reports  # nothing trained again
    last = reports[-1]
    assert last["status"] == "COMPLETE", last["error"]
    assert last["epochs"] == 2 and len(json.loads(last["curve"])) == 2
    assert last["device_seconds"] > progress["device_seconds"]
