"""Supernet training: sandwich steps, checkpoints that resume, Ray Train."""
from __future__ import annotations

import json

import pytest
import torch

from hybridnas.data import load_dataset
from hybridnas.errors import UserError
from hybridnas.supernet import Supernet
from hybridnas.supernet.train import (CHECKPOINT_STATE, SandwichSettings, load_checkpoint,
                                      train_supernet, train_supernet_ray)

NET = dict(space="interleaved", resolution=8, width_mult=0.125, depth_mult=0.25)
FAST = dict(batch_size=32, max_batches_per_epoch=2, bn_batches=1, max_val_batches=1,
            random_subnets=1, quiet=True)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", resolution=8, subset=300)


def _net(bundle) -> Supernet:
    torch.manual_seed(0)
    return Supernet(num_classes=bundle.num_outputs, in_chans=bundle.input_shape[0], **NET)


def test_sandwich_training_changes_weights_and_resumes(digits, tmp_path):
    net = _net(digits)
    before = {k: v.detach().clone() for k, v in net.weights.items()}
    history = train_supernet(net, digits, SandwichSettings(epochs=1, **FAST), tmp_path, log=None)
    assert [h.epoch for h in history] == [1]
    assert history[0].loss_largest > 0 and 0 <= history[0].acc_largest <= 1
    changed = [k for k in before if not torch.equal(before[k], net.weights[k].detach())]
    assert changed
    state = json.loads((tmp_path / CHECKPOINT_STATE).read_text())
    assert state["epoch"] == 1

    # A fresh process resumes: finished epochs are kept, not redone.
    again = _net(digits)
    load_checkpoint(tmp_path, again)
    assert all(torch.equal(net.weights[k].detach(), again.weights[k].detach()) for k in changed)
    more = train_supernet(_net(digits), digits, SandwichSettings(epochs=2, **FAST), tmp_path,
                          log=None)
    assert [h.epoch for h in more] == [1, 2]
    assert more[0].loss_largest == history[0].loss_largest


def test_ray_train_with_two_cpu_workers(digits, tmp_path, ray_session):
    kwargs = dict(num_classes=digits.num_outputs, in_chans=digits.input_shape[0], **NET)
    history = train_supernet_ray(kwargs, digits, SandwichSettings(epochs=1, **FAST), tmp_path,
                                 num_workers=2, use_gpu=False)
    assert [h.epoch for h in history] == [1]
    net = Supernet(**kwargs)
    assert load_checkpoint(tmp_path, net)["epoch"] == 1


def test_stage_gap_compares_leading_channels_at_the_smaller_map():
    from hybridnas.supernet.train import _stage_gap

    teacher = [torch.randn(4, 16, 8, 8), torch.randn(4, 32, 2, 2)]
    # the teacher's own leading channels, at its map size or pooled smaller: no gap
    same = [teacher[0][:, :8], torch.nn.functional.avg_pool2d(teacher[1][:, :16], 2)]
    assert float(_stage_gap(same, teacher)) < 1e-10
    # a student map larger than the teacher's is pooled down to it
    big = [teacher[0][:, :8].repeat_interleave(2, 2).repeat_interleave(2, 3)]
    assert float(_stage_gap(big, teacher[:1])) < 1e-10
    other = [torch.randn(4, 8, 8, 8), torch.randn(4, 16, 1, 1)]
    assert float(_stage_gap(other, teacher)) > 0.5
    # a student wider than the teacher, or tokens (B, N, C), is not compared
    assert float(_stage_gap([torch.randn(4, 32, 8, 8)], teacher[:1])) == 0.0
    assert float(_stage_gap([torch.randn(4, 5, 8)], [torch.randn(4, 5, 16)])) == 0.0


def test_stage_inputs_from_the_teacher_feed_each_stage_apart(digits):
    from hybridnas.supernet.train import _forward

    net = _net(digits)
    net.eval()
    x = torch.randn(4, *digits.input_shape)
    with torch.no_grad():
        _, own = _forward(net, net.largest, x, True)
        # the teacher fed its own outputs computes what it computes
        _, fed = _forward(net, net.largest, x, True, own)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(own, fed))
        # changing the input given to stage 1 changes stage 1's output only
        given = [t.clone() for t in own]
        given[1] = torch.randn_like(given[1])
        _, moved = _forward(net, net.largest, x, True, given)
    assert torch.equal(moved[0], own[0]) and torch.allclose(moved[1], own[1], atol=1e-6)
    assert not torch.allclose(moved[2], own[2], atol=1e-3)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(moved[3:], own[3:]))


@pytest.mark.parametrize("inputs", ["own", "teacher"])
def test_stage_distillation_trains(digits, tmp_path, inputs):
    net = _net(digits)
    before = {k: v.detach().clone() for k, v in net.weights.items()}
    history = train_supernet(net, digits, SandwichSettings(
        epochs=1, stage_distill=1.0, stage_inputs=inputs, **FAST), tmp_path, log=None)
    assert history[0].loss_distill > 0
    assert any(not torch.equal(before[k], net.weights[k].detach()) for k in before)
    with pytest.raises(UserError, match="stage inputs"):
        SandwichSettings(stage_inputs="neighbour")


def test_search_config_sets_stage_distillation():
    from hybridnas.search.config import SearchConfig

    assert SearchConfig.from_mapping({}).sandwich_stage_distill == 0.0
    assert SearchConfig.from_mapping({"sandwich_stage_distill": 0.5}).sandwich_stage_distill == 0.5
    with pytest.raises(UserError, match="sandwich_stage_distill=-1"):
        SearchConfig.from_mapping({"sandwich_stage_distill": -1.0})
