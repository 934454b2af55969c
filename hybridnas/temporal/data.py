"""The ``sp500-20`` dataset and the panel dataset every temporal bundle uses.

    >>> from hybridnas.data import load_dataset
    >>> b = load_dataset("sp500-20", lookback=60)        # needs hybridnas[finance]
    >>> b.input_shape, b.num_outputs, b.task.metric_name
    ((6, 20, 60), 3, 'val_ic')

``sp500-20``: daily adjusted closes of 20 S&P 500 stocks, 1990-01-02 to
2022-12-28 (8313 days), bundled inside ``skfolio`` (no download; install
with ``pip install 'hybridnas[finance]'``). There are no volumes, so the
features are the price ones of ``hybridnas.temporal.features``.

A sample is one day ``t``: the input is the panel of features over the
``lookback`` days ending at ``t`` -- (features, assets, lookback), each
series z-scored over its own window -- and the targets are the log returns
from ``t`` to ``t + h`` for each horizon, divided by their training-block
standard deviation (so the MSE is in units of a typical return). The days
are split walk-forward (``hybridnas.temporal.splits``): train, validation
and test blocks in time order with a gap of the longest horizon.

Dataset options (``load_dataset("sp500-20", **options)``, or ``data.*``
dimensions of a search space): ``lookback`` (days, default 60),
``horizons`` (default ``(1, 5, 20)``, or a string ``"1,5,20"``),
``val_days`` / ``test_days`` (default 504 each, about two years), ``folds``
and ``fold`` (walk-forward folds; the bundle holds fold ``fold``, default
the last), ``subset`` (keep only the most recent training days: a count or
a fraction).
"""
from __future__ import annotations

from typing import Any

from ..data.registry import register_dataset
from ..errors import UserError

__all__ = ["PanelDataset", "panel_bundle", "load_sp500_prices", "parse_horizons"]


class PanelDataset:
    """Samples cut from one day-indexed feature array on demand.

    ``features``: tensor (days, features, assets); ``targets``: tensor
    (days, assets, horizons); ``days``: the sample days of this split (the
    last input day of each sample). ``batch(idx)`` returns inputs
    (n, features, assets, lookback), normalised per window, and targets
    (n, assets, horizons) -- the protocol ``hybridnas.training`` uses.
    """

    def __init__(self, features, targets, days, lookback: int):
        import torch

        self.x = features
        self.y = targets
        self.days = torch.as_tensor(days, dtype=torch.long, device=features.device)
        self.lookback = int(lookback)
        self._offsets = torch.arange(-self.lookback + 1, 1, device=features.device)
        self._on_device: dict[str, PanelDataset] = {}

    def __len__(self) -> int:
        return len(self.days)

    @property
    def device(self):
        return self.x.device

    def batch(self, idx):
        from .features import normalise_windows

        days = self.days[idx]
        window = self.x[days[:, None] + self._offsets]  # (n, T, F, A)
        return normalise_windows(window.permute(0, 2, 3, 1)), self.y[days]

    def __getitem__(self, i):
        import torch

        if isinstance(i, int):
            x, y = self.batch(torch.tensor([i], device=self.device))
            return x[0], y[0]
        return self.batch(torch.as_tensor(i, device=self.device))

    def to(self, device) -> "PanelDataset":
        import torch

        device = torch.device(device)
        if self.x.device == device:
            return self
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = PanelDataset(self.x.to(device), self.y.to(device),
                                                self.days.to(device), self.lookback)
        return self._on_device[key]

    def __repr__(self) -> str:
        first, last = (int(self.days[0]), int(self.days[-1])) if len(self) else (0, -1)
        return (f"PanelDataset(n={len(self)}, days {first}..{last}, lookback={self.lookback}, "
                f"features={self.x.shape[1]}, assets={self.x.shape[2]})")


def parse_horizons(horizons: Any) -> tuple[int, ...]:
    """(1, 5, 20) from a tuple, list, int or a string like ``"1,5,20"``."""
    if isinstance(horizons, str):
        parts = [p for p in horizons.replace(" ", "").split(",") if p]
    elif isinstance(horizons, int):
        parts = [horizons]
    else:
        parts = list(horizons)
    try:
        out = tuple(int(h) for h in parts)
    except (TypeError, ValueError):
        raise UserError(f"horizons={horizons!r} must be positive day counts, e.g. 1,5,20") from None
    if not out or min(out) < 1 or list(out) != sorted(set(out)):
        raise UserError(f"horizons={horizons!r} must be increasing positive day counts, e.g. 1,5,20")
    return out


