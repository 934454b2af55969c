"""The CPU kernel benchmark runs (benchmarks/bench_cpu_kernels.py) on small
shapes: every table prints its rows, picks and counts. It once called the
packed linear with the module's slot where the packed weight goes, and its
inference tables crashed unnoticed."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu_kernels.py"
_spec = importlib.util.spec_from_file_location("bench_cpu_kernels", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("inference", [False, True])
def test_every_table_runs_on_small_shapes(monkeypatch, capsys, inference):
    from hybridnas.blocks import layers, transformer

    # the script sets these module globals as it goes: restored after the test
    monkeypatch.setattr(layers, "CPU_PACKED_LINEAR", True)
    monkeypatch.setattr(layers, "_LINEAR_PACKED", {})
    monkeypatch.setattr(layers, "_CONV_LAYOUTS", {})
    monkeypatch.setattr(transformer, "_FUSED_FASTER", {})
    monkeypatch.setattr(bench, "CONVS", [bench.CONVS[0]])
    monkeypatch.setattr(bench, "ATTENTION", dict(list(bench.ATTENTION.items())[-2:]))
    monkeypatch.setattr(bench, "LINEARS", {"timed": (64, 128, 256, "gelu"),
                                            "few rows": (8, 512, 512, None),
                                            "small": (1, 16, 16, None)})
    monkeypatch.setattr(bench, "ENCODERS", {"tiny": (64, 2, 10)})
    monkeypatch.setattr(bench, "POINTWISE", {"tiny": (8, 16, 6, "gelu")})
    monkeypatch.setattr(sys, "argv", ["bench_cpu_kernels.py", "--rounds", "1"]
                        + (["--inference"] if inference else []))
    bench.main()
    out = capsys.readouterr().out
    assert "of 1 convs" in out
    assert "attend's pick is the faster one for" in out
    if inference:
        assert "plain (few rows)" in out and "plain (small)" in out
        assert "of 1 timed linears" in out
        assert "of 1 blocks" in out
        assert "of 1 1x1 convs" in out
    else:
        assert "linear layers" not in out
