"""Frozen, typed configuration loaded from YAML and `--set key=value` overrides.

Unknown keys are errors (`extra="forbid"`), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forecaster import levels
from forecaster.errors import ConfigError

SourceName = Literal["sample", "csv", "yahoo"]
FeatureName = Literal[
    "log_return",
    "overnight_gap",
    "intraday_range",
    "close_location",
    "log_volume_ratio",
    "volatility",
    "gk_volatility",
    "range_variance",
    "range_vol_5",
    "range_vol_22",
]
# Every feature, in the Literal's order: the one list is the type.
ALL_FEATURES: tuple[FeatureName, ...] = get_args(FeatureName)
# The default inputs: all of them (the range-based HAR-form ones lowered validation pinball by
# 0.4% with model.scale_by range_vol_5, benchmarks/README.md).
DEFAULT_FEATURES: tuple[FeatureName, ...] = ALL_FEATURES


def level_key(level: float) -> str:
    """The one spelling of a quantile or interval level in JSON, MLflow keys and columns:
    0.8 -> "0.8", 0.05 -> "0.05"."""
    return f"{level:g}"


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class YahooConfig(FrozenModel):
    """How the live source talks to Yahoo Finance and keeps its cache."""

    retries: int = Field(3, ge=1, description="attempts per download before falling back to cache")
    backoff_seconds: float = Field(1.0, ge=0, description="first retry delay; doubles each retry")
    timeout_seconds: float = Field(10.0, gt=0, description="per-request timeout")
    cache_ttl_hours: float = Field(
        12.0, ge=0, description="a cache younger than this is used without asking Yahoo"
    )


# The bundled offline universe (forecaster.data.sources.sample says where each series comes from).
SAMPLE_UNIVERSE = ("^GSPC", "^IXIC", "AAPL", "GOOG", "IBM", "MSFT")


class DataConfig(FrozenModel):
    """Where the OHLCV history comes from."""

    source: SourceName = Field(
        "sample", description="sample (bundled offline universe), csv or yahoo"
    )
    tickers: tuple[str, ...] = Field(
        SAMPLE_UNIVERSE, min_length=1, description="tickers to load: the model's universe"
    )
    csv_files: tuple[Path, ...] = Field(
        (), description="CSV files for source=csv, one per ticker (ticker = file stem if unnamed)"
    )
    start: date | None = Field(None, description="first date to keep (inclusive)")
    end: date | None = Field(None, description="last date to keep (inclusive)")
    data_dir: Path = Field(Path("data"), description="cache, MLflow store and other local state")
    auto_adjust: bool = Field(
        True, description="adjust OHLC for splits and dividends (yfinance auto_adjust, Adj Close)"
    )
    date_format: str | None = Field(
        None, description="strftime format of CSV dates; default accepts ISO and MM/DD/YYYY"
    )
    yahoo: YahooConfig = YahooConfig()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.source == "csv" and not self.csv_files:
            raise ValueError("source 'csv' needs csv_files (or pass --csv FILE)")
        return self


class FeatureConfig(FrozenModel):
    """Which causal features to compute from OHLCV (see forecaster.data.features)."""

    names: tuple[FeatureName, ...] = Field(
        DEFAULT_FEATURES, min_length=1, description="features computed for every day, in order"
    )
    volume_window: int = Field(20, ge=2, description="trailing days for the volume baseline")
    volatility_window: int = Field(20, ge=2, description="trailing days for realised volatility")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique")
        return self


class WindowConfig(FrozenModel):
    lookback: int = Field(30, ge=2, description="past trading days in each input window")


class SplitConfig(FrozenModel):
    """Chronological train/validation/test split on the windows' target dates."""

    val_fraction: float = Field(0.15, gt=0, lt=1, description="share of dates for validation")
    test_fraction: float = Field(0.15, gt=0, lt=1, description="share of dates for test")
    val_start: date | None = Field(None, description="first validation target date (overrides)")
    test_start: date | None = Field(None, description="first test target date (overrides)")
    gap: int = Field(0, ge=0, description="trading days left out before each boundary")
    folds: int = Field(5, ge=1, description="walk-forward folds for backtests")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        if self.val_start and self.test_start and self.val_start >= self.test_start:
            raise ValueError("val_start must be before test_start")
        return self


class ScalingConfig(FrozenModel):
    method: Literal["standard", "robust"] = Field(
        "standard", description="scikit-learn scaler fitted on training dates only"
    )


