"""Request and response models of the API (pydantic), with the checks a client can act on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

TICKER_PATTERN = r"^[A-Za-z0-9^.=_\-]{1,20}$"


class HistoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: date
    open: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    close: float = Field(gt=0, allow_inf_nan=False)
    volume: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _high_low(self) -> Self:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low} on {self.date}")
        return self


class PredictionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ticker": "^GSPC"}]},
    )

    ticker: str = Field(pattern=TICKER_PATTERN, description="e.g. ^GSPC, AAPL, BRK-B")
    history: list[HistoryRow] | None = Field(
        None,
        min_length=1,
        description="your own daily history, oldest first; omit to use the server's data",
    )

    @model_validator(mode="after")
    def _dates_increase(self) -> Self:
        rows = self.history or []
        for i in range(1, len(rows)):
            if rows[i].date <= rows[i - 1].date:
                problem = "duplicates" if rows[i].date == rows[i - 1].date else "is before"
                raise ValueError(
                    f"history dates must be strictly increasing: row {i} ({rows[i].date}) "
                    f"{problem} row {i - 1} ({rows[i - 1].date})"
                )
        return self


class Interval(BaseModel):
    lower: float
    upper: float
    level: float


class ModelRef(BaseModel):
    name: str
    version: str
    run_id: str


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


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[PredictionRequest] = Field(min_length=1)


class BatchError(BaseModel):
    status: int
    detail: str


class BatchItem(BaseModel):
    ticker: str
    prediction: PredictionResponse | None = None
    error: BatchError | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str
    loaded_at: datetime
    training_data_range: str | None
    test_range: str | None
    lookback: int
    interval_level: float
    test_metrics: dict[str, float] = Field(
        description="the version's test scores: MAE vs naive persistence, pinball vs naive "
        "and GARCH"
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model: str
    version: str
    alias: str


class ReloadResult(BaseModel):
    swapped: bool
    version: str | None
    detail: str
