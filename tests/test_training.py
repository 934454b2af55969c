"""The training loop and ``hybridnas train``: learning on digits, early stop,
resume, NaN and OOM detection, evaluation paths, the CLI end to end."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import hybridnas
from hybridnas.errors import UserError
from hybridnas.cli import main
from hybridnas.data import ArrayDataset, DatasetBundle, Task, load_dataset
from hybridnas.spec import ArchSpec, HeadSpec, StageSpec, StemSpec
from test_data import _one_thread  # noqa: F401  (autouse: one torch thread)
from hybridnas.training import (
    EpochResult, NonFiniteLoss, OutOfMemory, TrainingError, evaluate, fit, iterate_batches,
)

# a conv stage and an attention stage: 16x16 -> 8x8 -> 4x4 tokens, ~17k params
TINY = ArchSpec(
    stem=StemSpec(kind="conv", widths=(16,), norm="bn", act="gelu"),
    stages=(StageSpec("mbconv", depth=1, width=16, stride=1, expansion=2.0),
            StageSpec("transformer", depth=1, width=32, stride=2, head_dim=16, attention="global")),
    head=HeadSpec(pool="avg", norm="ln"),
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", resolution=16)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return hybridnas.build_model(TINY, num_classes=10, in_chans=1)


def test_fit_learns_digits_well_above_chance(digits):
    seen = []
    result = fit(tiny_model(), digits, epochs=4, batch_size=64, lr=3e-3, warmup_epochs=0.5,
                 device="cpu", on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2, 3, 4]
    assert all(isinstance(r, EpochResult) and r.images_per_sec > 0 and r.seconds > 0 for r in seen)
    assert set(seen[-1].val_metrics) == {"val_accuracy", "val_loss"}
    assert result.best_metric == max(r.metric for r in seen)
    assert result.best_metric > 0.5  # chance is 0.1
    assert result.epochs == 4 and result.full_fidelity and not result.stopped_early
    assert result.curve == [r.metric for r in seen]
    assert seen[-1].train_loss < seen[0].train_loss


def test_on_epoch_false_stops_and_max_batches_caps(digits):
    seen = []

    def stop_after_two(r):
        seen.append(r)
        return r.epoch < 2

    result = fit(tiny_model(), digits, epochs=5, batch_size=32, device="cpu",
                 max_batches_per_epoch=3, on_epoch=stop_after_two)
    assert result.epochs == 2 and result.stopped_early and not result.full_fidelity
    assert [r.batches for r in seen] == [3, 3]


def test_seeded_runs_are_identical(digits):
    a = fit(tiny_model(1), digits, epochs=1, batch_size=64, max_batches_per_epoch=5, device="cpu", seed=3)
    b = fit(tiny_model(1), digits, epochs=1, batch_size=64, max_batches_per_epoch=5, device="cpu", seed=3)
    c = fit(tiny_model(1), digits, epochs=1, batch_size=64, max_batches_per_epoch=5, device="cpu", seed=4)
    assert a.history[0].train_loss == b.history[0].train_loss
    assert a.history[0].train_loss != c.history[0].train_loss


def test_resume_continues_where_it_stopped(digits, tmp_path):
    kw = dict(epochs=3, batch_size=64, max_batches_per_epoch=4, device="cpu", seed=0)
    straight = tiny_model()
    fit(straight, digits, **kw)

    interrupted = tiny_model()
    first = fit(interrupted, digits, checkpoint_dir=str(tmp_path), on_epoch=lambda r: r.epoch < 2, **kw)
    assert first.epochs == 2 and (tmp_path / "last.pt").exists()

    resumed_model = tiny_model(seed=99)  # different init: the checkpoint must overwrite it
    resumed = fit(resumed_model, digits, checkpoint_dir=str(tmp_path), resume=True, **kw)
    assert resumed.resumed_from == 2 and resumed.epochs == 3
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    for (name, p), q in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-5), name

    again = fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), resume=True, **kw)
    assert again.epochs == 3 and again.resumed_from == 3  # nothing left to train

    other = hybridnas.build_model(TINY.replace(stages=TINY.stages[:1]), num_classes=10, in_chans=1)
    with pytest.raises(UserError, match="last.pt: cannot resume"):
        fit(other, digits, checkpoint_dir=str(tmp_path), resume=True, **kw)


def test_resume_reports_the_restored_history_and_save_errors_can_be_tolerated(digits, tmp_path,
                                                                              monkeypatch):
    import errno

    from hybridnas import training

    kw = dict(epochs=3, batch_size=64, max_batches_per_epoch=2, device="cpu", seed=0)
    fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), on_epoch=lambda r: r.epoch < 2, **kw)
    restored = []
    fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), resume=True,
        on_resume=restored.extend, **kw)
    assert [h.epoch for h in restored] == [1, 2]  # told before training goes on

    def full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(training, "_save", full)
    with pytest.raises(OSError):  # by default a failed save is an error ...
        fit(tiny_model(), digits, checkpoint_dir=str(tmp_path / "b"), **kw)
    errors = []  # ... or, when asked, training goes on without checkpoints
    result = fit(tiny_model(), digits, checkpoint_dir=str(tmp_path / "c"),
                 on_checkpoint_error=errors.append, **kw)
    assert result.epochs == 3 and len(errors) == 1 and errors[0].errno == errno.ENOSPC


class _WritesMarker:
    """Unpickling this calls ``open(marker, 'w')``: what a crafted checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_checkpoint_cannot_run_code(digits, tmp_path):
    kw = dict(epochs=2, batch_size=64, max_batches_per_epoch=2, device="cpu", seed=0)
    fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), on_epoch=lambda r: False, **kw)
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # a real one loads safely
    marker = tmp_path / "code-ran"
    state["history"] = _WritesMarker(marker)
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(UserError, match=r"last.pt: cannot resume from it \(refused: .*open"):
        fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), resume=True, **kw)
    assert not marker.exists()


