"""Trial checkpoints: one folder per trained network.

A checkpoint folder holds three files, written so that a reader never sees a
half-written checkpoint (``meta.json`` is written last and marks it complete)::

    checkpoints/trial_<id>/
        spec.yaml            the ArchSpec (loads with hybridnas.create_model(path))
        model.safetensors    the state dict (tensors only: safe to load)
        meta.json            num_classes, in_chans, resolution, dataset, metric, ...

    >>> save_checkpoint("results/run/checkpoints/trial_3", model, spec,
    ...                 {"resolution": 32, "dataset": "digits", "metric": 0.91})
    >>> model, spec, meta = load_checkpoint("results/run/checkpoints/trial_3")

``prune_checkpoints(run_dir, keep="pareto")`` deletes the folders of finished
trials that are not on the run's front, to bound disk use at the end of a run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import rundir
from .._io import write_atomic
from ..errors import UserError
from ..rundir import RunDir
from ..spec import ArchSpec

__all__ = [
    "save_checkpoint", "load_checkpoint", "prune_checkpoints", "trial_checkpoint_dir",
    "front_trial_ids", "read_trials", "read_run_config", "run_objectives",
    "SPEC_FILE", "WEIGHTS_FILE", "META_FILE", "KEEP_CHOICES",
]

SPEC_FILE = "spec.yaml"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
KEEP_CHOICES = ("pareto", "all", "none")

# Trials in these states may still write their checkpoint: never prune them.
_UNFINISHED = ("RUNNING",)


def trial_checkpoint_dir(run_dir: str | os.PathLike, trial_id: int) -> Path:
    """Where a run keeps trial ``trial_id``'s checkpoint: ``<run>/checkpoints/trial_<id>``."""
    return Path(run_dir) / "checkpoints" / f"trial_{int(trial_id)}"


