"""The run directory contract (hybridnas.rundir): columns, front rule, objectives."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from hybridnas import rundir
from hybridnas.errors import UserError


def _row(tid, status="COMPLETE", full=True, metric=0.5, latency=1.0):
    row = rundir.empty_row(tid)
    row.update(status=status, full_fidelity=full, metric=metric, latency_ms=latency)
    return row


def test_a_new_row_is_running_with_every_column():
    row = rundir.empty_row(3)
    assert set(row) == set(rundir.COLUMNS)
    assert row["status"] == "RUNNING" and row["full_fidelity"] is False
    assert row["fidelity"] == "proxy" and math.isnan(row["standalone_metric"])


def test_written_tables_round_trip_with_the_one_shot_columns(tmp_path):
    run = rundir.RunDir(tmp_path / "run")
    run.create()
    one = _row(1)
    one.update(fidelity="inherited", standalone_metric=0.75)
    run.write_trials([_row(0), one])
    df = rundir.load_run(run.path)
    assert list(df.columns[: len(rundir.COLUMNS)]) == list(rundir.COLUMNS)
    assert list(df.fidelity) == ["proxy", "inherited"]
    assert math.isnan(df.standalone_metric[0]) and df.standalone_metric[1] == 0.75
    rows = run.read_rows()
    assert rows[1]["fidelity"] == "inherited"


def test_a_reader_fills_missing_columns_with_their_defaults():
    df = rundir.normalise_trials(pd.DataFrame({"trial_id": [2, 1], "metric": [0.1, 0.2]}))
    assert list(df.trial_id) == [1, 2]
    for name, col in rundir.COLUMNS.items():
        value = df[name].iloc[0]
        if name in ("trial_id", "metric"):
            continue  # given
        if isinstance(col.default, float) and math.isnan(col.default):
            assert math.isnan(value), name
        else:
            assert value == col.default, name


def test_the_front_rule_admits_full_fidelity_complete_trials_only():
    df = rundir.rows_to_frame([_row(0), _row(1, full=False, metric=0.9),
                               _row(2, status="EARLY_STOPPED", metric=0.9),
                               _row(3, latency=math.nan), _row(4, metric=0.6, latency=2.0)])
    assert list(rundir.front_eligible(df, ["metric", "latency_ms"])) == [
        True, False, False, False, True]
    front = rundir.front_of(df, ["metric", "latency_ms"], [True, False])
    assert sorted(front.trial_id) == [0, 4]
    assert rundir.front_summary(df, ["metric", "latency_ms"], [True, False])["front_size"] == 2


def test_a_latency_limit_in_the_config_keeps_slower_trials_off_the_front():
    df = rundir.rows_to_frame([_row(0), _row(4, metric=0.6, latency=2.0)])
    limits = rundir.front_limits({"max_latency_ms": 1.5, "epochs": 3})
    assert limits == {"latency_ms": 1.5} and rundir.front_limits({}) == {}
    assert list(rundir.front_eligible(df, ["metric", "latency_ms"], limits)) == [True, False]
    assert sorted(rundir.front_of(df, ["metric", "latency_ms"], [True, False]).trial_id) == [0, 4]
    front = rundir.front_of(df, ["metric", "latency_ms"], [True, False], limits)
    assert list(front.trial_id) == [0]
    assert rundir.front_summary(df, ["metric", "latency_ms"], [True, False],
                                limits=limits)["front_size"] == 1


def test_objectives_come_from_summary_then_config_then_the_default():
    summary = {"objectives": ["metric", "params"], "maximize": [True, False]}
    config = {"objective_columns": ["metric", "macs"], "objective_maximize": [False, False]}
    assert rundir.run_objectives(config, summary) == (["metric", "params"], [True, False])
    assert rundir.run_objectives(config, {}) == (["metric", "macs"], [False, False])
    assert rundir.run_objectives({}, {}) == (["metric", "latency_ms"], [True, False])
    assert rundir.objective_columns(True, ["latency", "macs"]) == (
        ["metric", "latency_ms", "macs"], [True, False, False])


def test_reading_something_that_is_not_a_run_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        rundir.RunDir(tmp_path / "nope").read_trials()
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        rundir.RunDir(tmp_path).read_summary()


def _truncate(path, keep=100):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_a_truncated_parquet_falls_back_to_the_csv_and_says_so(tmp_path):
    run = rundir.RunDir(tmp_path / "run")
    run.create()
    run.write_trials([_row(0), _row(1, metric=0.7)])
    _truncate(run.trials_parquet)
    with pytest.warns(rundir.TrialsFallbackWarning, match=r"trials\.parquet is unreadable.*"
                                                           r"reading .*trials\.csv instead"):
        rows = run.read_rows()  # what --resume reads
    assert [r["trial_id"] for r in rows] == [0, 1] and rows[1]["metric"] == pytest.approx(0.7)
    run.trials_csv.unlink()
    with pytest.raises(UserError, match=r"trials\.parquet: cannot read the trials table"):
        rundir.load_run(run.path)


@pytest.mark.parametrize("name, content, message", [
    ("config.yaml", b"a: \xff\xfe\n", "not UTF-8"),
    ("config.yaml", b"a: &x [1, 2]\nb: [*x, *x, *x" + b", *x" * 10 + b"]\n" * 1, None),
    ("config.yaml", b"x: " + b"[" * 200 + b"]" * 200 + b"\n", "nested deeper"),
    ("summary.json", b"{not json", "not valid JSON"),
    ("summary.json", b"{\"a\": \"" + b"x" * (2 << 20) + b"\"}", "larger than the limit"),
])
def test_config_and_summary_go_through_the_guarded_reader(tmp_path, name, content, message):
    run = rundir.RunDir(tmp_path / "run")
    run.create()
    (run.path / name).write_bytes(content)
    read = run.read_config if name == "config.yaml" else run.read_summary
    if message is None:  # a few aliases are fine
        assert read()["b"][0] == [1, 2]
        return
    with pytest.raises(UserError, match=message) as err:
        read()
    assert str(run.path / name) in str(err.value) and "\n" not in str(err.value)


def test_trials_table_read_while_a_search_rewrites_it(tmp_path):
    """A dashboard or report reading a live run: the search replaces
    trials.parquet atomically over and over, and every read gets one whole
    table (never the CSV fallback, never a mix of two files)."""
    import threading
    import time
    import warnings

    from hybridnas._io import write_atomic

    def table(n):
        return pd.DataFrame({"trial_id": range(n), "spec": ["x" * (50 + n)] * n})

    write_atomic(tmp_path / "trials.parquet", lambda p: table(5).to_parquet(p, index=False))
    write_atomic(tmp_path / "trials.csv", lambda p: table(5).to_csv(p, index=False))
    done = threading.Event()

    def search():
        n = 5
        while not done.is_set():
            n = n % 300 + 1
            write_atomic(tmp_path / "trials.parquet", lambda p: table(n).to_parquet(p, index=False))

    writer = threading.Thread(target=search)
    writer.start()
    reads = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", rundir.TrialsFallbackWarning)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                df = rundir.load_run(tmp_path)
                assert df.trial_id.tolist() == list(range(len(df)))
                reads += 1
    finally:
        done.set()
        writer.join()
    assert reads > 20
