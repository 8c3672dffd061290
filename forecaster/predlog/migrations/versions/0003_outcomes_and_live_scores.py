"""Realised outcomes of logged forecasts, and the live scores `forecaster monitor` computes.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column(
            "prediction_id",
            sa.Integer,
            sa.ForeignKey("predictions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("actual_close", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "live_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("ticker", sa.String(32), nullable=False),  # "*": every ticker
        sa.Column("window", sa.Integer, nullable=False),  # last N resolved forecasts
        sa.Column("resolved", sa.Integer, nullable=False),
        sa.Column("mae", sa.Float, nullable=True),
        sa.Column("naive_mae", sa.Float, nullable=True),
        sa.Column("pinball", sa.Float, nullable=True),
        sa.Column("coverage", sa.Text, nullable=True),  # JSON: interval level -> share inside
        sa.Column("kupiec_pvalue", sa.Text, nullable=True),  # JSON: interval level -> p
    )


def downgrade() -> None:
    op.drop_table("live_scores")
    op.drop_table("outcomes")
