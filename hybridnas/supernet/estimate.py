"""Cost before commitment for ``--strategy oneshot``: a supernet timed briefly.

``time_oneshot`` builds the run's supernet on its device and data and times
what each phase repeats: a few sandwich steps (``train_supernet`` itself,
epochs of one and of a few steps, the difference being the steps), the
evaluation of the largest, the smallest and a few proposed subnets
(batch-norm recalibration, classifier refit and one validation batch each, the proposal
through an Optuna study like the run's), one forward pass for the latency
calibration and, when subnets are retrained, a sampled subnet trained
standalone (``hybridnas.search.estimate.time_trial_step``). The arithmetic
is ``hybridnas.search.estimate.estimate_oneshot``; ``estimate_oneshot_run``
does both for a run's options. Nothing is written to the run directory: the
proposals go to a SQLite study in a temporary folder, deleted afterwards.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time

import torch

from ..search.estimate import (
    EvalTiming,
    NoEstimate,
    OneShotTiming,
    estimate_oneshot,
    time_trial_step,
)
from .train import SandwichSettings, calibration_batches, refit_subnet_classifier, train_supernet

__all__ = ["time_oneshot", "estimate_oneshot_run", "CALIBRATION_NETS"]

#: Subnets the latency predictor is calibrated on (largest, smallest, random).
CALIBRATION_NETS = 6
#: Calls per network in a calibration (``calibrate``'s warm-up + repeats).
_CALIBRATION_CALLS = 2 + 5


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _time_steps(net, bundle, settings: SandwichSettings, device, steps: int,
                max_seconds: float) -> tuple[float, int, str]:
    """One sandwich step in seconds, the steps it was timed on and how.

    ``train_supernet`` runs one epoch of one step (a warm-up), one epoch of
    one step again and one of ``1 + k`` steps (``k`` at most ``steps``, fewer
    when the steps are slow: the timing aims to stay within ``max_seconds``);
    every epoch ends with the same short evaluation (one batch-norm batch,
    one validation batch), so the difference of the last two is ``k``
    sandwich steps. A warm-up slower than ``max_seconds`` ends the timing:
    its step (evaluation included, cold) is the figure, an upper bound."""
    probe = dataclasses.replace(settings, epochs=1, max_batches_per_epoch=1, max_val_batches=1,
                                bn_batches=1, warmup_epochs=0.0, quiet=True)

    def epoch(batches: int) -> tuple[float, int]:
        t0 = _clock(device)
        stats = train_supernet(net, bundle, dataclasses.replace(probe,
                                                                max_batches_per_epoch=batches),
                               None, device=device, resume=False, log=None)[-1]
        return _clock(device) - t0, stats.steps

    cold, _ = epoch(1)
    if cold > max_seconds:
        return cold, 1, "one cold sandwich step with its evaluation (an upper bound)"
    one, n1 = epoch(1)
    k = max(1, min(int(steps), int((max_seconds - cold - one) // max(one, 1e-9))))
    more, n2 = epoch(1 + k)
    if n2 > n1 and more > one:
        return (more - one) / (n2 - n1), n2 - n1, (f"{n2 - n1} sandwich step(s) timed after a "
                                                     f"warm-up step")
    # a training split too small for more steps, or noise larger than the steps
    return more / max(n2, 1), n2, f"{n2} sandwich step(s) with their evaluation (an upper bound)"


@torch.no_grad()
def _time_eval(net, spec, val, task, device, calibration: list,
               settings: SandwichSettings) -> EvalTiming:
    """The two halves of ``evaluate_subnet`` timed apart: the preparation
    (batch-norm recalibration over all of ``calibration`` -- its first
    batch, which also lays the subnet out, timed on its own; the others from
    the second -- then the classifier refit), then one validation batch."""
    from ..training import evaluate

    inputs = [x for x, _ in calibration]
    t0 = _clock(device)
    net.recalibrate_bn(spec, inputs[:1])
    first = _clock(device) - t0
    rest = 0.0
    if len(inputs) > 1:
        t0 = _clock(device)
        net.recalibrate_bn(spec, inputs[1:2])
        rest = (_clock(device) - t0) * (len(inputs) - 1)
    t0 = _clock(device)
    refit_subnet_classifier(net, spec, calibration, settings, task)
    refit = _clock(device) - t0
    net.activate(spec)
    t0 = _clock(device)
    evaluate(net, val, task, device, batch_size=settings.eval_batch_size, amp="off",
             max_batches=1)
    return EvalTiming(bn_s=first + rest + refit, val_batch_s=_clock(device) - t0)


def _proposals(cfg, space, samples: int, max_seconds: float) -> tuple[list, float]:
    """Up to ``samples`` valid subnets proposed as the run proposes them (the
    run's sampler, a SQLite study in a temporary folder, ask, the space's
    suggest and check, tell), and the mean seconds per valid proposal."""
    import tempfile
    import warnings

    import optuna

    from ..search.storage import make_sampler, storage_for, tell_rejected

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    specs: list = []
    with tempfile.TemporaryDirectory(prefix="hnas_estimate_") as tmp:
        storage = storage_for(f"sqlite:///{tmp}/study.db")
        study = optuna.create_study(storage=storage, study_name="estimate",
                                    sampler=make_sampler(cfg.sampler, cfg.seed,
                                                         cfg.population_size),
                                    directions=["maximize", "minimize"])
        start = time.perf_counter()
        for _ in range(samples * 20):
            if len(specs) >= samples or (specs and time.perf_counter() - start > max_seconds):
                break
            trial = study.ask()
            try:
                spec = space.suggest(trial)
                ok = bool(space.check(spec))
            except Exception:  # noqa: BLE001 - an invalid draw: the run rejects it too
                ok = False
            if not ok:
                tell_rejected(study, trial)
                continue
            study.tell(trial, [0.5, 1.0])
            specs.append(spec)
        spent = time.perf_counter() - start
        storage.engine.dispose()
    return specs, spent / max(1, len(specs))


def _forward_s(spec, cfg, bundle, device: str) -> tuple[float, float]:
    """(seconds to build ``spec``, one forward pass as the latency
    measurement times it: median of a short measurement)."""
    from ..builder import build_model
    from ..latency import measure

    shape = tuple(int(s) for s in bundle.input_shape)
    t0 = time.perf_counter()
    model = build_model(spec, num_classes=int(bundle.num_outputs), in_chans=shape[0])
    build_s = time.perf_counter() - t0
    probe = measure(model, device=device, batch_size=cfg.latency_batch_size, resolution=shape[-1],
                    in_chans=shape[0], num_classes=int(bundle.num_outputs),
                    threads=cfg.latency_threads, warmup=1, repeats=3, clock="wall")
    return build_s, probe.median_ms / 1e3


def time_oneshot(cfg, space, bundle, settings: SandwichSettings, *, device: str | torch.device,
                 calibrate: bool = True, samples: int = 2, steps: int = 3,
                 max_seconds: float = 20.0) -> OneShotTiming:
    """Time the phases of a one-shot search with options ``cfg`` (a
    ``SearchConfig``: sampler, latency and retraining settings) over
    ``space`` on the loaded ``bundle``, training as ``settings`` says, on
    ``device``. ``calibrate``: the run still has to calibrate its latency
    predictor. ``samples`` proposed subnets are evaluated, ``steps``
    sandwich steps timed; a phase stops adding samples after
    ``max_seconds``. Raises what the supernet raises (a space it cannot
    hold, out of memory)."""
    from ..latency.settings import SEARCH
    from ..search.settings import TrialLatency
    from . import Supernet

    device = torch.device(device)
    shape = tuple(int(s) for s in bundle.input_shape)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    net = Supernet(space, num_classes=int(bundle.num_outputs), in_chans=shape[0],
                   seed=cfg.seed).to(device)
    setup_s = time.perf_counter() - t0
    params = sum(p.numel() for p in net.parameters())
    largest, smallest = net.largest, net.smallest
    try:
        step_s, timed, note = _time_steps(net, bundle, settings, device, steps, max_seconds)
        calibration = calibration_batches(bundle.train, settings, device)
        val = bundle.val.to(device) if hasattr(bundle.val, "to") else bundle.val
        ends = [_time_eval(net, s, val, bundle.task, device, calibration, settings)
                for s in (largest, smallest)]
        specs, propose_s = _proposals(cfg, space, samples, max_seconds)
        if not specs:
            raise ValueError(f"no valid subnet in {samples * 20} proposals of the space")
        evals = [_time_eval(net, s, val, bundle.task, device, calibration, settings)
                 for s in specs]
    finally:
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sampled = EvalTiming(bn_s=statistics.fmean(e.bn_s for e in evals),
                         val_batch_s=statistics.fmean(e.val_batch_s for e in evals),
                         propose_s=propose_s)
    latency_device = cfg.latency_device or "cpu"
    retrain = None
    if cfg.retrain_top > 0:
        lat = TrialLatency(device=latency_device, batch_size=cfg.latency_batch_size,
                           repeats=cfg.latency_repeats, threads=cfg.latency_threads)
        retrain = time_trial_step(specs[0], bundle, device=str(device),
                                  threads=torch.get_num_threads(), batch_size=cfg.batch_size,
                                  lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  label_smoothing=cfg.label_smoothing, latency=lat,
                                  describe=specs[0].pattern, seed=cfg.seed,
                                  max_seconds=max_seconds)
    calibration_s = 0.0
    if calibrate:
        # as the run calibrates: the largest, the smallest and random subnets,
        # each built, measured part by part and then whole by the run's measurer
        calls = _CALIBRATION_CALLS + SEARCH.warmup + cfg.latency_repeats
        timed = [_forward_s(s, cfg, bundle, latency_device) for s in (largest, smallest)]
        if retrain is not None:  # the same subnet, built and measured already
            timed.append((retrain.setup_s, retrain.latency_s / (SEARCH.warmup
                                                                + cfg.latency_repeats)))
        else:
            timed.append(_forward_s(specs[0], cfg, bundle, latency_device))
        weights = (1, 1, CALIBRATION_NETS - 2)
        calibration_s = sum(w * (build + fwd * calls) for w, (build, fwd) in zip(weights, timed))
    return OneShotTiming(
        device=str(device), supernet_params=int(params),
        subnets_per_step=2 + int(settings.random_subnets), step_s=step_s, steps_timed=timed,
        step_note=note, largest=ends[0], smallest=ends[1], sampled=sampled,
        sampled_desc=f"evaluation the mean of {len(specs)} proposed subnet(s) "
                     f"({', '.join(s.pattern for s in specs)})",
        calibration_s=calibration_s, setup_s=setup_s, retrain=retrain)


def estimate_oneshot_run(cfg, space, bundle, *, device: str | torch.device,
                         settings: SandwichSettings, unit: str, max_subnets: int,
                         spent_device_s: float = 0.0, epochs_done: int = 0,
                         subnets_done: int = 0, calibrate: bool = True,
                         elapsed_s: float = 0.0):
    """The cost estimate of a one-shot run with options ``cfg`` on its loaded
    ``bundle`` and ``space``: ``time_oneshot`` on ``device``, then
    ``estimate_oneshot`` against the run's budget. ``spent_device_s`` /
    ``epochs_done`` / ``subnets_done`` / ``elapsed_s``: what a resumed run
    has done already; ``calibrate``: its latency predictor is still to be
    calibrated. Returns a ``OneShotEstimate``, or a ``NoEstimate`` saying
    why the timing failed (the run would fail the same way)."""
    from ..training import default_eval_batch_size, steps_per_epoch

    try:
        timing = time_oneshot(cfg, space, bundle, settings, device=device, calibrate=calibrate)
    except Exception as e:  # noqa: BLE001 - say it: the run itself would meet it
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return NoEstimate(f"the supernet failed to train or evaluate: {type(e).__name__}: "
                          f"{first}"[:400])
    n_val = len(bundle.val)
    val_batches = math.ceil(n_val / settings.eval_batch_size)
    retrain_val = math.ceil(n_val / default_eval_batch_size(cfg.batch_size))
    if cfg.max_val_batches:
        val_batches = min(val_batches, int(cfg.max_val_batches))
        retrain_val = min(retrain_val, int(cfg.max_val_batches))
    n_train = len(bundle.train)
    return estimate_oneshot(
        timing, epochs=settings.epochs, epochs_done=epochs_done,
        steps_per_epoch=steps_per_epoch(n_train, settings.batch_size,
                                        settings.max_batches_per_epoch),
        val_batches=val_batches, workers=cfg.supernet_workers, max_subnets=max_subnets,
        subnets_done=subnets_done, retrain_top=cfg.retrain_top,
        retrain_epochs=cfg.retrain_epochs,
        retrain_batches_per_epoch=steps_per_epoch(n_train, cfg.batch_size,
                                                  cfg.max_batches_per_epoch),
        retrain_val_batches=retrain_val,
        budget_device_s=None if cfg.budget_gpu_hours is None else cfg.budget_gpu_hours * 3600.0,
        spent_device_s=spent_device_s, time_limit_s=cfg.time_limit, elapsed_s=elapsed_s,
        unit=unit)
