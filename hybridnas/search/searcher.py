"""The Optuna-backed Tune searcher: architectures from a space, budget, fidelity.

``ArchSearcher`` is a Tune ``Searcher`` (its public hooks only) over an
Optuna multi-objective study driven by ask/tell (created or loaded in the
given storage, ``load_if_exists=True``), with what a NAS run needs:

- proposals come from ``space.suggest(trial)`` (define-by-run), checked
  with ``space.check(spec)`` (validation at the proxy resolution and the
  space's constraints) *before* any Tune trial exists: an
  invalid architecture is told to Optuna as an infeasible pruned trial
  (``storage.tell_rejected``: samplers that model constraints learn to
  avoid it) and recorded as REJECTED with the reason, and the searcher asks
  again;
- the Tune config of a trial carries the Optuna trial number (the run's
  ``trial_id``), the spec, the space parameters and the reference name;
- no new trial starts once the budget says so (``Budget.why_not_start``);
  the searcher then returns ``FINISHED`` and Tune ends after the running
  trials;
- the next proposal (and its params/MACs, counted here with fvcore so the
  trial need not) is worked out on a background thread while a trial trains,
  so Tune's driver loop answers epoch reports at once and the next trial
  starts without waiting for Optuna or for rejected candidates;
- results go back to Optuna deliberately: full-fidelity trials as
  COMPLETE with their objective values; trials a scheduler stopped early as
  PRUNED (their low-fidelity metric is not comparable with fully trained
  ones, and NSGA-II / TPE must not rank them as if it were); failed trials
  as FAIL. The status, arch id, epochs and error are stored as user
  attributes, so the study alone tells what happened.
"""
from __future__ import annotations

import logging
import math
import threading
import warnings
from typing import Any

from ray.tune.search import Searcher

from ..errors import UserError
from .settings import TrialSettings
from .storage import tell_rejected

__all__ = ["ArchSearcher", "MAX_CONSECUTIVE_REJECTIONS"]

log = logging.getLogger("hybridnas.search")

MAX_CONSECUTIVE_REJECTIONS = 200


