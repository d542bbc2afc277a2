"""chanmux_state: what plugins keep across restarts (the schema of chanmux 0.1.0).

Revision ID: chanmux_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_0001"
down_revision = None
branch_labels = ("chanmux",)
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("chanmux_state"):
        return  # made by chanmux 0.1.0, which kept no schema version
    op.create_table(
        "chanmux_state",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chanmux_state")
