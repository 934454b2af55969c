"""Temporal room: 1-D blocks, multi-asset specs and models, features without
look-ahead, walk-forward splits, the returns task, the dataset and baselines."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import hybridnas
from hybridnas.errors import UserError
from hybridnas.spec import BLOCK_SCHEMAS, ArchSpec, HeadSpec, SpecError, StageSpec, StemSpec
from hybridnas.temporal.features import (FEATURES, WARMUP_DAYS, daily_features, forward_returns,
                                         normalise_windows)
from hybridnas.temporal.splits import walk_forward_splits


def random_prices(days=400, assets=5, seed=0):
    rng = np.random.default_rng(seed)
    return 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, assets)), axis=0))


def panel_spec(axis="assets", depth=1, both_stage=False):
    stages = [StageSpec("mbconv", depth=1, width=16, stride=2, kernel=3)]
    if both_stage:
        stages.append(StageSpec("transformer", depth=1, width=16, stride=1, heads=2,
                                attention="global", axis="both"))
    stages.append(StageSpec("transformer", depth=depth, width=32, stride=1, heads=4,
                            attention="global" if axis != "time" else "rel", window=8, axis=axis))
    return ArchSpec(stem=StemSpec(kind="conv", widths=(16,), strides=(2,), kernel=5),
                    stages=tuple(stages), head=HeadSpec(pool="avg", norm="ln"), dims=1, assets=True)


# --------------------------------------------------------------------------
# 1-D blocks
# --------------------------------------------------------------------------

ONE_D = sorted(k for k, s in BLOCK_SCHEMAS.items() if 1 in s.dims)


@pytest.mark.parametrize("block", ONE_D)
@pytest.mark.parametrize("stride", [1, 2])
def test_1d_block_forward_backward(block, stride):
    torch.manual_seed(0)
    kw = dict(heads=2) if BLOCK_SCHEMAS[block].attention else {}
    spec = ArchSpec(stem=StemSpec(kind="conv", widths=(8,), strides=(1,), kernel=5),
                    stages=(StageSpec(block, depth=1, width=16, stride=stride, **kw),
                            StageSpec(block, depth=1, width=24, stride=stride, **kw)), dims=1)
    model = hybridnas.build_model(spec, num_classes=3, in_chans=4)
    for length in (12, 20):  # even: convnext's k=s downsampling floors odd lengths
        x = torch.randn(3, 4, length, requires_grad=True)
        feats = model.forward_features(x)
        assert feats.shape == (3, 24, math.ceil(length / stride ** 2))
        out = model(x)
        assert out.shape == (3, 3)
        out.square().sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in model.parameters() if p.requires_grad)
        model.zero_grad()


def _line_weights(state_2d, model_1d):
    """2-D weights -> 1-D model: the middle row of every kxk kernel and of every
    relative-position table is what a 2-D block uses on a 1-pixel-high map."""
    out = {}
    for name, p1 in model_1d.state_dict().items():
        p2 = state_2d[name]
        if p2.shape == p1.shape:
            out[name] = p2
        elif p2.ndim == 4 and p1.ndim == 3:  # conv kernel (out, in, k, k) -> (out, in, k)
            out[name] = p2[:, :, p2.shape[2] // 2, :]
        elif p2.ndim == 3 and p1.shape[1] == 1:  # rel-pos table (heads, 2w-1, 2w-1)
            mid = p2.shape[1] // 2
            out[name] = p2[:, mid:mid + 1, :]
        else:
            raise AssertionError(f"{name}: {tuple(p2.shape)} vs {tuple(p1.shape)}")
    model_1d.load_state_dict(out)


@pytest.mark.parametrize("stage", [
    StageSpec("mbconv", depth=2, width=16, stride=2),
    StageSpec("convnext", depth=2, width=16, stride=1),
    StageSpec("interleaved", depth=2, width=16, stride=1, heads=2, attention="rel", window=6),
    StageSpec("interleaved", depth=1, width=16, stride=1, heads=2, attention="window", window=4),
    StageSpec("transformer", depth=2, width=16, stride=2, heads=2, attention="rel", window=6),
    StageSpec("transformer", depth=1, width=16, stride=1, heads=2, attention="global"),
], ids=lambda s: f"{s.block}-{s.attention}")
def test_1d_block_equals_2d_block_on_a_line(stage):
    """A 1-D stage computes what the 2-D stage computes on a 1 x L map."""
    torch.manual_seed(0)
    kw = dict(stem=StemSpec(kind="conv", widths=(8,), strides=(1,), kernel=3), stages=(stage,))
    m2 = hybridnas.build_model(ArchSpec(**kw, dims=2), num_classes=2, in_chans=3).eval()
    m1 = hybridnas.build_model(ArchSpec(**kw, dims=1), num_classes=2, in_chans=3).eval()
    _line_weights(m2.state_dict(), m1)
    x = torch.randn(2, 3, 11)
    f1 = m1.forward_features(x)
    f2 = m2.forward_features(x.unsqueeze(2))
    assert f2.shape[2] == 1
    torch.testing.assert_close(f1, f2[:, :, 0], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------
# Multi-asset specs
# --------------------------------------------------------------------------

def test_panel_spec_round_trips_and_is_canonical():
    spec = panel_spec("time")
    assert ArchSpec.from_yaml(spec.to_yaml()) == spec
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert spec.to_dict()["assets"] is True
    # attention stages of a multi-asset spec name their axis ('time' by default)
    implicit = dataclasses.replace(spec.stages[-1], axis=None)
    assert spec.replace(stages=spec.stages[:-1] + (implicit,)).arch_id == spec.arch_id
    # image specs do not carry the field, so their ids did not change
    assert "assets" not in hybridnas.get_spec("coatnet_0").to_dict()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.replace(dims=2), "assets=true needs dims=1"),
    (lambda s: s.replace(assets=False), "needs a multi-asset spec"),
    (lambda s: s.replace(stages=(s.stages[0].__class__("mbconv", 1, 16, axis="time"),)),
     "is not a parameter of block 'mbconv'"),
    (lambda s: s.replace(stages=s.stages[:-1] + (dataclasses.replace(s.stages[-1], stride=2),)),
     "stride=2 must be 1 with axis='assets'"),
    (lambda s: s.replace(stages=s.stages + (StageSpec("mbconv", 1, 32, stride=1),)),
     "averaged time away"),
    (lambda s: s.replace(stages=s.stages[:-1] + (dataclasses.replace(s.stages[-1], axis="up"),)),
     "axis='up' is not one of"),
    (lambda s: s.replace(head=HeadSpec(pool="none")), "head.pool='none' must be 'avg'"),
])
def test_panel_spec_validation_names_field(change, message):
    with pytest.raises(SpecError, match=message):
        change(panel_spec("assets")).validate()


def test_resolution_check_of_panels_uses_time_axis():
    spec = hybridnas.get_spec("financial_hybrid")
    assert spec.problems((20, 60)) == [] and spec.problems(60) == []
    assert "below 1x1" in spec.problems((20, 4))[0]


# --------------------------------------------------------------------------
# PanelNet and the seed's FinancialHybrid
# --------------------------------------------------------------------------

def _copy_seed_weights(seed, net):
    """Load SeedFinancialHybrid's weights into the financial_hybrid PanelNet."""
    sd = seed.state_dict()
    out = {}
    for k, v in sd.items():
        if k.startswith("temporal_conv."):
            out["stem." + k.split(".", 1)[1]] = v
        elif k.startswith("cross_attention.layers."):
            i, rest = k.split(".")[2], ".".join(k.split(".")[3:])
            rest = {"self_attn.in_proj_weight": "mixer.attn.qkv.weight",
                    "self_attn.in_proj_bias": "mixer.attn.qkv.bias",
                    "self_attn.out_proj.weight": "mixer.attn.proj.weight",
                    "self_attn.out_proj.bias": "mixer.attn.proj.bias",
                    "linear1.weight": "mlp.fc1.weight", "linear1.bias": "mlp.fc1.bias",
                    "linear2.weight": "mlp.fc2.weight", "linear2.bias": "mlp.fc2.bias"}.get(rest, rest)
            out[f"stages.0.blocks.{i}.{rest}"] = v
        elif k.startswith("norm."):
            out["head_norm." + k.split(".", 1)[1]] = v
        elif k.startswith("head."):
            out["fc." + k.split(".", 1)[1]] = v
    net.load_state_dict(out)


