"""Every forecaster scored on exactly the same target days: point metrics in price space,
proper scores of the forecast distribution in log-return space.

Naive persistence (tomorrow's close = today's close) is the point bar: on daily index data
nobody's point forecast beats it by more than a hair, so an MAE ratio far below ~0.98 or a
directional accuracy above ~0.58 almost certainly means look-ahead. The distribution is where
skill can show (volatility clusters), so the headline is the pinball loss against the naive
empirical random walk and GARCH(1,1); a pinball ratio vs naive far below ~0.85 on daily data is
flagged as probable look-ahead too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from forecaster.config import level_key
from forecaster.data.windows import Windows
from forecaster.evaluation import scores
from forecaster.levels import interval_columns
from forecaster.levels import median_index as level_median
from forecaster.methods import CLASSIC

MODEL = "model"
NAIVE = "naive"
GARCH = "garch"
LINEAR = "linear"
# The model's quantiles before per-ticker recalibration (forecaster.methods.calibration).
RAW = "raw"


@dataclass(frozen=True)
class PointMetrics:
    mae: float
    rmse: float
    mape: float  # percent
    # Share of days whose predicted sign matches the realised one; None for a forecaster that
    # never predicts a move (naive persistence has no direction to score).
    directional_accuracy: float | None


@dataclass(frozen=True)
class IntervalScores:
    coverage: float  # share of realised closes inside the interval
    width: float  # mean width in price units
    winkler: float  # mean interval score, log-return units
    kupiec_pvalue: float  # violation rate == 1 - level
    christoffersen_pvalue: float  # violations independent from one day to the next


@dataclass(frozen=True)
class ForecastScores:
    """One forecaster on the evaluation days; the per-day arrays feed the tests and the gate."""

    point: PointMetrics
    pinball: float
    pinball_per_level: tuple[float, ...]
    crps: float
    intervals: Mapping[float, IntervalScores]
    day_pinball: np.ndarray
    day_abs_error: np.ndarray
    day_violations: Mapping[float, np.ndarray]


def point_metrics(
    predicted_close: np.ndarray, actual_close: np.ndarray, last_close: np.ndarray
) -> PointMetrics:
    error = predicted_close - actual_close
    predicted_move = np.sign(predicted_close - last_close)
    actual_move = np.sign(actual_close - last_close)
    moves = bool(np.any(predicted_move != 0))
    return PointMetrics(
        mae=float(np.mean(np.abs(error))),
        rmse=float(np.sqrt(np.mean(error**2))),
        mape=float(100 * np.mean(np.abs(error) / actual_close)),
        directional_accuracy=float(np.mean(predicted_move == actual_move)) if moves else None,
    )


def score_forecast(
    windows: Windows,
    q: np.ndarray,
    levels: Sequence[float],
    intervals: Sequence[float],
    median_index: int,
) -> ForecastScores:
    """Score (n, n_levels) log-return quantiles against the windows' realised next days."""
    last, actual = windows.last_close, windows.target_close
    y = np.log(actual / last)
    predicted = last * np.exp(q[:, median_index])
    loss = scores.pinball(q, y, levels)
    per_interval: dict[float, IntervalScores] = {}
    day_violations: dict[float, np.ndarray] = {}
    for coverage in intervals:
        lo, hi = interval_columns(levels, coverage)
        hits = scores.violations(q[:, lo], q[:, hi], y)
        day_violations[coverage] = hits
        per_interval[coverage] = IntervalScores(
            coverage=float(1.0 - hits.mean()),
            width=float(np.mean(last * (np.exp(q[:, hi]) - np.exp(q[:, lo])))),
            winkler=float(scores.winkler(q[:, lo], q[:, hi], y, coverage).mean()),
            kupiec_pvalue=scores.kupiec_pvalue(hits, coverage),
            christoffersen_pvalue=scores.christoffersen_pvalue(hits),
        )
    return ForecastScores(
        point=point_metrics(predicted, actual, last),
        pinball=float(loss.mean()),
        pinball_per_level=tuple(float(v) for v in loss.mean(axis=0)),
        crps=float(scores.crps_per_day(q, y, levels).mean()),
        intervals=per_interval,
        day_pinball=loss.mean(axis=1),
        day_abs_error=np.abs(predicted - actual),
        day_violations=day_violations,
    )


