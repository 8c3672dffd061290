"""Which live_scores window is the headline one, so readers (the service's gauges) take it from
the monitor's configuration instead of a constant of their own. Rows stored before were all
computed with the 250-forecast headline.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.add_column(
            sa.Column("headline", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute(sa.text('UPDATE live_scores SET headline = ("window" = 250)'))


def downgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.drop_column("headline")
