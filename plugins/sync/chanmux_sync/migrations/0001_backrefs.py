"""sync_backref: every copy of every synced message (the schema of chanmux-sync 0.1.0).

Revision ID: chanmux_sync_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_sync_0001"
down_revision = None
branch_labels = ("chanmux-sync",)
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("sync_backref"):
        return  # made by chanmux-sync 0.1.0, which kept no schema version
    op.create_table(
        "sync_backref",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hook", sa.String(200), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("plug", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(500), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("origin", sa.Boolean, nullable=False),
        sa.Column("author", sa.String(500), nullable=True),
        sa.Column("excerpt", sa.Text, nullable=True),
        sa.UniqueConstraint("hook", "plug", "channel", "message", name="uq_sync_backref_copy"),
    )
    op.create_index("ix_sync_backref_key", "sync_backref", ["hook", "key"])


def downgrade() -> None:
    op.drop_index("ix_sync_backref_key", table_name="sync_backref")
    op.drop_table("sync_backref")
