"""The training loop every trial and every retrain runs.

    >>> from hybridnas import create_model
    >>> from hybridnas.data import load_dataset
    >>> from hybridnas.training import fit
    >>> bundle = load_dataset("digits", resolution=16)
    >>> model = create_model("my_spec.yaml", num_classes=bundle.num_outputs, in_chans=bundle.in_chans)
    >>> result = fit(model, bundle, epochs=5, on_epoch=lambda r: print(r.epoch, r.metric))
    >>> result.best_metric, result.history[-1].val_metrics

Recipe: AdamW (no weight decay on norms and biases), per-step cosine
schedule after a linear warm-up, label smoothing, gradient clipping,
mixed precision (bf16, or fp16 with a GradScaler) on CUDA only, a seeded
data order, validation after every epoch, checkpoints that ``resume=True``
continues from. Batches are cut straight from in-memory tensors (no
per-item DataLoader), which keeps the loop's own overhead small: in a search
this loop is nearly all of the time.

Errors: a NaN/inf loss raises :class:`NonFiniteLoss`, CUDA running out of
memory raises :class:`OutOfMemory`; both are :class:`TrainingError`, which
a search records as a failed trial.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ._io import write_atomic
from .training_progress import BatchProgress

__all__ = [
    "fit", "evaluate", "EpochResult", "FitResult", "TrainingError", "NonFiniteLoss",
    "OutOfMemory", "resolve_device", "iterate_batches", "default_eval_batch_size",
    "steps_per_epoch", "CHECKPOINT_NAME", "param_groups", "lr_lambda",
]

CHECKPOINT_NAME = "last.pt"


class TrainingError(RuntimeError):
    """A training run that cannot go on (the search records it as a failed trial)."""


class NonFiniteLoss(TrainingError):
    """The training loss became NaN or infinite."""


class OutOfMemory(TrainingError):
    """The accelerator ran out of memory (try a smaller batch or model)."""


@dataclass
class EpochResult:
    """What ``on_epoch`` receives after each epoch.

    ``epoch`` counts from 1; ``val_metrics`` has ``val_``-prefixed keys
    (``val_accuracy``, ``val_loss``); ``metric`` is the task's search metric
    (``val_metrics[task.metric_name]``); ``seconds`` is the epoch's wall time
    (training + validation), ``images_per_sec`` the training throughput.
    """

    epoch: int
    max_epochs: int
    train_loss: float
    val_metrics: dict[str, float]
    metric: float
    seconds: float
    train_seconds: float
    images_per_sec: float
    lr: float
    batches: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns: the per-epoch ``history``, the best validation
    value of the task metric and its epoch, whether ``on_epoch`` stopped the
    run early, and the time spent (``seconds`` = training + validation)."""

    history: list[EpochResult]
    metric_name: str
    maximize: bool
    epochs: int
    max_epochs: int
    stopped_early: bool
    seconds: float
    device: str
    best_metric: float = float("nan")
    best_epoch: int = 0
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> list[float]:
        """The validation metric per epoch."""
        return [h.metric for h in self.history]

    @property
    def final_metrics(self) -> dict[str, float]:
        return dict(self.history[-1].val_metrics) if self.history else {}

    @property
    def train_seconds(self) -> float:
        """Time spent in training steps (all epochs in ``history``)."""
        return sum(h.train_seconds for h in self.history)

    @property
    def eval_seconds(self) -> float:
        """Time spent in per-epoch validation."""
        return sum(h.seconds - h.train_seconds for h in self.history)

    @property
    def full_fidelity(self) -> bool:
        return self.epochs >= self.max_epochs


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import UserError

        raise UserError(f"device {str(device)!r} requested but CUDA is not available here")
    return device


