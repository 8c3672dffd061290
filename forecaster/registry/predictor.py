"""The served model: the bundle and the network, answering with the method each ticker's route
names. Imports neither Lightning nor any training code: it must load fast in a service worker."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from forecaster import methods
from forecaster.data.schemas import (
    CLOSE,
    OHLCVArrays,
)
from forecaster.data.windows import all_windows, latest_array_window, latest_window
from forecaster.errors import ModelFormatError
from forecaster.evaluation.gate import Route
from forecaster.methods import FALLBACK, NETWORK, Bars, Method, log_returns
from forecaster.methods.calibration import (
    Calibration,
    Outcomes,
    apply_calibration,
    latest_calibration,
    path_calibration,
    recalibrate,
)
from forecaster.methods.network.forward import (
    RUNTIMES,
    NetworkForward,
    OnnxForward,
    Runtime,
    TorchForward,
    checked_graph,
)
from forecaster.methods.network.graph import export_graph
from forecaster.quantile_forecast import implied_volatility, quantile_column, to_prices
from forecaster.registry.bundle import BUNDLE_FILE, GRAPH_FILE, WEIGHTS_FILE, ModelBundle

logger = logging.getLogger(__name__)

# Fits on request histories kept per process: a client that sends the same watch-list again
# (or the same history to several routes) pays each fit once. Keyed by the method and a digest
# of the bars the fit read, so a history with one more day is a new fit.
FIT_CACHE_SIZE = 4096
# Windows the graph is checked on against the weights when a model loads (seeded noise in the
# scaled feature space: the check is of the arithmetic, not of any day's forecast).
GRAPH_CHECK_WINDOWS = 8


@dataclass(frozen=True)
class Served:
    """A served forecast: which method made it, its log-return quantiles, whether the method
    was fitted on the request's own history (an unseen ticker), the band factors applied, and
    why the random walk answers instead of the method the route names (None when it does not)."""

    method: str
    quantiles: np.ndarray
    fitted_on_request: bool = False
    calibration: Calibration | None = None
    fallback: str | None = None


class Forecaster:
    """Raw daily OHLCV history in, next-trading-day forecast with its interval out."""

    def __init__(
        self, bundle: ModelBundle, network: nn.Module, forward: NetworkForward | None = None
    ) -> None:
        self.bundle = bundle
        self.network = network.eval()
        # What computes the network's quantiles: its exported graph in ONNX Runtime when the
        # model has one, else the torch network itself (the reference).
        self.forward: NetworkForward = forward or TorchForward(self.network)
        self._methods = {name: methods.build(name, spec.settings)
                         for name, spec in bundle.methods.items()}  # fmt: skip
        self._methods.setdefault(FALLBACK, methods.build(FALLBACK))
        # (method, digest of the bars) -> (params, problem): fits on request histories.
        self._fits: OrderedDict[tuple[str, bytes], tuple[dict[str, float], str | None]] = (
            OrderedDict()
        )
        self._fits_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        bundle_path: Path,
        weights_path: Path,
        graph_path: Path | None = None,
        runtime: Runtime = "onnxruntime",
        threads: int | None = None,
    ) -> Forecaster:
        """Raises ModelFormatError for a bundle this version cannot read (a key it lacks, a
        method name its registry does not know: a model from a newer forecaster).

        With the model's graph and runtime "onnxruntime", the graph serves the network's
        forward on `threads` threads (default: torch's count), once it has matched the
        weights' own forward on a few windows; a graph that does not load or match is logged
        and the torch forward serves instead. Runtime "torch" (or no graph: a model made before
        graphs) serves the torch forward."""
        try:
            bundle = ModelBundle.from_json(Path(bundle_path).read_text(encoding="utf-8"))
            forecaster = cls(bundle, bundle.build_network())
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"{BUNDLE_FILE}: cannot read it ({type(exc).__name__}: {exc}); was the model "
                "made by a newer forecaster?"
            ) from exc
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown network runtime {runtime!r}: use one of {RUNTIMES}")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        forecaster.network.load_state_dict(state)
        if graph_path is not None and runtime == "onnxruntime":
            threads = threads or torch.get_num_threads()
            forecaster.forward = forecaster._graph_forward(Path(graph_path).read_bytes(), threads)
        return forecaster

    def _graph_forward(self, graph: bytes, threads: int) -> NetworkForward:
        """The graph's forward when it loads and agrees with the weights, else the reference."""
        bundle, reference = self.bundle, TorchForward(self.network)
        try:
            onnx = OnnxForward(graph, threads, bundle.lookback, bundle.n_features,
                               len(bundle.quantiles))  # fmt: skip
        except ModelFormatError as exc:
            logger.warning("%s; serving the torch forward", exc)
            return reference
        rng = np.random.default_rng(0)
        windows = rng.standard_normal((GRAPH_CHECK_WINDOWS, bundle.lookback, bundle.n_features))
        problem = checked_graph(onnx, reference, windows.astype(np.float32))
        if problem is not None:
            logger.warning("network graph: %s; serving the torch forward", problem)
            return reference
        return onnx

    def save(self, directory: Path) -> tuple[Path, Path, Path]:
        """The bundle, the weights and the network's graph (exported from the weights)."""
        directory.mkdir(parents=True, exist_ok=True)
        bundle_path, weights_path = directory / BUNDLE_FILE, directory / WEIGHTS_FILE
        graph_path = directory / GRAPH_FILE
        bundle_path.write_text(self.bundle.to_json(), encoding="utf-8")
        torch.save(self.network.state_dict(), weights_path)
        graph_path.write_bytes(
            export_graph(self.network, self.bundle.lookback, self.bundle.n_features)
        )
        return bundle_path, weights_path, graph_path

    def route_for(self, ticker: str) -> Route | None:
        """How `ticker` is served: its own route, the unseen rule, or None (a bundle made
        before routing, where the network serves every ticker)."""
        return self.bundle.routes.get(ticker, self.bundle.unseen)

    def method(self, name: str) -> Method:
        """A classic method as the bundle stores it (the random walk for a name it lacks)."""
        found = self._methods.get(name)
        return found if found is not None else self._methods[FALLBACK]

    def fits_on_request(self, ticker: str, method: str, bars: Bars | None = None) -> bool:
        """Whether serving `method` for `ticker` estimates parameters on the request's history
        (a ticker with no fitted parameters; tens of milliseconds, so callers may offload it).
        With the history's `bars`, a fit this process already made of them does not count."""
        chosen = self.method(method)
        if not chosen.estimates or self.bundle.params(chosen.name, ticker) is not None:
            return False
        if bars is None:
            return True
        with self._fits_lock:
            return (chosen.name, bars.digest) not in self._fits

    def _params(
        self, ticker: str, chosen: Method, bars: Bars
    ) -> tuple[Method, Mapping[str, float], bool, str | None]:
        """The method and parameters that serve: the bundle's, else a fit on the history when
        it is long enough and converges, else the random walk's (nothing to fit), with why."""
        params = self.bundle.params(chosen.name, ticker)
        if params is not None or not chosen.estimates:
            return chosen, params or {}, False, None
        returns = len(bars) - 1
        if returns < chosen.fit_min_returns:
            why = (f"{chosen.label} has no parameters for this ticker and needs "
                   f"{chosen.fit_min_returns} returns to fit them; this history has {returns}: "
                   "the random walk answers")  # fmt: skip
            return self._methods[FALLBACK], {}, False, why
        fitted, problem = self._fit(chosen, bars)
        if problem is None:
            return chosen, fitted, True, None
        logger.info("%s: %s fit refused (%s); the random walk answers", ticker, chosen.name,
                    problem)  # fmt: skip
        why = (
            f"{chosen.label} could not be fitted on this history ({problem}): the random walk "
            "answers"
        )
        return self._methods[FALLBACK], {}, False, why

    def _fit(self, chosen: Method, bars: Bars) -> tuple[dict[str, float], str | None]:
        """`chosen` fitted on `bars`, from the cache when these very bars were fitted before
        (a fit is deterministic in its bars, so the cached one is the one it would make)."""
        key = (chosen.name, bars.digest)
        with self._fits_lock:
            cached = self._fits.get(key)
            if cached is not None:
                self._fits.move_to_end(key)
                return cached
        fitted = chosen.fit(bars, self.bundle.quantiles)
        entry = (dict(fitted.params), fitted.problem)
        with self._fits_lock:
            self._fits[key] = entry
            while len(self._fits) > FIT_CACHE_SIZE:
                self._fits.popitem(last=False)
        return entry

    def baseline_forecast(
        self, ticker: str, method: str, bars: Bars, days: np.ndarray | None = None
    ) -> Served:
        """A classic method's next-day quantiles from a history's bars, with the ticker's
        training parameters, else fitted on the history when it is long enough, else the
        random walk. With the history's `days`, its bands are recalibrated on the method's own
        forecasts over them, as the network's are."""
        bundle, window = self.bundle, self.bundle.calibration_window
        chosen, params, fitted, fallback = self._params(ticker, self.method(method), bars)
        back = window if days is not None and window is not None else 0
        first = max(chosen.earliest, len(bars) - 1 - back)
        if first >= len(bars):  # too short for the method: its own message says how short
            first = len(bars) - 1
        path = chosen.path(bars, params, bundle.quantiles, first)
        calibration = None
        if back:
            known_at = np.asarray(days, dtype="datetime64[ns]")[first + 1 :]
            calibration = path_calibration(path[:-1], log_returns(bars.close)[first:], known_at,
                                           back, bundle.calibration_min_days, bundle.quantiles,
                                           bundle.served_intervals, "history")  # fmt: skip
        return Served(chosen.name, self.calibrate(path[-1], calibration), fitted, calibration,
                      fallback)  # fmt: skip

    def _history_outcomes(
        self, history: pd.DataFrame, ticker: str
    ) -> tuple[np.ndarray, pd.DatetimeIndex, Outcomes]:
        """The raw quantiles of every window of a history, their as-of dates, and the outcomes
        of those whose next close the history holds, leaving out the days the network trained
        on for this ticker (its errors there say nothing about its calibration)."""
        x, as_of = all_windows(history, self.bundle.features, self.bundle.lookback)
        q = self.forward(self.bundle.scaler.transform(x))
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
        q = self.forward(self.bundle.scaler.transform(window))
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
        return self.forward(windows)

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
            return self.baseline_forecast(ticker, route.method, Bars.of_frame(history),
                                          history.index.to_numpy())  # fmt: skip
        window = self.prepare_window(history)
        calibration = self.calibration_for(ticker, history)
        return Served(NETWORK, self.calibrate(self.forecast_window(window), calibration),
                      calibration=calibration)  # fmt: skip
