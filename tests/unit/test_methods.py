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
from forecaster.methods import CLASSIC, Bars, Egarch, Garch, GjrGarch, HarRange, RandomWalk
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
    bars = Bars.of_frame(frame)
    path = Garch().path(bars, params, LEVELS, 0)
    assert path.shape == (len(closes), len(LEVELS))
    np.testing.assert_allclose(path[1:], expected, rtol=1e-9)
    # And the first row, before any return: the backcast's variance.
    np.testing.assert_allclose(Garch().path(bars, params, LEVELS, 5), path[5:], rtol=1e-12)


@pytest.mark.parametrize(
    ("kind", "vol", "params"),
    [
        (GjrGarch, "GARCH",
         {"mu": 0.05, "omega": 0.03, "alpha[1]": 0.03, "gamma[1]": 0.1, "beta[1]": 0.88,
          "nu": 6.5}),
        (Egarch, "EGARCH",
         {"mu": 0.05, "omega": 0.01, "alpha[1]": 0.1, "gamma[1]": -0.12, "beta[1]": 0.97,
          "nu": 6.5}),
    ],
)  # fmt: skip
def test_asymmetric_garch_paths_are_archs_forecasts_on_every_day(gspc, kind, vol, params) -> None:  # type: ignore[no-untyped-def]
    """GJR-GARCH and EGARCH (o=1) filtered with fixed parameters: every row is arch's own
    one-step forecast from arch's backcast, and a fit gives the parameters arch names."""
    from arch import arch_model
    from arch.univariate import StudentsT

    frame, _, _ = gspc
    bars = Bars.of_frame(frame)
    returns = pd.Series(np.diff(np.log(bars.close)) * PERCENT, index=frame.index[1:])
    model = arch_model(returns, mean="Constant", vol=vol, p=1, o=1, q=1, dist="t", rescale=False)
    forecast = model.fix(list(params.values())).forecast(horizon=1, start=0, reindex=False)
    z = np.asarray(StudentsT().ppf(np.asarray(LEVELS), [params["nu"]]))
    expected = (forecast.mean["h.1"].to_numpy()[:, None]
                + np.sqrt(forecast.variance["h.1"].to_numpy())[:, None] * z) / PERCENT  # fmt: skip
    path = kind().path(bars, params, LEVELS, 0)
    np.testing.assert_allclose(path[1:], expected, rtol=1e-9)
    np.testing.assert_allclose(kind().path(bars, params, LEVELS, 7), path[7:], rtol=1e-12)
    fitted = kind().fit(bars.head(600), LEVELS)
    assert fitted.problem is None
    assert set(fitted.params) == set(params)


def test_har_range_against_a_hand_computation() -> None:
    """Eight hand-made bars: the daily variance is the overnight gap squared plus Garman-Klass;
    with spans shortened to (1, 2, 3) the HAR regressors are logs of trailing means, the fit is
    least squares on them, and the quantiles are the standardised returns' empirical ones."""
    from forecaster.methods import har

    o = np.array([10.0, 10.1, 10.3, 10.2, 10.6, 10.4, 10.5, 10.9, 10.7, 11.0])
    c = np.array([10.1, 10.2, 10.1, 10.5, 10.4, 10.6, 10.8, 10.8, 10.9, 11.2])
    h = np.maximum(o, c) + np.array([0.1, 0.2, 0.05, 0.1, 0.3, 0.1, 0.2, 0.1, 0.15, 0.1])
    lo = np.minimum(o, c) - np.array([0.05, 0.1, 0.2, 0.1, 0.1, 0.2, 0.1, 0.05, 0.1, 0.2])
    bars = Bars(o, h, lo, c)
    variance = har.range_variance(bars)
    for t in range(1, 10):
        gap = np.log(o[t] / c[t - 1]) ** 2
        gk = 0.5 * np.log(h[t] / lo[t]) ** 2 - (2 * np.log(2) - 1) * np.log(c[t] / o[t]) ** 2
        assert variance[t - 1] == pytest.approx(gap + gk, rel=1e-12)
    rs = har.range_variance(bars, "rogers_satchell")
    t = 4
    expected_rs = (np.log(h[t] / c[t]) * np.log(h[t] / o[t])
                   + np.log(lo[t] / c[t]) * np.log(lo[t] / o[t]))  # fmt: skip
    assert rs[t - 1] == pytest.approx(np.log(o[t] / c[t - 1]) ** 2 + expected_rs, rel=1e-12)
    with pytest.raises(DataValidationError, match="open, high and low"):
        har.range_variance(Bars.of_closes(c))


