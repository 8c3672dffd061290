"""Live scores as a pure function of resolved forecasts, on hand-made numbers
(`forecaster.evaluation.monitoring`)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from forecaster.config import MonitoringConfig
from forecaster.evaluation import scores
from forecaster.evaluation.monitoring import Resolved, WindowFigures, drift_reason, window_scores


def row(last: float, predicted: float, actual: float, q: dict[float, float] | None) -> Resolved:
    return Resolved("stock-lstm", "3", "ACME", date(2024, 1, 2), last, predicted, actual, q)


def test_point_and_interval_figures_by_hand() -> None:
    band = {0.1: 95.0, 0.5: 100.0, 0.9: 105.0}  # the 80% interval is [95, 105]
    rows = [
        row(100.0, 100.0, 101.0, band),  # inside
        row(100.0, 100.0, 104.0, band),  # inside
        row(100.0, 100.0, 106.0, band),  # above: a miss
        row(100.0, 100.0, 97.0, band),  # inside
    ]
    out = window_scores(rows)
    assert out.resolved == 4
    assert out.mae == pytest.approx((1 + 4 + 6 + 3) / 4)
    assert out.naive_mae == pytest.approx((1 + 4 + 6 + 3) / 4)  # median = last close here
    assert out.coverage == {"0.8": pytest.approx(0.75)}  # no 0.5 / 0.9 quantiles served
    hits = np.array([False, False, True, False])
    assert out.kupiec_pvalue["0.8"] == pytest.approx(scores.kupiec_pvalue(hits, 0.8))
    # Pinball in log-return units, by its definition, averaged over days and levels.
    y = np.log(np.array([101.0, 104.0, 106.0, 97.0]) / 100.0)
    q = np.log(np.array([95.0, 100.0, 105.0]) / 100.0)
    tau = np.array([0.1, 0.5, 0.9])
    diff = y[:, None] - q[None, :]
    assert out.pinball == pytest.approx(np.maximum(tau * diff, (tau - 1) * diff).mean())


def test_forecasts_logged_without_quantiles_still_get_point_scores() -> None:
    rows = [row(100.0, 101.0, 102.0, None), row(100.0, 99.0, 98.0, None)]
    out = window_scores(rows)
    assert out.mae == pytest.approx(1.0)
    assert out.naive_mae == pytest.approx(2.0)
    assert out.pinball is None
    assert out.coverage == {}
    assert window_scores([]).mae is None


def report(
    resolved: int, coverage: float, p: float | None, ours: float, naive: float
) -> dict[int, WindowFigures]:
    return {60: WindowFigures(resolved=resolved, coverage={"0.8": coverage},
                              kupiec_pvalue={"0.8": p}, pinball=ours,
                              naive_pinball=naive)}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (report(59, 0.60, 1e-6, 2e-3, 1e-3), None),  # not 60 resolved yet: no verdict
        (report(60, 0.80, 0.9, 1e-3, 2e-3), None),  # calibrated, better than naive
        (
            report(60, 0.65, 0.002, 1e-3, 2e-3),
            "v4's 80% interval covered 65.0% of the last 60 "
            "resolved forecasts (Kupiec p 0.002 < 0.01)",
        ),
        (
            report(60, 0.80, 0.9, 2.5e-3, 2e-3),
            "v4's live pinball 25.00 bp is worse than the naive "
            "random walk's 20.00 bp over the same last 60 "
            "resolved forecasts",
        ),
        (report(60, 0.80, None, 2e-3, 2e-3), None),  # equal is not worse
    ],
)
def test_drift_rule(case: dict[int, WindowFigures], expected: str | None) -> None:
    from forecaster.evaluation.monitoring import drift_reason

    assert drift_reason("4", case, MonitoringConfig()) == expected


def test_naive_pinball_is_scored_on_the_same_days() -> None:
    band = {0.1: 95.0, 0.5: 100.0, 0.9: 105.0}
    wide = {0.1: 90.0, 0.5: 100.0, 0.9: 110.0}
    rows = [Resolved("m", "1", "T", date(2024, 1, 2), 100.0, 100.0, a, band, wide)
            for a in (101.0, 104.0, 106.0, 97.0)]  # fmt: skip
    out = window_scores(rows)
    y = np.log(np.array([101.0, 104.0, 106.0, 97.0]) / 100.0)
    q = np.log(np.array([90.0, 100.0, 110.0]) / 100.0)
    tau = np.array([0.1, 0.5, 0.9])
    diff = y[:, None] - q[None, :]
    assert out.naive_pinball == pytest.approx(np.maximum(tau * diff, (tau - 1) * diff).mean())
    # One day without the baseline: no naive figure rather than one on different days.
    partial = [*rows[:3], Resolved("m", "1", "T", date(2024, 1, 2), 100.0, 100.0, 97.0, band)]
    assert window_scores(partial).naive_pinball is None


def test_naive_quantiles_match_the_backtest_baseline(sample_frame) -> None:  # type: ignore[no-untyped-def]
    from forecaster.evaluation.monitoring import naive_quantiles

    closes = sample_frame["close"]
    levels = [0.05, 0.5, 0.95]
    got = naive_quantiles(closes, date(2018, 6, 29), levels, 250)
    past = closes.loc[:"2018-06-29"].to_numpy()
    trailing = np.diff(np.log(past))[-250:]
    q = np.quantile(trailing, levels) - np.median(trailing)
    assert got == pytest.approx({lv: past[-1] * np.exp(v) for lv, v in zip(levels, q, strict=True)})
    assert got[0.5] == pytest.approx(past[-1])  # zero median: persistence
    assert naive_quantiles(closes.iloc[:10], date(1999, 1, 15), levels, 250) is None


def test_live_skill_is_reported_per_serving_method() -> None:
    from dataclasses import replace

    from forecaster.evaluation.monitoring import version_reports

    band = {0.1: 95.0, 0.5: 100.0, 0.9: 105.0}
    lstm = [replace(row(100.0, 100.0, 101.0, band), ticker="^GSPC") for _ in range(3)]
    garch = [replace(row(100.0, 100.0, 106.0, band), method="garch") for _ in range(2)]
    (report,) = version_reports([*lstm, *garch])
    assert set(report.methods) == {"lstm", "garch"}
    assert report.methods["lstm"][250].resolved == 3
    assert report.methods["garch"][250].coverage["0.8"] == 0.0
    assert report.methods["lstm"][250].coverage["0.8"] == 1.0
    assert report.ticker_methods == {"ACME": "garch", "^GSPC": "lstm"}
    assert report.resolved == 5


def test_every_interval_the_served_levels_bound_is_scored_narrowest_first() -> None:
    levels = {0.025: 90.0, 0.1: 95.0, 0.5: 100.0, 0.9: 105.0, 0.975: 110.0}
    out = window_scores([row(100.0, 100.0, a, levels) for a in (101.0, 107.0, 112.0)])
    assert list(out.coverage) == ["0.8", "0.95"]
    assert out.coverage == {"0.8": pytest.approx(1 / 3), "0.95": pytest.approx(2 / 3)}
    assert set(out.kupiec_pvalue) == {"0.8", "0.95"}


def test_the_drift_rule_follows_the_monitoring_config() -> None:
    figures = {20: WindowFigures(resolved=20, coverage={"0.5": 0.1}, kupiec_pvalue={"0.5": 1e-4},
                                 pinball=1e-3, naive_pinball=2e-3)}  # fmt: skip
    default = MonitoringConfig()  # judges the 80% interval on 60: no verdict on 20 forecasts
    assert drift_reason("7", figures, default) is None
    rule = MonitoringConfig(windows=(20,), headline_window=20, drift_window=20,
                            drift_interval=0.5, drift_kupiec_alpha=0.001)  # fmt: skip
    assert drift_reason("7", figures, rule) == (
        "v7's 50% interval covered 10.0% of the last 20 resolved forecasts "
        "(Kupiec p 0.0001 < 0.001)"
    )


def test_a_version_report_keeps_its_json_form() -> None:
    """`forecaster monitor --json` and monitor.json: the headline window's figures at the top
    level beside the version's resolved total, windows keyed by their length as text."""
    from forecaster.evaluation.monitoring import version_reports

    rows = [row(100.0, 100.0, 101.0, {0.1: 95.0, 0.5: 100.0, 0.9: 105.0})] * 3
    rule = MonitoringConfig(windows=(2, 250), headline_window=2, drift_window=250)
    (report,) = version_reports(rows, rule)
    out = report.as_dict()
    assert list(out) == ["model_name", "model_version", "resolved", "mae", "naive_mae",
                         "pinball", "naive_pinball", "coverage", "kupiec_pvalue", "windows",
                         "tickers", "methods", "ticker_methods", "drift_reason"]  # fmt: skip
    assert out["resolved"] == 3
    assert out["windows"]["2"]["resolved"] == 2
    assert out["windows"]["250"]["resolved"] == 3
    assert out["tickers"]["ACME"]["2"] == out["windows"]["2"]
    assert out["mae"] == out["windows"]["2"]["mae"]


