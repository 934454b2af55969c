"""Latency measurement defaults, declared once.

``MEASURE`` is what ``measure`` and ``hybridnas latency measure`` use: a
careful single measurement. ``SEARCH`` is what a search (and a calibration
sweep) uses for every trial: fewer calls, one thread, and the ``auto`` clock
(thread CPU time for one-thread CPU timing, the steadiest on a shared
machine; wall time otherwise). Everything that times a network reads its
defaults from here, so figures taken by different paths compare.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LatencyDefaults", "MEASURE", "SEARCH", "CLOCKS"]

CLOCKS = ("wall", "cpu", "auto")


@dataclass(frozen=True)
class LatencyDefaults:
    """Untimed ``warmup`` calls, timed ``repeats``, CPU ``threads`` (None:
    torch's setting), the ``clock`` and the ``batch_size``."""

    warmup: int = 10
    repeats: int = 50
    threads: int | None = None
    clock: str = "wall"
    batch_size: int = 1


MEASURE = LatencyDefaults()
SEARCH = LatencyDefaults(warmup=5, repeats=20, threads=1, clock="auto")
