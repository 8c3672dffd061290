"""A universe of tickers with different date ranges: one model trained across them, every
score reported per ticker too, and the universe recorded where a user looks for it."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.config import ForecasterConfig
from forecaster.data.dataset import prepare
from forecaster.data.sources import load_frames
from forecaster.evaluation.backtest import day_scores, gate_config, run_backtest
from forecaster.evaluation.gate import route
from forecaster.registry.bundle import BUNDLE_FILE, ModelBundle
from pipelines.reports import backtest_text, retrain_text
from pipelines.retrain import RetrainResult, run_retrain
from tests.integration.conftest import tiny_config

pytestmark = pytest.mark.slow

# ^GSPC runs to 2018, AAPL ends in March 2013: the ranges differ, as real universes do.
UNIVERSE = (
    "data.tickers=[^GSPC, AAPL]",
    "data.start=2009-01-01",
    "evaluation.route_per_ticker=true",
    "evaluation.holdout_ensemble_size=1",
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ForecasterConfig:
    return tiny_config(tmp_path_factory.mktemp("universe") / "data", *UNIVERSE)


@pytest.fixture(scope="module")
def trained(config: ForecasterConfig) -> RetrainResult:
    return run_retrain(config, force=True, name="train")


def test_every_ticker_gets_its_own_chronological_split(config: ForecasterConfig) -> None:
    data = prepare(load_frames(config.data), config)
    w, split = data.windows, data.split
    for ticker in ("^GSPC", "AAPL"):
        parts = [w.target_dates[idx][w.tickers[idx] == ticker] for idx in
                 (split.train, split.val, split.test)]  # fmt: skip
        assert all(len(p) for p in parts), ticker
        assert parts[0].max() < parts[1].min() <= parts[1].max() < parts[2].min(), ticker
    aapl_test = w.target_dates[split.test][w.tickers[split.test] == "AAPL"]
    assert pd.Timestamp(aapl_test.max()) == pd.Timestamp("2013-03-01")


def test_scaler_never_sees_a_tickers_own_test_period(config: ForecasterConfig) -> None:
    """Rows after a ticker's own last training day cannot move the scaler, even where they are
    earlier than another ticker's training days."""
    frames = load_frames(config.data)
    data = prepare(frames, config)
    aapl = frames["AAPL"]
    last_train = data.universe()["AAPL"]["last"]
    changed = aapl.copy()
    later = changed.index > pd.Timestamp(last_train)
    changed.loc[later, ["open", "high", "low", "close"]] *= np.linspace(1, 3, int(later.sum()))[
        :, None
    ]
    changed.attrs = dict(aapl.attrs)
    again = prepare({**frames, "AAPL": changed}, config)
    np.testing.assert_array_equal(again.scaler.center, data.scaler.center)
    np.testing.assert_array_equal(again.scaler.scale, data.scaler.scale)


def test_train_reports_the_universe_and_every_ticker(
    config: ForecasterConfig, trained: RetrainResult
) -> None:
    payload = json.loads(json.dumps(trained.to_dict()))  # what `train --json` prints
    universe = payload["universe"]
    assert list(universe) == ["^GSPC", "AAPL"]
    assert universe["AAPL"]["first"] == "2009-01-02"
    assert universe["AAPL"]["last"] < "2013-03-01" < universe["^GSPC"]["last"]
    per_ticker = payload["per_ticker"]
    assert list(per_ticker) == ["^GSPC", "AAPL"]
    pooled = payload["metrics"]
    for block in per_ticker.values():
        assert set(block) == set(pooled)
    assert sum(b["n_days"] for b in per_ticker.values()) == pooled["n_days"]
    # Each ticker's figures are its own days' scores, not the pooled ones.
    ev = trained.evaluation
    assert ev is not None
    aapl = ev.windows.tickers == "AAPL"
    model = ev.scores["model"].day_pinball[aapl].mean()
    naive = ev.scores["naive"].day_pinball[aapl].mean()
    assert per_ticker["AAPL"]["pinball_ratio_vs_naive"] == pytest.approx(model / naive)
    text = retrain_text(trained)
    assert "universe: ^GSPC 2009-01-02.." in text
    assert any(line.strip().startswith("AAPL ") for line in text.splitlines())


