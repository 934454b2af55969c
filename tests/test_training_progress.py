"""Progress inside an epoch: fit's on_batch hook, the rate-limited line, the
tqdm bar, and `hybridnas train` choosing between them (and --quiet)."""
from __future__ import annotations

import io

import pytest

from hybridnas import training_progress
from hybridnas.cli import main
from hybridnas.training import fit
from hybridnas.training_progress import (
    BatchProgress,
    ProgressBar,
    ProgressLine,
    epoch_progress,
    format_seconds,
)
from test_data import _one_thread  # noqa: F401  (autouse: one torch thread)
from test_training import TINY, digits, tiny_model  # noqa: F401  (digits: a fixture)


def test_fit_reports_every_batch(digits):  # noqa: F811
    seen = []
    fit(tiny_model(), digits, epochs=2, batch_size=32, max_batches_per_epoch=3, device="cpu",
        on_batch=seen.append)
    assert [(p.epoch, p.batch) for p in seen] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert all(p.max_epochs == 2 and p.batches == 3 for p in seen)
    assert [p.images for p in seen[:3]] == [32, 64, 96]
    assert seen[0].seconds < seen[1].seconds < seen[2].seconds
    assert seen[2].eta_seconds == 0 and seen[0].eta_seconds == pytest.approx(2 * seen[0].seconds)


def test_batch_progress_rates_and_eta():
    p = BatchProgress(epoch=2, max_epochs=10, batch=25, batches=100, images=3200, seconds=8.0)
    assert p.images_per_sec == 400.0
    assert p.eta_seconds == pytest.approx(24.0)  # 75 batches left at 0.32 s each
    assert [format_seconds(s) for s in (4.4, 185, 7620, float("nan"))] == ["4s", "3m05s", "2h07m", "?"]


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_line_is_rate_limited():
    clock, lines = FakeClock(), []
    hook = ProgressLine(lines.append, every_s=10, prefix="[trial 3] ", clock=clock)

    def batch(b, seconds, epoch=1):
        clock.t = 100.0 + (epoch - 1) * 1000 + seconds
        hook(BatchProgress(epoch, 2, b, 100, b * 64, seconds))

    for b in range(1, 100):  # one batch every 0.25 s: 24.75 s of epoch 1
        batch(b, b * 0.25)
    assert len(lines) == 2  # at 10 s and 20 s, never more often
    assert lines[0] == "[trial 3] epoch 1/2: batch 40/100 (40%), 256 img/s, epoch ETA 15s"
    batch(100, 25.0)  # the last batch: the caller's epoch line follows, no progress line
    assert len(lines) == 2
    batch(1, 0.25, epoch=2)  # a new epoch waits its own 10 s
    batch(2, 9.0, epoch=2)
    assert len(lines) == 2
    batch(3, 10.5, epoch=2)
    assert lines[-1].startswith("[trial 3] epoch 2/2: batch 3/100 (3%)")


def test_progress_bar_draws_and_clears_each_epoch():
    out = io.StringIO()
    bar = ProgressBar(out, mininterval=0)
    for epoch in (1, 2):
        for b in range(1, 5):
            bar(BatchProgress(epoch, 2, b, 4, b * 8, b * 0.5))
            if b < 4:
                assert bar._bar is not None and bar._bar.n == b
    assert bar._bar is None  # closed after each epoch's last batch
    text = out.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "img/s" in text


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_epoch_progress_picks_bar_line_or_nothing():
    assert epoch_progress(quiet=True, stream=Tty()) is None
    assert isinstance(epoch_progress(stream=Tty()), ProgressBar)
    hook = epoch_progress(stream=io.StringIO())
    assert isinstance(hook, ProgressLine) and hook.every_s == training_progress.LINE_EVERY_S


@pytest.mark.parametrize("quiet", [False, True])
def test_train_command_progress_lines_and_quiet(tmp_path, capsys, monkeypatch, quiet):
    monkeypatch.setattr(training_progress, "LINE_EVERY_S", 0.0)  # a line after every batch
    spec_path = tmp_path / "tiny.yaml"
    TINY.save(str(spec_path))
    args = ["train", str(spec_path), "--dataset", "digits", "--epochs", "2", "--resolution", "16",
            "--batch-size", "64", "--max-batches-per-epoch", "3", "--out", str(tmp_path / "o"),
            "--threads", "1"] + (["--quiet"] if quiet else [])
    assert main(args) == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if ": batch " in line]
    if quiet:
        assert progress == []
    else:  # not a terminal: plain lines, none for an epoch's last batch
        assert progress[:2] == [line for line in progress[:2] if line.startswith("epoch 1/2: batch")]
        assert len(progress) == 4 and "img/s" in progress[0] and "epoch ETA" in progress[0]
    assert "epoch   1/2" in captured.out and "ETA" in captured.out.splitlines()[1]
