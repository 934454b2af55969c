"""Progress inside a training epoch, for :func:`hybridnas.training.fit`'s
``on_batch`` hook.

- :class:`ProgressBar`: a tqdm bar per epoch with the epoch's ETA and the
  throughput, for a person at a terminal (``hybridnas train``).
- :class:`ProgressLine`: a plain line at most every ``every_s`` seconds
  (batches done, images/s, epoch ETA) through any ``log`` callable, for logs
  and search trials, where a redrawn bar would be noise.
- :func:`epoch_progress` picks one: nothing when quiet, the bar on a TTY,
  lines otherwise.

    >>> from hybridnas.training import fit
    >>> fit(model, bundle, epochs=5, on_batch=ProgressLine(log.info))   # doctest: +SKIP
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

__all__ = ["BatchProgress", "ProgressBar", "ProgressLine", "epoch_progress", "format_seconds",
           "LINE_EVERY_S"]

#: Seconds between two progress lines in logs.
LINE_EVERY_S = 10.0


@dataclass(frozen=True)
class BatchProgress:
    """What ``on_batch`` receives after each training step: ``epoch`` (from 1)
    of ``max_epochs``, ``batch`` (from 1) of ``batches`` in this epoch, the
    ``images`` trained on this epoch and the ``seconds`` since it started."""

    epoch: int
    max_epochs: int
    batch: int
    batches: int
    images: int
    seconds: float

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        """Seconds left in this epoch's training steps at the pace so far."""
        if self.batch <= 0:
            return float("nan")
        return self.seconds / self.batch * max(self.batches - self.batch, 0)


def format_seconds(s: float) -> str:
    """45s, 3m05s, 2h07m."""
    if math.isnan(s):
        return "?"
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLine:
    """``on_batch`` hook that calls ``log(line)`` at most every ``every_s``
    seconds (default ``LINE_EVERY_S``) (the first line ``every_s`` after the hook is made or an epoch
    starts), e.g. ``epoch 2/10: batch 120/421 (29%), 512 img/s, epoch ETA 1m35s``.
    ``prefix`` starts each line (a trial id); ``clock`` is for tests."""

    def __init__(self, log: Callable[[str], None], every_s: float | None = None, prefix: str = "",
                 clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.every_s = float(LINE_EVERY_S if every_s is None else every_s)
        self.prefix = prefix
        self.clock = clock
        self._last = clock()

    def __call__(self, p: BatchProgress) -> None:
        now = self.clock()
        if p.batch == 1:  # a new epoch: its first line comes every_s after its start
            self._last = max(self._last, now - p.seconds)
        if now - self._last < self.every_s or p.batch >= p.batches:
            return  # the epoch's own summary line follows its last batch
        self._last = now
        self.log(f"{self.prefix}epoch {p.epoch}/{p.max_epochs}: batch {p.batch}/{p.batches} "
                 f"({p.batch / p.batches:.0%}), {p.images_per_sec:.0f} img/s, "
                 f"epoch ETA {format_seconds(p.eta_seconds)}")


class ProgressBar:
    """``on_batch`` hook that draws one tqdm bar per epoch (batches, ETA,
    images/s) on ``file``; the bar is cleared when the epoch's last batch is
    done, so the caller's per-epoch line takes its place. ``tqdm_kwargs`` go
    to ``tqdm`` (e.g. ``mininterval``)."""

    def __init__(self, file: TextIO | None = None, **tqdm_kwargs):
        self.file = file
        self.tqdm_kwargs = tqdm_kwargs
        self._bar = None
        self._epoch = None

    def __call__(self, p: BatchProgress) -> None:
        from tqdm.auto import tqdm

        if self._bar is None or self._epoch != p.epoch:
            self.close()
            self._epoch = p.epoch
            self._bar = tqdm(total=p.batches, desc=f"epoch {p.epoch}/{p.max_epochs}",
                             unit="batch", leave=False, file=self.file or sys.stderr,
                             dynamic_ncols=True, **self.tqdm_kwargs)
        self._bar.set_postfix_str(f"{p.images_per_sec:.0f} img/s", refresh=False)
        self._bar.update(p.batch - self._bar.n)
        if p.batch >= p.batches:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def epoch_progress(quiet: bool = False, stream: TextIO | None = None,
                   log: Callable[[str], None] | None = None,
                   every_s: float | None = None) -> Callable[[BatchProgress], None] | None:
    """The ``on_batch`` hook for a command: None when ``quiet``; a
    :class:`ProgressBar` when ``stream`` (default stderr) is a terminal; else a
    :class:`ProgressLine` through ``log`` (default: print to ``stream``)."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return ProgressBar(stream)
    return ProgressLine(log or (lambda line: print(line, file=stream, flush=True)), every_s)
