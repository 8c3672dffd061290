"""Request and response models of the API (pydantic), with the checks a client can act on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from forecaster import methods
from forecaster.config import level_key
from forecaster.data.schemas import TICKER_PATTERN
from forecaster.evaluation.gate import UNSEEN_SCOPE, Route
from forecaster.methods.calibration import Calibration

ALL_METHODS = "*"  # the live scores' rows over every method


def _known_method(value: str, extra: tuple[str, ...] = ()) -> str:
    known = (*methods.names(), *extra)
    if value not in known:
        raise ValueError(f"no forecasting method {value!r}; one of {', '.join(known)}")
    return value


# A method's name as the registry knows it (forecaster.methods): the schema lists them, so a new
# method reaches the OpenAPI document without an edit here.
MethodName = Annotated[
    str,
    AfterValidator(_known_method),
    WithJsonSchema({"type": "string", "enum": list(methods.names())}),
]
MethodOrAll = Annotated[
    str,
    AfterValidator(lambda v: _known_method(v, (ALL_METHODS,))),
    WithJsonSchema({"type": "string", "enum": [*methods.names(), ALL_METHODS]}),
]


def _not_a_boolean(value: object) -> object:
    """JSON true/false is not a price or a volume (pydantic would read it as 1 or 0)."""
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_not_a_boolean)]


class HistoryRow(BaseModel):
    """One day of client history. Per-field checks only: the checks across fields and rows
    (high >= low, open and close within [low, high], increasing dates) run vectorised over the
    whole history, with the same rules and messages as for CSV files."""

    model_config = ConfigDict(extra="forbid")

    date: date
    open: Number = Field(gt=0, allow_inf_nan=False)
    high: Number = Field(gt=0, allow_inf_nan=False)
    low: Number = Field(gt=0, allow_inf_nan=False)
    close: Number = Field(gt=0, allow_inf_nan=False)
    volume: Number = Field(ge=0, allow_inf_nan=False)


class PredictionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ticker": "^GSPC"}]},
    )

    ticker: str = Field(pattern=TICKER_PATTERN, description="e.g. ^GSPC, AAPL, BRK-B")
    history: list[HistoryRow] | None = Field(
        None,
        min_length=1,
        fail_fast=True,  # one bad row is reported without validating thousands more
        description="your own daily history, oldest first; omit to use the server's data",
    )


class Interval(BaseModel):
    lower: float
    upper: float
    level: float


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str


class Evidence(BaseModel):
    """What the method rests on: the model's scores against every comparator on the same days."""

    scope: Literal["ticker", "unseen"] = Field(
        description="'ticker': this ticker's own test days; 'unseen': the rule for tickers "
        "outside the model's universe"
    )
    days: int = Field(description="test days the figures come from (0: no evidence)")
    pinball_ratio_vs_naive: float | None = Field(
        description="the model's pinball over the empirical random walk's (below 1: better)"
    )
    pinball_ratio_vs_garch: float | None = Field(
        description="the model's pinball over GARCH(1,1)-t's (below 1: better)"
    )
    p_model_not_better_than_naive: float | None = Field(
        description="one-sided Diebold-Mariano p of the model vs the random walk"
    )
    p_model_worse_than_garch: float | None = Field(
        description="one-sided Diebold-Mariano p that the model is worse than GARCH"
    )
    kupiec_pvalues: dict[str, float | None] = Field(
        description="Kupiec p of the model's central intervals, by nominal coverage"
    )
    pinball_ratios: dict[str, float | None] = Field(
        default_factory=dict,
        description="the model's pinball over each comparator's, by method name (below 1: better)",
    )
    p_model_worse: dict[str, float | None] = Field(
        default_factory=dict,
        description="one-sided Diebold-Mariano p that the model is worse than each comparator "
        "but the random walk, by method name",
    )
    strongest_comparator: str | None = Field(
        None, description="the comparator with the lowest pinball on these days"
    )
    pinball_ratio_vs_strongest: float | None = Field(
        None, description="the model's pinball over the strongest comparator's"
    )
    reason: str = Field(description="why this method serves the ticker")


