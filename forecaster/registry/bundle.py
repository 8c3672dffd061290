"""The served bundle: everything besides the weights that a served model needs (features,
levels, the scaler as plain numbers, the universe, the per-ticker routes with their evidence,
each classic method's settings and parameters by name, the band factors), as JSON, and the
check that a registered model is this project's before anything of it is read.

Imports neither Lightning nor any training code: the service loads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from forecaster import methods
from forecaster.config import FeatureConfig, ForecasterConfig
from forecaster.data.features import warmup_rows
from forecaster.data.scaling import FeatureScaler
from forecaster.data.schemas import (
    frame_meta,
)
from forecaster.errors import ModelFormatError
from forecaster.evaluation.gate import Route
from forecaster.levels import interval_columns, median_index
from forecaster.methods.calibration import (
    Calibration,
)
from forecaster.methods.network.spec import NetworkSpec

logger = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "network.pt"
GRAPH_FILE = "network.onnx"
TICKER = "ticker"
# How tracking.log_pyfunc stores the model: MLflow "models from code" with this entry script
# and three artifacts (models made before the network's graph have the first two). The
# service checks a registered model's MLmodel against this before it reads anything else,
# and never runs the model's code (see served_artifacts).
ENTRY_SCRIPT = "pyfunc_entry.py"
LOADER_MODULE = "mlflow.pyfunc.loaders.code_model"
ARTIFACTS = {
    "bundle": f"artifacts/{BUNDLE_FILE}",
    "weights": f"artifacts/{WEIGHTS_FILE}",
    "graph": f"artifacts/{GRAPH_FILE}",
}
_BEFORE_GRAPHS = {k: v for k, v in ARTIFACTS.items() if k != "graph"}


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
    adjustment: str | None = None  # adjusted, raw or as_given (forecaster.data.schemas)
    tickers: tuple[str, ...] = ()
    # Networks whose quantiles the forecast averages (model.ensemble_size).
    ensemble_size: int = 1
    # model.median == "persistence": the network's median is a zero log return.
    fixed_median: bool = False
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
    # Per-ticker band recalibration (forecaster.methods.calibration): the rolling window, and each
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
                    "median": "persistence" if self.fixed_median else "learned",
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
            fixed_median=net.get("median", "learned") == "persistence",
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
        method_settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ModelBundle:
        """The one recipe from a config (and the data it was fitted on) to a bundle.
        `method_settings` holds the settings of methods the config alone cannot set up (a
        combination's weights, fitted on validation days)."""
        frames = frames or {}
        adjustments = {frame_meta(f).adjustment for f in frames.values()}
        network = NetworkSpec.from_config(config, scaler)
        return cls(
            features=config.features,
            lookback=config.windows.lookback,
            interval_level=config.model.interval_level,
            quantiles=config.model.quantiles,
            scaler=scaler,
            n_features=network.n_features,
            hidden_size=network.hidden_size,
            num_layers=network.num_layers,
            dropout=network.dropout,
            intervals=config.model.intervals,
            scale_feature=network.scale_feature,
            data_source=config.data.source,
            adjustment=(adjustments.pop() if len(adjustments) == 1 else "mixed")
            if frames
            else None,
            tickers=tuple(frames),
            ensemble_size=network.ensemble_size,
            fixed_median=network.fixed_median,
            universe=dict(universe or {}),
            routes=dict(routes or {}),
            unseen=unseen,
            methods={
                name: MethodSpec(dict(settings), dict((method_params or {}).get(name) or {}))
                for name, settings in {
                    **{n: m.settings() for n, m in methods.configured(config.evaluation).items()},
                    **dict(method_settings or {}),
                }.items()
            },
            calibration_window=config.model.calibration_window,
            calibration_min_days=config.model.calibration_min_days,
            calibration=dict(calibration or {}),
        )

    @property
    def network(self) -> NetworkSpec:
        """The architecture its weights file fits (forecaster.methods.network.spec)."""
        i = self.scale_feature
        unscale = (0.0, 1.0) if i is None else (self.scaler.center[i], self.scaler.scale[i])
        return NetworkSpec(self.n_features, self.hidden_size, self.num_layers, self.dropout,
                           len(self.quantiles), self.median_index, i,
                           (float(unscale[0]), float(unscale[1])), self.ensemble_size,
                           self.fixed_median)  # fmt: skip

    def build_network(self) -> nn.Module:
        """The untrained architecture the weights file fits."""
        return self.network.build()

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


def served_artifacts(mlmodel: Any, where: str) -> tuple[str, str, str | None]:
    """(bundle, weights, graph) paths inside a registered model (graph None for a model made
    before graphs), after checking from its MLmodel metadata alone that it is this project's
    pyfunc; raises ModelFormatError otherwise.

    The service then reads those files as data (JSON, a weights-only tensor file and an ONNX
    graph of standard operators), so no code stored with a model ever runs in the API.
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
    if paths not in (ARTIFACTS, _BEFORE_GRAPHS):
        problems.append(f"artifacts {paths}")
    if problems:
        raise ModelFormatError(
            f"{where} is not a forecaster model ({'; '.join(problems)}); refusing to load it"
        )
    graph = ARTIFACTS["graph"] if paths == ARTIFACTS else None
    return ARTIFACTS["bundle"], ARTIFACTS["weights"], graph
