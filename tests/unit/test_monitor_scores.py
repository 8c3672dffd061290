"""Live scores as a pure function of resolved forecasts, on hand-made numbers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from forecaster import scores
from pipelines.monitor import Resolved, window_scores


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
    assert out["resolved"] == 4
    assert out["mae"] == pytest.approx((1 + 4 + 6 + 3) / 4)
    assert out["naive_mae"] == pytest.approx((1 + 4 + 6 + 3) / 4)  # median = last close here
    assert out["coverage"] == {"0.8": pytest.approx(0.75)}  # no 0.5 / 0.9 quantiles served
    hits = np.array([False, False, True, False])
    assert out["kupiec_pvalue"]["0.8"] == pytest.approx(scores.kupiec_pvalue(hits, 0.8))
    # Pinball in log-return units, by its definition, averaged over days and levels.
    y = np.log(np.array([101.0, 104.0, 106.0, 97.0]) / 100.0)
    q = np.log(np.array([95.0, 100.0, 105.0]) / 100.0)
    tau = np.array([0.1, 0.5, 0.9])
    diff = y[:, None] - q[None, :]
    assert out["pinball"] == pytest.approx(np.maximum(tau * diff, (tau - 1) * diff).mean())


def test_forecasts_logged_without_quantiles_still_get_point_scores() -> None:
    rows = [row(100.0, 101.0, 102.0, None), row(100.0, 99.0, 98.0, None)]
    out = window_scores(rows)
    assert out["mae"] == pytest.approx(1.0)
    assert out["naive_mae"] == pytest.approx(2.0)
    assert out["pinball"] is None
    assert out["coverage"] == {}
    assert window_scores([])["mae"] is None