class BandCalibration(BaseModel):
    """How the model's bands were rescaled for this ticker (forecaster.methods.calibration)."""

    factors: dict[str, float] = Field(
        description="each central interval's half-widths about the median were multiplied by "
        "this, by nominal coverage (above 1: the raw bands covered too few recent outcomes)"
    )
    days: int = Field(description="realised forecasts the factors come from")
    through: date = Field(description="the last of those outcomes")
    source: Literal["history", "training"] = Field(
        description="'history': the model's own forecasts over the history this forecast was "
        "made from; 'training': stored with the model for this ticker when it was trained"
    )


def calibration_of(calibration: Calibration | None) -> BandCalibration | None:
    if calibration is None:
        return None
    return BandCalibration(
        factors={level_key(c): round(f, 6) for c, f in calibration.factors.items()},
        days=calibration.days,
        through=date.fromisoformat(calibration.through),
        source="history" if calibration.source == "history" else "training",
    )


class PredictionResponse(BaseModel):
    ticker: str
    as_of: date = Field(description="last trading day of the history used")
    target_date: date = Field(description="the trading day being forecast (NYSE calendar)")
    last_close: float
    predicted_close: float = Field(description="median of the forecast distribution")
    predicted_return: float = Field(description="median log return from last_close")
    interval: Interval = Field(description="the model's headline central interval")
    quantiles: dict[str, float] = Field(
        description="forecast close at each quantile level, keyed by level ('0.05', ..., '0.95')"
    )
    intervals: dict[str, Interval] = Field(
        description="central intervals keyed by nominal coverage ('0.5', '0.8', '0.9')"
    )
    volatility: float = Field(
        description="the model's implied one-day standard deviation of the log return "
        "(normal-equivalent, from the quantile spread)"
    )
    model: ModelRef
    history_source: str = Field(description="'server' or 'request'")
    method: MethodName = Field(
        methods.NETWORK,
        description="the forecaster that answered: the model's network where it earned the "
        "ticker, else GARCH(1,1)-t or the empirical random walk on the same history",
    )
    evidence: Evidence | None = Field(
        None, description="the evidence behind the method (null for models made before routing)"
    )
    calibration: BandCalibration | None = Field(
        None,
        description="the per-ticker rescaling the bands got; null: served as the network (or "
        "the baseline) made them",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what in a client's history the forecast could not judge, e.g. a close-to-"
        "close jump like an unadjusted split (beyond a log return of 0.5)",
    )


def evidence_of(route: Route) -> Evidence:
    e = route.evidence
    return Evidence(
        scope="unseen" if e.scope == UNSEEN_SCOPE else "ticker",
        days=e.days,
        pinball_ratio_vs_naive=e.pinball_ratio_vs_naive,
        pinball_ratio_vs_garch=e.pinball_ratio_vs_garch,
        p_model_not_better_than_naive=e.p_model_not_better_than_naive,
        p_model_worse_than_garch=e.p_model_worse_than_garch,
        kupiec_pvalues=dict(e.kupiec_pvalues),
        pinball_ratios=dict(e.pinball_ratios),
        p_model_worse=dict(e.p_model_worse),
        strongest_comparator=e.strongest,
        pinball_ratio_vs_strongest=e.pinball_ratio_vs_strongest,
        reason=route.reason,
    )


def served_by(route: Route) -> ServedBy:
    return ServedBy(method=route.method, evidence=evidence_of(route))


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[PredictionRequest] = Field(min_length=1, fail_fast=True)


class BatchError(BaseModel):
    status: int
    detail: str


class BatchItem(BaseModel):
    ticker: str
    prediction: PredictionResponse | None = None
    error: BatchError | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class ServedBy(BaseModel):
    method: MethodName
    evidence: Evidence