class ArchSearcher(Searcher):
    """A Tune searcher over a hybridnas space with budget and fidelity handling.

    ``recorder`` is the run's ``RunRecorder`` (rows, budget, progress);
    ``screen(spec, input_shape)``: one more check before training (the
    run's ``--max-latency-ms`` on predicted latency), a reason or None;
    ``settings`` goes into every trial's config; ``metrics``/``modes`` are
    the objective keys of the trial reports and their directions.
    """

    def __init__(self, space, resolution, recorder, settings: TrialSettings,
                 metrics: list[str], modes: list[str], sampler, storage, study_name: str,
                 screen=None, continued=()):
        self._hn_space = space
        self._screen = screen  # measuring.latency_screen: (spec, input shape) -> reason | None
        self._resolution = resolution
        self._recorder = recorder
        self._settings = settings
        self._finished = False
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._prepared: list = []  # at most one proposal worked out ahead (prepare_next)
        self._fruitless = (0, 0)  # (invalid, already trained) of the last run of no proposal
        self._preparing: threading.Thread | None = None
        self._prepare_error: BaseException | None = None
        self._closing = threading.Event()  # the run is ending: stop proposing
        # Counting MACs traces the network (torch.jit). complexity.count_macs
        # silences the tracer's warnings with warnings.catch_warnings, which
        # is not thread-safe: on the proposal thread they would reach the
        # console. Ignored for the whole driver process, set before the thread.
        from torch.jit import TracerWarning

        warnings.filterwarnings("ignore", category=TracerWarning)
        super().__init__(metric=metrics, mode=modes)
        import optuna

        self._study = optuna.create_study(
            storage=storage, study_name=study_name, sampler=sampler, load_if_exists=True,
            directions=["maximize" if m == "max" else "minimize" for m in modes])
        self._live: dict[str, Any] = {}  # Tune trial id -> its optuna.Trial (asked, not told)
        # rows of interrupted trials (``resume.repair_after_interrupt``): they
        # start first, under their own ids, and hold their budget slot already
        self._continued: list[dict] = list(continued)

    def __getstate__(self):
        # Tune pickles its config (the searcher included) for Tuner.restore:
        # a proposal thread in flight, or its result, stays behind.
        state = dict(self.__dict__)
        state.update(_preparing=None, _prepare_error=None, _prepared=[], _closing=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._closing = threading.Event()

    @property
    def is_finished(self) -> bool:
        """True once the budget (or the space) ended the search."""
        return self._finished

    @property
    def study(self):
        """The run's ``optuna.Study``."""
        return self._study

    def release_running(self, trial_numbers=()) -> None:
        """Let go of this session's ``trial_numbers`` (all when empty), the
        search having stopped under them: their Optuna trials stay open
        (status INTERRUPTED), so ``--resume`` continues them under the same ids."""
        wanted = {int(n) for n in trial_numbers}
        for tune_id, ot_trial in list(self._live.items()):
            if not wanted or ot_trial.number in wanted:
                del self._live[tune_id]
                try:
                    ot_trial.set_user_attr("status", "INTERRUPTED")
                except Exception as e:  # noqa: BLE001 - bookkeeping only
                    log.warning("could not mark trial %s interrupted: %s", ot_trial.number, e)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._finished:
            return Searcher.FINISHED
        while self._continued:  # before the budget: their slots are counted already
            config = self._continue(trial_id, self._continued.pop(0))
            if config is not None:
                return config
        # proposals Tune has not started yet have no row: count them too
        pending = sum(1 for t in self._live.values() if t.number not in self._recorder.rows)
        reason = self._recorder.why_not_start(pending)
        if not reason and self._recorder.should_wait(outstanding=len(self._live)):
            return None  # Tune asks again shortly
        if reason:
            self._finished = True
            self._recorder.note(f"no new trials: {reason}")
            return Searcher.FINISHED
        self._wait_prepared()
        if self._prepared:
            proposal = self._prepared.pop()
            if proposal is not None and self._answer_known(proposal[0], proposal[1]):
                proposal = self._propose()  # the same architecture finished meanwhile
        else:
            proposal = self._propose()
        if proposal is None:
            self._finished = True
            invalid, repeated = self._fruitless
            why = ("the space looks exhausted" if repeated and not invalid else
                   "the space's constraints reject almost everything it proposes" if not repeated
                   else "the space looks exhausted or over-constrained")
            self._recorder.note(f"no new trials: the last {invalid + repeated} proposals were "
                                f"{invalid} invalid architectures and {repeated} already trained "
                                f"({why})")
            return Searcher.FINISHED
        ot_trial, spec, reference, data, shape, counted = proposal
        self._live[trial_id] = ot_trial
        return self._config(ot_trial.number, spec, dict(ot_trial.params), reference, data,
                            shape, counted)

    def _config(self, number: int, spec, params: dict, reference, data, shape, counted) -> dict:
        """The Tune config of trial ``number`` (what ``search_trial`` reads)."""
        return {
            "trial_id": number,
            "arch_id": spec.arch_id,
            "spec": spec.to_dict(),
            "space_params": params,
            "reference": reference,
            "input_shape": list(shape),
            "cost": counted,
            "settings": self._settings.with_data(data).to_dict(),
        }

    def _continue(self, trial_id: str, row: dict) -> dict | None:
        """The Tune config that continues the interrupted trial of ``row``
        under its own id (its Optuna trial is still open), or None if the row
        no longer describes a trainable architecture (then closed as FAIL)."""
        import json

        import optuna

        from ..spec import ArchSpec

        number = int(row["trial_id"])
        frozen = next(t for t in self._study.get_trials(deepcopy=False) if t.number == number)
        # Optuna has no public way to re-open a RUNNING trial as a Trial object;
        # it is told by number (Study.tell accepts one) and its attributes live
        # in the trials table.
        ot_trial = _ReopenedTrial(frozen.number)
        try:
            spec = ArchSpec.from_dict(json.loads(row["spec"]))
            params = json.loads(row.get("space_params") or "{}") or dict(frozen.params)
            data = self._data_settings(params)
            shape = self._input_shape(data)
        except (ValueError, KeyError, TypeError, UserError) as e:
            log.warning("interrupted trial %s cannot continue: %s", number, e)
            self._study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            return None
        counted = ({"params": int(row["params"]), "macs": int(row["macs"])}
                   if (row.get("params") or 0) > 0 and (row.get("macs") or 0) > 0
                   else self._cost(spec, shape))
        self._live[trial_id] = ot_trial
        return self._config(number, spec, params, row.get("reference"), data, shape, counted)

    def _propose(self):
        """The next valid proposal: (Optuna trial, spec, reference, data
        settings, input shape, cost), or None after MAX_CONSECUTIVE_REJECTIONS
        candidates in a row that were invalid or already trained (those are
        answered from the table). Invalid architectures are told to Optuna and recorded as REJECTED.
        ``cost``: ``{"params", "macs"}`` at the trial's input, or None when it
        could not be counted here (the trial then counts it itself)."""
        invalid = repeated = 0
        for _ in range(MAX_CONSECUTIVE_REJECTIONS):
            if self._closing.is_set():
                return None  # the run is ending (Ctrl-C, budget): do not keep it waiting
            ot_trial = self._study.ask()
            reference = ot_trial.user_attrs.get("reference")
            spec, problem, data, shape = None, None, None, None
            try:
                spec = self._hn_space.suggest(ot_trial)
                data = self._data_settings(dict(ot_trial.params))
                shape = self._input_shape(data)
                problem = self._problem(spec, shape[-1] if len(shape) >= 2 else self._resolution)
                if not problem and self._screen is not None:
                    problem = self._screen(spec, shape)
            except (ValueError, KeyError, TypeError, UserError) as e:  # e.g. SpecError, a bad lookback
                problem = f"{type(e).__name__}: {e}"
            if not problem and self._answer_known(ot_trial, spec):
                repeated += 1
                continue
            if problem:
                invalid += 1
                ot_trial.set_user_attr("status", "REJECTED")
                ot_trial.set_user_attr("error", problem[:500])
                tell_rejected(self._study, ot_trial)
                self._recorder.rejected(ot_trial.number, spec, dict(ot_trial.params), problem,
                                        reference)
                continue
            ot_trial.set_user_attr("arch_id", spec.arch_id)
            return ot_trial, spec, reference, data, shape, self._cost(spec, shape)
        self._fruitless = (invalid, repeated)
        return None

    def _cost(self, spec, shape) -> dict[str, int] | None:
        """Params and MACs of ``spec`` at the per-sample input ``shape``
        (fvcore, as the trial would count them), or None if counting fails
        here; the trial then counts them on its worker."""
        try:
            from ..complexity import cost

            c = cost(spec, tuple(shape), num_classes=int(self._settings.num_outputs),
                     in_chans=int(shape[0]))
            return {"params": int(c.params), "macs": int(c.macs)}
        except Exception as e:  # noqa: BLE001 - the trial counts it instead
            log.info("cost of %s not counted by the searcher (%s: %s)", spec.arch_id,
                     type(e).__name__, e)
            return None

    def prepare_next(self) -> None:
        """Start working out the next proposal on a background thread, while a
        trial trains (called on each epoch report and before the run starts):
        proposing takes time per candidate (Optuna writes every decision to
        the study; constrained spaces reject many) plus counting its MACs,
        which would otherwise sit between two trials on the critical path --
        and, done inside this callback, would hold the reporting trial, since
        a Tune trial waits in ``tune.report`` until the driver has handled the
        report. The sampler sees the finished trials of a moment earlier, as
        with one more concurrent trial. Nothing is prepared once the budget
        says no more trials. Optuna's study is safe to use from two threads
        (its own ``n_jobs`` does); the recorder locks its rows."""
        if self._finished or self._prepared or self._preparing is not None:
            return
        pending = sum(1 for t in self._live.values() if t.number not in self._recorder.rows)
        if self._recorder.why_not_start(pending):
            return
        self._preparing = threading.Thread(target=self._prepare, name="hybridnas-propose",
                                           daemon=True)
        self._preparing.start()

    def _prepare(self) -> None:
        try:
            self._prepared.append(self._propose())
        except BaseException as e:  # noqa: BLE001 - raised again in the driver's thread
            self._prepare_error = e

    def _wait_prepared(self) -> None:
        """Join the background proposal, if one is being worked out; an error
        it met is raised here, in Tune's thread, as if proposed there."""
        thread, self._preparing = self._preparing, None
        if thread is not None:
            thread.join()
        error, self._prepare_error = self._prepare_error, None
        if error is not None:
            raise error

    def discard_prepared(self) -> None:
        """At the end of a run: a prepared proposal that never ran is closed
        in the study as FAIL with status UNUSED (it has no row)."""
        import optuna

        self._closing.set()
        try:
            self._wait_prepared()
        except Exception as e:  # noqa: BLE001 - the run is over; say it and close the rest
            log.warning("the last background proposal failed: %s: %s", type(e).__name__, e)
        while self._prepared:
            proposal = self._prepared.pop()
            if proposal is not None:
                ot_trial = proposal[0]
                try:
                    ot_trial.set_user_attr("status", "UNUSED")
                    self._study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                except Exception as e:  # noqa: BLE001 - bookkeeping only
                    log.warning("could not close unused trial %s: %s", ot_trial.number, e)

    def _problem(self, spec, resolution=None) -> str | None:
        """Why ``spec`` may not be trained (None if it may): the space's own
        check (validation + the file's constraints) at the trial's own
        ``resolution`` (the last axis of its input: image side or lookback;
        default the run's)."""
        resolution = self._resolution if resolution is None else resolution
        space = self._hn_space
        if resolution != self._resolution and hasattr(space, "at"):
            space = space.at(resolution)
        check = getattr(space, "check", None)
        if check is not None:
            ok = check(spec)
            if not ok:
                return getattr(ok, "reason", None) or "rejected by the space"
            if space is not self._hn_space or resolution == self._resolution:
                return None
        problems = spec.problems(resolution)
        return "; ".join(problems) if problems else None

    def _input_shape(self, data: dict) -> tuple[int, ...]:
        """Per-sample input shape of a trial whose data settings are ``data``
        (a temporal trial's lookback is a decision of the space). Loaded once
        per distinct setting; the run's own is already cached in this process."""
        from ..data import load_dataset

        key = repr(sorted(data.items()))
        if key not in self._shapes:
            self._shapes[key] = tuple(int(s) for s in load_dataset(**data).input_shape)
        return self._shapes[key]

    def _answer_known(self, ot_trial, spec) -> bool:
        """Tell Optuna the stored result of an architecture trained before
        (same arch_id, full fidelity) instead of training it again."""
        known = self._recorder.known_result(spec.arch_id)
        if known is None:
            return False
        values = [known.get(m) for m in self.metric]
        if not all(v is not None and math.isfinite(float(v)) for v in values):
            return False
        ot_trial.set_user_attr("status", "DUPLICATE")
        ot_trial.set_user_attr("duplicate_of", int(known["trial_id"]))
        ot_trial.set_user_attr("arch_id", spec.arch_id)
        self._study.tell(ot_trial, [float(v) for v in values])
        self._recorder.duplicate(ot_trial.number, int(known["trial_id"]))
        return True

    # The study in storage and the run's trials table are the state of a
    # search; Tune's experiment checkpoint of this object is not needed (and
    # the storage engine would not pickle).
    def save(self, checkpoint_path: str) -> None:
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None

    def _data_settings(self, params: dict) -> dict:
        data = dict(self._settings.data)
        extra = getattr(self._hn_space, "data_params", None)
        if extra is not None:
            data.update(extra(params) or {})
        return data

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # multi-objective studies take no intermediate values; start
        # preparing the next proposal while this trial trains on
        self.prepare_next()

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        import optuna

        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            return
        result = result or {}
        status = result.get("status") or ("FAILED" if error else "EARLY_STOPPED")
        if status == "RUNNING":  # stopped by the scheduler or the time limit
            status = "EARLY_STOPPED"
        if error and status != "FAILED":
            status = "FAILED"
        for key in ("arch_id", "epochs", "error", "node_id", "train_seconds", "device_seconds"):
            if result.get(key) not in (None, ""):
                ot_trial.set_user_attr(key, result[key])
        ot_trial.set_user_attr("status", status)
        values = [result.get(m) for m in self.metric]
        try:
            if status == "COMPLETE" and all(v is not None and math.isfinite(float(v))
                                            for v in values):
                self._study.tell(_told(ot_trial), [float(v) for v in values])
            elif status == "EARLY_STOPPED":
                self._study.tell(_told(ot_trial), state=optuna.trial.TrialState.PRUNED)
            else:
                self._study.tell(_told(ot_trial), state=optuna.trial.TrialState.FAIL)
        except Exception as e:  # noqa: BLE001 - a bookkeeping error must not end the search
            log.warning("could not tell Optuna about trial %s: %s", ot_trial.number, e)


class _ReopenedTrial:
    """An interrupted trial continued under its own number: Optuna is told
    its result by number; its user attributes are kept here only (the run's
    trials table holds them)."""

    def __init__(self, number: int):
        self.number = int(number)
        self.user_attrs: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def _told(ot_trial):
    """What ``Study.tell`` takes for ``ot_trial``: the trial, or its number."""
    return ot_trial.number if isinstance(ot_trial, _ReopenedTrial) else ot_trial
