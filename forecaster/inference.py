"""The served model: network + fitted scaler + feature config, as one MLflow pyfunc.

Imports neither Lightning nor any training code: it must load fast in a service worker. MLflow
pickles `StockForecastModel` by reference, so this module has to stay importable and small.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from torch import nn

from forecaster import methods
from forecaster.calibration import (
    Calibration,
    Outcomes,
    apply_calibration,
    latest_calibration,
    path_calibration,
    recalibrate,
)
from forecaster.config import FeatureConfig, ForecasterConfig, level_key
from forecaster.errors import DataValidationError, ModelFormatError
from forecaster.features import warmup_rows
from forecaster.forward import predict_quantiles
from forecaster.gate import Route
from forecaster.levels import interval_columns, median_index
from forecaster.methods import FALLBACK, NETWORK, Method, log_returns
from forecaster.model.network import LSTMQuantileNet, combine
from forecaster.quantile_forecast import implied_volatility, to_prices
from forecaster.scaling import FeatureScaler
from forecaster.schemas import (
    CLOSE,
    DATE,
    OHLCV_COLUMNS,
    OHLCVArrays,
    frame_meta,
    validate_ohlcv,
)
from forecaster.windows import all_windows, latest_array_window, latest_window

logger = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "network.pt"
TICKER = "ticker"
# How tracking.log_pyfunc stores the model: MLflow "models from code" with this entry script
# and two artifacts. The service checks a registered model's MLmodel against this before it
# reads anything else, and never runs the model's code (see served_artifacts).
ENTRY_SCRIPT = "pyfunc_entry.py"
LOADER_MODULE = "mlflow.pyfunc.loaders.code_model"
ARTIFACTS = {"bundle": f"artifacts/{BUNDLE_FILE}", "weights": f"artifacts/{WEIGHTS_FILE}"}


def quantile_column(level: float) -> str:
    """Output column of one quantile's log return: 0.05 -> 'q0.05'."""
    return f"q{level_key(level)}"


