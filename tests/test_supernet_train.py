"""Supernet training: sandwich steps, checkpoints that resume, Ray Train."""
from __future__ import annotations

import json

import pytest
import torch

from hybridnas.data import load_dataset
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
