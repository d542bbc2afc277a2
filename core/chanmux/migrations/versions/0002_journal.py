"""chanmux_journal: work kept until it is done (new in chanmux 0.2.0).

Revision ID: chanmux_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_0002"
down_revision = "chanmux_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("chanmux_journal"):
        return  # made by a development build before schema versions
    op.create_table(
        "chanmux_journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("owner", "key", name="uq_chanmux_journal"),
    )


def downgrade() -> None:
    op.drop_table("chanmux_journal")