class ModelConfig(FrozenModel):
    """The LSTM and the forecast distribution it serves."""

    hidden_size: int = Field(32, ge=1, description="LSTM hidden units per layer")
    num_layers: int = Field(2, ge=1, description="stacked LSTM layers")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout between LSTM layers")
    quantiles: tuple[float, ...] = Field(
        (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95),
        min_length=3,
        description="quantile levels of the next-day log return the model forecasts and serves",
    )
    intervals: tuple[float, ...] = Field(
        (0.5, 0.8, 0.9),
        min_length=1,
        description="central intervals scored, gated and served; their tails must be quantiles",
    )
    interval_level: float = Field(
        0.8, gt=0, lt=1, description="the headline interval (one of intervals)"
    )
    scale_by: FeatureName | None = Field(
        "range_vol_5",
        description="feature (a trailing volatility) whose last value sets the forecast's "
        "scale, so bands follow the regime; null: a fixed scale",
    )
    median: Literal["learned", "persistence"] = Field(
        "learned",
        description="the forecast's median: learned by the network, or persistence (a zero log "
        "return; the network learns only the spread around it)",
    )
    ensemble_size: int = Field(
        5,
        ge=1,
        le=50,
        description="networks trained from seeds training.seed, +1, ...; the served forecast "
        "averages their quantiles",
    )
    calibration_window: int | None = Field(
        250,
        ge=10,
        description="each ticker's bands rescaled by split-conformal factors from its last N "
        "realised forecasts (forecaster.methods.calibration); null: bands as the network makes "
        "them",
    )
    calibration_min_days: int = Field(
        60, ge=10, description="fewer realised forecasts than this: a ticker's bands stay raw"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        q = self.quantiles
        if any(not 0 < level < 1 for level in q) or any(b <= a for a, b in itertools.pairwise(q)):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {list(q)}")
        if not levels.has(q, 0.5):
            raise ValueError("quantiles must include the median 0.5 (the point forecast)")
        for coverage in self.intervals:
            tail, top = levels.interval_tails(coverage)
            if not (levels.has(q, tail) and levels.has(q, top)):
                raise ValueError(f"interval {coverage} needs quantiles {tail:g} and {top:g}")
        window = self.calibration_window
        if window is not None and self.calibration_min_days > window:
            raise ValueError(
                f"calibration_min_days {self.calibration_min_days} exceeds calibration_window "
                f"{window}"
            )
        if not levels.has(self.intervals, self.interval_level):
            raise ValueError(
                f"interval_level {self.interval_level} must be one of intervals "
                f"{list(self.intervals)}"
            )
        return self

    @property
    def median_index(self) -> int:
        """Position of the 0.5 level: the point forecast."""
        return min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))