def test_har_range_fit_and_path_are_the_hand_regression(gspc, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On 300 real bars: coefficients = lstsq of ln v_{t+1} on [1, ln v_t, ln mean_5, ln
    mean_22]; z quantiles = np.quantile of r_{t+1} / exp(forecast / 2); path row = scale * z."""
    from forecaster.methods import har

    frame, _, _ = gspc
    bars = Bars.of_frame(frame.iloc[:300])
    v = har.range_variance(bars)
    rows, targets, nexts = [], [], []
    returns = np.diff(np.log(bars.close))
    for j in range(21, len(v) - 1):  # variance day j is bar j + 1; the next is bar j + 2
        rows.append([1.0, np.log(v[j]), np.log(v[j - 4 : j + 1].mean()),
                     np.log(v[j - 21 : j + 1].mean())])  # fmt: skip
        targets.append(np.log(v[j + 1]))
        nexts.append(returns[j + 1])
    x = np.array(rows)
    beta = np.linalg.lstsq(x, np.array(targets), rcond=None)[0]
    z = np.array(nexts) / np.exp(0.5 * x @ beta)
    fit = HarRange().fit(bars, LEVELS)
    assert fit.problem is None
    np.testing.assert_allclose([fit.params[k] for k in ("har[0]", "har[1]", "har[5]", "har[22]")],
                               beta, rtol=1e-9)  # fmt: skip
    np.testing.assert_allclose([fit.params[f"z[{lv:g}]"] for lv in LEVELS],
                               np.quantile(z, LEVELS), rtol=1e-9)  # fmt: skip
    path = HarRange().path(bars, fit.params, LEVELS, HarRange.earliest)
    assert path.shape == (300 - 22, len(LEVELS))
    scale = np.exp(0.5 * x @ beta)  # as of bars 22 .. 298
    np.testing.assert_allclose(path[:-1], scale[:, None] * np.quantile(z, LEVELS), rtol=1e-9)
    # A later first row reads only the bars it needs and gives the same rows.
    np.testing.assert_allclose(HarRange().path(bars, fit.params, LEVELS, 250), path[250 - 22 :],
                               rtol=1e-12)  # fmt: skip
    with pytest.raises(DataValidationError, match="needs 22 returns"):
        HarRange().next_day(bars.head(22), fit.params, LEVELS)
    with pytest.raises(ValueError, match=r"lack z\[0.3\]"):
        HarRange().next_day(bars, fit.params, (0.3,))


def test_combination_weights_solve_the_pinball_programme() -> None:
    """A member with zero loss (every quantile on the outcome) takes all the weight; for two
    members, no point of a fine grid of the simplex has a lower pinball than the LP's weights
    (pinball is convex in the weights, so the LP's optimum is the global one)."""
    from forecaster.evaluation.scores import pinball_per_day
    from forecaster.methods.combination import combination_weights

    rng = np.random.default_rng(3)
    levels = (0.1, 0.5, 0.9)
    y = rng.normal(size=400)
    true = np.tile(np.array([-1.2816, 0.0, 1.2816]), (400, 1))
    wide, narrow, exact = true * 2.0, true * 0.4, np.repeat(y[:, None], 3, axis=1)
    assert combination_weights({"wide": wide, "exact": exact}, y, levels) == {"exact": 1.0}
    weights = combination_weights({"wide": wide, "narrow": narrow}, y, levels)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(w > 0 for w in weights.values())
    grid = np.linspace(0, 1, 2001)
    losses = [pinball_per_day(w * wide + (1 - w) * narrow, y, levels).mean() for w in grid]
    combined = weights["wide"] * wide + weights["narrow"] * narrow
    assert pinball_per_day(combined, y, levels).mean() <= min(losses) + 1e-12
    with pytest.raises(ValueError, match="no validation days"):
        combination_weights({"a": wide[:0], "b": narrow[:0]}, y[:0], levels)


def test_the_combination_is_its_members_weighted(gspc) -> None:  # type: ignore[no-untyped-def]
    """Backtest: fitted members combined without a refit; served: the same rows from the bundle
    (member parameters stored as "member.key")."""
    frame, data, config = gspc
    naive = ClassicForecaster(RandomWalk(), LEVELS).fit(data)
    garch = ClassicForecaster(Garch(), LEVELS).fit(data)
    combined = ClassicForecaster.combining({"naive": 0.3, "garch": 0.7},
                                           {"naive": naive, "garch": garch})  # fmt: skip
    test = data.windows.take(data.split.test)
    expected = 0.3 * naive.predict(test) + 0.7 * garch.predict(test)
    np.testing.assert_allclose(combined.predict(test), expected, rtol=1e-12)
    assert set(combined.params["^GSPC"]) == {f"garch.{k}" for k in garch.params["^GSPC"]}
    spec = combined.method.settings()
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_config(config, scaler, method_params={"combination": combined.params},
                                     method_settings={"combination": spec})  # fmt: skip
    served = Forecaster(ModelBundle.from_json(bundle.to_json()), bundle.build_network())
    bars = Bars.of_frame(frame.loc[: pd.Timestamp(test.end_dates[-1])])
    answer = served.baseline_forecast("^GSPC", "combination", bars)
    assert answer.method == "combination"
    np.testing.assert_allclose(answer.quantiles, expected[-1], rtol=1e-12)


def test_bars_columns_are_the_frame_contracts() -> None:
    from forecaster.data.schemas import CLOSE, HIGH, LOW, OPEN
    from forecaster.methods import base

    assert base._COLUMNS == (OPEN, HIGH, LOW, CLOSE)


def test_random_walk_path_is_the_trailing_quantiles_on_every_day(gspc) -> None:  # type: ignore[no-untyped-def]
    frame, _, _ = gspc
    closes = frame["close"].to_numpy()[:400]
    bars = Bars.of_closes(closes)
    returns = np.diff(np.log(closes))
    walk = RandomWalk(window=250)
    path = walk.path(bars, {}, LEVELS, walk.earliest)
    assert path.shape == (len(closes) - walk.earliest, len(LEVELS))
    for row, as_of in enumerate(range(walk.earliest, len(closes))):
        trailing = returns[max(0, as_of - 250) : as_of]  # returns up to close `as_of`
        expected = np.quantile(trailing, LEVELS) - np.median(trailing)
        np.testing.assert_allclose(path[row], expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(DataValidationError, match="needs 20 returns"):
        walk.next_day(bars.head(20), {}, LEVELS)
    assert walk.next_day(bars.head(21), {}, LEVELS).shape == (len(LEVELS),)


@pytest.mark.parametrize("name", [n for n, kind in CLASSIC.items() if not kind.combines])
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
        bars = Bars.of_frame(frame.loc[: pd.Timestamp(test.end_dates[i])])
        answer = served.baseline_forecast("^GSPC", name, bars)
        assert answer.method == name
        assert not answer.fitted_on_request
        np.testing.assert_allclose(answer.quantiles, expected[i], rtol=1e-12)


def test_a_short_history_forgets_the_start_of_the_recursion(gspc) -> None:  # type: ignore[no-untyped-def]
    """A request sends 50 rows, not the whole series: beta^50 of the start remains."""
    frame, data, _ = gspc
    params = ClassicForecaster(Garch(), LEVELS).fit(data).params["^GSPC"]
    bars = Bars.of_frame(frame)
    full = Garch().next_day(bars, params, LEVELS)
    short = Garch().next_day(bars.tail(50), params, LEVELS)
    np.testing.assert_allclose(short, full, rtol=0.05)


def test_garch_fit_on_a_requests_own_history(gspc) -> None:  # type: ignore[no-untyped-def]
    frame, _, config = gspc
    bars = Bars.of_frame(frame)
    fit = Garch().fit(bars.head(Garch.fit_min_returns + 1), LEVELS)
    assert fit.problem is None
    assert {"mu", "omega", "alpha[1]", "beta[1]", "nu"} <= set(fit.params)
    q = Garch().next_day(bars, fit.params, LEVELS)
    assert np.all(np.diff(q) > 0)
    # Served for a ticker without stored parameters: fitted on the history when it is long
    # enough, else the random walk answers.
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_config(config, scaler)
    served = Forecaster(bundle, bundle.build_network())
    assert served.fits_on_request("NEW", "garch")
    assert not served.fits_on_request("NEW", "naive")
    rows = bars.head(Garch.fit_min_returns + 1)
    answer = served.baseline_forecast("NEW", "garch", rows)
    assert (answer.method, answer.fitted_on_request) == ("garch", True)
    np.testing.assert_allclose(answer.quantiles, Garch().next_day(rows, fit.params, LEVELS))
    fewer = bars.head(Garch.fit_min_returns)
    short = served.baseline_forecast("NEW", "garch", fewer)
    assert (short.method, short.fitted_on_request) == ("naive", False)
    np.testing.assert_allclose(short.quantiles, RandomWalk(250).next_day(fewer, {}, LEVELS))


def test_standardised_t_has_unit_variance() -> None:
    from scipy.stats import t

    nu = 6.0
    z = standardised_t([0.9], nu)
    assert z[0] == pytest.approx(t.ppf(0.9, nu) / np.sqrt(nu / (nu - 2)))


def test_methods_are_found_by_name_with_their_settings() -> None:
    assert methods.names() == ("lstm", "naive", "garch", "gjr", "egarch", "har", "combination")
    walk = methods.build("naive", {"window": 60})
    assert isinstance(walk, RandomWalk)
    assert walk.settings() == {"window": 60}
    assert methods.build(walk.name, walk.settings()).window == 60
    with pytest.raises(ValueError, match="no classic forecasting method named 'figarch'"):
        methods.build("figarch")
    config = ForecasterConfig.model_validate(
        {"evaluation": {"naive_window": 120, "har_estimator": "rogers_satchell"}}
    )
    built = methods.configured(config.evaluation)
    assert list(built) == ["naive", "garch", "gjr", "egarch", "har"]  # combinations are fitted
    assert built["naive"].settings() == {"window": 120}
    assert built["har"].settings() == {"estimator": "rogers_satchell"}
    combined = methods.build("combination", {"weights": {"naive": 0.25, "har": 0.75},
                                             "members": {"naive": {"window": 60}, "har": {}}})  # fmt: skip
    assert combined.settings() == {
        "weights": {"naive": 0.25, "har": 0.75},
        "members": {"naive": {"window": 60}, "har": {"estimator": "garman_klass"}},
    }


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
    assert {"naive", "garch", "short_walk"} <= set(comparators)
    chosen = route(day_scores(ev, "model"), comparators)
    assert "short_walk" in chosen.evidence.pinball_ratios
    assert Route.from_dict(chosen.to_dict()) == chosen
    scaler = FeatureScaler.fit(np.ones((3, len(config.features.names))), config.features.names)
    bundle = ModelBundle.from_json(ModelBundle.from_config(config, scaler).to_json())
    assert bundle.methods["short_walk"].settings == {"window": 60}
    served = Forecaster(bundle, bundle.build_network())
    i = len(test) - 1
    bars = Bars.of_frame(frame.loc[: pd.Timestamp(test.end_dates[i])])
    answer = served.baseline_forecast("^GSPC", "short_walk", bars)
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
    data["serving"]["methods"]["figarch"] = {"settings": {}, "params": {}}
    paths[0].write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"bundle\.json: .*'figarch'.*newer forecaster"):
        Forecaster.load(*paths)


def test_the_strongest_comparator_is_the_lowest_finite_loss() -> None:
    from forecaster.evaluation.scores import lowest

    assert lowest({"naive": 2.0, "garch": 1.5, "egarch": 1.7}) == "garch"
    assert lowest({"naive": 1.0, "garch": 1.0}) == "naive"  # a tie: the first
    assert lowest({"naive": float("nan"), "garch": 3.0}) == "garch"
    assert lowest({"naive": float("inf")}) is None
    assert lowest({}) is None