def test_the_live_baseline_is_the_random_walk_as_of_the_forecasts_day(sample_frame) -> None:  # type: ignore[no-untyped-def]
    """with_naive gives each resolved forecast the random walk of its own as-of day: the logged
    one, else the source's last trading day before the target (calendar_as_of), never later."""
    from dataclasses import replace

    from forecaster.evaluation.monitoring import calendar_as_of, naive_quantiles, with_naive

    closes = sample_frame["close"].loc[:"2018-07-10"]
    # 2018-07-04 was a holiday: the day before the 5th's forecast is the 3rd.
    assert calendar_as_of(closes, date(2018, 7, 5)) == date(2018, 7, 3)
    assert calendar_as_of(closes, date(2018, 7, 9)) == date(2018, 7, 6)
    assert calendar_as_of(closes, closes.index[0].date()) is None
    levels = {0.05: 1.0, 0.5: 1.0, 0.95: 1.0}
    logged = replace(row(100.0, 100.0, 101.0, levels), ticker="^GSPC",
                     target_date=date(2018, 7, 9), as_of=date(2018, 7, 2))  # fmt: skip
    unlogged = replace(logged, as_of=None)
    unknown = replace(logged, ticker="NOPE")
    bare = replace(logged, quantiles=None)
    out = with_naive([logged, unlogged, unknown, bare], {"^GSPC": closes}, 250)
    assert out[0].naive_quantiles == naive_quantiles(
        closes, date(2018, 7, 2), [0.05, 0.5, 0.95], 250
    )
    assert out[1].naive_quantiles == naive_quantiles(
        closes, date(2018, 7, 6), [0.05, 0.5, 0.95], 250
    )
    assert out[0].naive_quantiles != out[1].naive_quantiles
    assert out[2].naive_quantiles is None
    assert out[3].naive_quantiles is None
    # The random walk's median is a zero return: the as-of day's close, in prices.
    assert out[1].naive_quantiles[0.5] == pytest.approx(float(closes.loc["2018-07-06"]))


def test_each_window_is_the_newest_resolved_forecasts() -> None:
    """A 2-row window of three rows oldest first scores the last two, not the first two."""
    from forecaster.evaluation.monitoring import version_reports

    rows = [replace_target(row(100.0, 100.0, actual, None), day)
            for day, actual in ((1, 150.0), (2, 101.0), (3, 102.0))]  # fmt: skip
    rule = MonitoringConfig(windows=(2, 3), headline_window=2, drift_window=2)
    (report_,) = version_reports(rows, rule)
    assert report_.windows[2].mae == pytest.approx(1.5)  # |101 - 100|, |102 - 100|
    assert report_.windows[3].mae == pytest.approx((50 + 1 + 2) / 3)
    assert report_.headline.mae == pytest.approx(1.5)


def replace_target(resolved: Resolved, day: int) -> Resolved:
    from dataclasses import replace

    return replace(resolved, target_date=date(2024, 1, day))
