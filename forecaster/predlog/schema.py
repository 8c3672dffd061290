"""The prediction log's tables as the latest migration leaves them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("ticker", String(32), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("target_date", Date, nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("predicted_close", Float, nullable=False),
    Column("predicted_return", Float, nullable=False),
    Column("lower", Float, nullable=False),
    Column("upper", Float, nullable=False),
    Column("interval_level", Float, nullable=False),
    Column("last_close", Float, nullable=False),
    Column("history_source", String(16), nullable=False),
    # Since revision 0002: every served quantile (JSON: level -> price) and the implied
    # one-day volatility, so a forecast can be scored later; NULL on rows logged before.
    Column("quantiles", Text, nullable=True),
    Column("volatility", Float, nullable=True),
    # Since revision 0005: the forecaster that answered (lstm, garch or naive); NULL before.
    Column("method", String(16), nullable=True),
)
Index("ix_predictions_target_date", predictions.c.target_date)

# Since revision 0003: one realised close per logged forecast whose target day has passed.
outcomes = Table(
    "outcomes",
    metadata,
    Column(
        "prediction_id", Integer, ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("actual_close", Float, nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=False),
)

# Since revision 0003: what each `forecaster monitor` run measured, per version and ticker.
live_scores = Table(
    "live_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("ticker", String(32), nullable=False),  # "*": every ticker
    Column("window", Integer, nullable=False),  # last N resolved forecasts
    Column("resolved", Integer, nullable=False),
    Column("mae", Float, nullable=True),
    Column("naive_mae", Float, nullable=True),
    Column("pinball", Float, nullable=True),
    Column("coverage", Text, nullable=True),  # JSON: interval level -> share inside
    Column("kupiec_pvalue", Text, nullable=True),  # JSON: interval level -> p
    # Since revision 0004: the naive random walk's pinball on the same days, and why the
    # version's live record calls for a retrain (None: it does not).
    Column("naive_pinball", Float, nullable=True),
    Column("drift_reason", Text, nullable=True),
    # Since revision 0006: the serving method scored (lstm, garch, naive); "*": all of them.
    Column("method", String(16), nullable=False, server_default=text("'*'")),
    # Since revision 0007: the window the monitor's configuration made the headline one.
    Column("headline", Boolean, nullable=False, server_default=false()),
)
