"""Every served quantile and the implied volatility, so logged forecasts can be scored.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("quantiles", sa.Text, nullable=True))
        batch.add_column(sa.Column("volatility", sa.Float, nullable=True))
    # Scoring looks logged forecasts up by the day they are for.
    op.create_index("ix_predictions_target_date", "predictions", ["target_date"])


def downgrade() -> None:
    op.drop_index("ix_predictions_target_date", "predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("volatility")
        batch.drop_column("quantiles")
