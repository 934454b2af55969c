"""Tiny run directories for tests (of export, dashboards, anything that reads runs).

``make_run(path)`` writes a run folder exactly as the "Run directory" contract
in docs/CONTRACTS.md describes it -- config.yaml, trials.parquet/.csv with the
contract's columns, checkpoints written by ``save_checkpoint`` -- from tiny
specs, in well under a second, without running a search.

Trials (resolution 16, 1 input channel, 4 classes, metric val_accuracy):

====  ============= =========  ======  ==========  ===========================
id    status        full fid.  metric  latency_ms  checkpoint
====  ============= =========  ======  ==========  ===========================
0     COMPLETE      yes        0.90    5.0         yes (front: best metric)
1     COMPLETE      yes        0.70    1.0         yes (front: fastest)
2     COMPLETE      yes        0.60    3.0         yes (dominated by 1)
3     FAILED        no         NaN     NaN         no (error: NonFiniteLoss)
4     RUNNING       no         NaN     NaN         yes (being written)
5     EARLY_STOPPED no         0.95    0.5         yes (low fidelity: never on the front)
====  ============= =========  ======  ==========  ===========================
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..spec import ArchSpec, HeadSpec, StageSpec, StemSpec

__all__ = ["TINY_SPECS", "make_run", "RUN_RESOLUTION", "RUN_IN_CHANS", "RUN_CLASSES"]

RUN_RESOLUTION = 16
RUN_IN_CHANS = 1
RUN_CLASSES = 4

_STEM = StemSpec(kind="conv", widths=(8,), strides=(2,), norm="bn", act="gelu")

#: Small specs covering the block families (each builds in milliseconds).
TINY_SPECS: dict[str, ArchSpec] = {
    "cctt": ArchSpec(
        stem=_STEM,
        stages=(StageSpec("mbconv", depth=1, width=16, stride=1),
                StageSpec("mbconv", depth=1, width=16, stride=2),
                StageSpec("transformer", depth=1, width=32, stride=2, head_dim=16,
                          attention="rel", window=2),
                StageSpec("transformer", depth=1, width=32, stride=1, head_dim=16,
                          attention="global")),
        name="tiny_cctt",
    ),
    "convnext": ArchSpec(
        stem=StemSpec(kind="patchify", widths=(16,), kernel=2, norm="ln"),
        stages=(StageSpec("convnext", depth=1, width=16, stride=1),
                StageSpec("convnext", depth=1, width=32, stride=2)),
        name="tiny_convnext",
    ),
    "interleaved": ArchSpec(
        stem=_STEM,
        stages=(StageSpec("interleaved", depth=1, width=16, stride=2, head_dim=8,
                          attention="window", window=2),
                StageSpec("interleaved", depth=1, width=32, stride=1, head_dim=16,
                          attention="rel", window=4)),
        name="tiny_interleaved",
    ),
    "vit_cls": ArchSpec(
        stem=StemSpec(kind="patchify", widths=(16,), kernel=4, norm="none"),
        stages=(StageSpec("transformer", depth=1, width=16, stride=1, head_dim=8,
                          attention="global", pos_embed=True, cls_token=True),),
        head=HeadSpec(pool="cls", norm="ln"),
        name="tiny_vit",
    ),
}

# (status, full_fidelity, metric, latency_ms, spec key, has checkpoint, error)
_TRIALS = [
    ("COMPLETE", True, 0.90, 5.0, "cctt", True, None),
    ("COMPLETE", True, 0.70, 1.0, "convnext", True, None),
    ("COMPLETE", True, 0.60, 3.0, "interleaved", True, None),
    ("FAILED", False, math.nan, math.nan, "vit_cls", False, "NonFiniteLoss: loss is nan at epoch 1"),
    ("RUNNING", False, math.nan, math.nan, "cctt", True, None),
    ("EARLY_STOPPED", False, 0.95, 0.5, "vit_cls", True, None),
]


def make_run(path: str | Path, name: str | None = None, seed: int = 0) -> Path:
    """Write a tiny run directory at ``path`` and return it (see module docstring)."""
    import torch

    from ..builder import build_model
    from ..rundir import RunDir
    from .checkpoint import save_checkpoint, trial_checkpoint_dir

    run = Path(path)
    run.mkdir(parents=True, exist_ok=True)
    name = name or run.name
    # The keys the search writes (hybridnas.search.runner) that readers use.
    config = {"run_name": name, "space": "stagewise", "dataset": "digits", "resolution": None,
              "epochs": 4, "objectives": ["latency"], "seed": seed, "keep_checkpoints": "pareto",
              "metric_name": "val_accuracy", "maximize": True,
              "objective_columns": ["metric", "latency_ms"], "objective_maximize": [True, False],
              "input_shape": [RUN_IN_CHANS, RUN_RESOLUTION, RUN_RESOLUTION],
              "num_outputs": RUN_CLASSES, "budget_unit": "cpu"}
    RunDir(run).write_config(config)
    torch.manual_seed(seed)
    rows = []
    for trial_id, (status, full, metric, latency, key, has_ck, error) in enumerate(_TRIALS):
        spec = TINY_SPECS[key]
        epochs = 4 if full else (1 if status != "FAILED" else 0)
        checkpoint = None
        if has_ck:
            model = build_model(spec, num_classes=RUN_CLASSES, in_chans=RUN_IN_CHANS)
            folder = trial_checkpoint_dir(run, trial_id)
            save_checkpoint(folder, model, spec, {
                "resolution": None, "dataset": "digits", "metric": metric,
                "metric_name": "val_accuracy", "epochs": epochs, "max_epochs": 4,
                "run": name, "trial_id": trial_id})
            checkpoint = str(folder.relative_to(run))
        finished = status not in ("RUNNING",)
        rows.append({
            "trial_id": trial_id, "status": status, "arch_id": spec.arch_id,
            "spec": spec.to_json(), "pattern": spec.pattern,
            "space_params": json.dumps({"stages.0.block": spec.stages[0].block}),
            "params": 0 if status == "FAILED" else 1000 + trial_id, "macs": 10_000 + trial_id,
            "latency_ms": latency, "latency_p10_ms": latency * 0.9, "latency_p90_ms": latency * 1.1,
            "latency_device": "cpu (test)",
            "predicted_latency_ms": latency * 1.2 if trial_id % 2 == 0 else math.nan,
            "metric": metric, "metric_name": "val_accuracy",
            "curve": json.dumps([] if math.isnan(metric) else [metric * 0.8, metric][:epochs]),
            "epochs": epochs, "max_epochs": 4, "full_fidelity": full,
            "device_seconds": 1.5 * epochs, "accelerator": "cpu", "error": error,
            "reference": "coatnet_0" if trial_id == 0 else None, "checkpoint": checkpoint,
            "started_at": f"2026-01-01T00:0{trial_id}:00+00:00",
            "finished_at": f"2026-01-01T00:0{trial_id}:30+00:00" if finished else None,
            "val_loss": math.nan if math.isnan(metric) else 1.0 - metric,
        })
    RunDir(run).write_trials(rows)  # as the search writes it: the contract's columns and types
    return run
