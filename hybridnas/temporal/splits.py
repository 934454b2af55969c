"""Walk-forward splits: train, validation and test blocks in time order.

    >>> s = walk_forward_splits(1000, first=80, horizon=20, val_days=100, test_days=100)[0]
    >>> (s.train.start, s.train.stop), (s.val.start, s.val.stop), (s.test.start, s.test.stop)
    ((80, 740), (760, 860), (880, 980))

Indices are *sample days*: the last input day of a sample, whose targets are
the returns over the next ``horizon`` days. Between two blocks there are
``gap`` (default: the longest horizon) unused sample days, so no training
target overlaps a day whose return is a validation or test target. Blocks are
never shuffled across time. With ``folds > 1`` the test block walks forward
by ``step`` days per fold and the training block grows (expanding window).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

__all__ = ["Split", "walk_forward_splits"]


@dataclass(frozen=True)
class Split:
    """One walk-forward fold: ranges of sample days."""

    train: range
    val: range
    test: range

    def as_dict(self) -> dict[str, list[int]]:
        return {k: [r.start, r.stop] for k, r in (("train", self.train), ("val", self.val),
                                                  ("test", self.test))}


def walk_forward_splits(days: int, *, first: int, horizon: int, val_days: int, test_days: int,
                        folds: int = 1, step: int | None = None, gap: int | None = None,
                        min_train_days: int = 100) -> list[Split]:
    """Folds over ``days`` days of data, oldest fold first.

    ``first``: the first usable sample day (after feature warm-up and the
    lookback window); the last usable one is ``days - 1 - horizon`` (its
    targets must exist). ``gap`` < ``horizon`` is refused. Raises
    ``UserError`` when the data is too short for the blocks asked for.
    """
    gap = horizon if gap is None else gap
    step = test_days if step is None else step
    if gap < horizon:
        raise UserError(f"gap={gap} must be at least the longest horizon ({horizon} days)")
    if min(val_days, test_days, folds, step) < 1:
        raise UserError(f"val_days={val_days}, test_days={test_days}, folds={folds} and "
                        f"step={step} must be >= 1")
    end = days - horizon  # one past the last sample day with all targets
    out = []
    for k in range(folds):
        test_stop = end - (folds - 1 - k) * step
        test = range(test_stop - test_days, test_stop)
        val = range(test.start - gap - val_days, test.start - gap)
        train = range(first, val.start - gap)
        if len(train) < min_train_days:
            raise UserError(
                f"{days} days leave {max(len(train), 0)} training days for fold {k} "
                f"(need {min_train_days}): shorten val_days={val_days}, test_days={test_days}, "
                f"folds={folds} or the lookback")
        out.append(Split(train, val, test))
    return out
