"""Export from a run the search engine really wrote (tiny search on digits, Ray)."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tiny_search_run):
    return tiny_search_run


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