def _amp_dtype(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: mixed precision on CUDA only, bf16 when supported."""
    if device.type != "cuda" or amp in (False, None, "off", "no", "fp32", "none"):
        return None
    if amp in (True, "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        return torch.float16
    raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")


def _on_device(dataset, device: torch.device):
    """The dataset moved to ``device`` once, if it is an in-memory dataset
    (``batch``/``to``/``device``, like ``ArrayDataset``) whose tensors fit;
    otherwise the dataset itself (batches are then copied one by one)."""
    if not all(hasattr(dataset, a) for a in ("batch", "to", "device")):
        return dataset
    if device.type == "cuda":
        need = sum(t.numel() * t.element_size() for t in vars(dataset).values()
                   if isinstance(t, torch.Tensor))
        free, _ = torch.cuda.mem_get_info(device)
        if need > 0.4 * free:  # leave room for the model and activations
            return dataset
    return dataset.to(device)


def iterate_batches(dataset, batch_size: int, device: torch.device, *, shuffle: bool = False,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    max_batches: int | None = None) -> Iterator[tuple[Any, Any]]:
    """(inputs, targets) batches on ``device``.

    In-memory datasets (``hybridnas.data.ArrayDataset``, or anything with
    ``__len__``, ``batch(index_tensor) -> (inputs, targets)`` on its
    ``device``, and a memoised ``to(device)``) are cut by indexing: one
    operation per batch. Any other map-style dataset goes through a
    ``DataLoader`` with no worker processes."""
    n = len(dataset)
    if hasattr(dataset, "batch") and hasattr(dataset, "device"):
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(dataset.device)  # one copy per epoch, not one per batch
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        count = 0
        for i in range(0, stop, batch_size):
            if max_batches is not None and count >= max_batches:
                return
            x, y = dataset.batch(order[i:i + batch_size])
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            count += 1
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                        drop_last=drop_last and n >= batch_size, num_workers=0,
                        pin_memory=device.type == "cuda")
    for count, (x, y) in enumerate(loader):
        if max_batches is not None and count >= max_batches:
            return
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _raise_oom(e: BaseException, where: str, batch_size: int, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    raise OutOfMemory(f"out of memory on {device} during {where} with batch size {batch_size} "
                      f"(use a smaller --batch-size or model)") from e


@torch.no_grad()
def evaluate(model: nn.Module, loader_or_dataset, task, device: str | torch.device = "auto", *,
             batch_size: int = 512, prefix: str = "val_", amp: bool | str | None = "auto",
             max_batches: int | None = None) -> dict[str, float]:
    """The task's metrics of ``model`` over a dataset or an iterable of
    (inputs, targets) batches, keys prefixed with ``prefix`` (``val_accuracy``,
    ``val_loss``; ``prefix="test_"`` for a final report). Metrics are computed
    once over all outputs, so set-level metrics are exact."""
    device = resolve_device(device)
    amp_dtype = _amp_dtype(amp, device)
    was_training = model.training
    model.eval()
    if hasattr(loader_or_dataset, "__len__") and hasattr(loader_or_dataset, "__getitem__") \
            and not isinstance(loader_or_dataset, torch.utils.data.DataLoader):
        batches = iterate_batches(_on_device(loader_or_dataset, device), batch_size, device,
                                  max_batches=max_batches)
    else:
        batches = ((x.to(device), y.to(device)) for x, y in loader_or_dataset)
    outputs, targets = [], []
    try:
        for x, y in batches:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
            outputs.append(out.float())
            targets.append(y)
    except Exception as e:
        if _is_oom(e):
            _raise_oom(e, "evaluation", batch_size, device)
        raise
    finally:
        model.train(was_training)
    if not outputs:
        return {}
    metrics = task.metrics(torch.cat(outputs), torch.cat(targets))
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}


def steps_per_epoch(n_train: int, batch_size: int, max_batches: int | None = None) -> int:
    """Training steps ``fit`` takes per epoch: full batches of ``n_train``
    images (one short batch when there are fewer), at most ``max_batches``."""
    full = n_train // batch_size if n_train >= batch_size else 1
    return min(full, max_batches or full)


def default_eval_batch_size(batch_size: int) -> int:
    """The validation batch size ``fit`` uses when given none: larger than the
    training batch (no gradients are kept), at least 256."""
    return max(int(batch_size), 256)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices/kernels only, as in timm: decaying
    norms, biases, position tables and tokens only hurts."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or any(
                k in name for k in ("pos_embed", "cls_token", "relative_position", "rel_pos", "bias_table")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _save(path: str, state: dict[str, Any]) -> None:
    # A kill mid-write leaves the previous checkpoint intact.
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def fit(model: nn.Module, bundle, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        weight_decay: float = 0.05, warmup_epochs: float = 1.0, label_smoothing: float = 0.1,
        device: str | torch.device = "auto", amp: bool | str | None = "auto",
        on_epoch: Callable[[EpochResult], bool | None] | None = None,
        checkpoint_dir: str | None = None, resume: bool = False,
        max_batches_per_epoch: int | None = None, seed: int = 0, grad_clip: float | None = 1.0,
        channels_last: bool = False, eval_batch_size: int | None = None,
        max_val_batches: int | None = None, min_lr_ratio: float = 0.0,
        log: Callable[[str], None] | None = None,
        on_batch: Callable[[BatchProgress], None] | None = None,
        on_resume: Callable[[list[EpochResult]], None] | None = None,
        on_checkpoint_error: Callable[[OSError], None] | None = None) -> FitResult:
    """Train ``model`` on ``bundle.train``, validating on ``bundle.val`` after every epoch.

    ``bundle``: a :class:`hybridnas.data.DatasetBundle` (or anything with
    ``train``, ``val`` and ``task``). ``epochs``: the full schedule length (the
    cosine schedule spans all of it even if ``on_epoch`` stops earlier).
    ``on_epoch(EpochResult)`` returning False stops after that epoch.
    ``on_batch(BatchProgress)`` is called after every training step (progress
    bars and lines: see :mod:`hybridnas.training_progress`).
    ``max_batches_per_epoch`` caps the batches per epoch (proxy training).
    ``checkpoint_dir``: save model, optimizer, schedule and epoch after every
    epoch; with ``resume=True`` an existing checkpoint there is continued,
    and ``on_resume(history)`` is told the epochs it had already run. A save
    that fails (full or read-only disk) raises, unless
    ``on_checkpoint_error(OSError)`` is given: then training goes on without
    checkpoints.
    ``device``: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``...
    ``amp``: ``"auto"``/``"bf16"``/``"fp16"``/``"off"`` (CUDA only).
    Returns a :class:`FitResult`; the model ends with its last-epoch weights
    on ``device``. Raises NonFiniteLoss, OutOfMemory (TrainingError).
    """
    device = resolve_device(device)
    task = bundle.task
    amp_dtype = _amp_dtype(amp, device)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1 (got {epochs}, {batch_size})")
    torch.manual_seed(seed)
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    train_set = _on_device(bundle.train, device)
    val_set = _on_device(bundle.val, device)
    n_train = len(train_set)
    if n_train == 0:
        raise ValueError("the training set is empty")
    steps = steps_per_epoch(n_train, batch_size, max_batches_per_epoch)
    total_steps = steps * epochs
    warmup_steps = min(int(round(warmup_epochs * steps)), max(total_steps - 1, 0))

    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999),
                                  **({"fused": True} if device.type == "cuda" else {}))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(max(warmup_steps, 1) if warmup_steps else 0, total_steps, min_lr_ratio))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    history: list[EpochResult] = []
    start_epoch = 0
    ckpt_path = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if ckpt_path:
        try:
            os.makedirs(checkpoint_dir, exist_ok=True)
        except OSError as e:
            if on_checkpoint_error is None:
                raise
            on_checkpoint_error(e)
            ckpt_path = None
    if ckpt_path:
        if resume and os.path.exists(ckpt_path):
            from .errors import UserError

            try:
                # weights_only: tensors and plain values only, so a crafted
                # checkpoint in a downloaded folder cannot run code
                state = torch.load(ckpt_path, map_location=device, weights_only=True)
            except pickle.UnpicklingError as e:
                found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
                reason = (f"refused: it asks to load {found.group(1)}, and a checkpoint may hold "
                          f"only tensors and plain values" if found else "it is damaged")
                raise UserError(f"{ckpt_path}: cannot resume from it ({reason}): remove it to "
                                f"start over") from None
            except (RuntimeError, ValueError, EOFError, OSError) as e:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"{ckpt_path}: cannot resume from it ({reason[:200]}); it is "
                                f"damaged: remove it to start over") from None
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
                start_epoch = int(state["epoch"])
                history = [EpochResult(**h) for h in state.get("history", [])]
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"{ckpt_path}: cannot resume from it ({reason[:200]}); it belongs "
                                f"to another model or is damaged: remove it to start over") from None
            if state.get("epochs", epochs) != epochs and log:
                log(f"resuming a {state.get('epochs')}-epoch schedule as {epochs} epochs")
            if on_resume is not None:
                on_resume(list(history))

    params = [p for p in model.parameters() if p.requires_grad]  # for clipping: listed once
    # the data order of epoch e depends only on (seed, e): a resumed run sees
    # the same batches an uninterrupted one would
    generator = torch.Generator()
    check_every = 1 if device.type == "cpu" else 25  # a finite-check syncs the GPU
    stopped = False
    t_run = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, epochs):
        generator.manual_seed(seed * 100003 + epoch)
        torch.manual_seed(seed * 100003 + epoch)  # dropout / drop-path of this epoch
        t0 = time.perf_counter()
        running = torch.zeros((), device=device)
        seen = batches = 0
        try:
            for x, y in iterate_batches(train_set, batch_size, device, shuffle=True,
                                        generator=generator, drop_last=True,
                                        max_batches=steps):
                if channels_last and x.ndim == 4 and device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = model(x)
                loss = task.loss(out, y, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                running += loss.detach().float()
                seen += len(y)
                batches += 1
                if on_batch is not None:
                    on_batch(BatchProgress(epoch + 1, epochs, batches, steps, seen,
                                           time.perf_counter() - t0))
                if batches % check_every == 0 and not torch.isfinite(running):
                    raise NonFiniteLoss(f"loss became {float(loss.detach()):.4g} at epoch {epoch + 1}, "
                                        f"batch {batches} (lr {scheduler.get_last_lr()[0]:.3g})")
        except TrainingError:
            raise
        except Exception as e:
            if _is_oom(e):
                _raise_oom(e, "training", batch_size, device)
            raise
        train_loss = float(running) / max(batches, 1)
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"loss became {train_loss:.4g} in epoch {epoch + 1}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        val = evaluate(model, val_set, task, device, batch_size=eval_batch_size or default_eval_batch_size(batch_size),
                       amp=amp, max_batches=max_val_batches)
        model.train()
        seconds = time.perf_counter() - t0
        result = EpochResult(
            epoch=epoch + 1, max_epochs=epochs, train_loss=train_loss, val_metrics=val,
            metric=float(val.get(task.metric_name, float("nan"))), seconds=seconds,
            train_seconds=train_seconds, images_per_sec=seen / max(train_seconds, 1e-9),
            lr=float(scheduler.get_last_lr()[0]), batches=batches)
        history.append(result)
        if ckpt_path:
            try:
                _save(ckpt_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "epoch": epoch + 1, "epochs": epochs, "seed": seed,
                    "history": [h.to_dict() for h in history],
                })
            except OSError as e:
                if on_checkpoint_error is None:
                    raise
                on_checkpoint_error(e)
                ckpt_path = None
        if on_epoch is not None and on_epoch(result) is False:
            stopped = epoch + 1 < epochs
            break

    values = [(h.metric, h.epoch) for h in history if math.isfinite(h.metric)]
    best = (max if task.maximize else min)(values, key=lambda v: v[0]) if values else (float("nan"), 0)
    return FitResult(
        history=history, metric_name=task.metric_name, maximize=task.maximize,
        epochs=history[-1].epoch if history else 0, max_epochs=epochs, stopped_early=stopped,
        seconds=time.perf_counter() - t_run, device=str(device), best_metric=best[0],
        best_epoch=best[1], resumed_from=start_epoch)