class TickerRange(BaseModel):
    first: date = Field(description="first day of the ticker's training rows")
    last: date = Field(description="last training target day of the ticker")


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str
    loaded_at: datetime
    training_data_range: str | None
    test_range: str | None
    lookback: int
    min_history: int = Field(
        description="the fewest consecutive trading days a client's `history` may hold"
    )
    interval_level: float
    network_runtime: str = Field(
        description="what runs the network's forward in this process: 'onnxruntime' (the "
        "graph exported with the model) or 'torch' (the reference; a model without a graph, "
        "a graph that failed its load-time check, or FORECASTER_NETWORK_RUNTIME=torch)"
    )
    test_metrics: dict[str, float] = Field(
        description="the version's test scores: MAE vs naive persistence, pinball vs naive "
        "and GARCH, pooled over its universe's test days"
    )
    universe: dict[str, TickerRange] = Field(
        default_factory=dict,
        description="tickers the model was trained on, with the dates of their training rows; "
        "a ticker not listed here is one the model has never seen",
    )
    routes: dict[str, ServedBy] = Field(
        default_factory=dict,
        description="the forecaster that serves each ticker of the universe, with its evidence",
    )
    unseen: ServedBy | None = Field(None, description="how a ticker outside the universe is served")
    history_rows: dict[str, int] = Field(
        default_factory=dict,
        description="rows of client history each method needs: 'lstm' (the model's window), "
        "'garch_fit' (an unseen ticker gets GARCH(1,1)-t fitted on its own history from this "
        "many rows; fewer get the random walk), 'naive' and 'lstm_calibrated' (a history "
        "this long recalibrates the model's bands from its last calibration_window outcomes; "
        "shorter ones use the outcomes they hold, down to calibration_min_days, then the "
        "factors stored with the model)",
    )
    calibration: dict[str, BandCalibration] = Field(
        default_factory=dict,
        description="per universe ticker, the band factors stored with the model (used for "
        "client histories; server history recalibrates from its own latest outcomes)",
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model: str
    version: str
    alias: str
    detail: str | None = Field(
        None, description="why a newer version is not served (e.g. refused), if one is not"
    )
    prediction_log: Literal["logging", "opening", "off"] = Field(
        "logging",
        description="logging: served predictions are being written; opening: the log could "
        "not be opened yet, rows wait in memory while it is retried (the service log says "
        "why); off: the log's URL can never work",
    )


class ReloadResult(BaseModel):
    swapped: bool
    version: str | None
    detail: str


class WindowScores(BaseModel):
    """Served forecasts of one window, scored against the closes that followed: the library's
    `forecaster.evaluation.monitoring.WindowFigures`, as the API documents it."""

    model_config = ConfigDict(from_attributes=True)

    resolved: int = Field(description="resolved forecasts in the window")
    mae: float | None = Field(description="MAE of the served median, price units")
    naive_mae: float | None = Field(description="MAE of naive persistence on the same days")
    pinball: float | None = Field(description="mean pinball loss, log-return units")
    naive_pinball: float | None = Field(
        description="the naive random walk's mean pinball loss on the same days"
    )
    coverage: dict[str, float] = Field(description="interval level -> share of closes inside")
    kupiec_pvalue: dict[str, float | None] = Field(description="interval level -> Kupiec p")


class PerformanceEntry(BaseModel):
    model_name: str
    model_version: str
    ticker: str = Field(description='"*" for every ticker the version served')
    method: str = Field(
        "*", description='the serving method scored (lstm, garch, naive); "*": all of them'
    )
    windows: dict[str, WindowScores] = Field(description="last N resolved forecasts -> scores")
    drift_reason: str | None = Field(
        None, description="why this version's live record calls for a retrain; null: it does not"
    )


class Performance(BaseModel):
    computed_at: datetime = Field(description="when `forecaster monitor` computed these")
    entries: list[PerformanceEntry]
