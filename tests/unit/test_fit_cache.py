"""Fits on request histories are made once per history: the cache returns what a fit would."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from forecaster.config import load_config
from forecaster.data.scaling import FeatureScaler
from forecaster.data.sources import SampleSource
from forecaster.methods import Bars
from forecaster.methods.garch import Garch
from forecaster.registry import predictor
from forecaster.registry.bundle import MethodSpec, ModelBundle
from forecaster.registry.predictor import Forecaster

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@pytest.fixture
def forecaster() -> Forecaster:
    config = load_config(None, [])
    names = tuple(config.features.names)
    scaler = FeatureScaler.fit(np.random.default_rng(0).normal(size=(50, len(names))), names)
    bundle = ModelBundle(features=config.features, lookback=5, interval_level=0.8,
                         quantiles=LEVELS, scaler=scaler, n_features=len(names), hidden_size=4,
                         num_layers=1, dropout=0.0, intervals=(0.8,),
                         methods={"garch": MethodSpec({}, {})})  # fmt: skip
    return Forecaster(bundle, bundle.build_network())


def test_the_same_history_is_fitted_once_and_a_longer_one_again(
    forecaster: Forecaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    fit = Garch.fit

    def counted(self: Garch, bars: Bars, levels: Any) -> Any:
        calls.append(len(bars))
        return fit(self, bars, levels)

    monkeypatch.setattr(Garch, "fit", counted)
    bars = Bars.of_frame(SampleSource().load("IBM").iloc[-400:])
    assert forecaster.fits_on_request("NEW", "garch", bars.head(300))
    first = forecaster.baseline_forecast("NEW", "garch", bars.head(300))
    # Fitted now: the service may answer it inline instead of in a worker thread.
    assert not forecaster.fits_on_request("NEW", "garch", bars.head(300))
    assert forecaster.fits_on_request("NEW", "garch")  # without the bars: it would fit
    again = forecaster.baseline_forecast("NEW", "garch", bars.head(300))
    assert calls == [300]
    assert first.fitted_on_request
    assert again.fitted_on_request
    np.testing.assert_array_equal(first.quantiles, again.quantiles)
    # The same rows under another ticker name: the fit depends on the bars alone.
    forecaster.baseline_forecast("OTHER", "garch", bars.head(300))
    assert calls == [300]
    longer = forecaster.baseline_forecast("NEW", "garch", bars.head(301))
    assert calls == [300, 301]
    # What the cache returned is what a fresh fit gives.
    fresh = Forecaster(forecaster.bundle, forecaster.network)
    np.testing.assert_array_equal(
        fresh.baseline_forecast("NEW", "garch", bars.head(301)).quantiles, longer.quantiles
    )


def test_the_cache_is_bounded(forecaster: Forecaster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predictor, "FIT_CACHE_SIZE", 3)
    bars = Bars.of_frame(SampleSource().load("IBM").iloc[-300:])
    for n in range(260, 266):
        forecaster.baseline_forecast("NEW", "garch", bars.head(n))
    assert len(forecaster._fits) == 3


def test_the_digest_is_of_the_bars_values() -> None:
    frame = SampleSource().load("IBM").iloc[-50:]
    bars = Bars.of_frame(frame)
    assert bars.digest == Bars.of_frame(frame.copy()).digest
    assert bars.digest != bars.head(49).digest
    moved = frame.copy()
    moved.iloc[10, moved.columns.get_loc("high")] *= 1.0001
    assert Bars.of_frame(moved).digest != bars.digest
