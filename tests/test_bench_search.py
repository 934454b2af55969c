"""The search-quality benchmark's bookkeeping (benchmarks/bench_search.py (b)):
dominance of named references, hypervolume summary over seeds, and the
per-run CSV it resumes from. No search runs here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search.py"
_spec = importlib.util.spec_from_file_location("bench_search", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_dominated_by_needs_one_point_no_worse_everywhere_and_better_somewhere():
    front = [[0.8, 2.0], [0.6, 1.0]]
    assert bench.dominated_by(front, [0.7, 2.5])       # worse than (0.8, 2.0) in both
    assert bench.dominated_by(front, [0.6, 1.5])       # equal accuracy, slower than (0.6, 1.0)
    assert not bench.dominated_by(front, [0.8, 2.0])   # equal to a front point
    assert not bench.dominated_by(front, [0.9, 3.0])   # more accurate than all
    assert not bench.dominated_by(front, [0.5, 0.5])   # faster than all
    assert not bench.dominated_by([], [0.1, 9.0])


def _search(sampler, scheduler, seed, points):
    return {"kind": "search", "sampler": sampler, "scheduler": scheduler, "seed": seed,
            "budget_minutes": 1.0, "epochs": 4, "trials": 5, "early_stopped": 1, "rejected": 0,
            "failed": 0, "device_s": 60.0, "wall_s": 40.0, "points": points}


def _refs(seed, points):
    return {"kind": "references", "sampler": "", "scheduler": "", "seed": seed,
            "budget_minutes": "", "epochs": 4, "trials": 3, "early_stopped": 0, "rejected": 0,
            "failed": 0, "device_s": 20.0, "wall_s": 20.0, "points": points}


ROWS = [_search("random", "none", 0, [[0.5, 2.0]]), _search("random", "none", 1, [[0.6, 2.0]]),
        _search("nsga2", "moasha", 0, [[0.8, 1.0]]), _search("nsga2", "moasha", 1, [[0.5, 3.0]]),
        _refs(0, {"a": [0.7, 1.5], "b": [0.9, 0.5], "c": None}), _refs(1, {"a": [0.4, 3.5]})]


def test_summary_shares_one_reference_point_and_compares_on_the_same_seed():
    s = bench.summarise(ROWS)
    # worst accuracy 0.5 minus 10 % of its span 0.3; worst latency 3.0 plus 10 % of 2.0
    assert s["reference"] == pytest.approx([0.47, 3.2])
    hv = {("random", 0): 0.03 * 1.2, ("random", 1): 0.13 * 1.2,
          ("nsga2", 0): 0.33 * 2.2, ("nsga2", 1): 0.03 * 0.2}
    top, base = s["configs"][("nsga2", "moasha")], s["configs"][("random", "none")]
    assert top["hv"] == pytest.approx([hv[("nsga2", 0)], hv[("nsga2", 1)]])
    assert top["mean"] == pytest.approx((hv[("nsga2", 0)] + hv[("nsga2", 1)]) / 2)
    assert top["beats"] == 1 and top["paired"] == 2   # better on seed 0 only
    assert base["beats"] == 0                          # never strictly better than itself
    h = s["headline"]
    assert h["ratio"] == pytest.approx((hv[("nsga2", 0)] + hv[("nsga2", 1)])
                                       / (hv[("random", 0)] + hv[("random", 1)]))
    assert (h["better"], h["seeds"]) == (1, 2)
    # seed 0: (0.8, 1.0) dominates a, not b; seed 1: (0.5, 3.0) dominates a; c never completed
    assert top["dominates"] == {"a": [2, 2], "b": [0, 1]}
    assert base["dominates"] == {"a": [1, 2], "b": [0, 1]}


def test_summary_without_the_baseline_has_no_headline():
    s = bench.summarise([r for r in ROWS if r["sampler"] != "random"])
    assert s["headline"] is None
    assert s["configs"][("nsga2", "moasha")]["paired"] == 0


def test_csv_round_trip_and_a_malformed_row_names_its_line(tmp_path):
    path = tmp_path / "runs.csv"
    for row in ROWS:
        bench.write_row(path, row)
    assert bench.read_rows(path) == ROWS
    text = path.read_text().splitlines()
    text[3] = text[3].replace("[[0.8, 1.0]]", "[[0.8]]")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="line 4"):
        bench.read_rows(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        bench.read_rows(path)
