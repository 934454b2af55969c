"""How long ending a run waits for a proposal thread that keeps rejecting.

A searcher whose space never yields a valid architecture (each candidate
takes ``--delay`` seconds) is started on its background proposal; after a
moment the run ends (``discard_prepared``). Printed side by side: the time
to stop, and the time the thread would need to work through all
``MAX_CONSECUTIVE_REJECTIONS`` candidates; the ratio should be far below 1
(the test in tests/test_search.py checks the behaviour without timing).

    .venv/bin/python benchmarks/bench_proposal_stop.py     # a few seconds
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05, help="seconds per candidate")
    args = ap.parse_args()
    import optuna

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from search_standin import TinySpace

    from hybridnas.rundir import RunDir
    from hybridnas.search.budget import Budget
    from hybridnas.search.progress import RunRecorder
    from hybridnas.search.searcher import MAX_CONSECUTIVE_REJECTIONS, ArchSearcher
    from hybridnas.search.settings import TrialSettings

    class SlowInvalid(TinySpace):
        def suggest(self, trial):
            super().suggest(trial)
            time.sleep(args.delay)
            raise ValueError("never valid")

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(os.path.join(tmp, "run"))
        run.create()
        recorder = RunRecorder(run, Budget(trials=10), [], ["metric", "latency_ms"],
                               [True, False], "val_accuracy", 1)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.InMemoryStorage()
        searcher = ArchSearcher(SlowInvalid(), 8, recorder,
                                TrialSettings(data={"name": "digits", "resolution": 8},
                                              num_outputs=10),
                                ["metric", "latency_ms"], ["max", "min"],
                                optuna.samplers.RandomSampler(seed=0), storage, "s")
        searcher.prepare_next()
        time.sleep(10 * args.delay)
        t0 = time.perf_counter()
        searcher.discard_prepared()
        stop_s = time.perf_counter() - t0
        rejected = len(recorder.rows)
    full_s = MAX_CONSECUTIVE_REJECTIONS * args.delay
    print(f"stop after {rejected} rejected candidates: {stop_s:.3f} s | all "
          f"{MAX_CONSECUTIVE_REJECTIONS} candidates: >= {full_s:.1f} s | ratio {stop_s / full_s:.3f}")


if __name__ == "__main__":
    main()
