"""The network's quantile head, the forecasters and the evaluation maths, on hand-made data."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from forecaster.config import ForecasterConfig, load_config
from forecaster.data.dataset import prepare
from forecaster.data.scaling import FeatureScaler
from forecaster.data.schemas import CLOSE
from forecaster.data.windows import Windows
from forecaster.evaluation.metrics import evaluate, point_metrics
from forecaster.methods import Garch, RandomWalk
from forecaster.methods.linear import LinearQuantileForecaster, fit_ridge
from forecaster.methods.network.lit_module import pinball_loss
from forecaster.methods.network.network import LSTMQuantileNet, QuantileEnsemble, combine
from forecaster.methods.windowed import ClassicForecaster
from forecaster.registry.bundle import ModelBundle

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@pytest.mark.parametrize(("n_quantiles", "median"), [(3, 1), (7, 3), (4, 1)])
def test_quantiles_never_cross_even_for_random_weights(n_quantiles: int, median: int) -> None:
    torch.manual_seed(0)
    net = LSTMQuantileNet(n_features=4, hidden_size=8, n_quantiles=n_quantiles,
                          target_scale=0.01, median_index=median)  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3)  # wild weights: ordering must come from the architecture
        out = net(torch.randn(256, 12, 4))
    assert out.shape == (256, n_quantiles)
    assert (out[:, 1:] >= out[:, :-1]).all()


@pytest.mark.parametrize("vol_feature", [None, 2])
def test_ensemble_averages_its_members_and_never_crosses(vol_feature: int | None) -> None:
    torch.manual_seed(0)
    members = [LSTMQuantileNet(n_features=4, hidden_size=8, n_quantiles=7,
                               target_scale=0.01 * (i + 1), vol_feature=vol_feature).eval()
               for i in range(3)]  # fmt: skip
    for i, member in enumerate(members):
        member.set_vol_unscale(center=0.01 * i, scale=0.005 * (i + 1))
    with torch.no_grad():
        for p in (p for m in members for p in m.parameters()):
            p.normal_(0, 3)
        x = torch.randn(64, 12, 4)
        x[:8, -1, 2] = -50.0  # windows whose volatility falls to the floor
        ensemble = combine(members)
        out = ensemble(x)  # the heads of all members in one batched product
        expected = (members[0](x) + members[1](x) + members[2](x)) / 3
    assert isinstance(ensemble, QuantileEnsemble)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    assert (out[:, 1:] >= out[:, :-1]).all()
    # One member is served as itself, so single models keep their weights layout.
    assert combine(members[:1]) is members[0]
    with pytest.raises(ValueError, match="at least one member"):
        QuantileEnsemble([])
    with pytest.raises(ValueError, match="must share"):
        QuantileEnsemble([members[0], LSTMQuantileNet(n_features=4, n_quantiles=5)])


def test_volatility_scaled_head_follows_the_window_volatility() -> None:
    torch.manual_seed(0)
    net = LSTMQuantileNet(n_features=2, hidden_size=4, n_quantiles=3, target_scale=0.01,
                          vol_feature=1).eval()  # fmt: skip
    x = torch.randn(1, 5, 2)
    x[0, -1, 1] = 1.0  # scaled volatility one standard unit above the centre
    net.set_vol_unscale(center=0.01, scale=0.005)
    with torch.no_grad():
        calm = net(x)  # raw volatility 0.015
        net.set_vol_unscale(center=0.025, scale=0.005)
        turbulent = net(x)  # raw volatility 0.03: same network input, twice the volatility
        net.set_vol_unscale(center=-0.01, scale=0.001)
        floored = net(x)  # negative raw volatility: held at the floor, 0.1 * target_scale
    torch.testing.assert_close(turbulent, 2 * calm)
    torch.testing.assert_close(floored, calm * 0.001 / 0.015)


@pytest.mark.parametrize("vol_feature", [None, 1])
def test_a_persistence_median_is_zero_whatever_the_weights(vol_feature: int | None) -> None:
    torch.manual_seed(0)
    members = [LSTMQuantileNet(n_features=2, hidden_size=4, n_quantiles=5, target_scale=0.01,
                               vol_feature=vol_feature, fixed_median=True).eval()
               for _ in range(2)]  # fmt: skip
    with torch.no_grad():
        for p in (p for m in members for p in m.parameters()):
            p.normal_(0, 3)
        x = torch.randn(32, 6, 2)
        single, ensemble = members[0](x), combine(members)(x)
    for out in (single, ensemble):
        assert (out[:, 2] == 0).all()  # a zero log return: tomorrow's close is today's
        assert (out[:, :2] < 0).all()
        assert (out[:, 3:] > 0).all()
        assert (out[:, 1:] >= out[:, :-1]).all()
    with pytest.raises(ValueError, match="must share"):
        QuantileEnsemble(
            [
                members[0],
                LSTMQuantileNet(
                    n_features=2, hidden_size=4, n_quantiles=5, vol_feature=vol_feature
                ),
            ]
        )


def test_pinball_loss_matches_its_definition() -> None:
    pred = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([1.5])
    q = torch.tensor([0.1, 0.5, 0.9])
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
    assert m.directional_accuracy == pytest.approx(0.5)
    # Persistence predicts no move: it has no direction to score.
    assert point_metrics(last, actual, last).directional_accuracy is None


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


def test_evaluate_scores_every_forecaster_on_the_same_days() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    last = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    r = rng.normal(0, 0.01, n)
    windows = windows_for(last, last * np.exp(r))
    from scipy import stats

    true_q = np.tile(stats.norm.ppf(LEVELS, scale=0.01), (n, 1))
    wide_q = true_q * 2
    ev = evaluate(windows, {"model": true_q, "naive": wide_q}, LEVELS, (0.5, 0.8, 0.9), 0.8)
    summary = ev.summary()
    # The true distribution: calibrated and better than a twice-too-wide one.
    for level in ("0.5", "0.8", "0.9"):
        assert summary["model"]["coverage"][level] == pytest.approx(float(level), abs=0.03)
        assert summary["model"]["kupiec_pvalue"][level] > 0.01
        assert summary["naive"]["coverage"][level] > float(level) + 0.05
    assert summary["pinball_ratio_vs_naive"] < 0.9
    assert summary["dm_pinball_vs_naive"]["pvalue"] < 1e-6
    assert summary["pinball_ratio_vs_garch"] is None  # no garch block given
    assert summary["strongest_comparator"] == "naive"
    assert summary["pinball_ratio_vs_strongest"] == summary["pinball_ratio_vs_naive"]
    # With GARCH scored too (here: the true distribution), the strongest is named by its scores.
    both = evaluate(windows, {"model": true_q, "naive": wide_q, "garch": true_q * 1.1}, LEVELS,
                    (0.5, 0.8, 0.9), 0.8).summary()  # fmt: skip
    assert both["strongest_comparator"] == "garch"
    assert both["pinball_ratio_vs_strongest"] == both["pinball_ratio_vs_garch"]
    assert both["pinball_ratio_vs_garch"] < 1
    # Both medians are zero: point metrics are exactly naive persistence's.
    assert summary["mae_ratio_vs_naive"] == pytest.approx(1.0)
    assert summary["model"]["directional_accuracy"] is None
    assert summary["model"]["mae"] == pytest.approx(np.mean(np.abs(windows.target_close - last)))
    assert set(summary["model"]["pinball_per_level"]) == {"0.05", "0.1", "0.25", "0.5", "0.75",
                                                          "0.9", "0.95"}  # fmt: skip
    assert ev.flat_metrics()["model_coverage_0.8"] == summary["model"]["coverage"]["0.8"]


def test_a_too_good_pinball_ratio_is_flagged_as_look_ahead() -> None:
    rng = np.random.default_rng(3)
    n = 500
    last = np.full(n, 100.0)
    r = rng.normal(0, 0.01, n)
    windows = windows_for(last, last * np.exp(r))
    oracle = r[:, None] + np.linspace(-1e-4, 1e-4, len(LEVELS))[None, :]
    wide = np.tile(np.linspace(-0.02, 0.02, len(LEVELS)), (n, 1))
    ev = evaluate(windows, {"model": oracle, "naive": wide}, LEVELS, (0.8,), 0.8)
    flags = ev.red_flags()
    assert any("pinball ratio vs naive" in f for f in flags)
    assert any("MAE ratio" in f for f in flags)


def test_linear_baseline_picks_its_penalty_on_validation() -> None:
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 3, 2)).astype(np.float32)
    y = (0.5 * x[:, -1, 0] + rng.normal(0, 0.1, n)).astype(np.float32)
    w = windows_for(np.ones(n), np.ones(n))
    train = Windows(x[:300], y[:300], *(a[:300] for a in (w.end_dates, w.target_dates, w.last_close, w.target_close, w.tickers)), ("a", "b"))  # fmt: skip
    val = Windows(x[300:], y[300:], *(a[300:] for a in (w.end_dates, w.target_dates, w.last_close, w.target_close, w.tickers)), ("a", "b"))  # fmt: skip
    model = fit_ridge(train, val, [0.01, 1e6])
    assert model.alpha == 0.01  # the huge penalty would flatten a real signal


@pytest.fixture(scope="module")
def walk_data():  # type: ignore[no-untyped-def]
    from tests.conftest import random_walk

    config = load_config(None, ["windows.lookback=10", "features.volume_window=10",
                                "features.volatility_window=10"])  # fmt: skip
    frame = random_walk(900, seed=5)
    return config, {"WALK": frame}


def _prepared(config: ForecasterConfig, frames):  # type: ignore[no-untyped-def]
    return prepare(frames, config)


@pytest.mark.parametrize("name", ["naive", "garch", "linear"])
def test_baselines_give_ordered_quantiles_and_never_see_the_future(walk_data, name: str) -> None:  # type: ignore[no-untyped-def]
    config, frames = walk_data
    make = {
        "naive": lambda: ClassicForecaster(RandomWalk(window=250), LEVELS),
        "garch": lambda: ClassicForecaster(Garch(), LEVELS),
        "linear": lambda: LinearQuantileForecaster(LEVELS, config.training.ridge_alphas),
    }[name]
    data = _prepared(config, frames)
    test = data.windows.take(data.split.test)
    q = make().fit(data).predict(test)
    assert q.shape == (len(test), len(LEVELS))
    assert np.isfinite(q).all()
    assert (np.diff(q, axis=1) > 0).all()
    # Wreck every price after the middle test day: forecasts as of that day and before stay.
    cut = pd.Timestamp(test.end_dates[len(test) // 2])
    frame = frames["WALK"].copy()
    later = frame.index > cut
    frame.loc[later, ["open", "high", "low", CLOSE]] *= np.exp(
        np.random.default_rng(9).normal(0, 0.2, (later.sum(), 1))
    )
    frame.loc[later, "high"] = frame.loc[later, ["open", "high", "low", CLOSE]].max(axis=1)
    frame.loc[later, "low"] = frame.loc[later, ["open", "high", "low", CLOSE]].min(axis=1)
    frame.attrs = frames["WALK"].attrs
    changed = _prepared(config, {"WALK": frame})
    q2 = make().fit(changed).predict(changed.windows.take(changed.split.test))
    before = test.end_dates <= np.datetime64(cut)
    np.testing.assert_allclose(q2[before], q[before], rtol=1e-9, atol=1e-12)
    if name != "garch":  # on a constant-volatility walk GARCH rightly finds no ARCH effect
        assert not np.allclose(q2[~before], q[~before])


def test_garch_is_fitted_on_training_days_and_reacts_to_shocks(sample_frame) -> None:  # type: ignore[no-untyped-def]
    config = load_config(None, ["data.start=2006-01-01"])
    frame = sample_frame.loc["2006":]
    frame.attrs = sample_frame.attrs
    data = _prepared(config, {"^GSPC": frame})
    garch = ClassicForecaster(Garch(), LEVELS).fit(data)
    params = garch.params["^GSPC"]
    assert 0 < params["alpha[1]"] < 0.3
    assert 0.6 < params["alpha[1]"] + params["beta[1]"] < 1
    assert 3 < params["nu"] < 30
    # The 2008 crash widens the bands: the 90% interval of Oct 2008 is several times Jan 2007's.
    windows = data.windows
    q = garch.predict(windows)
    width = pd.Series(q[:, 6] - q[:, 0], index=pd.DatetimeIndex(windows.end_dates))
    assert width.loc["2008-10"].mean() > 3 * width.loc["2007-01"].mean()


def test_naive_is_the_recentred_empirical_distribution(walk_data) -> None:  # type: ignore[no-untyped-def]
    config, frames = walk_data
    data = _prepared(config, frames)
    test = data.windows.take(data.split.test)
    q = ClassicForecaster(RandomWalk(window=250), LEVELS).fit(data).predict(test)
    close = frames["WALK"][CLOSE]
    returns = np.log(close).diff().loc[: pd.Timestamp(test.end_dates[0])].to_numpy()[-250:]
    expected = np.quantile(returns, LEVELS) - np.median(returns)
    np.testing.assert_allclose(q[0], expected)
    assert q[0][3] == pytest.approx(0.0)


def test_bundle_round_trips_the_ensemble_and_reads_bundles_from_before_ensembles() -> None:
    config = load_config(None, ["model.ensemble_size=3"])
    names = tuple(config.features.names)
    scaler = FeatureScaler.fit(np.random.default_rng(0).normal(size=(50, len(names))), names)
    bundle = ModelBundle(features=config.features, lookback=5, interval_level=0.8,
                         quantiles=LEVELS, scaler=scaler, n_features=len(names), hidden_size=4,
                         num_layers=1, dropout=0.0, intervals=(0.8,), ensemble_size=3)  # fmt: skip
    loaded = ModelBundle.from_json(bundle.to_json())
    assert loaded == bundle
    network = loaded.build_network()
    assert isinstance(network, QuantileEnsemble)
    assert len(network.members) == 3
    network.load_state_dict(bundle.build_network().state_dict())
    # A persistence median travels in the bundle; a bundle without the key learned its median.
    fixed = ModelBundle.from_json(replace(bundle, fixed_median=True).to_json())
    assert fixed.fixed_median
    assert fixed.network.fixed_median
    assert all(m.fixed_median for m in fixed.build_network().members)  # type: ignore[union-attr]
    # A bundle written before ensembles existed has no ensemble_size: one plain network.
    old = json.loads(bundle.to_json())
    assert old["network"].pop("median") == "learned"
    del old["network"]["ensemble_size"]
    single = ModelBundle.from_json(json.dumps(old)).build_network()
    assert isinstance(single, LSTMQuantileNet)
    assert not single.fixed_median
