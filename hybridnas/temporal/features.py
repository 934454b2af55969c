"""Per-asset daily features and forecast targets, built without look-ahead.

    >>> import numpy as np
    >>> prices = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (300, 4)), axis=0))
    >>> daily_features(prices).shape          # (days, features, assets)
    (300, 6, 4)
    >>> forward_returns(prices, (1, 5)).shape  # (days, assets, horizons)
    (300, 4, 2)

Every feature of day ``t`` is a function of prices (and volumes) of days
``<= t`` only: trailing differences and trailing windows computed with
cumulative sums, never centred or backward-filled windows. A test perturbs
the future and checks that past features do not move. ``forward_returns`` is
the one place that looks ahead (the targets), and ``hybridnas.temporal.splits``
keeps a gap of the longest horizon between train, validation and test blocks.

``normalise_windows`` z-scores each input window over its own days, so a
sample is normalised with data from its own past only.
"""
from __future__ import annotations

from typing import Any

__all__ = ["FEATURES", "VOLUME_FEATURES", "WARMUP_DAYS", "daily_features", "forward_returns",
           "normalise_windows"]

#: Price features, in order: log returns over 1, 5 and 20 days, realised
#: volatility of daily log returns over 20 and 60 days, and the gap between
#: the log price and its 20-day mean (a trend / mean-reversion signal).
FEATURES = ("ret_1d", "ret_5d", "ret_20d", "vol_20d", "vol_60d", "ma_gap_20d")
#: Added when volumes are given: log volume change and log volume over its 20-day mean.
VOLUME_FEATURES = ("dvol_1d", "vol_gap_20d")
#: Days of history the longest trailing window needs; earlier days are warm-up.
WARMUP_DAYS = 60


def _trailing_sum(x, window: int):
    """Sum over days t-window+1..t (fewer at the start), along axis 0."""
    import numpy as np

    c = np.cumsum(x, axis=0)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out


def _trailing_count(n: int, window: int):
    import numpy as np

    return np.minimum(np.arange(1, n + 1), window).reshape(-1, 1)


def _lagged_diff(x, lag: int):
    """x[t] - x[t-lag] (x[t] - x[0] for the first ``lag`` days)."""

    out = x - x[:1]
    out[lag:] = x[lag:] - x[:-lag]
    return out


def daily_features(prices: Any, volumes: Any | None = None):
    """Features per day and asset: float32 array (days, features, assets).

    ``prices``: positive array (days, assets), oldest day first; ``volumes``:
    optional array of the same shape (adds ``VOLUME_FEATURES``). Days before
    ``WARMUP_DAYS`` have shortened windows; datasets start samples after them.
    """
    import numpy as np

    p = np.asarray(prices, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"prices must be (days, assets), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("prices must be finite and positive")
    logp = np.log(p)
    r = _lagged_diff(logp, 1)
    n = len(p)
    feats = [r, _lagged_diff(logp, 5), _lagged_diff(logp, 20)]
    for window in (20, 60):
        count = _trailing_count(n, window)
        mean = _trailing_sum(r, window) / count
        var = _trailing_sum(r * r, window) / count - mean * mean
        feats.append(np.sqrt(np.clip(var, 0.0, None)))
    feats.append(logp - _trailing_sum(logp, 20) / _trailing_count(n, 20))
    if volumes is not None:
        v = np.log1p(np.clip(np.asarray(volumes, dtype=np.float64), 0.0, None))
        if v.shape != p.shape:
            raise ValueError(f"volumes shape {v.shape} differs from prices shape {p.shape}")
        feats.append(_lagged_diff(v, 1))
        feats.append(v - _trailing_sum(v, 20) / _trailing_count(n, 20))
    return np.stack(feats, axis=1).astype(np.float32)


def forward_returns(prices: Any, horizons: tuple[int, ...]):
    """Targets: log return from the close of day t to day t+h, for each
    horizon h; array (days, assets, horizons), NaN where t+h is past the end."""
    import numpy as np

    logp = np.log(np.asarray(prices, dtype=np.float64))
    n, a = logp.shape
    out = np.full((n, a, len(horizons)), np.nan)
    for k, h in enumerate(horizons):
        out[:n - h, :, k] = logp[h:] - logp[:n - h]
    return out


def normalise_windows(windows, eps: float = 1e-6):
    """Z-score each (sample, feature, asset) series over its window's days.

    ``windows``: tensor (N, features, assets, time). Uses only the window's
    own days, so a sample's normalisation never sees the future.
    """
    mean = windows.mean(dim=-1, keepdim=True)
    std = windows.std(dim=-1, keepdim=True, unbiased=False)
    return (windows - mean) / (std + eps)
