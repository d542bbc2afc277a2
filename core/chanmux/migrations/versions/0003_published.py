"""chanmux_published: texts the bridge serves at a link (new in chanmux 0.2.2).

Revision ID: chanmux_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chanmux_0003"
down_revision = "chanmux_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chanmux_published",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chanmux_published")
