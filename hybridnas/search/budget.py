"""Budget accounting: device-hours, trial count and wall-clock limit.

Device-seconds of a trial = its wall time from building the network to its
last evaluation (latency measurement and checkpoint included; a fresh
worker's one-off imports and dataset read are not) x the accelerators it
holds (``--gpus-per-trial``;
0.5 counts half). On a machine without a GPU every trial holds one CPU
"device", so the same ``--budget-gpu-hours`` flag counts CPU device-hours;
``unit`` says which, and the progress line and summary print it.

A new trial starts only if the spent seconds, plus what the running trials
are still expected to use, plus one more trial's estimated cost, stay within
the budget. The estimate is the mean cost of the finished trials (before
the first finishes: a running trial's cost so far projected to all epochs);
until there is any estimate only one trial runs, so the overrun is at most
about one trial.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Budget"]

_FINISHED = ("COMPLETE", "EARLY_STOPPED", "FAILED")


@dataclass
class Budget:
    device_hours: float | None = None
    trials: int | None = None
    time_limit_s: float | None = None
    unit: str = "cpu"
    elapsed_before_s: float = 0.0      # wall time of earlier sessions of this run
    started_at: float = field(default_factory=time.monotonic)

    @property
    def total_seconds(self) -> float | None:
        return None if self.device_hours is None else self.device_hours * 3600.0

    def elapsed(self) -> float:
        return self.elapsed_before_s + (time.monotonic() - self.started_at)

    @staticmethod
    def spent_seconds(rows: Iterable[dict]) -> float:
        return float(sum(float(r.get("device_seconds") or 0.0) for r in rows))

    @staticmethod
    def estimate_seconds(rows: Iterable[dict]) -> float | None:
        """Expected device-seconds of one more trial: the mean of the finished
        trials; before any finished, the largest projection of a running trial
        (seconds so far / epochs done x max epochs); None with neither."""
        rows = list(rows)
        costs = [float(r.get("device_seconds") or 0.0) for r in rows
                 if r.get("status") in _FINISHED and (r.get("device_seconds") or 0) > 0]
        if costs:
            return sum(costs) / len(costs)
        projected = [float(r["device_seconds"]) / int(r["epochs"]) * max(int(r.get("max_epochs") or 0),
                                                                          int(r["epochs"]))
                     for r in rows if r.get("status") == "RUNNING" and int(r.get("epochs") or 0) > 0]
        return max(projected) if projected else None

    def should_wait(self, rows: list[dict], outstanding: int = 0) -> bool:
        """With a device budget and no cost estimate yet, start one trial at a
        time until the first epoch report gives one (bounds the overrun to
        one trial). ``outstanding``: trials proposed that have not finished
        (Tune may ask for several before the first one starts)."""
        if self.total_seconds is None or self.estimate_seconds(rows) is not None:
            return False
        return outstanding > 0 or any(r.get("status") == "RUNNING" for r in rows)

    def why_not_start(self, rows: list[dict], pending: int = 0) -> str | None:
        """None if one more trial may start, else the reason it may not.
        ``pending``: trials proposed that have no row yet (Tune starts a
        proposal a moment later; without them a trial budget overshoots)."""
        ran = [r for r in rows if r.get("status") != "REJECTED"]
        if self.trials is not None and len(ran) + pending >= self.trials:
            return f"trial budget reached ({len(ran) + pending} of {self.trials} trials)"
        est = self.estimate_seconds(rows)
        if self.time_limit_s is not None:
            left = self.time_limit_s - self.elapsed()
            if left <= 0:
                return f"time limit reached ({self.elapsed():.0f} s of {self.time_limit_s:.0f} s)"
        total = self.total_seconds
        if total is not None:
            spent = self.spent_seconds(rows)
            if spent >= total:
                return f"device budget spent ({self.describe(rows)})"
            if est is not None:
                running = [r for r in rows if r.get("status") == "RUNNING"]
                still = sum(max(0.0, est - float(r.get("device_seconds") or 0.0)) for r in running)
                still += pending * est
                if spent + still + est > total:
                    return (f"device budget would be exceeded by one more trial of ~{est:.0f} "
                            f"device-s ({self.describe(rows)})")
        return None

    def eta_seconds(self, rows: Iterable[dict], elapsed: float | None = None) -> float | None:
        """Wall seconds until a budget ends the run, at the pace so far; None
        when no budget bounds it or nothing has been spent yet. ``elapsed``:
        wall seconds of the run so far (default: measured).

        Device budget: (total - spent) x elapsed / spent (device-seconds are
        spent at the rate so far, all concurrent trials together). Trial
        budget: trials left x elapsed / trials finished. Time limit: what is
        left of it. The soonest of those that apply."""
        rows = list(rows)
        elapsed = self.elapsed() if elapsed is None else float(elapsed)
        etas = []
        spent = self.spent_seconds(rows)
        total = self.total_seconds
        if total is not None and spent > 0 and elapsed > 0:
            etas.append(max(0.0, total - spent) * elapsed / spent)
        if self.trials is not None:
            done = sum(1 for r in rows if r.get("status") in _FINISHED)
            if done > 0:
                etas.append(max(0, self.trials - done) * elapsed / done)
        if self.time_limit_s is not None:
            etas.append(max(0.0, self.time_limit_s - elapsed))
        return min(etas) if etas else None

    def describe_eta(self, rows: Iterable[dict], elapsed: float | None = None) -> str:
        """``"ETA 3m05s"`` (``eta_seconds``), ``"ETA ?"`` before a budget has a
        pace, or "" when no budget bounds the run."""
        from ..training_progress import format_seconds

        if self.total_seconds is None and self.trials is None and self.time_limit_s is None:
            return ""
        eta = self.eta_seconds(rows, elapsed)
        return "ETA ?" if eta is None else f"ETA {format_seconds(eta)}"

    def describe(self, rows: Iterable[dict]) -> str:
        rows = list(rows)
        spent_h = self.spent_seconds(rows) / 3600.0
        unit = f"{self.unit.upper()} device-hours" if self.unit == "cpu" else "GPU-hours"
        if self.device_hours is None:
            return f"{spent_h:.4f} {unit} spent (no device budget)"
        return f"{spent_h:.4f} of {self.device_hours:g} {unit}"

    def to_summary(self, rows: Iterable[dict]) -> dict:
        rows = list(rows)
        return {
            "unit": self.unit,
            "spent_hours": self.spent_seconds(rows) / 3600.0,
            "total_hours": self.device_hours,
            "spent_device_seconds": self.spent_seconds(rows),
            "budget_trials": self.trials,
            "trials_run": sum(1 for r in rows if r.get("status") != "REJECTED"),
            "time_limit_s": self.time_limit_s,
            "elapsed_s": self.elapsed(),
            "note": ("no GPU: the device budget counts CPU device-hours (one device per trial)"
                     if self.unit == "cpu" else "GPU-hours = accelerator-seconds x GPUs per trial"),
        }