@dataclass(frozen=True)
class MethodSpec:
    """A classic method as the bundle serves it: the settings it is built with and the
    parameters fitted on each universe ticker's training days (none for the random walk)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": dict(self.settings),
            "params": {t: dict(p) for t, p in self.params.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSpec:
        return cls(
            settings=dict(data.get("settings") or {}),
            params={
                str(t): {str(k): float(v) for k, v in p.items()}
                for t, p in (data.get("params") or {}).items()
            },
        )


def _legacy_methods(serving: Mapping[str, Any]) -> dict[str, MethodSpec]:
    """The classic methods of a bundle written before they were stored by name."""
    garch = {
        str(t): {str(k): float(v) for k, v in p.items()}
        for t, p in (serving.get("garch_params") or {}).items()
    }
    return {
        "naive": MethodSpec({"window": int(serving.get("naive_window", 250))}),
        "garch": MethodSpec({}, garch),
    }


@dataclass(frozen=True)
class ModelBundle:
    """Everything besides the weights that inference needs, stored as JSON in the model."""

    features: FeatureConfig
    lookback: int
    interval_level: float
    quantiles: tuple[float, ...]
    scaler: FeatureScaler
    n_features: int
    hidden_size: int
    num_layers: int
    dropout: float
    intervals: tuple[float, ...] = ()
    # Index of the feature whose last value scales the forecast (model.scale_by), or None.
    scale_feature: int | None = None
    # What the model was trained on: the service checks its own settings against these.
    data_source: str | None = None  # sample, csv or yahoo
    adjustment: str | None = None  # adjusted, raw or as_given (forecaster.schemas)
    tickers: tuple[str, ...] = ()
    # Networks whose quantiles the forecast averages (model.ensemble_size).
    ensemble_size: int = 1
    # {ticker: {"first": date, "last": date}} of the rows the network was trained on.
    universe: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Which forecaster serves each ticker of the universe, and on what evidence (gate.route);
    # `unseen` is the rule for every other ticker. Empty in bundles made before routing: the
    # network then serves every ticker, as it did.
    routes: Mapping[str, Route] = field(default_factory=dict)
    unseen: Route | None = None
    # Each classic method by name (forecaster.methods): its settings and the parameters fitted
    # on each universe ticker's training returns, filtered over a request's history (no refit)
    # when that method serves the ticker.
    methods: Mapping[str, MethodSpec] = field(default_factory=dict)
    # Per-ticker band recalibration (forecaster.calibration): the rolling window, and each
    # universe ticker's factors as of the end of training, for histories too short to
    # calibrate on. None: bands as the network makes them (and every bundle made before).
    calibration_window: int | None = None
    calibration_min_days: int = 60
    calibration: Mapping[str, Calibration] = field(default_factory=dict)

    @property
    def median_index(self) -> int:
        return median_index(self.quantiles)

    @property
    def served_intervals(self) -> tuple[float, ...]:
        """Central intervals the quantiles hold (older bundles recorded only interval_level)."""
        return self.intervals or (self.interval_level,)

    def interval_columns(self, coverage: float) -> tuple[int, int]:
        return interval_columns(self.quantiles, coverage)

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": self.features.model_dump(mode="json"),
                "lookback": self.lookback,
                "interval_level": self.interval_level,
                "quantiles": list(self.quantiles),
                "intervals": list(self.served_intervals),
                "data": {
                    "source": self.data_source,
                    "adjustment": self.adjustment,
                    "tickers": list(self.tickers),
                    "universe": {t: dict(r) for t, r in self.universe.items()},
                },
                "serving": {
                    "routes": {t: r.to_dict() for t, r in self.routes.items()},
                    "unseen": self.unseen.to_dict() if self.unseen is not None else None,
                    "methods": {name: spec.to_dict() for name, spec in self.methods.items()},
                    "calibration_window": self.calibration_window,
                    "calibration_min_days": self.calibration_min_days,
                    "calibration": {t: c.to_dict() for t, c in self.calibration.items()},
                },
                "scaler": self.scaler.to_dict(),
                "network": {
                    "n_features": self.n_features,
                    "hidden_size": self.hidden_size,
                    "num_layers": self.num_layers,
                    "dropout": self.dropout,
                    "scale_feature": self.scale_feature,
                    "ensemble_size": self.ensemble_size,
                },
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelBundle:
        data = json.loads(text)
        net = data["network"]
        trained_on = data.get("data") or {}
        serving = data.get("serving") or {}
        return cls(
            features=FeatureConfig.model_validate(data["features"]),
            lookback=int(data["lookback"]),
            interval_level=float(data["interval_level"]),
            quantiles=tuple(float(q) for q in data["quantiles"]),
            scaler=FeatureScaler.from_dict(data["scaler"]),
            n_features=int(net["n_features"]),
            hidden_size=int(net["hidden_size"]),
            num_layers=int(net["num_layers"]),
            dropout=float(net["dropout"]),
            intervals=tuple(float(c) for c in data.get("intervals", ())),
            scale_feature=net.get("scale_feature"),
            data_source=trained_on.get("source"),
            adjustment=trained_on.get("adjustment"),
            tickers=tuple(str(t) for t in trained_on.get("tickers", ())),
            ensemble_size=int(net.get("ensemble_size", 1)),
            universe={
                str(t): {"first": str(r["first"]), "last": str(r["last"])}
                for t, r in (trained_on.get("universe") or {}).items()
            },
            routes={str(t): Route.from_dict(r) for t, r in (serving.get("routes") or {}).items()},
            unseen=Route.from_dict(serving["unseen"]) if serving.get("unseen") else None,
            methods=(
                {str(n): MethodSpec.from_dict(m) for n, m in serving["methods"].items()}
                if "methods" in serving
                else _legacy_methods(serving)
            ),
            calibration_window=(
                int(serving["calibration_window"]) if serving.get("calibration_window") else None
            ),
            calibration_min_days=int(serving.get("calibration_min_days", 60)),
            calibration={
                str(t): Calibration.from_dict(c)
                for t, c in (serving.get("calibration") or {}).items()
            },
        )

    @classmethod
    def from_config(
        cls,
        config: ForecasterConfig,
        scaler: FeatureScaler,
        frames: Mapping[str, pd.DataFrame] | None = None,
        universe: Mapping[str, Mapping[str, str]] | None = None,
        routes: Mapping[str, Route] | None = None,
        unseen: Route | None = None,
        method_params: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
        calibration: Mapping[str, Calibration] | None = None,
    ) -> ModelBundle:
        """The one recipe from a config (and the data it was fitted on) to a bundle."""
        frames = frames or {}
        adjustments = {frame_meta(f).adjustment for f in frames.values()}
        scale_by = config.model.scale_by
        return cls(
            features=config.features,
            lookback=config.windows.lookback,
            interval_level=config.model.interval_level,
            quantiles=config.model.quantiles,
            scaler=scaler,
            n_features=len(config.features.names),
            hidden_size=config.model.hidden_size,
            num_layers=config.model.num_layers,
            dropout=config.model.dropout,
            intervals=config.model.intervals,
            scale_feature=config.features.names.index(scale_by) if scale_by else None,
            data_source=config.data.source,
            adjustment=(adjustments.pop() if len(adjustments) == 1 else "mixed")
            if frames
            else None,
            tickers=tuple(frames),
            ensemble_size=config.model.ensemble_size,
            universe=dict(universe or {}),
            routes=dict(routes or {}),
            unseen=unseen,
            methods={
                name: MethodSpec(method.settings(), dict((method_params or {}).get(name) or {}))
                for name, method in methods.configured(config.evaluation).items()
            },
            calibration_window=config.model.calibration_window,
            calibration_min_days=config.model.calibration_min_days,
            calibration=dict(calibration or {}),
        )

    def member_network(self, target_scale: float = 1.0) -> LSTMQuantileNet:
        """One untrained network of the ensemble; its volatility un-scaling comes from the
        bundle's scaler (and is a buffer, so loaded weights carry it too)."""
        network = LSTMQuantileNet(
            n_features=self.n_features,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            n_quantiles=len(self.quantiles),
            target_scale=target_scale,
            median_index=self.median_index,
            vol_feature=self.scale_feature,
        )
        if self.scale_feature is not None:
            i = self.scale_feature
            network.set_vol_unscale(self.scaler.center[i], self.scaler.scale[i])
        return network

    def build_network(self) -> nn.Module:
        """The untrained architecture the weights file fits."""
        return combine([self.member_network() for _ in range(self.ensemble_size)])

    def conflict(self, data_source: str, auto_adjust: bool) -> str | None:
        """Why serving this model with these data settings would be wrong, or None.

        A model trained on adjusted prices reads a dividend as a crash in raw prices (and the
        other way round), and one trained on the live source must not forecast from the
        bundled sample, which ends in 2018.
        """
        wants = {"adjusted": True, "raw": False}.get(self.adjustment or "")
        if wants is not None and wants != auto_adjust:
            return (
                f"the model was trained on {self.adjustment} prices but the service has "
                f"auto_adjust={str(auto_adjust).lower()}; set FORECASTER_AUTO_ADJUST="
                f"{str(wants).lower()}"
            )
        # The bundled sample is Yahoo's own ^GSPC history, so a sample-trained model may serve
        # live Yahoo data; a model trained on live data must not forecast from the 2018 sample.
        if self.data_source == "yahoo" and data_source == "sample":
            return (
                f"the model was trained on data source '{self.data_source}' but the service "
                f"reads '{data_source}'; set FORECASTER_DATA_SOURCE={self.data_source}"
            )
        return None

    def params(self, method: str, ticker: str) -> Mapping[str, float] | None:
        """A classic method's parameters for a universe ticker, or None (none fitted)."""
        spec = self.methods.get(method)
        return None if spec is None else spec.params.get(ticker)

    @property
    def min_history(self) -> int:
        """Rows of daily history one forecast needs."""
        return warmup_rows(self.features) + self.lookback


