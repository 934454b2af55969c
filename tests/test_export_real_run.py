"""Export from a run the search engine really wrote (tiny search on digits, Ray)."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    ray = pytest.importorskip("ray")
    search = pytest.importorskip("hybridnas.search")
    from search_standin import TinySpace

    from hybridnas.search.config import SearchConfig

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir="/tmp/rt_hnx",
                 log_to_driver=False, logging_level="ERROR")
    try:
        cfg = SearchConfig(space="tiny", dataset="digits", resolution=8, subset=200, epochs=2,
                           batch_size=64, latency_repeats=5, max_concurrent=2,
                           dashboard_every=100, budget_trials=4, keep_checkpoints="pareto",
                           name="export-real", results_dir=str(tmp_path_factory.mktemp("results")))
        result = search.run_search(cfg, space=TinySpace(), stream=None)
    finally:
        if started:
            ray.shutdown()
    return result.run_dir


def test_export_front_of_a_real_run(real_run, tmp_path):
    import pandas as pd

    import hybridnas
    from hybridnas.export import export_run, load_checkpoint

    front = pd.read_csv(real_run / "pareto.csv")["trial_id"].tolist()
    results = export_run(real_run, pareto=True, out=tmp_path)
    assert sorted(r.trial_id for r in results) == sorted(front)
    for r in results:
        assert r.ok and r.trained, (r.checks, r.errors)
        print(f"trial {r.trial_id}: onnx {r.checks['onnx']:.2e}, "
              f"torchscript {r.checks['torchscript']:.2e}")
        model = hybridnas.load(r.dir)
        trained, _, _ = load_checkpoint(real_run / "checkpoints" / f"trial_{r.trial_id}")
        shape = json.loads((r.dir / "meta.json").read_text())["input_shape"]
        assert shape[1:] == [8, 8]
        x = torch.randn(2, *shape)
        with torch.no_grad():
            assert torch.equal(model(x), trained(x))
        card = (r.dir / "README.md").read_text()
        assert "on the Pareto front" in card and "measured latency" in card