def test_mlflow_holds_the_universe_and_per_ticker_scores(
    config: ForecasterConfig, trained: RetrainResult
) -> None:
    client = MlflowClient(config.tracking.tracking_uri)
    parent = str(trained.run_id)
    evaluate = trained.step_runs["evaluate"] if trained.step_runs else ""
    root = Path(client.download_artifacts(parent, "universe.json"))
    assert json.loads(root.read_text()) == trained.to_dict()["universe"]
    artifacts = {a.path for a in client.list_artifacts(evaluate)}
    assert {"per_ticker.json", "per_ticker_table.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(evaluate, "plots")}
    assert "plots/per_ticker_ratios.png" in plots
    metrics = client.get_run(evaluate).data.metrics
    per_ticker = trained.to_dict()["per_ticker"]
    assert metrics["ticker._GSPC.pinball_ratio_vs_garch"] == pytest.approx(
        per_ticker["^GSPC"]["pinball_ratio_vs_garch"]
    )
    assert metrics["ticker.AAPL.n_days"] == per_ticker["AAPL"]["n_days"]
    # The registered bundle carries the universe to the service.
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    path = mlflow.artifacts.download_artifacts(f"{trained.model_uri}/artifacts/{BUNDLE_FILE}")
    bundle = ModelBundle.from_json(Path(path).read_text(encoding="utf-8"))
    assert bundle.universe == trained.to_dict()["universe"]


def test_backtest_reports_every_ticker_with_the_aggregate_keys(config: ForecasterConfig) -> None:
    payload = run_backtest(config.model_copy(update={"split": config.split.model_copy(
        update={"folds": 2})}))  # fmt: skip
    per_ticker = payload["per_ticker"]
    assert list(per_ticker) == ["^GSPC", "AAPL"]
    for block in per_ticker.values():
        assert set(block) == set(payload["aggregate"])
    assert sum(b["n_days"] for b in per_ticker.values()) == payload["aggregate"]["n_days"]
    assert "AAPL" in backtest_text(payload)


def test_each_ticker_is_routed_by_the_pure_rule_on_its_own_days(
    config: ForecasterConfig, trained: RetrainResult
) -> None:
    """Whatever the seed makes of the model, the table in the bundle is what `route` says on
    each ticker's own test days against every classic comparator (the combination included),
    and each method's parameters for every ticker travel with it."""
    ev = trained.evaluation
    assert ev is not None
    gate = gate_config(config)
    classic = ("naive", "garch", "gjr", "egarch", "har", "combination")
    assert set(classic) <= set(ev.scores)
    expected = {
        t: route(day_scores(e, "model"), {n: day_scores(e, n) for n in classic}, gate)
        for t, e in ev.by_ticker().items()
    }
    assert trained.routes == expected
    assert trained.to_dict()["routes"]["AAPL"]["evidence"]["days"] == ev.by_ticker()["AAPL"].n_days
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    path = mlflow.artifacts.download_artifacts(f"{trained.model_uri}/artifacts/{BUNDLE_FILE}")
    bundle = ModelBundle.from_json(Path(path).read_text(encoding="utf-8"))
    assert bundle.routes == expected
    for name in ("garch", "gjr", "egarch", "har", "combination"):
        assert set(bundle.methods[name].params) == {"^GSPC", "AAPL"}
    weights = bundle.methods["combination"].settings["weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    # Leave-tickers-out: the last ticker (AAPL) was held out of a second training and scored
    # on its own test days; that evidence decides how tickers outside the universe are served.
    assert trained.unseen is not None
    assert bundle.unseen == trained.unseen
    assert trained.unseen.evidence.scope == "unseen"
    assert trained.unseen.evidence.days == ev.by_ticker()["AAPL"].n_days
    assert "AAPL held out of a 1-network training" in trained.unseen.reason
    assert trained.to_dict()["unseen"]["method"] == trained.unseen.method
    version = MlflowClient(config.tracking.tracking_uri).get_model_version(
        "stock-lstm", str(trained.model_version)
    )
    assert version.tags["routes"] == ",".join(f"{t}={r.method}" for t, r in expected.items())
    assert "served by" in retrain_text(trained)


def test_held_out_tickers_reach_neither_the_network_nor_the_scaler(
    config: ForecasterConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forecaster.data.dataset import PreparedData, fit_scaler, last_train_days
    from forecaster.evaluation import backtest
    from forecaster.evaluation.metrics import evaluate
    from forecaster.methods.lstm import LSTMForecaster

    data = prepare(load_frames(config.data), config)
    seen: list[PreparedData] = []

    def fit(self: LSTMForecaster, fold: PreparedData) -> LSTMForecaster:
        seen.append(fold)
        raise RuntimeError("stop here")

    monkeypatch.setattr(LSTMForecaster, "fit", fit)
    test = data.windows.take(data.split.test)
    q = np.zeros((len(test), 7))
    ev = evaluate(test, {"model": q, "naive": q, "garch": q}, config.model.quantiles,
                  config.model.intervals, config.model.interval_level)  # fmt: skip
    with pytest.raises(RuntimeError, match="stop here"):
        backtest.leave_tickers_out(data, ev, config)
    (fold,) = seen
    w = fold.windows
    assert "AAPL" not in set(w.tickers[fold.split.train]) | set(w.tickers[fold.split.val])
    assert len(fold.split.train) == int(np.sum(data.windows.tickers[data.split.train] == "^GSPC"))
    rest = {"^GSPC": data.frames["^GSPC"]}
    expected = fit_scaler(rest, config, last_train_days(w, fold.split.train))
    np.testing.assert_array_equal(fold.scaler.center, expected.center)
    assert not np.array_equal(fold.scaler.center, data.scaler.center)