@dataclass(frozen=True)
class Served:
    """A served forecast: which method made it, its log-return quantiles, whether GARCH was
    fitted on the request's own history (an unseen ticker), and the network's band factors."""

    method: str
    quantiles: np.ndarray
    fitted_on_request: bool = False
    calibration: Calibration | None = None  # the band factors applied (the network only)


class Forecaster:
    """Raw daily OHLCV history in, next-trading-day forecast with its interval out."""

    def __init__(self, bundle: ModelBundle, network: nn.Module) -> None:
        self.bundle = bundle
        self.network = network.eval()
        self._methods = {name: methods.build(name, spec.settings)
                         for name, spec in bundle.methods.items()}  # fmt: skip
        self._methods.setdefault(FALLBACK, methods.build(FALLBACK))

    @classmethod
    def load(cls, bundle_path: Path, weights_path: Path) -> Forecaster:
        bundle = ModelBundle.from_json(Path(bundle_path).read_text(encoding="utf-8"))
        network = bundle.build_network()
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        return cls(bundle, network)

    def save(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        bundle_path, weights_path = directory / BUNDLE_FILE, directory / WEIGHTS_FILE
        bundle_path.write_text(self.bundle.to_json(), encoding="utf-8")
        torch.save(self.network.state_dict(), weights_path)
        return bundle_path, weights_path

    def route_for(self, ticker: str) -> Route | None:
        """How `ticker` is served: its own route, the unseen rule, or None (a bundle made
        before routing, where the network serves every ticker)."""
        return self.bundle.routes.get(ticker, self.bundle.unseen)

    def method(self, name: str) -> Method:
        """A classic method as the bundle stores it (the random walk for a name it lacks)."""
        found = self._methods.get(name)
        return found if found is not None else self._methods[FALLBACK]

    def fits_on_request(self, ticker: str, method: str) -> bool:
        """Whether serving `method` for `ticker` estimates parameters on the request's history
        (a ticker with no fitted parameters; tens of milliseconds, so callers may offload it)."""
        chosen = self.method(method)
        return chosen.estimates and self.bundle.params(chosen.name, ticker) is None

    def _params(
        self, ticker: str, chosen: Method, closes: np.ndarray
    ) -> tuple[Method, Mapping[str, float], bool]:
        """The method and parameters that serve: the bundle's, else a fit on the history when
        it is long enough and converges, else the random walk's (nothing to fit)."""
        params = self.bundle.params(chosen.name, ticker)
        if params is not None or not chosen.estimates:
            return chosen, params or {}, False
        if len(closes) - 1 >= chosen.fit_min_returns:
            fitted = chosen.fit(closes)
            if fitted.problem is None:
                return chosen, fitted.params, True
            logger.info("%s: %s fit refused (%s); the random walk answers", ticker, chosen.name,
                        fitted.problem)  # fmt: skip
        return self._methods[FALLBACK], {}, False

    def baseline_forecast(
        self, ticker: str, method: str, closes: np.ndarray, days: np.ndarray | None = None
    ) -> Served:
        """A classic method's next-day quantiles from a history's closes, with the ticker's
        training parameters, else fitted on the history when it is long enough, else the
        random walk. With the history's `days`, its bands are recalibrated on the method's own
        forecasts over them, as the network's are."""
        bundle, window = self.bundle, self.bundle.calibration_window
        chosen, params, fitted = self._params(ticker, self.method(method), closes)
        back = window if days is not None and window is not None else 0
        first = max(chosen.earliest, len(closes) - 1 - back)
        path = chosen.path(closes, params, bundle.quantiles, first)
        calibration = None
        if back:
            known_at = np.asarray(days, dtype="datetime64[ns]")[first + 1 :]
            calibration = path_calibration(path[:-1], log_returns(closes)[first:], known_at,
                                           back, bundle.calibration_min_days, bundle.quantiles,
                                           bundle.served_intervals, "history")  # fmt: skip
        return Served(chosen.name, self.calibrate(path[-1], calibration), fitted, calibration)

    def _history_outcomes(
        self, history: pd.DataFrame, ticker: str
    ) -> tuple[np.ndarray, pd.DatetimeIndex, Outcomes]:
        """The raw quantiles of every window of a history, their as-of dates, and the outcomes
        of those whose next close the history holds, leaving out the days the network trained
        on for this ticker (its errors there say nothing about its calibration)."""
        x, as_of = all_windows(history, self.bundle.features, self.bundle.lookback)
        q = predict_quantiles(self.network, self.bundle.scaler.transform(x))
        close = history[CLOSE].to_numpy()
        pos = history.index.get_indexer(as_of)
        scored = np.arange(len(pos) - 1 if pos[-1] + 1 >= len(close) else len(pos))
        known_at = history.index[pos[scored] + 1]
        trained_until = (self.bundle.universe.get(ticker) or {}).get("last")
        if trained_until is not None:
            scored = scored[known_at > pd.Timestamp(trained_until)]
            known_at = history.index[pos[scored] + 1]
        y = np.log(close[pos[scored] + 1] / close[pos[scored]])
        outcomes = Outcomes.of(q[scored], y, np.full(len(scored), ticker, dtype=object),
                               known_at.to_numpy(dtype="datetime64[ns]"),
                               self.bundle.quantiles, self.bundle.served_intervals)  # fmt: skip
        return q, as_of, outcomes

    def history_calibration(self, history: pd.DataFrame, ticker: str = "") -> Calibration | None:
        """Factors from the model's own forecasts over the history's last calibration_window
        days, or None (calibration off, or too short a history)."""
        bundle, window = self.bundle, self.bundle.calibration_window
        if window is None or len(history) < bundle.min_history + bundle.calibration_min_days:
            return None
        tail = history.iloc[-(bundle.min_history + window) :]
        _, _, outcomes = self._history_outcomes(tail, ticker)
        return latest_calibration(outcomes.scores, outcomes.known_at, window,
                                  bundle.calibration_min_days, bundle.served_intervals,
                                  "history")  # fmt: skip

    def calibration_for(
        self, ticker: str, history: pd.DataFrame | None = None
    ) -> Calibration | None:
        """A ticker's band factors: from the history when it is long enough, else those the
        bundle stored for a universe ticker, else None (raw bands)."""
        if self.bundle.calibration_window is None:
            return None
        found = self.history_calibration(history, ticker) if history is not None else None
        return found or self.bundle.calibration.get(ticker)

    def calibrate(self, q: np.ndarray, calibration: Calibration | None) -> np.ndarray:
        """Quantiles (one row or (n, levels)) with the calibration's band factors applied."""
        return apply_calibration(q, calibration, self.bundle.quantiles,
                                 self.bundle.served_intervals)  # fmt: skip

    def rows(
        self, ticker: str, as_of: pd.DatetimeIndex, last_close: np.ndarray, q: np.ndarray
    ) -> pd.DataFrame:
        """The output rows (prices, interval, volatility, a column per level) of quantiles."""
        bundle = self.bundle
        lo, hi = bundle.interval_columns(bundle.interval_level)
        lower, median, upper = q[:, lo], q[:, bundle.median_index], q[:, hi]
        prices = to_prices(last_close, q)
        columns = {
            "ticker": ticker,
            "as_of": as_of.to_numpy(dtype="datetime64[ns]"),
            "last_close": last_close,
            "predicted_return": median,
            "predicted_close": prices[:, bundle.median_index],
            "lower": prices[:, lo],
            "upper": prices[:, hi],
            "lower_return": lower,
            "upper_return": upper,
            "interval_level": bundle.interval_level,
            "volatility": implied_volatility(q, bundle.quantiles),
        }
        for i, level in enumerate(bundle.quantiles):
            columns[quantile_column(level)] = q[:, i]
        return pd.DataFrame(columns)

    def predict_next(self, history: pd.DataFrame, ticker: str = "") -> pd.DataFrame:
        """One row: the forecast for the trading day after the history's last date."""
        window = latest_window(history, self.bundle.features, self.bundle.lookback)
        q = predict_quantiles(self.network, self.bundle.scaler.transform(window))
        q = self.calibrate(q, self.calibration_for(ticker, history))
        return self.rows(ticker, history.index[-1:], history[CLOSE].to_numpy()[-1:], q)

    def prepare_window(self, history: pd.DataFrame) -> np.ndarray:
        """The scaled (1, lookback, n_features) input for the day after the history's end.

        Split from `forecast_window` so a server can prepare it once per history and keep
        pandas off its request path.
        """
        window = latest_window(history, self.bundle.features, self.bundle.lookback)
        return self.bundle.scaler.transform(window)

    def prepare_arrays(self, data: OHLCVArrays, origin: str) -> np.ndarray:
        """`prepare_window` of validated arrays: the API builds a client's input this way,
        through the same feature code as training, with no DataFrame."""
        window = latest_array_window(data, self.bundle.features, self.bundle.lookback, origin)
        return self.bundle.scaler.transform(window)

    def forecast_window(self, window: np.ndarray) -> np.ndarray:
        """Quantiles of the next log return (in the bundle's level order) for one window."""
        quantiles: np.ndarray = self.forecast_windows(window)[0]
        return quantiles

    def forecast_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, n_quantiles) for n scaled windows in one forward pass (the API's micro-batches).

        Float32 matrix products may round differently with the batch size: a window's
        quantiles agree across batch sizes to ~1e-7, not bit for bit."""
        with torch.inference_mode():
            out = self.network(torch.from_numpy(windows))
        quantiles: np.ndarray = out.double().numpy()
        return quantiles

    def quantiles_all(
        self, history: pd.DataFrame, ticker: str = ""
    ) -> tuple[np.ndarray, pd.DatetimeIndex]:
        """The network's quantiles as of every day with a full window, and those days; bands
        recalibrated from the history's earlier outcomes only (as a server would have)."""
        q, as_of, outcomes = self._history_outcomes(history, ticker)
        bundle = self.bundle
        if bundle.calibration_window is not None:
            factors = outcomes.factors(np.full(len(as_of), ticker, dtype=object),
                                       as_of.to_numpy(dtype="datetime64[ns]"),
                                       bundle.calibration_window, bundle.calibration_min_days,
                                       bundle.served_intervals)  # fmt: skip
            q = recalibrate(q, factors, bundle.quantiles, bundle.served_intervals)
        return q, as_of

    def predict_all(self, history: pd.DataFrame, ticker: str = "") -> pd.DataFrame:
        """A row for every day with a full window: the forecast made as of that day."""
        q, as_of = self.quantiles_all(history, ticker)
        return self.rows(ticker, as_of, history[CLOSE].reindex(as_of).to_numpy(), q)

    def serve(self, history: pd.DataFrame, ticker: str) -> Served:
        """The forecast for the day after the history, by the method the ticker's route names:
        the network (its bands recalibrated), or a baseline. What the API, `predict` and a
        server-side history all answer with."""
        route = self.route_for(ticker)
        if route is not None and route.method != NETWORK:
            return self.baseline_forecast(ticker, route.method, history[CLOSE].to_numpy(),
                                          history.index.to_numpy())  # fmt: skip
        window = self.prepare_window(history)
        calibration = self.calibration_for(ticker, history)
        return Served(NETWORK, self.calibrate(self.forecast_window(window), calibration),
                      calibration=calibration)  # fmt: skip


def served_artifacts(mlmodel: Any, where: str) -> tuple[str, str]:
    """(bundle, weights) paths inside a registered model, after checking from its MLmodel
    metadata alone that it is this project's pyfunc; raises ModelFormatError otherwise.

    The service then reads those two files as data (JSON and a weights-only tensor file), so
    no code stored with a model ever runs in the API.
    """
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("python_function"), dict):
        raise ModelFormatError(f"{where}: not an MLflow pyfunc model (no python_function flavor)")
    pyfunc = flavors["python_function"]
    problems = []
    if set(flavors) != {"python_function"}:
        problems.append(f"flavors {sorted(flavors)}")
    if pyfunc.get("loader_module") != LOADER_MODULE:
        problems.append(f"loader_module {pyfunc.get('loader_module')!r}")
    if Path(str(pyfunc.get("model_code_path") or "")).name != ENTRY_SCRIPT:
        problems.append(f"model code {pyfunc.get('model_code_path')!r}")
    artifacts = pyfunc.get("artifacts")
    paths = (
        {name: (spec or {}).get("path") for name, spec in artifacts.items()}
        if isinstance(artifacts, dict)
        else None
    )
    if paths != ARTIFACTS:
        problems.append(f"artifacts {paths}")
    if problems:
        raise ModelFormatError(
            f"{where} is not a forecaster model ({'; '.join(problems)}); refusing to load it"
        )
    return ARTIFACTS["bundle"], ARTIFACTS["weights"]