def _json_safe(value: Any) -> Any:
    """Make ``value`` strict JSON: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def save_checkpoint(dir: str | os.PathLike, model, spec: ArchSpec | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, its ``spec`` and ``meta`` into folder ``dir``.

    ``spec`` defaults to ``model.spec`` (every ``HybridNet`` carries one).
    ``meta`` is any JSON-able dict; ``num_classes`` and ``in_chans`` are taken
    from the model when missing (``load_checkpoint`` needs them to rebuild it),
    and ``arch_id``, ``saved_at`` and the hybridnas version are added. Give
    ``resolution``, ``dataset``, ``metric``/``metric_name`` and ``epochs`` too:
    export's model card reads them. Overwrites an earlier checkpoint in
    ``dir``. Returns the folder.
    """
    from safetensors.torch import save_model

    from .. import __version__

    spec = spec if spec is not None else getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise UserError(f"save_checkpoint({str(dir)!r}): no ArchSpec given and the model has no "
                        f".spec (got {type(spec).__name__})")
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = dict(meta or {})
    info.setdefault("num_classes", int(getattr(model, "num_classes", 0) or 0))
    info.setdefault("in_chans", int(getattr(model, "in_chans", 3)))
    info["arch_id"] = spec.arch_id
    info.setdefault("hybridnas_version", __version__)
    info["saved_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # A stale meta.json would mark a half-rewritten folder as complete.
    meta_path = out / META_FILE
    if meta_path.exists():
        meta_path.unlink()
    write_atomic(out / SPEC_FILE, lambda p: spec.save(str(p)))
    # save_model (not save_file) copes with shared tensors and non-contiguous
    # views; load_checkpoint maps the tensors to any device.
    write_atomic(out / WEIGHTS_FILE,
                  lambda p: save_model(model, str(p), metadata={"arch_id": spec.arch_id,
                                                                "format": "pt"}))
    text = json.dumps(_json_safe(info), indent=2, sort_keys=True)
    write_atomic(meta_path, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return out


def read_meta(dir: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint or export folder (UserError if absent or broken)."""
    path = Path(dir) / META_FILE
    if not path.exists():
        raise UserError(f"{dir}: no {META_FILE} (not a checkpoint folder, or one that was "
                        f"never finished)")
    from .._io import parse_json, read_text

    meta = parse_json(read_text(path), str(path))  # size and UTF-8 checked: the folder may come from anyone
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def load_checkpoint(dir: str | os.PathLike, map_location: str = "cpu"):
    """Read a folder written by ``save_checkpoint``.

    Returns ``(model, spec, meta)``: the rebuilt ``HybridNet`` with its weights
    on ``map_location`` in eval mode, its ``ArchSpec`` and the meta dict.
    Raises ``UserError`` for a missing folder or file, or weights that do not
    fit the spec.
    """
    from safetensors.torch import load_model

    from ..builder import build_model

    folder = Path(dir)
    if not folder.is_dir():
        raise UserError(f"{dir}: no such checkpoint folder")
    meta = read_meta(folder)
    spec = ArchSpec.load(str(folder / SPEC_FILE))
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise UserError(f"{dir}: no {WEIGHTS_FILE} (the run did not keep this trial's weights)")
    model = build_model(spec, num_classes=int(meta.get("num_classes") or 1000),
                        in_chans=int(meta.get("in_chans") or 3))
    try:
        load_model(model, str(weights), strict=True, device=str(map_location))
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{weights}: weights do not fit {SPEC_FILE} "
                        f"(num_classes={meta.get('num_classes')}, in_chans={meta.get('in_chans')}): "
                        f"{first}") from None
    model.to(map_location).eval()
    return model, spec, meta


# --------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------

def read_trials(run_dir: str | os.PathLike):
    """The run's trials table as a DataFrame (``hybridnas.rundir.load_run``)."""
    return RunDir(run_dir).read_trials()


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict ({} when absent or unreadable)."""
    try:
        return RunDir(run_dir).read_config(required=False)
    except UserError:
        return {}


def run_objectives(config: dict[str, Any]) -> tuple[list[str], list[bool]]:
    """Trials columns and directions of the run's objectives (from config.yaml;
    default: maximise ``metric``, minimise ``latency_ms``)."""
    return rundir.run_objectives(config)


def front_trial_ids(run_dir: str | os.PathLike, trials=None) -> list[int]:
    """Trial ids on the run's front: ``pareto.csv`` when the run wrote it;
    otherwise computed from the trials table by the search's rule
    (``hybridnas.rundir.front_of``, the objectives in config.yaml)."""
    import pandas as pd

    run = RunDir(run_dir)
    if run.pareto_csv.exists():
        front = pd.read_csv(run.pareto_csv)
        if "trial_id" in front.columns:
            return [int(t) for t in front["trial_id"].tolist()]
    df = run.read_trials() if trials is None else trials
    if df.empty:
        return []
    config = read_run_config(run_dir)
    columns, maximize = run_objectives(config)
    keep = [i for i, c in enumerate(columns) if c in df.columns]
    columns, maximize = [columns[i] for i in keep], [maximize[i] for i in keep]
    front = rundir.front_of(df, columns, maximize, rundir.front_limits(config))
    return [int(t) for t in front["trial_id"].tolist()]


def prune_checkpoints(run_dir: str | os.PathLike, keep: str = "pareto") -> list[int]:
    """Delete checkpoint folders of finished trials that ``keep`` does not keep.

    ``keep="pareto"`` keeps the trials on the front (see ``front_trial_ids``),
    ``"all"`` keeps everything, ``"none"`` deletes every finished trial's
    checkpoint. Folders of trials still RUNNING, or not (yet) in the trials
    table, are left alone. Returns the ids of the trials whose folders were
    deleted.
    """
    if keep not in KEEP_CHOICES:
        raise UserError(f"keep={keep!r} is not one of {list(KEEP_CHOICES)}")
    root = Path(run_dir) / "checkpoints"
    if keep == "all" or not root.is_dir():
        if not Path(run_dir).is_dir():
            raise UserError(f"{run_dir}: no such run directory")
        return []
    trials = read_trials(run_dir)
    status = {int(t): str(s) for t, s in zip(trials["trial_id"], trials["status"])}
    kept = set(front_trial_ids(run_dir, trials)) if keep == "pareto" else set()
    removed = []
    for folder in sorted(root.glob("trial_*")):
        try:
            trial_id = int(folder.name.split("_", 1)[1])
        except ValueError:
            continue  # not ours
        if trial_id not in status or status[trial_id] in _UNFINISHED or trial_id in kept:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(trial_id)
    return removed
