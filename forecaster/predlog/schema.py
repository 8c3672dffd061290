"""The prediction log's tables as the latest migration leaves them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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
)
Index("ix_predictions_target_date", predictions.c.target_date)
