"""Trial checkpoints: save/load round trip, errors, pruning to the front."""
from __future__ import annotations

import json

import pytest
import torch

from hybridnas.errors import UserError
from hybridnas.export import (
    front_trial_ids,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    trial_checkpoint_dir,
)

from hybridnas.export.testing import TINY_SPECS, make_run


def test_round_trip_gives_identical_outputs(tmp_path):
    spec = TINY_SPECS["cctt"]
    from hybridnas import build_model

    model = build_model(spec, num_classes=5, in_chans=1).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(x)
    folder = save_checkpoint(tmp_path / "ck", model, spec,
                             {"resolution": 16, "dataset": "digits", "metric": float("nan")})
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.safetensors", "spec.yaml"]
    loaded, spec2, meta = load_checkpoint(folder)
    assert spec2 == spec and not loaded.training
    assert meta["num_classes"] == 5 and meta["in_chans"] == 1 and meta["resolution"] == 16
    assert meta["metric"] is None  # NaN is written as strict JSON null
    assert meta["arch_id"] == spec.arch_id
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_save_overwrites_and_takes_spec_from_model(tmp_path):
    from hybridnas import build_model

    a = build_model(TINY_SPECS["cctt"], num_classes=3)
    b = build_model(TINY_SPECS["convnext"], num_classes=3)
    save_checkpoint(tmp_path, a, meta={"resolution": 16})
    save_checkpoint(tmp_path, b, meta={"resolution": 16})
    _, spec, _ = load_checkpoint(tmp_path)
    assert spec == TINY_SPECS["convnext"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_load_errors_are_user_errors(tmp_path):
    from hybridnas import build_model

    with pytest.raises(UserError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "missing")
    folder = save_checkpoint(tmp_path / "ck", build_model(TINY_SPECS["cctt"], num_classes=3))
    meta = json.loads((folder / "meta.json").read_text())
    meta["num_classes"] = 7
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="do not fit"):
        load_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="did not keep"):
        load_checkpoint(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(UserError, match="never finished"):
        load_checkpoint(folder)


def test_prune_keeps_the_front(tmp_path):
    run = make_run(tmp_path / "run")
    front = set(front_trial_ids(run))
    # 0: best metric, 1: fastest, 2: dominated, 3: failed, 4: running,
    # 5: early-stopped (better on both, but low fidelity)
    assert front == {0, 1}
    removed = prune_checkpoints(run, keep="pareto")
    assert sorted(removed) == [2, 5]
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert left == ["trial_0", "trial_1", "trial_4"]  # running trial untouched
    assert prune_checkpoints(run, keep="all") == []
    assert sorted(prune_checkpoints(run, keep="none")) == [0, 1]
    assert trial_checkpoint_dir(run, 4).exists()


def test_prune_prefers_pareto_csv_and_checks_keep(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "pareto.csv").write_text("trial_id,metric,latency_ms\n2,0.5,3.0\n")
    assert front_trial_ids(run) == [2]
    with pytest.raises(UserError, match="keep='best'"):
        prune_checkpoints(run, keep="best")
    with pytest.raises(UserError, match="no such run directory"):
        prune_checkpoints(tmp_path / "nope", keep="pareto")


def test_front_fallback_matches_the_search_rule(tmp_path):
    from hybridnas.export.checkpoint import read_trials
    from hybridnas.rundir import front_of

    run = make_run(tmp_path / "run")
    df = read_trials(run)
    ids = sorted(int(t) for t in front_of(df, ["metric", "latency_ms"], [True, False])["trial_id"])
    assert ids == sorted(front_trial_ids(run)) == [0, 1]
