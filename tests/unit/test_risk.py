"""VaR and ES scores against hand computations and the published Basel table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forecaster.evaluation.risk import acerbi_szekely_z2, fz0_loss, traffic_light, zone


def test_fz0_loss_by_hand() -> None:
    y = np.array([-0.03, 0.01])
    loss = fz0_loss(y, np.full(2, -0.02), np.full(2, -0.025), alpha=0.025)
    # Exception: -1 / (0.025 * -0.025) * (-0.02 + 0.03) = 16, plus v/e = 0.8, log 0.025, -1.
    assert loss[0] == pytest.approx(16 + 0.8 + math.log(0.025) - 1)
    assert loss[1] == pytest.approx(0.8 + math.log(0.025) - 1)


def test_fz0_is_lowest_at_the_true_var_and_es() -> None:
    alpha = 0.025
    y = stats.norm.ppf((np.arange(200_000) + 0.5) / 200_000)  # exact normal quantiles
    var = stats.norm.ppf(alpha)
    es = -stats.norm.pdf(var) / alpha
    ones = np.ones_like(y)
    truth = fz0_loss(y, var * ones, es * ones, alpha).mean()
    for v, e in [(1.2 * var, es), (0.8 * var, es), (var, 1.2 * es), (var, 0.9 * es)]:
        assert fz0_loss(y, v * ones, min(e, v) * ones, alpha).mean() > truth


def test_z2_by_hand_and_zero_when_the_tail_is_as_forecast() -> None:
    y = np.array([-0.05, 0.01, -0.03, 0.02])
    # Exceptions -0.05 and -0.03: (-0.08 / 0.04) / (4 * 0.25) + 1 = -1.
    assert acerbi_szekely_z2(y, np.full(4, -0.02), np.full(4, -0.04), 0.25) == pytest.approx(-1)
    # One exception in four at alpha 0.25, exactly at the forecast ES: Z2 = 0.
    y = np.array([-0.04, 0.01, 0.0, 0.02])
    assert acerbi_szekely_z2(y, np.full(4, -0.02), np.full(4, -0.04), 0.25) == pytest.approx(0)
    with pytest.raises(ValueError, match="es must be negative"):
        acerbi_szekely_z2(y, np.full(4, -0.02), np.full(4, 0.01), 0.25)


def test_zones_reproduce_the_basel_table_for_250_days() -> None:
    assert [zone(k) for k in range(12)] == ["green"] * 5 + ["yellow"] * 5 + ["red"] * 2
    with pytest.raises(ValueError, match="exceptions"):
        zone(-1)


def test_traffic_light_reads_the_last_250_days() -> None:
    y = np.zeros(300)
    y[:40] = -0.1  # 40 exceptions, all older than the last 250 days
    y[-6:] = -0.1  # six recent ones: yellow
    assert traffic_light(y, np.full(300, -0.05)) == ("yellow", 6)
    assert traffic_light(y[-5:], np.full(5, -0.05))[0] == "red"  # five in five days