def test_damaged_checkpoint_is_a_user_error(digits, tmp_path):
    kw = dict(epochs=2, batch_size=64, max_batches_per_epoch=2, device="cpu", seed=0)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="last.pt: cannot resume"):
        fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), resume=True, **kw)
    torch.save({"model": {}, "epoch": "two"}, tmp_path / "last.pt")
    with pytest.raises(UserError, match="last.pt: cannot resume"):
        fit(tiny_model(), digits, checkpoint_dir=str(tmp_path), resume=True, **kw)


class _Linear(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _bundle(x, y, task):
    ds = ArrayDataset(x, y)
    return DatasetBundle("t", ds, ds, ds, tuple(x.shape[1:]), 10, task)


def test_nan_loss_raises_nonfinite(digits):
    x = digits.train.x[:128].clone()
    x[70] = float("nan")
    bundle = _bundle(x, digits.train.y[:128], digits.task)
    with pytest.raises(NonFiniteLoss, match="epoch 1"):
        fit(_Linear(256, 10), bundle, epochs=1, batch_size=32, device="cpu", seed=0)
    assert issubclass(NonFiniteLoss, TrainingError)


def test_cuda_oom_becomes_outofmemory(digits):
    class Hungry(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")

    with pytest.raises(OutOfMemory, match="batch size 16"):
        fit(Hungry(), digits, epochs=1, batch_size=16, device="cpu")


class _MSETask(Task):
    """A regression task as another room would write one (the protocol is small)."""

    name = "regression"
    metric_name = "val_neg_mse"
    maximize = True

    def loss(self, outputs, targets, label_smoothing=0.0):
        return ((outputs.squeeze(1) - targets) ** 2).mean()

    def metrics(self, outputs, targets):
        mse = float(((outputs.squeeze(1) - targets) ** 2).mean())
        return {"neg_mse": -mse, "loss": mse}


def test_custom_task_and_generic_dataset_path():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    ds = torch.utils.data.TensorDataset(x, y)  # no .batch(): goes through a DataLoader
    bundle = DatasetBundle("reg", ds, ds, ds, (4,), 1, _MSETask())
    result = fit(_Linear(4, 1), bundle, epochs=6, batch_size=32, lr=5e-2, weight_decay=0.0,
                 warmup_epochs=0, device="cpu")
    assert result.metric_name == "val_neg_mse"
    first = result.history[0].val_metrics["val_neg_mse"]
    assert math.isfinite(first) and result.best_metric > first
    assert result.best_metric > first / 10  # y is an exact linear function of x


def test_evaluate_dataset_loader_and_prefix(digits):
    model = tiny_model()
    a = evaluate(model, digits.val, digits.task, "cpu")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(digits.val.x, digits.val.y),
                                         batch_size=50)
    b = evaluate(model, loader, digits.task, "cpu", prefix="test_")
    assert set(a) == {"val_accuracy", "val_loss"} and set(b) == {"test_accuracy", "test_loss"}
    assert a["val_accuracy"] == pytest.approx(b["test_accuracy"])
    assert a["val_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    assert model.training  # evaluate restores the mode it found


def test_iterate_batches_covers_every_item_once():
    ds = ArrayDataset(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in iterate_batches(ds, 3, torch.device("cpu"), shuffle=True, generator=g)])
    assert sorted(ys.tolist()) == list(range(10))
    dropped = list(iterate_batches(ds, 3, torch.device("cpu"), drop_last=True))
    assert [len(y) for _, y in dropped] == [3, 3, 3]


def test_train_cli_end_to_end_on_digits(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    TINY.save(str(spec_path))
    out = tmp_path / "run"
    args = ["train", str(spec_path), "--dataset", "digits", "--epochs", "1", "--resolution", "16",
            "--batch-size", "64", "--lr", "3e-3", "--out", str(out), "--threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "epoch   1/1" in text and "test_accuracy" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["test_accuracy"] <= 1.0 and len(metrics["history"]) == 1
    model = hybridnas.load(str(out))
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)

    # an existing run is never overwritten silently; --resume continues it
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    args[args.index("--epochs") + 1] = "2"
    assert main(args + ["--resume"]) == 0
    text = capsys.readouterr().out
    assert "epoch   2/2" in text and "epoch   1/2" not in text
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2

    # the output folder is an exported model: it retrains, at its own resolution
    again = tmp_path / "again"
    assert main(["train", str(out), "--dataset", "digits", "--epochs", "1",
                 "--max-batches-per-epoch", "2", "--out", str(again)]) == 0
    assert json.loads((again / "meta.json").read_text())["resolution"] == 16


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml"), "--dataset", "digits"]) == 2
    assert "nope.yaml: no such spec file" in capsys.readouterr().err
    assert main(["train", "no_such_arch", "--dataset", "digits"]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    # rejected before any training: too many stride-2 stages for 16x16 inputs
    assert main(["train", "coatnet_0", "--dataset", "digits", "--resolution", "16",
                 "--out", str(tmp_path / "c")]) == 2
    assert "stride=2 downsamples" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    spec_path = tmp_path / "tiny.yaml"
    TINY.save(str(spec_path))
    assert main(["train", str(spec_path), "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cifar10 not found" in err and err.count("\n") == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_with_mixed_precision(digits):
    for amp in ("bf16", "fp16"):
        result = fit(tiny_model(), digits, epochs=3, batch_size=64, lr=3e-3, device="cuda", amp=amp)
        assert result.device.startswith("cuda") and result.best_metric > 0.4, amp
