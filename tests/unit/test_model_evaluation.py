"""The network's quantile head and the evaluation maths, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecaster.evaluation import diebold_mariano, evaluate, fit_linear_baseline, point_metrics
from forecaster.model.lit_module import pinball_loss
from forecaster.model.network import LSTMQuantileNet
from forecaster.windows import Windows


@pytest.mark.parametrize("n_quantiles", [3, 5])
def test_quantiles_never_cross_even_for_random_weights(n_quantiles: int) -> None:
    torch.manual_seed(0)
    net = LSTMQuantileNet(n_features=4, hidden_size=8, n_quantiles=n_quantiles, target_scale=0.01)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3)  # wild weights: ordering must come from the architecture
        out = net(torch.randn(256, 12, 4))
    assert out.shape == (256, n_quantiles)
    assert (out[:, 1:] >= out[:, :-1]).all()


def test_pinball_loss_matches_its_definition() -> None:
    pred = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([1.5])
    q = torch.tensor([0.1, 0.5, 0.9])
    # per quantile: 0.1*1.5, 0.5*0.5, (0.9-1)*(-0.5)
    expected = (0.15 + 0.25 + 0.05) / 3
    assert pinball_loss(pred, target, q).item() == pytest.approx(expected)


def test_point_metrics_by_hand() -> None:
    last = np.array([100.0, 100.0, 100.0, 100.0])
    actual = np.array([101.0, 99.0, 102.0, 100.0])
    predicted = np.array([100.5, 100.5, 101.0, 99.0])
    m = point_metrics(predicted, actual, last)
    assert m.mae == pytest.approx((0.5 + 1.5 + 1.0 + 1.0) / 4)
    assert m.rmse == pytest.approx(np.sqrt((0.25 + 2.25 + 1.0 + 1.0) / 4))
    assert m.mape == pytest.approx(100 * np.mean([0.5 / 101, 1.5 / 99, 1.0 / 102, 1.0 / 100]))
    # up/up hit, up vs down miss, up/up hit, down vs flat miss
    assert m.directional_accuracy == pytest.approx(0.5)


def test_diebold_mariano_sees_a_real_difference_and_not_a_fake_one() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=2000)
    stat, p = diebold_mariano(base * 0.8, base)
    assert stat < 0
    assert p < 1e-6
    _, p_same = diebold_mariano(rng.normal(size=2000), rng.normal(size=2000))
    assert p_same > 0.01


def windows_for(last: np.ndarray, actual: np.ndarray) -> Windows:
    n = len(last)
    dates = pd.bdate_range("2020-01-01", periods=n + 1).to_numpy()
    return Windows(
        x=np.zeros((n, 3, 2), np.float32),
        y=np.log(actual / last).astype(np.float32),
        end_dates=dates[:-1],
        target_dates=dates[1:],
        last_close=last,
        target_close=actual,
        tickers=np.full(n, "T", dtype=object),
        feature_names=("a", "b"),
    )


def test_evaluate_scores_model_and_baselines_on_the_same_days() -> None:
    rng = np.random.default_rng(1)
    last = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    actual = last * np.exp(rng.normal(0, 0.01, 500))
    windows = windows_for(last, actual)
    # A perfect median and a +/- 0.01 interval: coverage is the share of |r| < 0.01.
    true_r = np.log(actual / last)
    q = np.stack([np.full(500, -0.01), true_r, np.full(500, 0.01)], axis=1)
    ev = evaluate(windows, q, np.zeros(500), interval_level=0.8)
    assert ev.model.mae == pytest.approx(0, abs=1e-9)
    assert ev.linear.mae == pytest.approx(ev.naive.mae)
    assert ev.naive.mae == pytest.approx(np.mean(np.abs(actual - last)))
    assert ev.model.coverage == pytest.approx(np.mean(np.abs(true_r) <= 0.01))
    assert ev.up_day_share == pytest.approx(np.mean(actual > last))
    lo, hi = ev.up_day_share_ci
    assert lo < ev.up_day_share < hi
    assert ev.mae_ratio_vs_naive == pytest.approx(0, abs=1e-9)
    assert ev.model.directional_accuracy == 1.0


def test_linear_baseline_picks_its_penalty_on_validation() -> None:
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 3, 2)).astype(np.float32)
    y = (0.5 * x[:, -1, 0] + rng.normal(0, 0.1, n)).astype(np.float32)
    w = windows_for(np.ones(n), np.ones(n))
    train = Windows(x[:300], y[:300], *(a[:300] for a in (w.end_dates, w.target_dates, w.last_close, w.target_close, w.tickers)), ("a", "b"))  # fmt: skip
    val = Windows(x[300:], y[300:], *(a[300:] for a in (w.end_dates, w.target_dates, w.last_close, w.target_close, w.tickers)), ("a", "b"))  # fmt: skip
    model = fit_linear_baseline(train, val, [0.01, 1e6])
    assert model.alpha == 0.01  # the huge penalty would flatten a real signal
