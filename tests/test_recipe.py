"""The search's default recipe trains every named reference of stagewise,
scaled to the quickstart proxy, well above chance (issue 13, item 0: with
no warm-up and no label smoothing coatnet_0 trained to chance).

Each reference goes through the real trial function (``search_trial``) with
the settings configs/quickstart.yaml gives a search, on three seeds; only
``tune.report`` is caught instead of going to a Tune driver."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)


def _quickstart():
    from hybridnas.data import load_dataset
    from hybridnas.errors import UserError
    from hybridnas.search.config import SearchConfig

    cfg = SearchConfig.from_mapping(yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text()))
    try:
        load_dataset(cfg.dataset, resolution=cfg.resolution, subset=cfg.subset)
    except UserError:  # as the search does without Debian's Fashion-MNIST
        cfg.dataset = cfg.dataset_fallback
    return cfg


def _trial(cfg, spec, seed: int, monkeypatch) -> dict:
    import dataclasses

    from ray import tune

    from hybridnas.search import trial as trial_module
    from hybridnas.search.settings import TrainSettings, TrialLatency, TrialSettings

    cfg = dataclasses.replace(cfg, seed=seed)
    data = {"name": cfg.dataset, "data_dir": None, "resolution": cfg.resolution,
            "subset": cfg.subset, "seed": seed, "val_fraction": cfg.val_fraction}
    settings = TrialSettings(data=data, num_outputs=10, epochs=cfg.epochs, threads=2,
                             keep_checkpoints="none", train=TrainSettings.from_config(cfg),
                             latency=TrialLatency(repeats=3, warmup=1))
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda state: reports.append(dict(state)))
    monkeypatch.setattr(trial_module, "_node_id", lambda: "")  # it would start a Ray here
    trial_module.search_trial({"spec": spec.to_dict(), "trial_id": 0, "settings": settings.to_dict()})
    return reports[-1]


def _references(cfg) -> dict:
    from hybridnas import spaces

    space = spaces.load(cfg.space, resolution=cfg.resolution, **cfg.space_options)
    return space.references(cfg.resolution)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("name", list(_references(_quickstart())))
def test_quickstart_recipe_trains_every_reference(name, monkeypatch):
    pytest.importorskip("ray")
    cfg = _quickstart()
    spec = _references(cfg)[name]
    chance = 1.0 / 10
    for seed in SEEDS:
        last = _trial(cfg, spec, seed, monkeypatch)
        assert last["status"] == "COMPLETE", last["error"]
        assert last["metric"] > 2 * chance, (name, seed, last["metric"])


def test_recipe_options_are_checked_and_reach_the_trial():
    from hybridnas.errors import UserError
    from hybridnas.search.config import SearchConfig
    from hybridnas.search.settings import TrainSettings

    cfg = _quickstart()
    train = TrainSettings.from_config(cfg)
    assert (train.warmup_epochs, train.label_smoothing, train.grad_clip) == (
        cfg.warmup_epochs, cfg.label_smoothing, cfg.grad_clip)
    assert TrainSettings.from_config(SearchConfig(grad_clip=0.0, lr=0.01)).lr == 0.01
    with pytest.raises(UserError, match="grad_clip=-1"):
        SearchConfig(grad_clip=-1).check()
    with pytest.raises(UserError, match="label_smoothing=1.5"):
        SearchConfig.from_mapping({"label_smoothing": 1.5}, source="x.yaml")
