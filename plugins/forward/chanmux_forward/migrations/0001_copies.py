"""forward_copy: which copies each forwarded message has (new in chanmux-forward 0.2.0).

Revision ID: chanmux_forward_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_forward_0001"
down_revision = None
branch_labels = ("chanmux-forward",)
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("forward_copy"):
        return  # made by a development build before schema versions
    op.create_table(
        "forward_copy",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hook", sa.String(200), nullable=False),
        sa.Column("origin_plug", sa.String(200), nullable=False),
        sa.Column("origin_channel", sa.String(500), nullable=False),
        sa.Column("origin_message", sa.String(500), nullable=False),
        sa.Column("plug", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(500), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.UniqueConstraint("hook", "plug", "channel", "message", name="uq_forward_copy"),
    )
    op.create_index("ix_forward_copy_origin", "forward_copy",
                    ["hook", "origin_plug", "origin_channel", "origin_message"])


def downgrade() -> None:
    op.drop_index("ix_forward_copy_origin", table_name="forward_copy")
    op.drop_table("forward_copy")
