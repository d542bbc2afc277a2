"""irc_own_msgid: server msgids of the bridge's own lines (new in chanmux-irc 0.2.0).

Revision ID: chanmux_irc_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_irc_0001"
down_revision = None
branch_labels = ("chanmux-irc",)
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("irc_own_msgid"):
        return  # made by a development build before schema versions
    op.create_table(
        "irc_own_msgid",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plug", sa.String(200), nullable=False),
        sa.Column("msgid", sa.String(500), nullable=False),
        sa.Column("receipt", sa.String(200), nullable=False),
        sa.UniqueConstraint("plug", "msgid", name="uq_irc_own_msgid"),
    )
    op.create_index("ix_irc_own_msgid_age", "irc_own_msgid", ["plug", "id"])


def downgrade() -> None:
    op.drop_index("ix_irc_own_msgid_age", table_name="irc_own_msgid")
    op.drop_table("irc_own_msgid")
