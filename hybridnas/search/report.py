"""The end-of-run lines a search prints (and logs)."""
from __future__ import annotations

from ..report import format_results
from ..rundir import RunDir

__all__ = ["print_summary"]


def print_summary(recorder, summary: dict, run: RunDir, interrupted: bool,
                  dataset: str | None = None) -> None:
    b = summary.get("budget", {})
    c = summary.get("trials", {})
    unit = "GPU-hours" if b.get("unit") == "gpu" else "CPU device-hours (no GPU used)"
    total = f" of {b['total_hours']:g}" if b.get("total_hours") else ""
    hv = summary.get("hypervolume", 0.0)
    lines = [
        "[search] " + ("interrupted" if interrupted else "finished") + f": {run.path}",
        f"[search] spent {b.get('spent_hours', 0.0):.4f}{total} {unit} in "
        f"{b.get('elapsed_s', 0.0):.0f} s wall; trials: " +
        ", ".join(f"{k.lower()} {v}" for k, v in c.items() if v),
        f"[search] Pareto front: {summary.get('front_size', 0)} trial(s) "
        f"{summary.get('front_trial_ids', [])}, hypervolume {hv:.4g} "
        f"(reference {summary.get('reference_point')}) -> {run.pareto_csv}",
    ]
    if interrupted:
        lines.append(f"[search] continue with: hybridnas search --resume {run.path}")
    for line in lines:
        recorder._emit(line)
    if summary.get("front_size"):
        recorder._emit(format_results(recorder.frame(), summary, run.path, dataset=dataset))
