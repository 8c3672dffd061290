"""Service settings, from the environment only (prefix FORECASTER_), read once per app."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecaster.config import DataConfig, YahooConfig
from forecaster.local_state import mlflow_store, prediction_log_store


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORECASTER_", frozen=True, extra="ignore")

    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("FORECASTER_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<data_dir>/mlflow.db",
    )
    model_name: str = Field("stock-lstm", description="registered model to serve")
    model_alias: str = Field("champion", description="registry alias to serve and watch")
    fallback_alias: str | None = Field(
        None,
        description="alias served while model_alias points nowhere (e.g. challenger for a "
        "demo before any model has earned champion); off by default",
    )
    data_source: Literal["sample", "yahoo"] = Field(
        "sample", description="where ticker history comes from (sample: bundled ^GSPC only)"
    )
    data_dir: Path = Field(Path("data"), description="MLflow store, market data cache, logs")
    auto_adjust: bool = Field(True, description="split/dividend-adjusted prices")
    yahoo_retries: int = Field(3, ge=1, description="attempts per Yahoo download")
    yahoo_backoff_seconds: float = Field(1.0, ge=0, description="first retry delay, doubling")
    yahoo_timeout_seconds: float = Field(10.0, gt=0, description="per-request Yahoo timeout")
    yahoo_cache_ttl_hours: float = Field(
        12.0, ge=0, description="a cached Yahoo history younger than this is used as is"
    )
    history_ttl_seconds: float = Field(
        900.0, gt=0, description="how long a ticker's history is kept in memory"
    )
    history_max_tickers: int = Field(
        1000, ge=1, description="most tickers whose history (or failed lookup) is kept in memory"
    )
    source_failure_ttl_seconds: float = Field(
        60.0, ge=0, description="how long a failed lookup is answered from memory"
    )
    source_threads: int = Field(
        4, ge=1, description="threads for data-source lookups (apart from request work)"
    )
    source_breaker_failures: int = Field(
        3, ge=1, description="consecutive source outages that open the circuit"
    )
    source_breaker_cooldown_seconds: float = Field(
        30.0, gt=0, description="how long an open circuit refuses lookups of uncached tickers"
    )
    batch_deadline_seconds: float = Field(
        10.0, gt=0, description="a batch item not ready by then is answered with a 503 item"
    )
    api_key: SecretStr | None = Field(
        None, description="key for /v1/admin/*; admin calls are refused while unset or empty"
    )
    reload_interval_seconds: float = Field(
        30.0, gt=0, description="how often the alias is polled for a new version"
    )
    retry_max_seconds: float = Field(
        60.0, gt=0, description="longest backoff between model load attempts"
    )
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        description="largest request head (request line and headers); larger is answered 431 "
        "and the connection closed before the rest is read",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a request head must be complete this long after its first byte (or after "
        "the connection opens); else 408 and the connection is closed",
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0, description="an idle keep-alive connection is closed after this long"
    )
    store_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="how long the tracking store may take to answer a poll before the service "
        "counts it as unreachable (it then retries with backoff)",
    )
    startup_wait_seconds: float = Field(
        15.0,
        ge=0,
        description="how long start-up waits for the first model before listening anyway "
        "(/healthz 200, /readyz 503 until a model loads in the background)",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="intra-op threads per worker; one forward pass of this small network is "
        "faster on one thread, and idle OpenMP threads would spin against request handling",
    )
    # forecaster.methods.network.forward.RUNTIMES (not imported here: it would load torch).
    network_runtime: Literal["onnxruntime", "torch"] = Field(
        "onnxruntime",
        description="what runs the network's forward: its exported graph in ONNX Runtime (on "
        "torch_threads threads; a model without a graph, or whose graph does not match its "
        "weights, falls back to torch and logs why), or the torch network itself",
    )
    forward_batch_max: int = Field(
        64, ge=1, description="most client-history forecasts in one forward pass"
    )
    forward_batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="how long a forward may wait for requests whose inputs are being built; "
        "a request alone never waits",
    )
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins")
    max_history_rows: int = Field(5000, ge=1, description="most rows a client may send")
    max_batch_tickers: int = Field(50, ge=1, description="most tickers in one batch call")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="largest request body accepted")
    prediction_log_url: str | None = Field(
        None, description="SQLAlchemy URL of the prediction log; default SQLite in data_dir"
    )
    prediction_log_durable: bool = Field(
        False,
        description="answer a forecast only once its prediction-log row is committed (else 503);"
        " default: rows are written in batches after the answer",
    )
    prediction_log_durable_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="durable mode: how long a forecast waits for its commit"
    )
    prediction_log_max_age_days: int = Field(
        730, ge=0, description="prediction log rows older than this are deleted; 0: kept for ever"
    )
    prediction_log_max_rows: int = Field(
        5_000_000,
        ge=0,
        description="the prediction log keeps at most this many newest rows; 0: no cap",
    )

    @field_validator("api_key", mode="after")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        """FORECASTER_API_KEY= (set but empty) disables admin: an empty key guards nothing."""
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or mlflow_store(self.data_dir)

    def resolved_prediction_log_url(self) -> str:
        # The field already reads FORECASTER_PREDICTION_LOG_URL; an explicit None means the
        # data directory's log, so the environment is not consulted twice.
        return self.prediction_log_url or prediction_log_store(self.data_dir)

    def data_config(self) -> DataConfig:
        """The history source's settings, as the library's sources take them."""
        yahoo = YahooConfig(retries=self.yahoo_retries, backoff_seconds=self.yahoo_backoff_seconds,
                            timeout_seconds=self.yahoo_timeout_seconds,
                            cache_ttl_hours=self.yahoo_cache_ttl_hours)  # fmt: skip
        return DataConfig(source=self.data_source, data_dir=self.data_dir,
                          auto_adjust=self.auto_adjust, yahoo=yahoo)  # fmt: skip
