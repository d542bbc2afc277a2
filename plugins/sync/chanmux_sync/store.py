"""Sync state in the host database: one SyncBackRef row for every copy of every synced message.

Rows sharing a `key` are copies of one message; a row is unique on (hook, plug, channel,
message), so any copy resolves to all the others, also after a restart. Rows are written in
batches through the host's BatchWriter; reads happen only when the memory cache misses.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chanmux import Receipt, SentMessage, insert_new

if TYPE_CHECKING:
    from .hook import SyncHook

#: The tables; their schema history is in chanmux_sync.migrations (run by the host at start).
metadata = sa.MetaData(info={"migrations": "chanmux_sync.migrations"})

backrefs = sa.Table(
    "sync_backref",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hook", sa.String(200), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("plug", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(500), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("origin", sa.Boolean, nullable=False, default=False),
    sa.Column("author", sa.String(500), nullable=True),
    sa.Column("excerpt", sa.Text, nullable=True),
    sa.UniqueConstraint("hook", "plug", "channel", "message", name="uq_sync_backref_copy"),
    sa.Index("ix_sync_backref_key", "hook", "key"),
)

#: (plug, channel source) -> rows of the copies in that channel, oldest first
Mapping = dict[tuple[str, str], list["SyncBackRef"]]


@attrs.frozen
class SyncBackRef:
    """One of a set of references, each pointing to a representation of a source message.

    `key` is shared by every copy of one message; `plug`, `channel` and `message` say where
    this copy is; `origin` marks the copy the message was first said as, which also keeps the
    author and a text excerpt so replies can quote it after a restart.
    """

    key: str
    plug: str
    channel: str
    message: str
    origin: bool = False
    author: str | None = None
    excerpt: str | None = None

    table = backrefs

    def row(self, hook: str) -> tuple[Any, ...]:
        """This reference as a row tuple for `write_rows`."""
        return (hook, self.key, self.plug, self.channel, self.message, self.origin, self.author,
                self.excerpt)

    @classmethod
    async def map_from_sent(cls, sent: Receipt | SentMessage, *, hook: SyncHook) -> tuple[str, Mapping]:
        """Take a `Receipt` and attempt to resolve it to a key from a previously synced
        reference, then defer to `map_from_key` to make the mapping with the key.

        `hook` names the sync whose references to search (its database and name). Raises
        KeyError if no reference holds the message.
        """
        where = (sent.channel.plug, sent.channel.source, str(sent.id))
        found = await hook.host.store.transaction(lambda conn: lookup_copy(conn, hook.name, *where))
        if found is None:
            raise KeyError(sent.key)
        return found

    @classmethod
    async def map_from_key(cls, key: str, *, hook: SyncHook) -> tuple[str, Mapping]:
        """For a given key, fetch all message references synced from the corresponding source,
        and group them by plug and channel. Raises KeyError if the key is unknown."""
        mapped = await hook.host.store.transaction(lambda conn: lookup_key(conn, hook.name, key))
        if not mapped:
            raise KeyError(key)
        return key, mapped


_COLUMNS = (backrefs.c.key, backrefs.c.plug, backrefs.c.channel, backrefs.c.message,
            backrefs.c.origin, backrefs.c.author, backrefs.c.excerpt)


def lookup_key(conn: Connection, hook: str, key: str) -> Mapping:
    """Every copy of the message `key`, grouped by (plug, channel) (blocking)."""
    mapped: Mapping = defaultdict(list)
    rows = conn.execute(sa.select(*_COLUMNS).where(backrefs.c.hook == hook, backrefs.c.key == key)
                        .order_by(backrefs.c.id))
    for row in rows:
        mapped[(row.plug, row.channel)].append(SyncBackRef(*row))
    return dict(mapped)


def lookup_copy(conn: Connection, hook: str, plug: str, channel: str,
                message: str) -> tuple[str, Mapping] | None:
    """The key and every copy of the message that has a copy at (plug, channel, message)."""
    key = conn.execute(sa.select(backrefs.c.key).where(
        backrefs.c.hook == hook, backrefs.c.plug == plug, backrefs.c.channel == channel,
        backrefs.c.message == message)).scalar()
    if key is None:
        return None
    return key, lookup_key(conn, hook, key)


def has_rows(conn: Connection, hook: str) -> bool:
    return conn.execute(sa.select(backrefs.c.id).where(backrefs.c.hook == hook).limit(1)).first() is not None


#: Column order of the row tuples the cache hands to `write_rows`.
ROW_COLUMNS = ("hook", "key", "plug", "channel", "message", "origin", "author", "excerpt")


#: Columns of an excerpt update: an original was edited (its row gets the new excerpt).
EXCERPT_COLUMNS = ("hook", "plug", "channel", "message", "author", "excerpt")


def write_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert a batch of row tuples (`ROW_COLUMNS`) in one statement, a copy already stored
    left alone; then apply the excerpt updates among them (`EXCERPT_COLUMNS`: an original
    edited since), in order."""
    inserts = [row for row in rows if len(row) == len(ROW_COLUMNS)]
    updates = [{f"v_{name}": value for name, value in zip(EXCERPT_COLUMNS, row, strict=True)}
               for row in rows if len(row) == len(EXCERPT_COLUMNS)]
    insert_new(conn, backrefs, ROW_COLUMNS, inserts)
    if updates:
        c = backrefs.c
        conn.execute(backrefs.update().where(
            c.hook == sa.bindparam("v_hook"), c.plug == sa.bindparam("v_plug"),
            c.channel == sa.bindparam("v_channel"), c.message == sa.bindparam("v_message"))
            .values(author=sa.bindparam("v_author"), excerpt=sa.bindparam("v_excerpt")), updates)