@pytest.mark.parametrize("n_features, n_assets", [(6, 20), (11, 7)])
def test_financial_hybrid_matches_seed_module(n_features, n_assets):
    from hybridnas.temporal.model import PanelNet, SeedFinancialHybrid

    torch.manual_seed(0)
    seed = SeedFinancialHybrid(n_features, n_assets, 50).eval()
    net = hybridnas.create_model("financial_hybrid", num_classes=1, in_chans=n_features).eval()
    assert isinstance(net, PanelNet)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in seed.parameters())
    _copy_seed_weights(seed, net)
    for m in net.modules():  # the seed's LayerNorms use eps 1e-5, the spec's 1e-6
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-5
    x = torch.randn(3, n_assets, 50, n_features)  # the seed's layout
    with torch.no_grad():
        expected = seed(x)
        got = net(x.permute(0, 3, 1, 2))  # channels-first panel
    assert got.shape == (3, n_assets, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("axis", ["time", "assets", "both"])
def test_panel_net_forward_backward_and_asset_order(axis):
    torch.manual_seed(0)
    spec = panel_spec(axis if axis != "both" else "assets", both_stage=axis == "both")
    net = hybridnas.build_model(spec, num_classes=3, in_chans=4)
    x = torch.randn(2, 4, 6, 24, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 6, 3)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    net.eval()
    perm = torch.randperm(6)
    with torch.no_grad():
        base = net(x)
        # permuting the assets permutes the predictions (no mixing by position)
        torch.testing.assert_close(net(x[:, :, perm]), base[:, perm], atol=1e-5, rtol=1e-4)
        y = x.clone()
        y[:, :, 0] += 1.0  # change asset 0 only
        moved = (net(y) - base).abs().amax(dim=(0, 2))
    if axis == "time":  # per-asset model: the other assets do not see asset 0
        assert moved[0] > 0 and torch.all(moved[1:] == 0)
    else:  # attention across assets: they do
        assert torch.all(moved > 0)


def test_panel_net_cost_and_single_series():
    c = hybridnas.cost("financial_hybrid", (6, 2, 30), num_classes=3, in_chans=6)
    c2 = hybridnas.cost("financial_hybrid", (6, 4, 30), num_classes=3, in_chans=6)
    assert c.params == c2.params and 1.9 < c2.macs / c.macs < 2.1  # per-asset work doubles
    net = hybridnas.create_model("financial_hybrid", num_classes=3, in_chans=6)
    assert net(torch.randn(2, 6, 60)).shape == (2, 1, 3)


# --------------------------------------------------------------------------
# Features: no look-ahead
# --------------------------------------------------------------------------

@pytest.mark.parametrize("with_volume", [False, True])
def test_features_never_look_ahead(with_volume):
    prices = random_prices(300, 4)
    volumes = np.random.default_rng(1).uniform(1e5, 1e6, prices.shape) if with_volume else None
    base = daily_features(prices, volumes)
    assert base.shape == (300, len(FEATURES) + 2 * with_volume, 4)
    rng = np.random.default_rng(2)
    for t in (0, 5, 59, 150, 298):
        p2 = prices.copy()
        p2[t + 1:] *= rng.uniform(0.5, 2.0, p2[t + 1:].shape)  # perturb the future only
        v2 = None
        if with_volume:
            v2 = volumes.copy()
            v2[t + 1:] *= 3.0
        moved = daily_features(p2, v2)
        np.testing.assert_array_equal(moved[:t + 1], base[:t + 1])
        assert not np.array_equal(moved[t + 1:], base[t + 1:])  # the check can fail
        p3 = prices.copy()
        p3[t] *= 1.1  # a change at day t shows at day t (day 0 has no history to differ from)
        assert t == 0 or not np.array_equal(daily_features(p3, volumes)[t], base[t])


def test_feature_values():
    prices = random_prices(100, 2)
    f = daily_features(prices)
    logp = np.log(prices)
    t = 80
    np.testing.assert_allclose(f[t, 0], logp[t] - logp[t - 1], rtol=1e-5)
    np.testing.assert_allclose(f[t, 2], logp[t] - logp[t - 20], rtol=1e-5)
    r = np.diff(logp, axis=0)
    np.testing.assert_allclose(f[t, 3], r[t - 20:t].std(axis=0), rtol=1e-3)
    np.testing.assert_allclose(f[t, 5], logp[t] - logp[t - 19:t + 1].mean(axis=0), rtol=1e-4,
                               atol=1e-6)
    target = forward_returns(prices, (1, 5))
    np.testing.assert_allclose(target[t, :, 1], logp[t + 5] - logp[t])
    assert np.isnan(target[-1, :, 0]).all() and np.isnan(target[-5:, :, 1]).all()


def test_panel_inputs_never_look_ahead():
    from hybridnas.temporal.data import PanelDataset

    prices = random_prices(200, 3)
    t = 150
    future = prices.copy()
    future[t + 1:] *= 1.5
    days = np.arange(WARMUP_DAYS + 30, t + 1)

    def inputs(p):
        ds = PanelDataset(torch.from_numpy(daily_features(p)), torch.zeros(200, 3, 1), days, 30)
        return ds.batch(torch.arange(len(days)))[0]

    torch.testing.assert_close(inputs(future), inputs(prices), rtol=0, atol=0)
    win = normalise_windows(torch.randn(2, 3, 4, 30) * 5 + 2)
    torch.testing.assert_close(win.mean(-1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------
# Walk-forward splits
# --------------------------------------------------------------------------

@pytest.mark.parametrize("folds, horizon, gap", [(1, 20, None), (3, 5, None), (4, 20, 30)])
def test_walk_forward_split_boundaries(folds, horizon, gap):
    splits = walk_forward_splits(3000, first=100, horizon=horizon, val_days=200, test_days=150,
                                 folds=folds, gap=gap)
    assert len(splits) == folds
    gap = horizon if gap is None else gap
    for s in splits:
        assert s.train.start == 100 and s.test.stop <= 3000 - horizon  # targets exist
        assert s.train.stop <= s.val.start and s.val.stop <= s.test.start  # ordered
        assert s.val.start - s.train.stop >= gap and s.test.start - s.val.stop >= gap
        # the last training target ends before the first validation day
        assert (s.train.stop - 1) + horizon < s.val.start
        assert (s.val.stop - 1) + horizon < s.test.start
        assert not set(s.train) & set(s.val) and not set(s.val) & set(s.test)
        assert len(s.val) == 200 and len(s.test) == 150
    for a, b in zip(splits, splits[1:]):  # walk forward, expanding training block
        assert b.test.start > a.test.start and len(b.train) > len(a.train)


def test_walk_forward_split_errors():
    with pytest.raises(UserError, match="gap=5 must be at least"):
        walk_forward_splits(3000, first=100, horizon=20, val_days=100, test_days=100, gap=5)
    with pytest.raises(UserError, match="training days"):
        walk_forward_splits(500, first=100, horizon=20, val_days=200, test_days=150)


# --------------------------------------------------------------------------
# Returns task, datasets, baselines
# --------------------------------------------------------------------------

def test_information_coefficient():
    from hybridnas.temporal.task import ReturnsTask

    task = ReturnsTask((1, 5))
    y = torch.randn(50, 8, 2)
    assert task.metrics(y, y)["ic"] == pytest.approx(1.0)
    assert task.metrics(-y, y)["ic"] == pytest.approx(-1.0)
    m = task.metrics(torch.zeros_like(y), y)
    assert m["ic"] == 0.0 and m["mse"] == pytest.approx(float(y.square().mean()), rel=1e-5)
    assert set(m) >= {"ic", "mse", "loss", "ic_1d", "ic_5d"}
    noisy = task.metrics(y + 3 * torch.randn_like(y), y)["ic"]
    assert 0.0 < noisy < 0.9
    assert task.metric_name == "val_ic" and task.maximize


def test_panel_bundle_shapes_and_scaling():
    from hybridnas.temporal.data import panel_bundle

    prices = random_prices(900, 5)
    b = panel_bundle(prices, lookback=30, horizons="1,5", val_days=100, test_days=100)
    assert b.input_shape == (len(FEATURES), 5, 30) and b.num_outputs == 2
    assert b.task.metric_name == "val_ic"
    x, y = b.train.batch(torch.arange(len(b.train)))
    assert x.shape == (len(b.train), len(FEATURES), 5, 30) and y.shape == (len(b.train), 5, 2)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()
    torch.testing.assert_close(y.std(dim=(0, 1)), torch.ones(2), atol=1e-2, rtol=0)
    assert int(b.train.days.max()) + 5 < int(b.val.days.min())
    sub = panel_bundle(prices, lookback=30, horizons=(1, 5), val_days=100, test_days=100, subset=50)
    assert len(sub.train) == 50 and int(sub.train.days[-1]) == int(b.train.days[-1])
    with pytest.raises(UserError, match="horizons"):
        panel_bundle(prices, horizons="5,1")


def test_sp500_dataset_registered_and_real():
    pytest.importorskip("skfolio")
    from hybridnas.data import list_datasets, load_dataset

    assert "sp500-20" in list_datasets()
    b = load_dataset("sp500-20", lookback=40, horizons="1,5,20")
    assert b.input_shape == (len(FEATURES), 20, 40) and b.num_outputs == 3
    assert len(b.train) > 6000 and len(b.val) == 504 and len(b.test) == 504
    assert b.dates[int(b.test.days[-1])].year == 2022
    x, y = b.val[0]
    assert x.shape == (len(FEATURES), 20, 40) and torch.isfinite(y).all()


def test_sp500_without_skfolio_says_how_to_install(monkeypatch):
    import sys

    from hybridnas.temporal.data import load_sp500_prices

    monkeypatch.setitem(sys.modules, "skfolio", None)
    monkeypatch.setitem(sys.modules, "skfolio.datasets", None)
    with pytest.raises(UserError, match=r"hybridnas\[finance\]"):
        load_sp500_prices()


def test_baselines_write_csv(tmp_path):
    import pandas as pd

    from hybridnas.temporal.baselines import compute_baselines
    from hybridnas.temporal.data import panel_bundle

    # a planted signal: the 1-day return continues yesterday's (scaled) move
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, (600, 6))
    for t in range(1, 600):
        r[t] += 0.5 * r[t - 1]
    b = panel_bundle(100 * np.exp(np.cumsum(r, axis=0)), lookback=25, horizons=(1,),
                     val_days=60, test_days=60)
    rows = compute_baselines(b, epochs=1, batch_size=8, max_batches_per_epoch=2,
                             latency_repeats=2, run_dir=str(tmp_path))
    table = pd.read_csv(tmp_path / "baselines.csv")
    assert list(table["name"]) == ["zero", "mean", "ridge", "seed_financial_hybrid"]
    by = {row["name"]: row for row in rows}
    assert by["zero"]["val_ic"] == 0.0
    assert by["ridge"]["val_ic"] > 0.2  # the linear model finds the planted signal
    assert by["ridge"]["val_mse"] < by["zero"]["val_mse"]
    assert by["seed_financial_hybrid"]["params"] > 0
    assert {"val_ic", "val_mse", "test_ic", "test_mse", "latency_ms", "metric"} <= set(table)
