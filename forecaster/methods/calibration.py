"""Per-ticker interval recalibration: rolling split-conformal on the model's own recent errors.

A band whose recent forecasts of a ticker covered too few (or too many) realised returns is
widened (or narrowed) about the median by the factor that would have covered exactly its
nominal share of them. For band c with quantiles (lo, hi) and median m, a day's conformity
score is the factor the band needed to hold that day's return,
    s = max((m - y) / (m - lo), (y - m) / (hi - m)),
and the band's factor is the ceil((n + 1) c)-th smallest of the last n scores (the split-
conformal quantile). Only outcomes realised by a forecast's as-of date enter its factor, so a
backtest scores exactly what a server would have served. Pure numpy: the served model uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.levels import interval_columns

# A factor is kept within these bounds: one extreme window of errors must not collapse a band
# to its median or blow it up.
MIN_FACTOR = 0.25
MAX_FACTOR = 4.0


def band_columns(
    levels: tuple[float, ...], intervals: tuple[float, ...]
) -> dict[float, tuple[int, int]]:
    """(lower, upper) quantile columns of each central interval."""
    return {coverage: interval_columns(levels, coverage) for coverage in intervals}


def _median_column(levels: tuple[float, ...]) -> int:
    return min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))


def conformity_scores(
    q: np.ndarray, y: np.ndarray, levels: tuple[float, ...], intervals: tuple[float, ...]
) -> np.ndarray:
    """(n, n_intervals): the factor each band needed to cover each day's realised log return
    (<= 1: it did)."""
    m = q[:, _median_column(levels)]
    out = np.empty((len(q), len(intervals)))
    tiny = 1e-12
    for j, (lo, hi) in enumerate(band_columns(levels, intervals).values()):
        below = (m - y) / np.maximum(m - q[:, lo], tiny)
        above = (y - m) / np.maximum(q[:, hi] - m, tiny)
        out[:, j] = np.maximum(below, above)
    return out


def band_factors(scores: np.ndarray, intervals: tuple[float, ...]) -> np.ndarray:
    """(n_intervals,) split-conformal factors from (n, n_intervals) scores; needs n >= 1."""
    n = len(scores)
    factors = np.empty(len(intervals))
    ordered = np.sort(scores, axis=0)
    for j, coverage in enumerate(intervals):
        k = min(math.ceil((n + 1) * coverage), n)  # 1-based rank of the conformal quantile
        factors[j] = ordered[k - 1, j]
    return np.clip(factors, MIN_FACTOR, MAX_FACTOR)


def rolling_factors(
    scores: np.ndarray,
    known_at: np.ndarray,
    as_of: np.ndarray,
    window: int,
    min_days: int,
    intervals: tuple[float, ...],
) -> np.ndarray:
    """(m, n_intervals) factors for forecasts made on the `as_of` dates, each from the last
    `window` scores whose outcome was known by then (`known_at` <= as-of); NaN where fewer than
    `min_days` were. `known_at` must be sorted."""
    order = np.argsort(known_at, kind="stable")
    known, ordered = known_at[order], scores[order]
    ends = np.searchsorted(known, as_of, side="right")
    out = np.full((len(as_of), len(intervals)), np.nan)
    for i, end in enumerate(ends):
        start = max(0, int(end) - window)
        if end - start >= min_days:
            out[i] = band_factors(ordered[start:end], intervals)
    return out


def recalibrate(
    q: np.ndarray, factors: np.ndarray, levels: tuple[float, ...], intervals: tuple[float, ...]
) -> np.ndarray:
    """Quantiles with each band's distance from the median scaled by its factor; rows whose
    factors are NaN stay as they were. Rearranged (sorted) so the levels stay monotone."""
    q = np.array(q, dtype=np.float64, copy=True)
    factors = np.broadcast_to(factors, (len(q), len(intervals)))
    m = q[:, _median_column(levels)]
    for j, (lo, hi) in enumerate(band_columns(levels, intervals).values()):
        f = np.where(np.isnan(factors[:, j]), 1.0, factors[:, j])
        q[:, lo] = m - f * (m - q[:, lo])
        q[:, hi] = m + f * (q[:, hi] - m)
    return np.sort(q, axis=1)


@dataclass(frozen=True)
class Calibration:
    """A ticker's band factors, from the last `days` outcomes realised up to `through`, and
    where those outcomes came from: the training data ("training") or the history a forecast
    was made from ("history")."""

    factors: Mapping[float, float]  # interval coverage -> factor
    days: int
    through: str  # ISO date of the last outcome used
    source: str = "training"

    def array(self, intervals: tuple[float, ...]) -> np.ndarray:
        return np.array([self.factors.get(c, 1.0) for c in intervals], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "factors": {repr(float(c)): float(f) for c, f in self.factors.items()},
            "days": self.days,
            "through": self.through,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            factors={float(c): float(f) for c, f in data["factors"].items()},
            days=int(data["days"]),
            through=str(data["through"]),
            source=str(data.get("source", "training")),
        )


def latest_calibration(
    scores: np.ndarray,
    known_at: np.ndarray,
    window: int,
    min_days: int,
    intervals: tuple[float, ...],
    source: str,
) -> Calibration | None:
    """The factors for a forecast made after the last known outcome, or None (too few)."""
    if len(scores) < min_days:
        return None
    order = np.argsort(known_at, kind="stable")[-window:]
    factors = band_factors(scores[order], intervals)
    through = str(np.datetime_as_string(np.max(known_at).astype("datetime64[D]")))
    return Calibration(
        {c: float(f) for c, f in zip(intervals, factors, strict=True)}, len(order), through, source
    )


@dataclass(frozen=True)
class Outcomes:
    """Realised forecasts that factors may draw on: each row's ticker, the date its outcome
    became known (the target day) and its conformity scores."""

    tickers: np.ndarray  # (n,) object
    known_at: np.ndarray  # (n,) datetime64[ns]
    scores: np.ndarray  # (n, n_intervals)

    @classmethod
    def of(
        cls,
        q: np.ndarray,
        y: np.ndarray,
        tickers: np.ndarray,
        known_at: np.ndarray,
        levels: tuple[float, ...],
        intervals: tuple[float, ...],
    ) -> Outcomes:
        return cls(
            np.asarray(tickers, dtype=object),
            np.asarray(known_at, dtype="datetime64[ns]"),
            conformity_scores(q, y, levels, intervals),
        )

    def merged(self, other: Outcomes) -> Outcomes:
        """Both sets, one row per (ticker, day): the same window scored twice counts once."""
        tickers = np.concatenate([self.tickers, other.tickers])
        known = np.concatenate([self.known_at, other.known_at])
        scores = np.concatenate([self.scores, other.scores])
        keys = np.char.add(tickers.astype(str), known.astype("datetime64[D]").astype(str))
        _, first = np.unique(keys, return_index=True)
        first.sort()
        return Outcomes(tickers[first], known[first], scores[first])

    def factors(
        self,
        tickers: np.ndarray,
        as_of: np.ndarray,
        window: int,
        min_days: int,
        intervals: tuple[float, ...],
    ) -> np.ndarray:
        """(m, n_intervals) rolling factors for forecasts of `tickers` made on `as_of`, each from
        that ticker's own outcomes only; NaN where it has fewer than `min_days`."""
        out = np.full((len(as_of), len(intervals)), np.nan)
        as_of = np.asarray(as_of, dtype="datetime64[ns]")
        for ticker in dict.fromkeys(np.asarray(tickers).tolist()):
            rows = np.flatnonzero(tickers == ticker)
            own = self.tickers == ticker
            if own.any():
                out[rows] = rolling_factors(
                    self.scores[own], self.known_at[own], as_of[rows], window, min_days, intervals
                )
        return out


def path_calibration(
    known: np.ndarray,
    realised: np.ndarray,
    known_at: np.ndarray,
    window: int,
    min_days: int,
    levels: tuple[float, ...],
    intervals: tuple[float, ...],
    source: str,
) -> Calibration | None:
    """Band factors for the next forecast of any method, from its own earlier forecasts over a
    history (`known`, (n, levels)) against the returns that followed them (`realised`, known on
    `known_at`): the last `window` of them, or None where fewer than `min_days`."""
    known, realised, known_at = known[-window:], realised[-window:], known_at[-window:]
    if len(known) < min_days:
        return None
    scores = conformity_scores(known, realised, levels, intervals)
    return latest_calibration(scores, known_at, window, min_days, intervals, source)


def apply_calibration(
    q: np.ndarray,
    calibration: Calibration | None,
    levels: tuple[float, ...],
    intervals: tuple[float, ...],
) -> np.ndarray:
    """Any method's quantiles (one row or (n, levels)) with a calibration's band factors
    applied about the median; unchanged without one."""
    if calibration is None:
        return q
    out = recalibrate(np.atleast_2d(q), calibration.array(intervals), levels, intervals)
    return out if q.ndim == 2 else out[0]