def history_frames(model_input: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a request frame into validated per-ticker histories (one unnamed if no ticker)."""
    frame = model_input.rename(columns=lambda c: str(c).strip().lower())
    if DATE not in frame.columns:
        raise DataValidationError("model input: missing required column 'date'")
    frame = frame.assign(**{DATE: pd.to_datetime(frame[DATE], errors="coerce")})
    groups = frame.groupby(TICKER, sort=False) if TICKER in frame.columns else [("", frame)]
    histories = {}
    for ticker, rows in groups:
        origin = f"model input{f' for {ticker}' if ticker else ''}"
        histories[str(ticker)] = validate_ohlcv(rows[[DATE, *OHLCV_COLUMNS]], origin=origin)
    return histories


class StockForecastModel(PythonModel):
    """MLflow pyfunc. Input: daily OHLCV rows (date, open, high, low, close, volume and an
    optional ticker column). Output: one forecast row per ticker, or one per day with
    params={"all_days": True} (for backtests and champion comparisons)."""

    def load_context(self, context: PythonModelContext) -> None:
        self.forecaster = Forecaster.load(
            Path(context.artifacts["bundle"]), Path(context.artifacts["weights"])
        )

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        all_days = bool((params or {}).get("all_days", False))
        method = self.forecaster.predict_all if all_days else self.forecaster.predict_next
        parts = [method(history, ticker) for ticker, history in history_frames(model_input).items()]
        return pd.concat(parts, ignore_index=True)
