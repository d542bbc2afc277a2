"""The forward hook's table in the host database: which copies each forwarded message has.

One row per copy (hook, the original's plug, channel and id, the copy's plug, channel and id),
written in batches; read back only when an edit or delete concerns a message no longer in
memory (forwarded before a restart, or longer ago than `cache_size` messages).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chanmux import Channel, insert_new

#: The tables; their schema history is in chanmux_forward.migrations (run by the host at start).
metadata = sa.MetaData(info={"migrations": "chanmux_forward.migrations"})

copies = sa.Table(
    "forward_copy",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hook", sa.String(200), nullable=False),
    sa.Column("origin_plug", sa.String(200), nullable=False),
    sa.Column("origin_channel", sa.String(500), nullable=False),
    sa.Column("origin_message", sa.String(500), nullable=False),
    sa.Column("plug", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(500), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.UniqueConstraint("hook", "plug", "channel", "message", name="uq_forward_copy"),
    sa.Index("ix_forward_copy_origin", "hook", "origin_plug", "origin_channel", "origin_message"),
)

#: Column order of the row tuples the hook hands to `write_rows`.
ROW_COLUMNS = ("hook", "origin_plug", "origin_channel", "origin_message", "plug", "channel",
               "message")


def write_rows(conn: Connection, rows: list[tuple[str, ...]]) -> None:
    """Insert a batch of copies (`ROW_COLUMNS`); a copy already stored is left alone."""
    insert_new(conn, copies, ROW_COLUMNS, rows)


def read_copies(conn: Connection, hook: str, origin: tuple[str, str, str]) -> dict[Channel, list[str]]:
    """The copies of the message at `origin` (plug, channel, id), oldest first per channel."""
    c = copies.c
    found: dict[Channel, list[str]] = {}
    for plug, channel, message in conn.execute(
            sa.select(c.plug, c.channel, c.message)
            .where(c.hook == hook, c.origin_plug == origin[0], c.origin_channel == origin[1],
                   c.origin_message == origin[2])
            .order_by(c.id)):
        found.setdefault(Channel(plug, channel), []).append(message)
    return found


__all__ = ["ROW_COLUMNS", "copies", "metadata", "read_copies", "write_rows"]
