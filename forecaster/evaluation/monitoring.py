"""Live scores of served forecasts, as pure functions: resolved forecasts in, typed figures out.

`forecaster monitor` feeds them rows from the prediction log and stores what comes back; the
service reads the stored figures back into the same `WindowFigures` for `/v1/performance` and
its gauges. Per window (the last N resolved forecasts): MAE next to naive persistence on the
same days, mean pinball loss next to the empirical random walk's, and coverage of every served
interval with Kupiec's p-value. Nothing here reads a database, MLflow or the clock.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from forecaster import levels as level_math
from forecaster.config import MonitoringConfig, level_key
from forecaster.evaluation import scores
from forecaster.methods import Bars, RandomWalk


@dataclass(frozen=True)
class Resolved:
    """One served forecast and the close that followed."""

    model_name: str
    model_version: str
    ticker: str
    target_date: date
    last_close: float
    predicted_close: float
    actual_close: float
    quantiles: dict[float, float] | None  # level -> price; None if logged before 0002
    # The empirical random walk's quantiles for the same day at the same levels (price): the
    # baseline the live pinball is compared with. None where its history is not available.
    naive_quantiles: dict[float, float] | None = None
    as_of: date | None = None  # the last day of the history the forecast was made from
    # The forecaster that answered (lstm, garch, naive); rows logged before revision 0005 were
    # all the network's.
    method: str = "lstm"


@dataclass(frozen=True)
class WindowFigures:
    """The scores of one window of resolved forecasts; None where there is nothing to score
    (no rows, no logged quantiles, or no baseline on every day)."""

    resolved: int
    mae: float | None = None
    naive_mae: float | None = None
    pinball: float | None = None  # log-return units
    naive_pinball: float | None = None
    coverage: Mapping[str, float] = field(default_factory=dict)  # interval level -> share inside
    kupiec_pvalue: Mapping[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "resolved": self.resolved,
            "mae": self.mae,
            "naive_mae": self.naive_mae,
            "pinball": self.pinball,
            "naive_pinball": self.naive_pinball,
            "coverage": dict(self.coverage),
            "kupiec_pvalue": dict(self.kupiec_pvalue),
        }


ByWindow = dict[int, WindowFigures]


def _by_window_dict(windows: ByWindow) -> dict[str, dict[str, Any]]:
    return {str(w): figures.as_dict() for w, figures in windows.items()}


@dataclass(frozen=True)
class VersionReport:
    """One model version's live record: every window over all its forecasts, per ticker and
    per serving method, and why it calls for a retrain (None: it does not)."""

    model_name: str
    model_version: str
    resolved: int
    headline: WindowFigures
    windows: ByWindow
    tickers: dict[str, ByWindow]
    methods: dict[str, ByWindow]
    ticker_methods: dict[str, str]  # the method each ticker got last
    drift_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (`forecaster monitor --json`, monitor.json): the headline window's
        figures at the top level, windows keyed by their length as text."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            **self.headline.as_dict(),
            "resolved": self.resolved,
            "windows": _by_window_dict(self.windows),
            "tickers": {t: _by_window_dict(w) for t, w in self.tickers.items()},
            "methods": {m: _by_window_dict(w) for m, w in self.methods.items()},
            "ticker_methods": dict(self.ticker_methods),
            "drift_reason": self.drift_reason,
        }


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def window_scores(rows: Sequence[Resolved]) -> WindowFigures:
    """Scores of these resolved forecasts. Distribution scores use the forecasts that logged
    quantiles, at the levels they all share, and every central interval those levels bound."""
    n = len(rows)
    if n == 0:
        return WindowFigures(resolved=0)
    actual = np.array([r.actual_close for r in rows])
    mae = float(np.mean(np.abs(np.array([r.predicted_close for r in rows]) - actual)))
    naive_mae = float(np.mean(np.abs(np.array([r.last_close for r in rows]) - actual)))
    point = WindowFigures(resolved=n, mae=mae, naive_mae=naive_mae)
    with_q = [r for r in rows if r.quantiles]
    if not with_q:
        return point
    levels = sorted(set.intersection(*(set(r.quantiles or {}) for r in with_q)))
    if not levels:
        return point
    last = np.array([r.last_close for r in with_q])
    y = np.log(np.array([r.actual_close for r in with_q]) / last)
    q = np.log(
        np.array([[(r.quantiles or {})[lv] for lv in levels] for r in with_q]) / last[:, None]
    )
    naive_pinball = None
    if all(r.naive_quantiles and all(lv in r.naive_quantiles for lv in levels) for r in with_q):
        naive = np.array([[(r.naive_quantiles or {})[lv] for lv in levels] for r in with_q])
        naive_pinball = float(scores.pinball(np.log(naive / last[:, None]), y, levels).mean())
    coverage: dict[str, float] = {}
    kupiec: dict[str, float | None] = {}
    pairs = sorted(level_math.symmetric_pairs(levels), key=lambda p: levels[p[1]] - levels[p[0]])
    for lo, hi in pairs:
        key = level_key(levels[hi] - levels[lo])
        hits = scores.violations(q[:, lo], q[:, hi], y)
        coverage[key] = float(1.0 - hits.mean())
        kupiec[key] = _nan_to_none(scores.kupiec_pvalue(hits, float(key)))
    return replace(point, pinball=float(scores.pinball(q, y, levels).mean()),
                   naive_pinball=naive_pinball, coverage=coverage,
                   kupiec_pvalue=kupiec)  # fmt: skip


def drift_reason(version: str, windows: Mapping[int, WindowFigures],
                 rule: MonitoringConfig) -> str | None:  # fmt: skip
    """Why a version's live record calls for a retrain, or None. Judged on its last
    `rule.drift_window` resolved forecasts, and only once there are that many: the drift
    interval failing Kupiec at `rule.drift_kupiec_alpha`, or a pinball loss above the naive
    random walk's on the same days."""
    figures, n = windows.get(rule.drift_window), rule.drift_window
    if figures is None or figures.resolved < n:
        return None
    key = level_key(rule.drift_interval)
    p = figures.kupiec_pvalue.get(key)
    if p is not None and p < rule.drift_kupiec_alpha:
        return (
            f"v{version}'s {rule.drift_interval:.0%} interval covered "
            f"{100 * figures.coverage[key]:.1f}% of the last {n} resolved forecasts (Kupiec p "
            f"{p:.3g} < {rule.drift_kupiec_alpha:g})"
        )
    ours, naive = figures.pinball, figures.naive_pinball
    if ours is not None and naive is not None and ours > naive:
        return (
            f"v{version}'s live pinball {1e4 * ours:.2f} bp is worse than the naive random "
            f"walk's {1e4 * naive:.2f} bp over the same last {n} resolved forecasts"
        )
    return None


