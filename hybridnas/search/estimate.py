"""Cost before commitment: what a search will spend, estimated before it starts.

``pick_architecture`` draws a few architectures of the space and keeps the
median by MACs; ``time_trial_step`` trains it for a few batches on the run's
device and data (one warm-up batch, then timed ones) and times a validation
batch and a latency measurement; ``estimate_trials`` turns those figures and
the run's options into the cost of one trial, the trials the budget buys and
the expected wall time (pure arithmetic). ``estimate_search`` does all three
for a run.

The result prints itself (``lines()``) and lists its ``warnings``. A strategy
that spends its budget differently supplies its own object with the same two
members (``CostEstimate``); the search prints whichever it gets, at the start
of a run and for ``--dry-run``. The one-shot strategy's is ``OneShotEstimate``:
``estimate_oneshot`` turns a ``OneShotTiming`` (a few sandwich steps and
subnet evaluations timed by ``hybridnas.supernet.estimate``, which builds the
supernet this room may not import) into the cost of its three phases.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["CostEstimate", "StepTiming", "TrialsEstimate", "estimate_trials",
           "pick_architecture", "time_trial_step", "estimate_search", "MIN_TRIALS",
           "SLOW_EPOCH_S", "KNOBS", "EvalTiming", "OneShotTiming", "OneShotEstimate",
           "estimate_oneshot", "MIN_SUBNETS", "ONESHOT_KNOBS", "NoEstimate"]

#: Fewer trials than this cannot make much of a front: the estimate says so.
MIN_TRIALS = 5
#: A first epoch longer than this (seconds) is called out.
SLOW_EPOCH_S = 15 * 60.0
#: What makes a trial cheaper, named when the estimate warns.
KNOBS = ("--subset N (fewer training images)", "--resolution R (a smaller proxy input)",
         "--space-option width_mult=0.25 (narrower networks)",
         "--max-batches-per-epoch N", "--config configs/quickstart.yaml (a proxy sized "
         "for minutes on a CPU)")
#: Fewer ranked subnets than this make a poor use of a trained supernet.
MIN_SUBNETS = 20
#: What makes a one-shot search cheaper, named when its estimate warns.
ONESHOT_KNOBS = ("--subset N", "--max-batches-per-epoch N", "--resolution R",
                 "--space-option width_mult=0.25", "--sandwich-random N",
                 "--config configs/oneshot_quickstart.yaml (a proxy sized for minutes on a CPU)")


class CostEstimate(Protocol):
    """What a strategy's cost estimate offers the search: lines to print and
    the warnings among them (empty when the plan looks sound)."""

    warnings: tuple[str, ...]

    def lines(self) -> list[str]: ...


@dataclass(frozen=True)
class StepTiming:
    """What a short timed run of one architecture measured, in seconds.

    ``arch``: which architecture and how it was chosen; ``device``: where it
    ran; ``train_batch_s``: one training step (forward, backward, optimiser)
    after a warm-up batch, the mean of ``batches_timed``; ``val_batch_s``:
    one validation batch; ``latency_s``: one trial's latency measurement;
    ``setup_s``: building the network."""

    arch: str
    device: str
    train_batch_s: float
    val_batch_s: float
    latency_s: float
    setup_s: float
    batches_timed: int


def _fmt_s(seconds: float) -> str:
    from ..training_progress import format_seconds

    return format_seconds(seconds)


@dataclass(frozen=True)
class TrialsEstimate:
    """The plan of a multi-trial search (``estimate_trials`` fills it)."""

    timing: StepTiming
    epochs: int
    batches_per_epoch: int
    val_batches: int
    devices_per_trial: float
    concurrency: int
    unit: str                 # "gpu" | "cpu": what a device-second is
    epoch_s: float            # wall seconds of one epoch (training + validation)
    trial_s: float            # wall seconds of one fully trained trial
    trial_device_s: float     # what one trial costs the device budget
    trials: int | None        # trials the budget buys (None: nothing bounds the run)
    limited_by: str           # which budget bounds it
    wall_s: float | None      # expected wall time of the run
    early_stopping: bool
    warnings: tuple[str, ...]
    suggested_batches: int | None = None  # batches per epoch that would clear the warnings
    batch_size: int = 0

    def lines(self) -> list[str]:
        t = self.timing
        unit = "GPU" if self.unit == "gpu" else "CPU"
        per = self.devices_per_trial
        out = [
            f"estimate (strategy trials): per epoch {self.epoch_s * per:.0f} {unit} device-s "
            f"(~{_fmt_s(self.epoch_s)} wall: {self.batches_per_epoch} batches x "
            f"{t.train_batch_s * 1e3:.0f} ms + validation {self.val_batches} x "
            f"{t.val_batch_s * 1e3:.0f} ms); per trial {self.trial_device_s:.0f} {unit} "
            f"device-s (~{_fmt_s(self.trial_s)} wall: {self.epochs} epoch(s) + "
            f"{t.setup_s + t.latency_s:.1f} s build and latency measurement)",
            f"estimate timed on {t.device}: {t.arch}; {t.batches_timed} training batch(es) "
            f"after one warm-up batch" + (" (timed alone: trials sharing CPU cores run slower)"
                                          if t.device == "cpu" and self.concurrency > 1 else ""),
        ]
        if self.trials is None:
            out.append("estimate: no budget bounds the run (--budget-gpu-hours, --budget-trials, "
                       "--time-limit): trials start until it is stopped")
        else:
            more = (" (early stopping ends some trials sooner, so more may fit)"
                    if self.early_stopping else "")
            out.append(f"estimate: {self.trials} trial(s) fit the {self.limited_by}{more}; at "
                       f"{self.concurrency} concurrent trial(s) ~{_fmt_s(self.wall_s or 0.0)} "
                       f"wall")
        out += [f"warning: {w}" for w in self.warnings]
        if self.warnings and self.suggested_batches:
            n = self.suggested_batches
            subset = f" (or --subset ~{n * self.batch_size})" if self.batch_size else ""
            out.append(f"at this pace --max-batches-per-epoch {n}{subset} would clear the "
                       f"warning(s) above")
        if self.warnings:
            out.append("make trials cheaper with " + ", ".join(KNOBS) + "; or give a larger budget")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_trials(timing: StepTiming, *, epochs: int, batches_per_epoch: int,
                    val_batches: int, devices_per_trial: float = 1.0, concurrency: int = 1,
                    budget_device_s: float | None = None, spent_device_s: float = 0.0,
                    budget_trials: int | None = None, trials_done: int = 0,
                    time_limit_s: float | None = None, elapsed_s: float = 0.0,
                    unit: str = "cpu", early_stopping: bool = False,
                    batch_size: int = 0) -> TrialsEstimate:
    """The plan of a multi-trial search from a ``StepTiming`` (pure arithmetic).

    epoch = batches/epoch x train batch + validation batches x val batch;
    trial (wall) = epochs x epoch + setup + latency measurement; trial
    (device) = trial wall x ``devices_per_trial``. Trials that fit: the
    fewest of what is left of the device budget / trial device-seconds, the
    trial budget less ``trials_done``, and what is left of the time limit /
    trial wall x ``concurrency``. Wall time: waves of ``concurrency`` trials,
    at most the time left. Warns below ``MIN_TRIALS`` trials (unless the
    trial budget asked for that few) or above ``SLOW_EPOCH_S`` per epoch;
    then ``suggested_batches`` is the most training batches per epoch that
    would clear both (None when even one batch would not), and
    ``batch_size`` turns it into a ``--subset`` in ``lines()``.
    """
    epoch_s = batches_per_epoch * timing.train_batch_s + val_batches * timing.val_batch_s
    trial_s = epochs * epoch_s + timing.setup_s + timing.latency_s
    trial_device_s = trial_s * float(devices_per_trial)
    concurrency = max(1, int(concurrency))
    fits: list[tuple[int, str]] = []
    if budget_device_s is not None:
        left = max(0.0, budget_device_s - spent_device_s)
        fits.append((int(left // trial_device_s) if trial_device_s > 0 else 0, "device budget"))
    if budget_trials is not None:
        fits.append((max(0, int(budget_trials) - int(trials_done)), "trial budget"))
    time_left = None
    if time_limit_s is not None:
        time_left = max(0.0, time_limit_s - elapsed_s)
        waves = int(time_left // trial_s) if trial_s > 0 else 0
        fits.append((waves * concurrency, "time limit"))
    trials, limited_by = min(fits) if fits else (None, "")
    wall_s = None
    if trials is not None:
        wall_s = math.ceil(trials / concurrency) * trial_s
        if time_left is not None:
            wall_s = min(wall_s, time_left)
    warnings = []
    if trials is not None and trials < MIN_TRIALS and limited_by != "trial budget":
        warnings.append(f"only {trials} trial(s) fit the {limited_by}: too few to find a front "
                        f"(aim for {MIN_TRIALS} or more)")
    if epoch_s > SLOW_EPOCH_S:
        warnings.append(f"one epoch of one trial takes ~{_fmt_s(epoch_s)} here "
                        f"(more than {_fmt_s(SLOW_EPOCH_S)})")
    caps = []  # training batches per epoch that each warning allows
    fixed = timing.setup_s + timing.latency_s + epochs * val_batches * timing.val_batch_s
    if epoch_s > SLOW_EPOCH_S:
        caps.append((SLOW_EPOCH_S - val_batches * timing.val_batch_s) / timing.train_batch_s)
    if warnings and trials is not None and trials < MIN_TRIALS and limited_by == "device budget":
        target = max(0.0, budget_device_s - spent_device_s) / MIN_TRIALS / float(devices_per_trial)
        caps.append((target - fixed) / (epochs * timing.train_batch_s))
    elif warnings and trials is not None and trials < MIN_TRIALS and limited_by == "time limit":
        target = time_left / math.ceil(MIN_TRIALS / concurrency)
        caps.append((target - fixed) / (epochs * timing.train_batch_s))
    suggested = int(min(caps)) if caps and timing.train_batch_s > 0 else None
    if suggested is not None and not 1 <= suggested < batches_per_epoch:
        suggested = None
    return TrialsEstimate(timing=timing, epochs=int(epochs), batches_per_epoch=int(batches_per_epoch),
                          val_batches=int(val_batches), devices_per_trial=float(devices_per_trial),
                          concurrency=concurrency, unit=unit, epoch_s=epoch_s, trial_s=trial_s,
                          trial_device_s=trial_device_s, trials=trials, limited_by=limited_by,
                          wall_s=wall_s, early_stopping=bool(early_stopping),
                          warnings=tuple(warnings), suggested_batches=suggested,
                          batch_size=int(batch_size))


def pick_architecture(space, resolution, input_shape, num_outputs: int, samples: int = 3,
                      seed: int = 0, max_seconds: float = 10.0):
    """A typical architecture of ``space`` to time: the median by MACs of up
    to ``samples`` valid ones drawn at random (``space.suggest`` on an
    in-memory Optuna study, checked as the searcher checks them; counting
    stops after ``max_seconds`` with what it has; ``_size`` counts). Returns
    (spec, description) or (None, why not)."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    shape = tuple(int(s) for s in input_shape)
    found, start = [], time.perf_counter()
    for _ in range(samples * 40):
        if len(found) >= samples or (found and time.perf_counter() - start > max_seconds):
            break
        try:
            spec = space.suggest(study.ask())
            check = getattr(space, "check", None)
            if not (check(spec) if check is not None else not spec.problems(resolution)):
                continue
            macs, params = _size(spec, shape, int(num_outputs))
        except Exception:  # noqa: BLE001 - an invalid draw: the searcher rejects it too
            continue
        found.append((macs, params, spec))
    if not found:
        return None, f"no valid architecture in {samples * 40} draws of the space"
    found.sort(key=lambda f: f[0])
    macs, params, spec = found[len(found) // 2]
    return spec, (f"the median-MACs architecture of {len(found)} random samples of the space "
                  f"({spec.pattern}, {params / 1e6:.2f} M params, {macs / 1e6:.1f} M MACs)")


def _size(spec, shape: tuple[int, ...], num_outputs: int) -> tuple[int, int]:
    """(MACs, params) of ``spec`` for ranking samples: counted from shapes by
    torch's ``FlopCounterMode`` on the meta device (no weights, no compute),
    several times faster than ``hybridnas.complexity.cost``'s fvcore trace,
    with the same params and the same MACs less the elementwise ops ``cost``
    adds (activations, softmax); a network the meta device cannot run is
    counted by ``cost``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..builder import build_model

    try:
        with torch.device("meta"):
            model = build_model(spec, num_classes=num_outputs, in_chans=shape[0])
            with FlopCounterMode(display=False) as counter:
                model(torch.empty(1, *shape))
        return counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - an op without a meta kernel: trace it
        from ..complexity import cost

        c = cost(spec, shape, num_classes=num_outputs, in_chans=shape[0])
        return c.macs, c.params


class _Timed(Exception):
    """Ends the timed training early (raised from ``fit``'s ``on_batch``)."""


def time_trial_step(spec, bundle, *, device: str = "cpu", threads: int = 1,
                    batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.05,
                    label_smoothing: float = 0.0, amp: bool = False, batches: int = 3,
                    max_seconds: float = 10.0, latency=None, describe: str = "",
                    seed: int = 0) -> StepTiming:
    """Time ``spec`` as a trial would run it: build it, train it with
    ``hybridnas.training.fit`` (the trial's own loop and settings) for one
    warm-up batch and then up to ``batches`` timed ones (fewer once
    ``max_seconds`` have passed), time one validation batch (after a
    warm-up on a few images) and one latency measurement (``latency``: the trial's
    ``TrialLatency``; None: the search defaults on the CPU). On CUDA the clock is read after a
    synchronisation. Raises what training raises (out of memory, ...)."""
    import torch

    from ..builder import build_model
    from ..latency import measure
    from ..training import default_eval_batch_size, evaluate, fit
    from .settings import TrialLatency
    from .trial import latency_resolution

    lat = latency or TrialLatency()
    shape = tuple(int(s) for s in bundle.input_shape)
    cuda = str(device).startswith("cuda")
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        t0 = time.perf_counter()
        model = build_model(spec, num_classes=bundle.num_outputs, in_chans=shape[0])
        setup_s = time.perf_counter() - t0
        marks: list[float] = []

        def on_batch(progress) -> None:
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
            if len(marks) > batches or (len(marks) > 1 and marks[-1] - marks[0] > max_seconds):
                raise _Timed

        started = time.perf_counter()
        try:
            fit(model, bundle, epochs=1, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                warmup_epochs=0, label_smoothing=label_smoothing, device=device, amp=amp,
                on_batch=on_batch, max_batches_per_epoch=batches + 1, max_val_batches=1, seed=seed)
        except _Timed:
            pass
        if len(marks) > 1:
            train_batch_s = (marks[-1] - marks[0]) / (len(marks) - 1)
        else:  # a one-batch epoch: the warm-up batch is all there is
            train_batch_s = (marks[0] if marks else time.perf_counter()) - started
        eval_bs = default_eval_batch_size(batch_size)
        # eval mode warmed up on a few images (kernels, lazy inits), then one full batch
        # timed; a full-size warm-up batch would double the cost for little difference
        evaluate(model, bundle.val, bundle.task, device, batch_size=min(eval_bs, 8), amp=amp,
                 max_batches=1)
        t0 = time.perf_counter()
        evaluate(model, bundle.val, bundle.task, device, batch_size=eval_bs, amp=amp,
                 max_batches=1)
        if cuda:
            torch.cuda.synchronize()
        val_batch_s = time.perf_counter() - t0
        probe = measure(model, device=lat.device, batch_size=lat.batch_size,
                        resolution=latency_resolution(shape, spec), in_chans=shape[0],
                        num_classes=int(bundle.num_outputs), threads=lat.threads, warmup=1,
                        repeats=3, clock="wall")
        latency_s = probe.median_ms / 1e3 * (lat.warmup + lat.repeats)
    finally:
        torch.set_num_threads(previous)
        if cuda:
            torch.cuda.empty_cache()
    return StepTiming(arch=describe or spec.pattern, device=str(device),
                      train_batch_s=train_batch_s, val_batch_s=val_batch_s, latency_s=latency_s,
                      setup_s=setup_s, batches_timed=max(1, len(marks) - 1))


def estimate_search(cfg, space, bundle, resolution, *, gpus: float, concurrency: int,
                    unit: str, spent_device_s: float = 0.0, trials_done: int = 0,
                    elapsed_s: float = 0.0, latency=None) -> CostEstimate:
    """The cost estimate of a multi-trial run with options ``cfg`` (a
    ``SearchConfig``) on its loaded ``bundle`` and ``space``: a sampled
    architecture timed on the trial's device (CUDA when ``gpus`` > 0 and
    present) with the trial's threads, then ``estimate_trials``.
    ``spent_device_s`` / ``trials_done`` / ``elapsed_s``: what a resumed run
    has used already."""
    import torch

    from ..training import default_eval_batch_size, steps_per_epoch

    spec, describe = pick_architecture(space, resolution, bundle.input_shape,
                                       int(bundle.num_outputs), seed=cfg.seed)
    if spec is None:
        return NoEstimate(describe)
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    threads = cfg.threads_per_trial or max(1, int(cfg.cpus_per_trial))
    try:
        timing = time_trial_step(spec, bundle, device=device, threads=threads,
                                 batch_size=cfg.batch_size, lr=cfg.lr,
                                 weight_decay=cfg.weight_decay,
                                 label_smoothing=cfg.label_smoothing, amp=cfg.amp,
                                 latency=latency, describe=describe, seed=cfg.seed)
    except Exception as e:  # noqa: BLE001 - say it: the same architecture would fail as a trial
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return NoEstimate(f"{describe} failed to train: {type(e).__name__}: {first}"[:400])
    eval_bs = default_eval_batch_size(cfg.batch_size)
    val_batches = math.ceil(len(bundle.val) / eval_bs)
    if cfg.max_val_batches:
        val_batches = min(val_batches, int(cfg.max_val_batches))
    return estimate_trials(
        timing, epochs=cfg.epochs,
        batches_per_epoch=steps_per_epoch(len(bundle.train), cfg.batch_size,
                                          cfg.max_batches_per_epoch),
        val_batches=val_batches, devices_per_trial=gpus if device == "cuda" else 1.0,
        concurrency=concurrency,
        budget_device_s=None if cfg.budget_gpu_hours is None else cfg.budget_gpu_hours * 3600.0,
        spent_device_s=spent_device_s, budget_trials=cfg.budget_trials, trials_done=trials_done,
        time_limit_s=cfg.time_limit, elapsed_s=elapsed_s, unit=unit,
        early_stopping=cfg.scheduler != "none", batch_size=cfg.batch_size)


@dataclass(frozen=True)
class NoEstimate:
    """No figures: why (no valid architecture drawn, the timed step failed)."""

    reason: str

    @property
    def warnings(self) -> tuple[str, ...]:
        return (f"no cost estimate: {self.reason}",)

    def lines(self) -> list[str]:
        return [f"warning: {w}" for w in self.warnings]


# ---------------------------------------------------------------------------
# The one-shot strategy: supernet training, inherited-weight ranking, retraining
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalTiming:
    """One subnet scored with inherited weights, in seconds: ``bn_s`` its
    preparation (batch-norm recalibration over all of its batches, then the
    classifier refit), ``val_batch_s`` one
    validation batch, ``propose_s`` its proposal (Optuna ask and tell, the
    space's suggest and check)."""

    bn_s: float
    val_batch_s: float
    propose_s: float = 0.0

    def seconds(self, val_batches: int) -> float:
        """One evaluation over ``val_batches`` validation batches."""
        return self.propose_s + self.bn_s + int(val_batches) * self.val_batch_s


@dataclass(frozen=True)
class OneShotTiming:
    """What a short timed run of a supernet measured, in seconds.

    ``step_s``: one sandwich step (largest, smallest and ``subnets_per_step``
    - 2 random subnets forward and backward, one optimiser step), from
    ``steps_timed`` steps after a warm-up step (``step_note``: how);
    ``largest``/``smallest``: their evaluation after every epoch;
    ``sampled``: the mean evaluation of the ``sampled`` subnets (how the
    ranking scores one); ``calibration_s``: calibrating the latency
    predictor (0 when a table is given or the run has one); ``setup_s``:
    building the supernet; ``retrain``: a sampled subnet trained standalone
    (``time_trial_step``), or None when nothing is retrained."""

    device: str
    supernet_params: int
    subnets_per_step: int
    step_s: float
    steps_timed: int
    step_note: str
    largest: EvalTiming
    smallest: EvalTiming
    sampled: EvalTiming
    sampled_desc: str
    calibration_s: float
    setup_s: float
    retrain: StepTiming | None = None


@dataclass(frozen=True)
class OneShotEstimate:
    """The plan of a one-shot search (``estimate_oneshot`` fills it). Device
    seconds are what ``--budget-gpu-hours`` counts; ``*_wall_s`` wall time."""

    timing: OneShotTiming
    unit: str
    epochs: int                # --supernet-epochs
    epochs_done: int           # finished before a resume
    epochs_fit: int            # of the epochs left, those the budget lets start
    steps_per_epoch: int
    val_batches: int
    workers: int
    epoch_s: float             # device-s of one supernet epoch
    epoch_wall_s: float
    subnet_s: float            # device-s of one ranked subnet
    subnets: int               # subnets the budget ranks
    subnets_limited_by: str
    max_subnets: int           # --budget-trials (or the default cap)
    retrain_top: int
    retrain_epochs: int
    retrain_each_s: float
    retrained: int             # of retrain_top, those the budget lets start
    device_s: float            # the whole run
    wall_s: float
    warnings: tuple[str, ...]
    suggested_subnets: int | None = None  # a --budget-trials that leaves room to retrain

    @property
    def subnets_per_device_minute(self) -> float:
        return 60.0 / self.subnet_s if self.subnet_s > 0 else math.inf

    def lines(self) -> list[str]:
        t = self.timing
        unit = "GPU" if self.unit == "gpu" else "CPU"
        end_s = t.largest.seconds(self.val_batches) + t.smallest.seconds(self.val_batches)
        left = self.epochs - self.epochs_done
        done = f", {self.epochs_done} done before" if self.epochs_done else ""
        workers = (f" on {self.workers} data-parallel workers (speed-up assumed linear)"
                   if self.workers > 1 else "")
        out = [
            f"estimate (strategy oneshot): supernet {t.supernet_params / 1e6:.2f} M params; "
            f"per supernet epoch {self.epoch_s:.0f} {unit} device-s (~{_fmt_s(self.epoch_wall_s)} "
            f"wall{workers}: {self.steps_per_epoch} sandwich steps x {t.step_s * 1e3:.0f} ms "
            f"({t.subnets_per_step} subnets each) + largest and smallest evaluated "
            f"{end_s:.1f} s); supernet training {min(left, self.epochs_fit)} of {self.epochs} "
            f"epoch(s){done}: {self.epochs_fit * self.epoch_s:.0f} device-s",
            f"estimate: one subnet ranked {self.subnet_s * 1e3:.0f} ms (batch-norm recalibration "
            f"and classifier refit "
            f"{t.sampled.bn_s * 1e3:.0f} ms + validation {self.val_batches} x "
            f"{t.sampled.val_batch_s * 1e3:.0f} ms + proposal {t.sampled.propose_s * 1e3:.0f} "
            f"ms) = {self.subnets_per_device_minute:.0f} subnets per device-minute; "
            f"{self.subnets} subnet(s) ranked ({self.subnets_limited_by})",
        ]
        if self.retrain_top > 0:
            out.append(f"estimate: retraining --retrain-top {self.retrain_top} x --retrain-epochs "
                       f"{self.retrain_epochs}: {self.retrain_each_s:.0f} device-s per subnet; "
                       f"{self.retrained} of {self.retrain_top} fit, "
                       f"{self.retrained * self.retrain_each_s:.0f} device-s")
        out += [
            f"estimate: whole run ~{self.device_s:.0f} {unit} device-s (latency calibration "
            f"{t.calibration_s:.0f} s included), ~{_fmt_s(self.wall_s)} wall",
            f"estimate timed on {t.device}: {t.step_note}; {t.sampled_desc}; latency "
            f"measurements of the front and its checkpoints are not counted",
        ]
        out += [f"warning: {w}" for w in self.warnings]
        if self.warnings and self.suggested_subnets:
            out.append(f"--budget-trials {self.suggested_subnets} would leave the budget room "
                       f"to retrain")
        if self.warnings:
            out.append("make the supernet cheaper with " + ", ".join(ONESHOT_KNOBS)
                       + "; or give a larger budget")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Allowance:
    """What is left of the device budget and the time limit as phases spend
    it. As in the run, a step (an epoch, a subnet, a retraining) starts while
    anything is left, so the last one started may overshoot."""

    def __init__(self, device_s: float | None, wall_s: float | None):
        self.device = math.inf if device_s is None else max(0.0, device_s)
        self.wall = math.inf if wall_s is None else max(0.0, wall_s)

    @staticmethod
    def _starts(left: float, each: float, n: int) -> int:
        if not math.isfinite(left) or each <= 0:
            return n
        return math.ceil(left / each - 1e-9) if left > 0 else 0

    def take(self, n: int, device_each: float, wall_each: float,
             cap: str) -> tuple[int, str]:
        """How many of ``n`` equal steps start, spent; and what bounds them:
        ``cap``, "device budget" or "time limit"."""
        by_device = self._starts(self.device, device_each, n)
        by_wall = self._starts(self.wall, wall_each, n)
        k = max(0, min(n, by_device, by_wall))
        self.spend(k * device_each, k * wall_each)
        if k == n:
            return k, cap
        return k, "device budget" if by_device <= by_wall else "time limit"

    def spend(self, device_s: float, wall_s: float) -> None:
        self.device = max(0.0, self.device - device_s)
        self.wall = max(0.0, self.wall - wall_s)


def estimate_oneshot(timing: OneShotTiming, *, epochs: int, steps_per_epoch: int,
                     val_batches: int, max_subnets: int, epochs_done: int = 0,
                     subnets_done: int = 0, workers: int = 1, retrain_top: int = 0,
                     retrain_epochs: int = 0, retrain_batches_per_epoch: int = 0,
                     retrain_val_batches: int = 0, budget_device_s: float | None = None,
                     spent_device_s: float = 0.0, time_limit_s: float | None = None,
                     elapsed_s: float = 0.0, unit: str = "cpu") -> OneShotEstimate:
    """The plan of a one-shot search from a ``OneShotTiming`` (pure arithmetic).

    The phases run in order and each stops once the budget is spent, as the
    run does: supernet epochs (``steps_per_epoch`` sandwich steps, then the
    largest and smallest evaluated over ``val_batches``; with ``workers``
    data-parallel workers the wall time is the steps / workers and the
    device time the wall time x workers), the latency calibration, the
    ranking (at most ``max_subnets`` - ``subnets_done`` subnets) and the
    retraining of ``retrain_top`` subnets for ``retrain_epochs`` each. A
    phase is given what is left of ``budget_device_s`` - ``spent_device_s``
    and ``time_limit_s`` - ``elapsed_s``; an epoch, subnet or retraining
    starts while anything is left (the run checks between them), so the
    totals may pass the budget by one of them. Warns when the budget buys fewer supernet epochs than
    asked, fewer than ``MIN_SUBNETS`` subnets, fewer retrainings than
    ``retrain_top`` (then ``suggested_subnets`` is a ranking cap that leaves
    room for them, if one does), or an epoch takes more than ``SLOW_EPOCH_S``.
    """
    t = timing
    workers = max(1, int(workers))
    end_s = t.largest.seconds(val_batches) + t.smallest.seconds(val_batches)
    epoch_wall = steps_per_epoch * t.step_s / workers + end_s
    epoch_s = epoch_wall * workers
    subnet_s = t.sampled.seconds(val_batches)
    retrain_each = 0.0
    if t.retrain is not None and retrain_top > 0:
        r = t.retrain
        retrain_each = r.setup_s + retrain_epochs * (retrain_batches_per_epoch * r.train_batch_s
                                                     + retrain_val_batches * r.val_batch_s)
    left = _Allowance(None if budget_device_s is None else budget_device_s - spent_device_s,
                      None if time_limit_s is None else time_limit_s - elapsed_s - t.setup_s)
    epochs_left = max(0, int(epochs) - int(epochs_done))
    epochs_fit, epochs_by = left.take(epochs_left, epoch_s, epoch_wall, "")
    left.spend(t.calibration_s, t.calibration_s)
    after_supernet = left.device
    cap = max(0, int(max_subnets) - int(subnets_done))
    subnets, subnets_by = left.take(cap, subnet_s, subnet_s, f"--budget-trials {max_subnets}")
    retrained, retrain_by = left.take(max(0, int(retrain_top)), retrain_each, retrain_each, "")
    device_s = epochs_fit * epoch_s + t.calibration_s + subnets * subnet_s + retrained * retrain_each
    wall_s = (t.setup_s + epochs_fit * epoch_wall + t.calibration_s + subnets * subnet_s
              + retrained * retrain_each)
    warnings = []
    if epochs_fit < epochs_left:
        if epochs_by == "device budget":
            hours = (budget_device_s or 0.0) / 3600.0
            warnings.append(f"--budget-gpu-hours {hours:g} buys {epochs_done + epochs_fit} of "
                            f"{epochs} supernet epochs (~{epoch_s:.0f} device-s each; none "
                            f"starts once it is spent); raise it or lower --supernet-epochs")
        else:
            warnings.append(f"--time-limit {_fmt_s(time_limit_s or 0.0)} allows "
                            f"{epochs_done + epochs_fit} of {epochs} supernet epochs "
                            f"(~{_fmt_s(epoch_wall)} each); raise it or lower --supernet-epochs")
    if subnets < min(MIN_SUBNETS, cap) and subnets_by != f"--budget-trials {max_subnets}":
        warnings.append(f"only {subnets} subnet(s) can be ranked in what the supernet leaves of "
                        f"the {subnets_by} (aim for {MIN_SUBNETS} or more); raise the budget or "
                        f"lower --supernet-epochs")
    suggested = None
    if retrained < retrain_top:
        if subnets_by in ("device budget", "time limit") and subnets > 0:
            room = after_supernet - retrain_top * retrain_each
            suggested = int(room // subnet_s) if subnet_s > 0 and room > subnet_s else None
            warnings.append(f"ranking spends what is left of the {subnets_by}, so {retrained} of "
                            f"--retrain-top {retrain_top} subnet(s) can be retrained; cap the "
                            f"ranking with --budget-trials or raise the budget")
        else:
            warnings.append(f"{retrained} of --retrain-top {retrain_top} retraining(s) "
                            f"(--retrain-epochs {retrain_epochs}, ~{retrain_each:.0f} device-s "
                            f"each) fit the {retrain_by}; raise it or lower --retrain-top / "
                            f"--retrain-epochs")
    if epoch_wall > SLOW_EPOCH_S:
        warnings.append(f"one supernet epoch takes ~{_fmt_s(epoch_wall)} here (more than "
                        f"{_fmt_s(SLOW_EPOCH_S)})")
    return OneShotEstimate(
        timing=t, unit=unit, epochs=int(epochs), epochs_done=int(epochs_done),
        epochs_fit=epochs_fit, steps_per_epoch=int(steps_per_epoch),
        val_batches=int(val_batches), workers=workers, epoch_s=epoch_s, epoch_wall_s=epoch_wall,
        subnet_s=subnet_s, subnets=subnets, subnets_limited_by=subnets_by,
        max_subnets=int(max_subnets), retrain_top=int(retrain_top),
        retrain_epochs=int(retrain_epochs), retrain_each_s=retrain_each, retrained=retrained,
        device_s=device_s, wall_s=wall_s, warnings=tuple(warnings),
        suggested_subnets=suggested)
