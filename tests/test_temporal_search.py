"""Temporal room: the temporal space (fixed point, sampling) and a tiny
end-to-end temporal search with baselines beside its front."""
import json

import pytest
import torch

import hybridnas


@pytest.fixture(scope="module")
def space():
    spaces = pytest.importorskip("hybridnas.spaces")
    return spaces.load("temporal")


def test_financial_hybrid_is_a_fixed_point_of_the_temporal_space(space):
    spec = hybridnas.get_spec("financial_hybrid")
    assert "financial_hybrid" in space.named()
    found = space.contains(spec)
    assert found, found.reason
    assert space.decode(space.encode(spec)) == spec
    assert found.params["0.stages.0.axis"] == "assets"
    assert space.references()["financial_hybrid"] == spec


def test_temporal_space_points_build_and_run(space):
    torch.manual_seed(0)
    axes, lookbacks = set(), set()
    for seed in range(3):
        spec = space.sample(seed)
        assert spec.assets and spec.dims == 1 and space.check(spec)
        axes.add(spec.stages[-1].axis)
        params = space.encode(spec, data={"lookback": 40})
        lookbacks.add(space.data_params(params)["lookback"])
        model = hybridnas.build_model(spec, num_classes=3, in_chans=6)
        with torch.no_grad():
            out = model.eval()(torch.randn(1, 6, 3, 40))
        assert out.shape == (1, 3, 3) and torch.isfinite(out).all()
    assert len(axes) > 1 and lookbacks == {40}


def test_data_lookback_reaches_the_dataset(space):
    from hybridnas.data import load_dataset

    spec = space.sample(0)
    params = space.encode(spec, data={"lookback": 90})
    b = load_dataset("synthetic-panel", **space.data_params(params))
    assert b.input_shape[-1] == 90


@pytest.mark.slow
def test_tiny_temporal_search_end_to_end(ray_session, tmp_path):
    import pandas as pd

    pytest.importorskip("hybridnas.search")
    from hybridnas import run_search
    from hybridnas.search.config import SearchConfig
    from hybridnas.temporal.baselines import baselines_for_run, front_with_baselines

    cfg = SearchConfig(space="temporal", dataset="synthetic-panel", subset=200, epochs=1,
                       batch_size=16, max_batches_per_epoch=4, budget_trials=3,
                       with_references=True, sampler="random", scheduler="none",
                       latency_repeats=3, max_concurrent=1, dashboard_every=100,
                       name="temporal", results_dir=str(tmp_path))
    run = run_search(cfg).run_dir
    df = hybridnas.load_run(run)
    done = df[df.status == "COMPLETE"]
    assert len(done) >= 2 and (done.metric_name == "val_ic").all()
    assert (done.latency_ms > 0).all() and (done.params > 0).all()
    assert "val_mse" in df.columns and done.val_mse.notna().all()
    # the named reference (the seed's FinancialHybrid) ran under its name
    assert "financial_hybrid" in set(df.reference.dropna())
    for _, row in done.iterrows():
        spec = hybridnas.ArchSpec.from_dict(json.loads(row.spec))
        assert spec.assets and json.loads(row.space_params)["data.lookback"] in (40, 60, 90)
    rows = baselines_for_run(str(run), which=("zero", "mean", "ridge"))
    assert [r["name"] for r in rows] == ["zero", "mean", "ridge"]
    table = front_with_baselines(str(run))
    assert set(table.kind) == {"front", "baseline"}
    assert len(table[table.kind == "front"]) == len(pd.read_csv(run / "pareto.csv"))