def naive_quantiles(
    closes: pd.Series, as_of: date, levels: Sequence[float], window: int
) -> dict[float, float] | None:
    """The random walk's quantiles (price) as of a day, from the trailing `window` daily log
    returns up to it: the method the backtest scores and the service serves."""
    past = closes.loc[: pd.Timestamp(as_of)].to_numpy()
    walk = RandomWalk(window)
    if len(past) - 1 < walk.min_returns:
        return None
    last = float(past[-1])
    q = walk.next_day(Bars.of_closes(past), {}, levels)
    return {float(lv): last * float(np.exp(v)) for lv, v in zip(levels, q, strict=True)}


def calendar_as_of(closes: pd.Series, target: date) -> date | None:
    """The last trading day before the target day in the source's own calendar."""
    before = closes.index[closes.index < pd.Timestamp(target)]
    return before[-1].date() if len(before) else None


def with_naive(
    rows: Sequence[Resolved], closes: Mapping[str, pd.Series], window: int
) -> list[Resolved]:
    """Each resolved forecast with the naive random walk's quantiles for its day."""
    out = []
    for row in rows:
        series = closes.get(row.ticker)
        if row.quantiles and series is not None:
            as_of = row.as_of or calendar_as_of(series, row.target_date)
            naive = naive_quantiles(series, as_of, sorted(row.quantiles), window) if as_of else None
            row = replace(row, naive_quantiles=naive)
        out.append(row)
    return out


def _windows(rows: Sequence[Resolved], rule: MonitoringConfig) -> ByWindow:
    return {w: window_scores(rows[-w:]) for w in rule.windows}


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 30, version)


def version_reports(
    rows: Sequence[Resolved], rule: MonitoringConfig | None = None
) -> list[VersionReport]:
    """Per model version (in version order), from rows oldest first."""
    rule = rule or MonitoringConfig()
    by_version: dict[tuple[str, str], list[Resolved]] = defaultdict(list)
    for row in rows:
        by_version[(row.model_name, row.model_version)].append(row)
    reports = []
    for (name, version), own in sorted(by_version.items(), key=lambda kv: _version_key(kv[0][1])):
        by_ticker: dict[str, list[Resolved]] = defaultdict(list)
        by_method: dict[str, list[Resolved]] = defaultdict(list)
        for row in own:
            by_ticker[row.ticker].append(row)
            by_method[row.method].append(row)
        windows = _windows(own, rule)
        reports.append(
            VersionReport(
                model_name=name,
                model_version=version,
                resolved=len(own),
                headline=windows[rule.headline_window],
                windows=windows,
                tickers={t: _windows(r, rule) for t, r in sorted(by_ticker.items())},
                methods={m: _windows(r, rule) for m, r in sorted(by_method.items())},
                ticker_methods={t: r[-1].method for t, r in sorted(by_ticker.items())},
                drift_reason=drift_reason(version, windows, rule),
            )
        )
    return reports