def panel_bundle(prices: Any, *, name: str = "panel", volumes: Any | None = None,
                 lookback: int = 60, horizons: Any = (1, 5, 20), val_days: int = 504,
                 test_days: int = 504, folds: int = 1, fold: int = -1,
                 subset: int | float | None = None, asset_names: tuple[str, ...] = (),
                 dates: Any | None = None, description: str = "", source: str = ""):
    """A ``DatasetBundle`` of walk-forward panel samples from a price array.

    ``prices`` (days, assets), oldest first; see the module docstring for the
    options. The bundle's extra attributes ``split`` (the ``Split`` used),
    ``target_scale`` (per-horizon std the targets were divided by) and
    ``dates`` help baselines and reports use the very same samples.
    """
    import numpy as np
    import torch

    from ..data.registry import DatasetBundle
    from .features import WARMUP_DAYS, daily_features, forward_returns
    from .splits import walk_forward_splits
    from .task import ReturnsTask

    horizons = parse_horizons(horizons)
    lookback = int(lookback)
    if lookback < 2:
        raise UserError(f"lookback={lookback} must be at least 2 days")
    prices = np.asarray(prices, dtype=np.float64)
    feats = daily_features(prices, volumes)
    targets = forward_returns(prices, horizons)
    first = WARMUP_DAYS + lookback - 1
    splits = walk_forward_splits(len(prices), first=first, horizon=max(horizons),
                                 val_days=val_days, test_days=test_days, folds=folds)
    try:
        split = splits[fold]
    except IndexError:
        raise UserError(f"fold={fold} is out of range for folds={folds}") from None
    train_days = np.asarray(split.train)
    if subset is not None:
        keep = int(round(subset * len(train_days))) if isinstance(subset, float) else int(subset)
        train_days = train_days[-max(1, min(keep, len(train_days))):]  # the most recent days
    scale = np.nanstd(targets[train_days], axis=(0, 1))
    scale = np.where(scale > 0, scale, 1.0)
    targets = np.nan_to_num(targets / scale, nan=0.0)  # NaN only past the last sample day
    x = torch.from_numpy(feats)
    y = torch.from_numpy(targets.astype(np.float32))
    make = lambda days: PanelDataset(x, y, np.asarray(days), lookback)  # noqa: E731
    n_assets = prices.shape[1]
    bundle = DatasetBundle(
        name=name, train=make(train_days), val=make(split.val), test=make(split.test),
        input_shape=(int(feats.shape[1]), n_assets, lookback), num_outputs=len(horizons),
        task=ReturnsTask(horizons), class_names=tuple(asset_names),
        description=description or f"{n_assets} assets, {len(prices)} days",
        source=source,
    )
    bundle.split = split
    bundle.target_scale = tuple(float(s) for s in scale)
    bundle.dates = dates
    return bundle


def load_sp500_prices():
    """skfolio's bundled S&P 500 prices: a pandas DataFrame (days x 20 assets)."""
    try:
        from skfolio.datasets import load_sp500_dataset
    except ImportError:
        raise UserError("dataset 'sp500-20' needs the optional dependency skfolio: "
                        "pip install 'hybridnas[finance]' (or pip install skfolio)") from None
    return load_sp500_dataset()


@register_dataset("sp500-20")
def sp500_20(subset: int | float | None = None, lookback: int = 60, horizons: Any = (1, 5, 20),
             val_days: int = 504, test_days: int = 504, folds: int = 1, fold: int = -1):
    """20 S&P 500 stocks, daily, 1990-2022, from skfolio (see the module docstring)."""
    prices = load_sp500_prices()
    dates = prices.index
    return panel_bundle(
        prices.to_numpy(), name="sp500-20", lookback=lookback, horizons=horizons,
        val_days=val_days, test_days=test_days, folds=folds, fold=fold, subset=subset,
        asset_names=tuple(str(c) for c in prices.columns), dates=dates,
        description=f"20 S&P 500 stocks, daily closes {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}",
        source="skfolio.datasets.load_sp500_dataset (bundled, no download)",
    )


@register_dataset("synthetic-panel")
def synthetic_panel(subset: int | float | None = None, seed: int = 0, lookback: int = 30,
                    horizons: Any = (1, 5), assets: int = 8, days: int = 1200,
                    val_days: int = 150, test_days: int = 150):
    """Random-walk prices with a planted, learnable signal, for tests and demos.

    Each asset's daily return continues 30% of its previous day's return
    (short-term momentum), so a model that reads the last days of its input
    window can reach a clearly positive IC. Generated from ``seed``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, (days, assets))
    returns = np.empty_like(noise)
    returns[0] = noise[0]
    for t in range(1, days):
        returns[t] = 0.3 * returns[t - 1] + noise[t]
    prices = 100.0 * np.exp(np.cumsum(returns, axis=0))
    return panel_bundle(prices, name="synthetic-panel", lookback=lookback, horizons=horizons,
                        val_days=val_days, test_days=test_days, subset=subset,
                        asset_names=tuple(f"A{i}" for i in range(assets)),
                        description=f"{assets} synthetic assets, {days} days, planted momentum",
                        source="generated (seeded)")