class TrainingConfig(FrozenModel):
    """How each network is fitted. `devices`, `strategy` and `num_nodes` go to Lightning's
    Trainer as they are: `strategy: ddp, devices: 2` trains one network in two processes."""

    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(64, ge=1, description="training windows per batch")
    epoch_windows: int | None = Field(
        4000,
        ge=1,
        description="at most this many windows per epoch, drawn with replacement; null: all",
    )
    balance_tickers: bool = Field(
        True, description="draw every ticker's windows equally often, whatever its history"
    )
    max_epochs: int = Field(30, ge=1, description="upper bound; early stopping usually ends sooner")
    patience: int = Field(5, ge=1, description="epochs without val_loss improvement before stop")
    gradient_clip: float = Field(1.0, gt=0, description="gradient norm clipping")
    seed: int = Field(42, description="seeds torch, numpy and python for reproducible runs")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="Lightning accelerator; auto uses a GPU when present"
    )
    devices: int | Literal["auto"] = Field(
        1, description="processes (CPU) or GPUs per node that train one network together"
    )
    strategy: str = Field(
        "auto", min_length=1, description="Lightning strategy: auto, ddp, fsdp, ..."
    )
    num_nodes: int = Field(1, ge=1, description="machines that train one network together")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads per training process; null: the cores this "
        "process may use (its CPU set), shared among CPU `devices`. Set it where training "
        "shares a machine (the compose scheduler and tuners use 1)",
    )
    ridge_alphas: tuple[float, ...] = Field(
        (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        min_length=1,
        description="L2 strengths tried for the linear baseline (best on validation wins)",
    )


class EvaluationConfig(FrozenModel):
    """Baselines and the promotion gate: every forecaster is scored on the same test days."""

    naive_window: int = Field(
        250, ge=20, description="trailing daily returns behind the naive baseline's quantiles"
    )
    har_estimator: Literal["garman_klass", "rogers_satchell", "parkinson"] = Field(
        "garman_klass",
        description="open-to-close range estimator in the HAR baseline's daily variance (plus "
        "the overnight gap squared)",
    )
    dm_alpha: float = Field(
        0.05, gt=0, lt=1, description="one-sided Diebold-Mariano level for the gate's tests"
    )
    kupiec_alpha: float = Field(
        0.01, gt=0, lt=1, description="every served interval must pass Kupiec at this level"
    )
    lookahead_pinball_ratio: float = Field(
        0.85,
        gt=0,
        lt=1,
        description="a pinball ratio vs naive below this on daily data is flagged as "
        "probable look-ahead",
    )
    holdout_tickers: int = Field(
        2,
        ge=0,
        description="leave-tickers-out: the universe's last N tickers are held out of one extra "
        "training, whose scores on them decide how tickers outside the universe are served "
        "(0: none; unseen tickers then get a baseline)",
    )
    holdout_ensemble_size: int = Field(
        2, ge=1, description="networks in the held-out training (the served model has more)"
    )
    route_per_ticker: bool = Field(
        True,
        description="serve each ticker by the forecaster that earned it on its own test days "
        "(the model, GARCH or the random walk); false: the model serves every ticker",
    )


class MonitoringConfig(FrozenModel):
    """How `forecaster monitor` scores served forecasts and when their record calls for a
    retrain."""

    windows: tuple[int, ...] = Field(
        (20, 60, 250), min_length=1, description="last N resolved forecasts each scored over"
    )
    headline_window: int = Field(
        250,
        ge=1,
        description="the window the headline figures, tags and gauges report (one of windows)",
    )
    drift_window: int = Field(
        60, ge=1, description="the drift rule judges this window once it is full (one of windows)"
    )
    drift_interval: float = Field(
        0.8, gt=0, lt=1, description="the served interval whose coverage the drift rule tests"
    )
    drift_kupiec_alpha: float = Field(
        0.01, gt=0, lt=1, description="drift: that interval fails Kupiec's test at this level"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("headline_window", "drift_window"):
            if getattr(self, name) not in self.windows:
                raise ValueError(
                    f"{name} {getattr(self, name)} must be one of windows {list(self.windows)}"
                )
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows {list(self.windows)} repeat a window")
        return self


class TrackingConfig(FrozenModel):
    """MLflow tracking and registry. The URI comes from here, else MLFLOW_TRACKING_URI, else a
    local SQLite store in data_dir."""

    tracking_uri: str | None = Field(None, description="MLflow tracking URI")
    experiment: str = Field("forecaster", min_length=1, description="MLflow experiment name")
    model_name: str = Field("stock-lstm", min_length=1, description="registered model name")
    ui_url: str | None = Field(
        None,
        description="the MLflow UI's address as people open it, for the links training prints "
        "(null: the tracking server's own, or `forecaster ui`'s http://127.0.0.1:5000)",
    )
    promote: bool = Field(True, description="try the champion gate after registering")


class ScheduleConfig(FrozenModel):
    """When `forecaster schedule` retrains: a crontab line (5 fields, or 6 with seconds first)."""

    cron: str = Field("30 17 * * 1-5", description="weekdays 17:30, after the 16:00 New York close")
    timezone: str = Field("America/New_York", description="IANA time zone of the cron line")
    misfire_grace_seconds: int = Field(
        3600, ge=1, description="a run missed by less than this still runs (once)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.cron.split()) not in (5, 6):
            raise ValueError(f"cron {self.cron!r} must have 5 fields (or 6 with seconds first)")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        return self


class IntRange(FrozenModel):
    kind: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class FloatRange(FrozenModel):
    kind: Literal["float"]
    low: float
    high: float
    log: bool = False


# A choice may be a list (a feature set): Optuna stores such choices by their YAML text.
ChoiceValue = int | float | str | bool | None | tuple[str, ...]


class Choice(FrozenModel):
    kind: Literal["choice"]
    choices: tuple[ChoiceValue, ...] = Field(min_length=1)


SearchParam = Annotated[IntRange | FloatRange | Choice, Field(discriminator="kind")]

# What a search may change: the model and how it is trained, never the data or the test days.
TUNABLE_SECTIONS = ("features", "windows", "scaling", "model", "training")


class PrunerConfig(FrozenModel):
    """Optuna's median pruner on the first fold's per-epoch validation loss."""

    startup_trials: int = Field(4, ge=0, description="trials that are never pruned")
    warmup_epochs: int = Field(3, ge=0, description="epochs of each trial that are never pruned")


_DEFAULT_SPACE: dict[str, IntRange | FloatRange | Choice] = {
    "windows.lookback": IntRange(kind="int", low=20, high=60, step=10),
    "model.hidden_size": Choice(kind="choice", choices=(16, 32, 64)),
    "model.num_layers": IntRange(kind="int", low=1, high=2),
    "model.dropout": FloatRange(kind="float", low=0.0, high=0.3),
    "training.learning_rate": FloatRange(kind="float", low=3e-4, high=3e-3, log=True),
    "training.batch_size": Choice(kind="choice", choices=(32, 64, 128)),
    "features.names": Choice(
        kind="choice",
        choices=(  # each holds model.scale_by's feature, range_vol_5
            DEFAULT_FEATURES,
            ("log_return", "overnight_gap", "intraday_range", "volatility", "range_vol_5"),
            ("log_return", "gk_volatility", "range_variance", "range_vol_5", "range_vol_22"),
        ),
    ),
}


class TuningConfig(FrozenModel):
    """`forecaster tune`: an Optuna study over `space` (dotted config keys -> ranges).

    The objective is the mean validation pinball loss over walk-forward folds cut from the
    dates before the test period, which the search never sees.
    """

    study: str = Field("stock-lstm", min_length=1, description="Optuna study name")
    storage: str | None = Field(
        None,
        description="Optuna storage URL; null: sqlite:///<data_dir>/optuna.db; a PostgreSQL URL "
        "lets tune processes on any machine share the study",
    )
    folds: int = Field(3, ge=1, description="walk-forward folds before the test period")
    fold_fraction: float = Field(
        0.2, gt=0, lt=0.8, description="share of the pre-test dates scored, over all folds"
    )
    ensemble_size: int = Field(
        1, ge=1, description="networks per trial (the best config keeps model.ensemble_size)"
    )
    seed: int | None = Field(None, description="sampler seed; null: a different search each run")
    pruner: PrunerConfig = PrunerConfig()
    space: dict[str, SearchParam] = Field(
        default_factory=lambda: _DEFAULT_SPACE.copy(),
        description="dotted config key -> int range, float range or choice",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        for key, param in self.space.items():
            if key.split(".")[0] not in TUNABLE_SECTIONS or "." not in key:
                raise ValueError(
                    f"space key {key!r}: a search may change {', '.join(TUNABLE_SECTIONS)} "
                    "keys (e.g. model.hidden_size), never the data, split or tracking"
                )
            if not isinstance(param, Choice) and param.low > param.high:
                raise ValueError(f"space key {key!r}: low {param.low} is above high {param.high}")
            if isinstance(param, (IntRange, FloatRange)) and param.log and param.low <= 0:
                raise ValueError(f"space key {key!r}: a log range needs low > 0")
        return self


class ForecasterConfig(FrozenModel):
    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    windows: WindowConfig = WindowConfig()
    split: SplitConfig = SplitConfig()
    scaling: ScalingConfig = ScalingConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    tuning: TuningConfig = TuningConfig()

    @model_validator(mode="after")
    def _vol_feature(self) -> Self:
        scale_by = self.model.scale_by
        if scale_by is not None and scale_by not in self.features.names:
            raise ValueError(f"model.scale_by '{scale_by}' must be one of features.names (or null)")
        names = self.tuning.space.get("features.names")
        tuned_scale = "model.scale_by" in self.tuning.space
        if scale_by is not None and isinstance(names, Choice) and not tuned_scale:
            for choice in names.choices:
                if scale_by not in tuple(choice):  # type: ignore[arg-type]
                    raise ValueError(
                        f"tuning.space features.names: the choice {list(choice)} lacks "  # type: ignore[arg-type]
                        f"model.scale_by '{scale_by}'; add it to every choice"
                    )
        return self


def _format_validation_error(exc: ValidationError, where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{loc}: {msg}")
    return f"{where}: " + "; ".join(problems)


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. windows.lookback=20")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({exc})") from exc
    try:
        _set_dotted(tree, key, value)
    except ConfigError as exc:
        raise ConfigError(f"--set {assignment!r}: {exc}") from exc


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> ForecasterConfig:
    """Build the config from an optional YAML file, then `--set` overrides, then `values`.

    `values` maps dotted keys to already-typed values (what dedicated CLI flags such as
    `--ticker` set), so they skip YAML parsing: a ticker called NO stays a string.
    """
    tree: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"{path}: is a directory, not a YAML config file") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text (UTF-8) YAML file") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        tree = loaded or {}
    for assignment in overrides:
        apply_override(tree, assignment)
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value)
    if overrides or values:
        where = f"{where} with command-line overrides"
    try:
        return ForecasterConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where)) from exc


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def with_values(
    config: ForecasterConfig, values: Mapping[str, Any], where: str
) -> ForecasterConfig:
    """`config` with dotted keys set to typed values (a tuning trial's parameters), validated
    as a whole: a combination the model cannot take is a ConfigError naming `where`."""
    tree = config.model_dump(mode="json")
    for key, value in values.items():
        _set_dotted(tree, key, list(value) if isinstance(value, tuple) else value)
    try:
        return ForecasterConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where)) from exc
