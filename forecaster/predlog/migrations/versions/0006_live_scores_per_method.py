"""Live scores per serving method: "*" rows are every method, as every row was before.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.add_column(
            sa.Column("method", sa.String(16), nullable=False, server_default=sa.text("'*'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("live_scores") as batch:
        batch.drop_column("method")
