"""The builder-vs-hand-written benchmark's bookkeeping
(benchmarks/bench_models.py): ratios over pairs of rounds, the sign test's
interval of their median and the summary verdict, and one short run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"
_spec = importlib.util.spec_from_file_location("bench_models", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_pair_ratios_sum_each_pair_of_rounds():
    times = {"builder": [3.0, 3.0, 1.0, 3.0], "hand-written": [2.0, 3.0, 2.0, 3.0]}
    assert bench.pair_ratios(times) == pytest.approx([0.8, 1.2])  # sorted: (1+3)/5, (3+3)/5
    assert bench.pair_ratios({"builder": [2.0], "hand-written": [4.0]}) == [0.5]


def test_each_cell_gives_the_interval_of_its_median_ratio():
    rounds = {"builder": [1.0] * 12, "hand-written": [1.0 + 0.01 * i for i in range(12)]}
    text, ratios = bench._cell(rounds, 1e3, "5.0f")
    assert len(ratios) == 6
    lo, hi = bench.median_interval(ratios)  # six pairs: their range
    assert text == f" 1000/1055  {sorted(ratios)[2] / 2 + sorted(ratios)[3] / 2:.3f} [{lo:.2f}-{hi:.2f}]"
    short, _ = bench._cell({"builder": [1.0] * 4, "hand-written": [2.0] * 4}, 1e3, "5.0f")
    assert short.endswith("0.500 [few pairs]")


def test_median_interval_is_the_sign_test_interval():
    spread = [1.09, 0.94, 0.97, 0.99, 1.01, 1.02, 1.04, 1.06]
    assert bench.median_interval(spread) == (0.94, 1.09)  # 8 values: their range (99.2 %)
    nine = [0.1 * i for i in range(1, 10)]  # 9: x(2)..x(8), 96.1 %
    assert bench.median_interval(nine) == pytest.approx((0.2, 0.8))
    twenty = list(range(20))  # 20: x(6)..x(15), 95.9 % (x(7)..x(14) would be 88.5 %)
    assert bench.median_interval(twenty) == (5, 14)
    assert bench.median_interval([1.0, 1.1, 1.2, 1.3, 1.4, 1.5]) == (1.0, 1.5)  # 6: 96.9 %
    assert bench.median_interval([1.0, 1.1, 1.2, 1.3, 1.4]) is None  # 5: at most 93.8 %


def test_verdict_tells_a_tie_within_noise_from_a_loss():
    ok = bench.verdict("inference", {"a": [0.90, 0.95], "b": [0.97, 0.99]})
    assert ok == "max inference ratio 0.980 (target <= 1.0): OK"
    mixed = bench.verdict("training", {
        "tie": [0.94, 0.97, 0.99, 1.01, 1.02, 1.04, 1.06, 1.09],
        "loss": [1.03, 1.031, 1.032, 1.033, 1.034, 1.035, 1.036, 1.037],
        "fine": [0.9, 0.91]})
    assert mixed.startswith("max training ratio 1.034 (target <= 1.0): ABOVE TARGET; above 1.0: ")
    assert "tie 1.015 (95 % interval of the median 0.940-1.090: level within noise)" in mixed
    assert "loss 1.034 (95 % interval of the median 1.030-1.037: slower beyond noise)" in mixed
    assert "fine" not in mixed
    few = bench.verdict("training", {"short": [1.02, 1.05]})
    assert "short 1.035 (too few pairs of rounds for an interval" in few


def test_a_short_run_prints_both_ratios_and_the_same_network(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_models.py", "--device", "cpu", "--models",
                                      "levit_128s", "--resolution", "64", "--runs", "2",
                                      "--warmup", "1", "--train-resolution", "64",
                                      "--batch-size", "2", "--train-steps", "2"])
    bench.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("levit_128s"))
    assert row.rstrip().endswith("1.000/1.000")  # MACs ratio: the same network at both sizes
    assert "max inference ratio" in out and "max training ratio" in out
    assert "NOT THE SAME NETWORK" not in out