def _proportion_ci(successes: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class Evaluation:
    """Scores of named forecasters on the same windows; MODEL is the LSTM."""

    windows: Windows
    levels: tuple[float, ...]
    intervals: tuple[float, ...]
    interval_level: float
    median_index: int
    forecasts: Mapping[str, np.ndarray]
    scores: Mapping[str, ForecastScores]

    @property
    def n_days(self) -> int:
        return len(self.windows)

    @property
    def model(self) -> ForecastScores:
        return self.scores[MODEL]

    def ratio(self, metric: str, name: str = MODEL, vs: str = NAIVE) -> float:
        """`metric` ('mae' or 'pinball') of `name` over that of `vs`; NaN if either is absent."""
        if name not in self.scores or vs not in self.scores:
            return math.nan
        a, b = self.scores[name], self.scores[vs]
        if metric == "mae":
            return a.point.mae / b.point.mae if b.point.mae else math.nan
        return a.pinball / b.pinball if b.pinball else math.nan

    def dm(self, loss: str, vs: str, name: str = MODEL) -> tuple[float, float, float]:
        """Diebold-Mariano of `name` vs `vs` on per-day 'pinball' or 'abs_error' losses:
        (statistic, p that `name` is better, p that it is worse)."""
        if name not in self.scores or vs not in self.scores:
            return math.nan, math.nan, math.nan
        attr = "day_pinball" if loss == "pinball" else "day_abs_error"
        return scores.diebold_mariano(
            getattr(self.scores[name], attr), getattr(self.scores[vs], attr)
        )

    def up_day_share(self) -> float:
        return float(np.mean(self.windows.target_close > self.windows.last_close))

    def red_flags(self, lookahead_pinball_ratio: float = 0.85) -> list[str]:
        """Scores too good to be true on daily data: probable look-ahead, not skill."""
        flags = []
        mae_ratio = self.ratio("mae")
        if mae_ratio < 0.98:
            flags.append(f"MAE ratio vs naive {mae_ratio:.4f} < 0.98")
        pinball_ratio = self.ratio("pinball")
        if pinball_ratio < lookahead_pinball_ratio:
            flags.append(f"pinball ratio vs naive {pinball_ratio:.4f} < {lookahead_pinball_ratio}")
        accuracy = self.model.point.directional_accuracy
        if accuracy is not None and accuracy > 0.58:
            flags.append(f"directional accuracy {accuracy:.3f} > 0.58")
        return flags

    def _block(self, s: ForecastScores) -> dict[str, Any]:
        headline = s.intervals[self.interval_level]
        return {
            **asdict(s.point),
            "pinball": s.pinball,
            "pinball_per_level": {
                level_key(lv): v for lv, v in zip(self.levels, s.pinball_per_level, strict=True)
            },
            "crps": s.crps,
            "coverage": {level_key(c): i.coverage for c, i in s.intervals.items()},
            "winkler": {level_key(c): i.winkler for c, i in s.intervals.items()},
            "kupiec_pvalue": {level_key(c): i.kupiec_pvalue for c, i in s.intervals.items()},
            "christoffersen_pvalue": {
                level_key(c): _nan_to_none(i.christoffersen_pvalue) for c, i in s.intervals.items()
            },
            "interval_width": headline.width,
            "interval_level": self.interval_level,
        }

    def summary(self, lookahead_pinball_ratio: float = 0.85) -> dict[str, Any]:
        """The JSON contract of train, retrain and backtest: one block per forecaster plus the
        headline ratios and tests of the model against the baselines."""
        n = self.n_days
        strongest = self.strongest()
        ups = int(np.sum(self.windows.target_close > self.windows.last_close))
        accuracy = self.model.point.directional_accuracy
        hits = round((accuracy or 0.0) * n)
        dm_point, better, worse = self.dm("abs_error", NAIVE)
        two_sided = math.nan if math.isnan(better) else min(1.0, 2 * min(better, worse))
        out: dict[str, Any] = {name: self._block(s) for name, s in self.scores.items()}
        out.update(
            {
                "n_days": n,
                "quantile_levels": list(self.levels),
                "mae_ratio_vs_naive": self.ratio("mae"),
                "linear_mae_ratio_vs_naive": _nan_to_none(self.ratio("mae", LINEAR)),
                "up_day_share": ups / n,
                "up_day_share_ci95": list(_proportion_ci(ups, n)),
                "directional_accuracy_ci95": list(_proportion_ci(hits, n)),
                # Point forecast vs naive persistence on absolute errors, two-sided.
                "diebold_mariano": {
                    "statistic": _nan_to_none(dm_point),
                    "pvalue": _nan_to_none(two_sided),
                },
                # One-sided: p that the model's point forecast is worse than persistence.
                "dm_mae_worse_vs_naive": {
                    "statistic": _nan_to_none(dm_point),
                    "pvalue": _nan_to_none(worse),
                },
                **{
                    f"pinball_ratio_vs_{vs}": _nan_to_none(self.ratio("pinball", vs=vs))
                    for vs in self.comparators()
                },
                "strongest_comparator": strongest,
                "pinball_ratio_vs_strongest": _nan_to_none(
                    self.ratio("pinball", vs=strongest) if strongest else math.nan
                ),
                "red_flags": self.red_flags(lookahead_pinball_ratio),
            }
        )
        for vs in self.comparators():
            stat, p_better, _ = self.dm("pinball", vs)
            # One-sided: p that the model's pinball loss is not lower than the baseline's.
            out[f"dm_pinball_vs_{vs}"] = {
                "statistic": _nan_to_none(stat),
                "pvalue": _nan_to_none(p_better),
            }
        return out

    def comparators(self) -> list[str]:
        """The classic methods the model is compared with, by name (forecaster.methods): the
        random walk and GARCH always have keys (null without scores), any other when scored."""
        return [n for n in CLASSIC if n in (NAIVE, GARCH) or n in self.scores]

    def strongest(self) -> str | None:
        """The scored classic method with the lowest mean pinball on these days."""
        return scores.lowest({n: self.scores[n].pinball for n in CLASSIC if n in self.scores})

    def tickers(self) -> list[str]:
        """The tickers scored, in the order their windows come."""
        return [str(t) for t in dict.fromkeys(self.windows.tickers.tolist())]

    def by_ticker(self) -> dict[str, Evaluation]:
        """The same forecasters scored on each ticker's own days: evidence is per series."""
        out = {}
        for ticker in self.tickers():
            rows = np.flatnonzero(self.windows.tickers == ticker)
            out[ticker] = evaluate(
                self.windows.take(rows),
                {name: q[rows] for name, q in self.forecasts.items()},
                self.levels,
                self.intervals,
                self.interval_level,
            )
        return out

    def per_ticker_summary(self, lookahead_pinball_ratio: float = 0.85) -> dict[str, Any]:
        """{ticker: summary()} with the same keys as the pooled summary."""
        return {
            ticker: ev.summary(lookahead_pinball_ratio) for ticker, ev in self.by_ticker().items()
        }

    def flat_metrics(self) -> dict[str, float]:
        """Flat `model_mae`, `naive_pinball`, `garch_coverage_0.8`, ... for MLflow."""
        out: dict[str, float] = {}
        for name, s in self.scores.items():
            for key, value in asdict(s.point).items():
                if value is not None:
                    out[f"{name}_{key}"] = float(value)
            out[f"{name}_pinball"] = s.pinball
            out[f"{name}_crps"] = s.crps
            for level, value in zip(self.levels, s.pinball_per_level, strict=True):
                out[f"{name}_pinball_q{level_key(level)}"] = value
            for c, i in s.intervals.items():
                for key, value in asdict(i).items():
                    if not math.isnan(value):
                        out[f"{name}_{key}_{level_key(c)}"] = float(value)
            out[f"{name}_coverage"] = s.intervals[self.interval_level].coverage
            out[f"{name}_interval_width"] = s.intervals[self.interval_level].width
        summary = self.summary()
        ratios = [f"pinball_ratio_vs_{vs}" for vs in (*self.comparators(), "strongest")]
        for key in ("mae_ratio_vs_naive", "linear_mae_ratio_vs_naive", "up_day_share", *ratios):
            if summary.get(key) is not None:
                out[key] = float(summary[key])
        tests = [f"dm_pinball_vs_{vs}" for vs in self.comparators()]
        for key in ("diebold_mariano", "dm_mae_worse_vs_naive", *tests):
            prefix = "dm" if key == "diebold_mariano" else key
            for part in ("statistic", "pvalue"):
                if summary[key][part] is not None:
                    out[f"{prefix}_{part}"] = float(summary[key][part])
        out["n_days"] = float(self.n_days)
        return out


def evaluate(
    windows: Windows,
    forecasts: Mapping[str, np.ndarray],
    levels: Sequence[float],
    intervals: Sequence[float],
    interval_level: float,
) -> Evaluation:
    """Score every named forecaster's (n, n_levels) quantiles on the same `windows`."""
    n = len(windows)
    if n == 0:
        raise ValueError("cannot evaluate on zero windows")
    if MODEL not in forecasts:
        raise ValueError(f"forecasts must include '{MODEL}', got {list(forecasts)}")
    levels = tuple(float(v) for v in levels)
    median_index = level_median(levels)
    return Evaluation(
        windows=windows,
        levels=levels,
        intervals=tuple(intervals),
        interval_level=interval_level,
        median_index=median_index,
        forecasts=dict(forecasts),
        scores={
            name: score_forecast(windows, q, levels, intervals, median_index)
            for name, q in forecasts.items()
        },
    )


def summary_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of one summary() as a flat row: a table line per ticker (MLflow's table
    artifact, the terminal) with the same figures the JSON holds."""
    model = summary[MODEL]
    strongest = summary.get("strongest_comparator")
    strongest_dm = summary.get(f"dm_pinball_vs_{strongest}") or {}
    row: dict[str, Any] = {
        "n_days": summary["n_days"],
        "pinball": model["pinball"],
        "pinball_ratio_vs_naive": summary["pinball_ratio_vs_naive"],
        "dm_p_vs_naive": summary["dm_pinball_vs_naive"]["pvalue"],
        "pinball_ratio_vs_garch": summary["pinball_ratio_vs_garch"],
        "dm_p_vs_garch": summary["dm_pinball_vs_garch"]["pvalue"],
        "strongest_comparator": strongest,
        "pinball_ratio_vs_strongest": summary.get("pinball_ratio_vs_strongest"),
        "dm_p_vs_strongest": strongest_dm.get("pvalue"),
        "mae_ratio_vs_naive": summary["mae_ratio_vs_naive"],
        "dm_p_mae_worse": summary["dm_mae_worse_vs_naive"]["pvalue"],
    }
    for level, coverage in model["coverage"].items():
        row[f"coverage_{level}"] = coverage
        row[f"kupiec_p_{level}"] = model["kupiec_pvalue"][level]
    return row
