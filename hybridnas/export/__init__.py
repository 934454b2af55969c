"""Export: trial checkpoints, exported model folders and loading them back.

    >>> from hybridnas.export import save_checkpoint, load_checkpoint, export_run, load
    >>> export_run("results/my-run", pareto=True, formats=("spec", "pytorch", "onnx"))
    >>> model = load("exports/my-run/trial_12")       # nn.Module with weights, eval mode

``checkpoint.py`` holds the per-trial checkpoint format a search writes;
``exporter.py`` turns a run's trials into self-contained folders (spec,
weights, TorchScript, ONNX, model card). Importing this package does not
import torch.
"""
from __future__ import annotations

from .checkpoint import (
    KEEP_CHOICES,
    front_trial_ids,
    load_checkpoint,
    prune_checkpoints,
    read_trials,
    save_checkpoint,
    trial_checkpoint_dir,
)

__all__ = [
    "save_checkpoint", "load_checkpoint", "prune_checkpoints", "trial_checkpoint_dir",
    "front_trial_ids", "read_trials", "KEEP_CHOICES", "export_run", "export_model", "load",
    "FORMATS",
]

#: What ``export_run`` can write for each architecture.
FORMATS = ("spec", "pytorch", "torchscript", "onnx")


def export_run(run_dir, *args, **kwargs):
    """Export trials of a search run; see ``hybridnas.export.exporter.export_run``."""
    from .exporter import export_run as _export_run

    return _export_run(run_dir, *args, **kwargs)


def export_model(model_or_spec, out_dir, *args, **kwargs):
    """Export one model or spec; see ``hybridnas.export.exporter.export_model``."""
    from .exporter import export_model as _export_model

    return _export_model(model_or_spec, out_dir, *args, **kwargs)


def load(path, map_location: str = "cpu"):
    """Load an exported folder (or a trial checkpoint folder): the ``nn.Module``
    with its weights, in eval mode; see ``hybridnas.export.exporter.load``."""
    from .exporter import load as _load

    return _load(path, map_location=map_location)
