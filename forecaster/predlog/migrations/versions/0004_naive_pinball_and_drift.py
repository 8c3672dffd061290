"""Live pinball of the naive random walk on the same days, and the drift verdict.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.add_column(sa.Column("naive_pinball", sa.Float, nullable=True))
        batch.add_column(sa.Column("drift_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.drop_column("drift_reason")
        batch.drop_column("naive_pinball")
