"""Supernet training: the sandwich rule with in-place distillation (BigNAS).

    >>> from hybridnas.supernet import Supernet
    >>> from hybridnas.supernet.train import SandwichSettings, train_supernet
    >>> net = Supernet("stagewise", resolution=28, num_classes=10, in_chans=1, width_mult=0.25)
    >>> history = train_supernet(net, bundle, SandwichSettings(epochs=5), "run/supernet")

Every step trains a largest subnet on the labels, then a smallest and
``random_subnets`` random ones on the largest's soft predictions (KL
divergence, in-place distillation). By default (``ends="types"``) the
smallest and one random subnet are replaced by the extremes of a
block-type path drawn uniformly over the valid paths, and the random
subnets are drawn on such paths too: in a hybrid space the one largest and
smallest networks have one block family per stage each, and under an
ordering rule per-decision draws rarely reach late convolution stages, so
those branches would hardly train; the gradients of all of them add up
before one AdamW step. Linear warm-up then cosine decay per step. The
subnets of a step are drawn from a generator seeded by (seed, epoch, step),
so every data-parallel worker draws the same ones and a resumed run the
same ones as an uninterrupted run.

After every epoch: the largest and smallest subnets are evaluated on the
validation split (batch-norm statistics recalibrated for each first), a
progress line is printed and a checkpoint is written atomically to
``checkpoint_dir``: ``supernet.safetensors`` (shared weights, statistics and
optimizer moments; no pickle) + ``supernet.json`` (epoch, history,
settings). ``train_supernet`` continues from it.

Data-parallel: ``train_supernet_ray`` runs the same loop on Ray Train's
``TorchTrainer``, one worker per GPU (CPU workers with gloo without one);
each worker takes its slice of every global batch and the gradients are
averaged with one all-reduce per step.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .._io import write_atomic
from ..errors import UserError
from ..training import iterate_batches, lr_lambda, param_groups, resolve_device

__all__ = ["SandwichSettings", "train_supernet", "train_supernet_ray", "evaluate_subnet",
           "prepare_subnet", "refit_subnet_classifier", "calibration_batches",
           "load_checkpoint", "CHECKPOINT_WEIGHTS", "CHECKPOINT_STATE"]

CHECKPOINT_WEIGHTS = "supernet.safetensors"
CHECKPOINT_STATE = "supernet.json"


@dataclass(frozen=True)
class SandwichSettings:
    """How the supernet trains (defaults live here only)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    random_subnets: int = 2
    #: sandwich ends: "types" (default) = the largest as teacher, then the
    #: smallest and largest of a block-type path drawn uniformly over paths,
    #: and random_subnets - 1 random subnets of such paths (every family at
    #: every stage trained about equally often; benchmarks/bench_oneshot.py
    #: ranked better with it); "fixed" = the space's one largest and one
    #: smallest network and random points of the space (BigNAS)
    ends: str = "types"
    #: weight of stage-wise distillation: every other subnet's stage outputs
    #: are pulled towards the teacher's (its leading channels, pooled to the
    #: same map size, each position layer-normalised), so that every branch
    #: of a stage speaks the same language at the stage boundaries and any
    #: composition of branches works (after DNA, Li et al. 2020); 0 = off
    stage_distill: float = 0.0
    #: with ``stage_distill``: each stage of the other subnets runs on the
    #: teacher's output of the stage before (each stage learns apart from the
    #: random choices before it) instead of on its own subnet's
    stage_inputs: str = "own"
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    max_batches_per_epoch: int | None = None
    bn_batches: int = 4
    bn_batch_size: int = 64
    #: refit each evaluated subnet's classifier on its own features of the
    #: batch-norm batches (ridge regression, ``Supernet.refit_classifier``):
    #: the shared classifier reads features that differ in basis from subnet
    #: to subnet; benchmarks/bench_oneshot.py ranked better with the refit
    refit_classifier: bool = True
    refit_ridge: float = 1e-3
    eval_batch_size: int = 256
    max_val_batches: int | None = None
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.ends not in ("types", "fixed"):
            raise UserError(f"sandwich ends {self.ends!r}: expected 'types' or 'fixed'")
        if self.stage_inputs not in ("own", "teacher"):
            raise UserError(f"stage inputs {self.stage_inputs!r}: expected 'own' or 'teacher'")
        if not (math.isfinite(self.stage_distill) and self.stage_distill >= 0):
            raise UserError(f"stage_distill {self.stage_distill!r}: expected a weight >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandwichSettings":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class EpochStats:
    """One line of the training history."""

    epoch: int
    loss_largest: float
    loss_distill: float
    acc_largest: float
    acc_smallest: float
    seconds: float
    steps: int
    lr: float
    extra: dict[str, float] = field(default_factory=dict)


def _subnets(net, settings: SandwichSettings, epoch: int, step: int) -> list:
    import numpy as np

    rng = np.random.default_rng([settings.seed, epoch, step])
    if settings.ends == "fixed":
        return [net.largest, net.smallest] + [net.sample(rng)
                                              for _ in range(settings.random_subnets)]
    # the largest stays the teacher; the smallest and largest of a path drawn
    # uniformly over block-type paths, then random subnets of such paths
    return [net.largest, net.sandwich_end(False, rng), net.sandwich_end(True, rng)] + [
        net.sandwich_end(None, rng) for _ in range(max(settings.random_subnets - 1, 0))]


def _forward(net, spec, x: torch.Tensor, with_stages: bool, inputs: list | None = None):
    """Subnet ``spec``'s output on ``x`` and, when asked, the outputs of its
    stem and stages (with gradients). ``inputs``: the teacher's stem and
    stage outputs; each stage then runs on the teacher's output before it
    (its leading channels) instead of its own (DNA's decoupled blocks)."""
    net.activate(spec)
    if not with_stages:
        return net(x), None
    seen: list[torch.Tensor] = []
    parts = net.stage_layers()
    handles = [m.register_forward_hook(lambda m, i, o: seen.append(o)) for m in parts]
    if inputs is not None:
        def feed(k):
            def hook(m, args):
                own, given = args[0], inputs[k]
                if given.ndim != own.ndim or given.shape[1] < own.shape[1]:
                    return None
                return (given[:, :own.shape[1]],)
            return hook
        handles += [m.register_forward_pre_hook(feed(k)) for k, m in enumerate(parts[1:])]
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def _stage_gap(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over stage boundaries of the squared difference between a
    student's stage output and the teacher's (its leading channels), both
    average-pooled to the smaller map and layer-normalised over channels."""
    terms = []
    for s, t in zip(student, teacher):
        if s.ndim != 4 or t.ndim != 4 or s.shape[1] > t.shape[1]:
            continue  # tokens (a class-token stage), or a wider student than the teacher
        t = t[:, :s.shape[1]]
        size = tuple(min(a, b) for a, b in zip(s.shape[2:], t.shape[2:]))
        if tuple(s.shape[2:]) != size:
            s = F.adaptive_avg_pool2d(s, size)
        if tuple(t.shape[2:]) != size:
            t = F.adaptive_avg_pool2d(t, size)
        s, t = s.movedim(1, -1).float(), t.movedim(1, -1).float()
        terms.append(F.mse_loss(F.layer_norm(s, s.shape[-1:]), F.layer_norm(t, t.shape[-1:])))
    return torch.stack(terms).mean() if terms else torch.zeros((), device=student[0].device)


def calibration_batches(dataset, settings: SandwichSettings,
                        device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed (inputs, targets) batches a subnet is prepared on before it
    is evaluated: the first ``bn_batches`` batches of the training split in
    a seeded order."""
    gen = torch.Generator().manual_seed(settings.seed + 7919)
    return list(iterate_batches(dataset, settings.bn_batch_size, device, shuffle=True,
                                generator=gen, max_batches=settings.bn_batches))


@torch.no_grad()
def prepare_subnet(net, spec, calibration: list, settings: SandwichSettings, task=None) -> None:
    """Make subnet ``spec`` ready to be evaluated or extracted with inherited
    weights: its batch-norm statistics recalibrated on the ``calibration``
    inputs and, for classification with ``settings.refit_classifier``, its
    classifier refitted on its own features of those batches
    (``Supernet.refit_classifier``). Leaves ``spec`` active."""
    net.recalibrate_bn(spec, [x for x, _ in calibration])
    refit_subnet_classifier(net, spec, calibration, settings, task)
    net.activate(spec)


@torch.no_grad()
def refit_subnet_classifier(net, spec, calibration: list, settings: SandwichSettings,
                            task=None) -> bool:
    """The classifier half of ``prepare_subnet``: refit subnet ``spec``'s
    classifier on the ``calibration`` batches when ``settings`` asks for it
    and the task is classification; returns whether it did."""
    if not (settings.refit_classifier and getattr(task, "name", None) == "classification"):
        return False
    return net.refit_classifier(spec, calibration, getattr(task, "num_classes", None),
                                settings.refit_ridge)


@torch.no_grad()
def evaluate_subnet(net, spec, val_set, task, device: torch.device, calibration: list,
                    settings: SandwichSettings) -> dict[str, float]:
    """Validation metrics of subnet ``spec`` with inherited weights, prepared
    (``prepare_subnet``) on the ``calibration`` batches."""
    from ..training import evaluate

    prepare_subnet(net, spec, calibration, settings, task)
    return evaluate(net, val_set, task, device, batch_size=settings.eval_batch_size, amp="off",
                    max_batches=settings.max_val_batches)


def _save(ckpt_dir: Path, net, optimizer, scheduler, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"net/{k}": v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    opt = optimizer.state_dict()
    steps = {}
    for i, st in opt["state"].items():
        for name, value in st.items():
            if name == "step":
                steps[str(i)] = float(value)
            else:
                tensors[f"opt/{i}/{name}"] = value.detach().contiguous().cpu()
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    state = {**state, "optimizer_groups": opt["param_groups"], "optimizer_steps": steps,
             "scheduler": sched}
    # weights first, then the state naming the epoch they hold: a kill between
    # the two renames leaves a pair whose epoch counter is at most one behind
    write_atomic(ckpt_dir / CHECKPOINT_WEIGHTS, lambda p: save_file(tensors, str(p)))
    write_atomic(ckpt_dir / CHECKPOINT_STATE,
                 lambda p: p.write_text(json.dumps(state, indent=1, default=list)))


def load_checkpoint(ckpt_dir: str | os.PathLike, net, optimizer=None, scheduler=None,
                    device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """Load a supernet checkpoint into ``net`` (and the optimizer and
    schedule); returns its state (epoch, history...) or None without one."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt_dir)
    if not (ckpt / CHECKPOINT_STATE).exists() or not (ckpt / CHECKPOINT_WEIGHTS).exists():
        return None
    try:
        state = json.loads((ckpt / CHECKPOINT_STATE).read_text())
        tensors = load_file(str(ckpt / CHECKPOINT_WEIGHTS), device=str(device))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net/")})
        if optimizer is not None:
            per: dict[int, dict[str, Any]] = {}
            for k, v in tensors.items():
                if k.startswith("opt/"):
                    _, i, name = k.split("/", 2)
                    per.setdefault(int(i), {})[name] = v
            for i, step in state["optimizer_steps"].items():
                per.setdefault(int(i), {})["step"] = torch.tensor(step)
            optimizer.load_state_dict({"state": per, "param_groups": state["optimizer_groups"]})
        if scheduler is not None:
            scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{ckpt}: cannot resume the supernet from it ({reason}); it belongs to "
                        f"another space setting or is damaged: remove it to start over") from None
    return state


def _all_reduce_grads(params: list[torch.Tensor], world: int) -> None:
    """Average the gradients over the workers (one flat all-reduce); a
    parameter no subnet of this step used contributes zeros."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p)
        offset += n


def train_supernet(net, bundle, settings: SandwichSettings | None = None,
                   checkpoint_dir: str | os.PathLike | None = None, *,
                   device: str | torch.device = "auto", resume: bool = True,
                   on_epoch: Callable[[EpochStats], bool | None] | None = None,
                   log: Callable[[str], None] | None = print, rank: int = 0,
                   world: int = 1) -> list[EpochStats]:
    """Train ``net`` (a ``Supernet``) on ``bundle.train`` with the sandwich rule.

    ``checkpoint_dir``: checkpoint after every epoch; with ``resume`` an
    existing checkpoint there is continued (finished epochs are not redone).
    ``on_epoch(EpochStats)`` returning False stops after that epoch (budget).
    ``log``: where progress lines go (None: silent). ``rank``/``world``:
    set by ``train_supernet_ray``. Returns the whole history (earlier
    sessions included).
    """
    settings = settings or SandwichSettings()
    device = resolve_device(device)
    task = bundle.task
    net.to(device)
    train_set, val_set = bundle.train, bundle.val
    if hasattr(train_set, "to"):
        train_set, val_set = train_set.to(device), val_set.to(device)
    n_train = len(train_set)
    if n_train == 0:
        raise UserError("the training set is empty")
    bs = settings.batch_size
    full = n_train // bs if n_train >= bs else 1
    steps_per_epoch = min(full, settings.max_batches_per_epoch or full)
    total = steps_per_epoch * settings.epochs
    warmup = min(int(round(settings.warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    optimizer = torch.optim.AdamW(param_groups(net, settings.weight_decay), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(max(warmup, 1) if warmup else 0, total))
    history: list[EpochStats] = []
    start = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt is not None and resume:
        state = load_checkpoint(ckpt, net, optimizer, scheduler, device)
        if state is not None:
            start = int(state["epoch"])
            history = [EpochStats(**h) for h in state.get("history", [])]
            if log and rank == 0:
                log(f"[supernet] resumed after epoch {start} of {settings.epochs}")
    params = [p for p in net.parameters() if p.requires_grad]
    calibration = calibration_batches(train_set, settings, device)
    gen = torch.Generator()
    for epoch in range(start, settings.epochs):
        t0 = time.perf_counter()
        gen.manual_seed(settings.seed * 100003 + epoch)
        net.train()
        sums = torch.zeros(2, device=device)
        steps = 0
        batches = iterate_batches(train_set, bs, device, shuffle=True, generator=gen,
                                  drop_last=True, max_batches=steps_per_epoch)
        bar = _bar(steps_per_epoch, f"supernet epoch {epoch + 1}/{settings.epochs}",
                   settings.quiet or rank != 0 or log is None)
        for step, (x, y) in enumerate(batches):
            if world > 1:
                x, y = x[rank::world], y[rank::world]
            optimizer.zero_grad(set_to_none=True)
            teacher = teacher_stages = None
            for spec in _subnets(net, settings, epoch, step):
                out, stages = _forward(
                    net, spec, x, settings.stage_distill > 0,
                    teacher_stages if settings.stage_inputs == "teacher" else None)
                if teacher is None:
                    loss = task.loss(out, y, label_smoothing=settings.label_smoothing)
                    teacher = F.softmax(out.detach().float(), dim=-1)
                    teacher_stages = [t.detach() for t in stages] if stages else None
                    sums[0] += loss.detach()
                else:
                    loss = F.kl_div(F.log_softmax(out.float(), dim=-1), teacher,
                                    reduction="batchmean")
                    if stages and teacher_stages:
                        loss = loss + settings.stage_distill * _stage_gap(stages, teacher_stages)
                    sums[1] += loss.detach() / max(1, settings.random_subnets + 1)
                loss.backward()
            if world > 1:
                _all_reduce_grads(params, world)
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            scheduler.step()
            steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(sums[0]) / steps:.3f}")
        if bar is not None:
            bar.close()
        losses = (sums / max(steps, 1)).tolist()
        if not all(math.isfinite(v) for v in losses):
            from ..training import NonFiniteLoss

            raise NonFiniteLoss(f"supernet loss became {losses} in epoch {epoch + 1}")
        accs = [float("nan"), float("nan")]
        if rank == 0:
            for i, spec in enumerate((net.largest, net.smallest)):
                metrics = evaluate_subnet(net, spec, val_set, task, device, calibration, settings)
                accs[i] = float(metrics.get(task.metric_name, float("nan")))
        stats = EpochStats(epoch=epoch + 1, loss_largest=losses[0], loss_distill=losses[1],
                           acc_largest=accs[0], acc_smallest=accs[1],
                           seconds=time.perf_counter() - t0, steps=steps,
                           lr=float(scheduler.get_last_lr()[0]))
        history.append(stats)
        if rank == 0:
            if ckpt is not None:
                _save(ckpt, net, optimizer, scheduler, {
                    "epoch": epoch + 1, "epochs": settings.epochs,
                    "settings": asdict(settings), "space": net.space.name,
                    "history": [asdict(h) for h in history]})
            if log:
                log(f"[supernet] epoch {epoch + 1}/{settings.epochs}: loss {losses[0]:.4f} "
                    f"(distill {losses[1]:.4f}), {task.metric_name} largest {accs[0]:.4f} "
                    f"smallest {accs[1]:.4f}, {stats.seconds:.1f} s")
        if on_epoch is not None and on_epoch(stats) is False:
            break
    return history


def _bar(total: int, desc: str, quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------
# Ray Train
# ---------------------------------------------------------------------------

def _ray_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from . import Supernet

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"])
    net = Supernet(**config["supernet"])
    device = ray.train.torch.get_device()
    net.to(device)
    if world > 1:  # identical starting weights on every worker
        import torch.distributed as dist

        for t in list(net.parameters()) + list(net.buffers()):
            dist.broadcast(t.data, src=0)
    settings = SandwichSettings.from_dict(config["settings"])

    def report(stats: EpochStats) -> None:
        ray.train.report({**asdict(stats), "rank": rank})

    train_supernet(net, config["bundle"], settings, config["checkpoint_dir"], device=device,
                   resume=True, on_epoch=report, log=print if rank == 0 else None, rank=rank,
                   world=world)


def train_supernet_ray(supernet_kwargs: dict[str, Any], bundle, settings: SandwichSettings,
                       checkpoint_dir: str | os.PathLike, num_workers: int = 2,
                       use_gpu: bool | None = None) -> list[EpochStats]:
    """Train a supernet data-parallel on Ray Train (``TorchTrainer``):
    ``num_workers`` workers (one per GPU when ``use_gpu``; default: GPUs when
    the Ray cluster has any, else CPU workers with gloo). ``supernet_kwargs``
    are ``Supernet``'s arguments (every worker builds its own copy).
    Checkpoints go to ``checkpoint_dir`` (a path every worker's node can
    write: local disk on one machine, shared storage on a cluster); the
    history is read back from there. Ray must be initialised."""
    import tempfile

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= num_workers
    storage = tempfile.mkdtemp(prefix="hnas_train_")
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"supernet": supernet_kwargs, "bundle": bundle,
                           "settings": asdict(settings), "seed": settings.seed,
                           "checkpoint_dir": str(Path(checkpoint_dir).resolve())},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=storage, name="supernet"),
    )
    try:
        trainer.fit()
    finally:
        import shutil

        shutil.rmtree(storage, ignore_errors=True)
    state = json.loads((Path(checkpoint_dir) / CHECKPOINT_STATE).read_text())
    return [EpochStats(**h) for h in state.get("history", [])]
