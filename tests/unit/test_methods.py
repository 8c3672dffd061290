"""Each classic method has one implementation: the backtest's forecasts are the served ones on
the same ticker and day, GARCH's every row is arch's own forecast, the random walk's every row
the hand computation, and the registry finds each by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster import methods
from forecaster.config import ForecasterConfig
from forecaster.data.dataset import PreparedData, prepare
from forecaster.data.scaling import FeatureScaler
from forecaster.errors import DataValidationError
from forecaster.methods import CLASSIC, Garch, RandomWalk
from forecaster.methods.garch import PERCENT, standardised_t
from forecaster.methods.windowed import ClassicForecaster
from forecaster.registry.bundle import ModelBundle
from forecaster.registry.predictor import Forecaster

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@pytest.fixture(scope="module")
def gspc(sample_frame: pd.DataFrame) -> tuple[pd.DataFrame, PreparedData, ForecasterConfig]:
    frame = sample_frame.loc["2010":"2014"]
    config = ForecasterConfig.model_validate(
        {"data": {"tickers": ["^GSPC"]}, "model": {"quantiles": list(LEVELS)}}
    )
    return frame, prepare({"^GSPC": frame}, config), config


def test_garch_path_is_archs_forecast_on_every_day(gspc) -> None:  # type: ignore[no-untyped-def]
    """Every row, not only the last: an off-by-one between the recursion and the dates (a
    forecast that reads its own day's return) cannot pass."""
    from arch import arch_model
    from arch.univariate import StudentsT

    frame, _, _ = gspc
    closes = frame["close"].to_numpy()
    params = {"mu": 0.05, "omega": 0.03, "alpha[1]": 0.09, "beta[1]": 0.88, "nu": 6.5}
    returns = pd.Series(np.diff(np.log(closes)) * PERCENT, index=frame.index[1:])
    model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    forecast = model.fix(list(params.values())).forecast(horizon=1, start=0, reindex=False)
    z = np.asarray(StudentsT().ppf(np.asarray(LEVELS), [params["nu"]]))
    # arch's forecast dated day t (of return t + 1) is ours as of close t + 1.
    expected = (forecast.mean["h.1"].to_numpy()[:, None]
                + np.sqrt(forecast.variance["h.1"].to_numpy())[:, None] * z) / PERCENT  # fmt: skip
    path = Garch().path(closes, params, LEVELS, 0)
    assert path.shape == (len(closes), len(LEVELS))
    np.testing.assert_allclose(path[1:], expected, rtol=1e-9)
    # And the first row, before any return: the backcast's variance.
    np.testing.assert_allclose(Garch().path(closes, params, LEVELS, 5), path[5:], rtol=1e-12)


def test_random_walk_path_is_the_trailing_quantiles_on_every_day(gspc) -> None:  # type: ignore[no-untyped-def]
    frame, _, _ = gspc
    closes = frame["close"].to_numpy()[:400]
    returns = np.diff(np.log(closes))
    walk = RandomWalk(window=250)
    path = walk.path(closes, {}, LEVELS, walk.earliest)
    assert path.shape == (len(closes) - walk.earliest, len(LEVELS))
    for row, as_of in enumerate(range(walk.earliest, len(closes))):
        trailing = returns[max(0, as_of - 250) : as_of]  # returns up to close `as_of`
        expected = np.quantile(trailing, LEVELS) - np.median(trailing)
        np.testing.assert_allclose(path[row], expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(DataValidationError, match="needs 20 returns"):
        walk.next_day(closes[:20], {}, LEVELS)
    assert walk.next_day(closes[:21], {}, LEVELS).shape == (len(LEVELS),)


@pytest.mark.parametrize("name", list(CLASSIC))
def test_backtest_forecasts_are_the_served_ones(gspc, name: str) -> None:  # type: ignore[no-untyped-def]
    """The backtest's quantiles for a test day equal what the service answers from the
    ticker's history up to that day, with the parameters the bundle stores (bands raw)."""
    frame, data, config = gspc
    backtest = ClassicForecaster(methods.configured(config.evaluation)[name], LEVELS).fit(data)
    test = data.windows.take(data.split.test)
    expected = backtest.predict(test)
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_config(config, scaler, method_params={name: backtest.params})
    served = Forecaster(bundle, bundle.build_network())
    for i in (0, len(test) // 2, len(test) - 1):
        closes = frame["close"].loc[: pd.Timestamp(test.end_dates[i])].to_numpy()
        answer = served.baseline_forecast("^GSPC", name, closes)
        assert answer.method == name
        assert not answer.fitted_on_request
        np.testing.assert_allclose(answer.quantiles, expected[i], rtol=1e-12)


def test_a_short_history_forgets_the_start_of_the_recursion(gspc) -> None:  # type: ignore[no-untyped-def]
    """A request sends 50 rows, not the whole series: beta^50 of the start remains."""
    frame, data, _ = gspc
    params = ClassicForecaster(Garch(), LEVELS).fit(data).params["^GSPC"]
    closes = frame["close"].to_numpy()
    full = Garch().next_day(closes, params, LEVELS)
    short = Garch().next_day(closes[-50:], params, LEVELS)
    np.testing.assert_allclose(short, full, rtol=0.05)


def test_garch_fit_on_a_requests_own_history(gspc) -> None:  # type: ignore[no-untyped-def]
    frame, _, config = gspc
    closes = frame["close"].to_numpy()
    fit = Garch().fit(closes[: Garch.fit_min_returns + 1])
    assert fit.problem is None
    assert {"mu", "omega", "alpha[1]", "beta[1]", "nu"} <= set(fit.params)
    q = Garch().next_day(closes, fit.params, LEVELS)
    assert np.all(np.diff(q) > 0)
    # Served for a ticker without stored parameters: fitted on the history when it is long
    # enough, else the random walk answers.
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_config(config, scaler)
    served = Forecaster(bundle, bundle.build_network())
    assert served.fits_on_request("NEW", "garch")
    assert not served.fits_on_request("NEW", "naive")
    rows = closes[: Garch.fit_min_returns + 1]
    answer = served.baseline_forecast("NEW", "garch", rows)
    assert (answer.method, answer.fitted_on_request) == ("garch", True)
    np.testing.assert_allclose(answer.quantiles, Garch().next_day(rows, fit.params, LEVELS))
    short = served.baseline_forecast("NEW", "garch", rows[:-1])
    assert (short.method, short.fitted_on_request) == ("naive", False)
    np.testing.assert_allclose(short.quantiles, RandomWalk(250).next_day(rows[:-1], {}, LEVELS))


def test_standardised_t_has_unit_variance() -> None:
    from scipy.stats import t

    nu = 6.0
    z = standardised_t([0.9], nu)
    assert z[0] == pytest.approx(t.ppf(0.9, nu) / np.sqrt(nu / (nu - 2)))


def test_methods_are_found_by_name_with_their_settings() -> None:
    assert methods.names() == ("lstm", "naive", "garch")
    walk = methods.build("naive", {"window": 60})
    assert isinstance(walk, RandomWalk)
    assert walk.settings() == {"window": 60}
    assert methods.build(walk.name, walk.settings()).window == 60
    with pytest.raises(ValueError, match="no classic forecasting method named 'egarch'"):
        methods.build("egarch")
    config = ForecasterConfig.model_validate({"evaluation": {"naive_window": 120}})
    built = methods.configured(config.evaluation)
    assert list(built) == list(CLASSIC)
    assert built["naive"].settings() == {"window": 120}


def test_bundles_from_before_methods_by_name_still_load() -> None:
    """A bundle that stored garch_params and naive_window serves the same methods."""
    import json

    config = ForecasterConfig.model_validate({"data": {"tickers": ["^GSPC"]}})
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    params = {"mu": 0.05, "omega": 0.03, "alpha[1]": 0.09, "beta[1]": 0.88, "nu": 6.5}
    data = json.loads(ModelBundle.from_config(config, scaler).to_json())
    serving = data["serving"]
    del serving["methods"]
    serving["garch_params"], serving["naive_window"] = {"^GSPC": params}, 60
    old = ModelBundle.from_json(json.dumps(data))
    assert old.params("garch", "^GSPC") == params
    assert old.methods["naive"].settings == {"window": 60}
    again = ModelBundle.from_json(old.to_json())
    assert again.methods == old.methods


class _ShortWalk(RandomWalk):
    """A stand-in for the next method: one class, registered by one line (monkeypatched)."""

    name = "short_walk"
    description = "the random walk over 60 days"
    label = "the short random walk"

    def __init__(self, window: int = 60) -> None:
        super().__init__(window)

    @classmethod
    def from_config(cls, evaluation):  # type: ignore[no-untyped-def]
        return cls()


def test_a_new_method_is_one_class_and_one_registry_line(gspc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Registered by name, it is scored by the backtest, compared by the routes, stored in the
    bundle and served by name, with no edit to any of them."""
    from forecaster.evaluation.backtest import baselines, comparator_scores, day_scores
    from forecaster.evaluation.gate import Route, route
    from forecaster.evaluation.metrics import evaluate

    monkeypatch.setitem(CLASSIC, _ShortWalk.name, _ShortWalk)
    frame, data, config = gspc
    fitted = {n: f.fit(data) for n, f in baselines(config).items()}
    assert "short_walk" in fitted
    test = data.windows.take(data.split.test)
    forecasts = {n: f.predict(test) for n, f in fitted.items()}
    ev = evaluate(test, {"model": forecasts["naive"], **forecasts}, LEVELS,
                  config.model.intervals, config.model.interval_level)  # fmt: skip
    comparators = comparator_scores(ev)
    assert set(comparators) == {"naive", "garch", "short_walk"}
    chosen = route(day_scores(ev, "model"), comparators)
    assert set(chosen.evidence.pinball_ratios) == {"naive", "garch", "short_walk"}
    assert Route.from_dict(chosen.to_dict()) == chosen
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_json(ModelBundle.from_config(config, scaler).to_json())
    assert bundle.methods["short_walk"].settings == {"window": 60}
    served = Forecaster(bundle, bundle.build_network())
    i = len(test) - 1
    closes = frame["close"].loc[: pd.Timestamp(test.end_dates[i])].to_numpy()
    answer = served.baseline_forecast("^GSPC", "short_walk", closes)
    assert answer.method == "short_walk"
    np.testing.assert_allclose(answer.quantiles, forecasts["short_walk"][i], rtol=1e-12)


def test_a_bundle_naming_an_unknown_method_is_refused_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A model from a newer forecaster (a method this registry lacks) is a ModelFormatError
    naming the file and the method, which the loader turns into one line; never a traceback."""
    import json

    from forecaster.errors import ModelFormatError

    config = ForecasterConfig.model_validate({"data": {"tickers": ["^GSPC"]}})
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_config(config, scaler)
    paths = Forecaster(bundle, bundle.build_network()).save(tmp_path)
    data = json.loads(paths[0].read_text())
    data["serving"]["methods"]["egarch"] = {"settings": {}, "params": {}}
    paths[0].write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"bundle\.json: .*'egarch'.*newer forecaster"):
        Forecaster.load(*paths)


def test_the_strongest_comparator_is_the_lowest_finite_loss() -> None:
    from forecaster.evaluation.scores import lowest

    assert lowest({"naive": 2.0, "garch": 1.5, "egarch": 1.7}) == "garch"
    assert lowest({"naive": 1.0, "garch": 1.0}) == "naive"  # a tie: the first
    assert lowest({"naive": float("nan"), "garch": 3.0}) == "garch"
    assert lowest({"naive": float("inf")}) is None
    assert lowest({}) is None
