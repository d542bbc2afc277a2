"""Journals: work that exists nowhere else, kept in the database until it is done.

Some work lives only in the bridge's memory for a while: a line read from an IRC server and
not yet relayed (IRC keeps no history), a line queued behind IRC flood control. Killed at that
moment (SIGKILL, a crash, the power), the bridge would lose it. A `Journal` writes each such
item to the table `chanmux_journal` as it is made (batched with the other writes: an item kept
and done within one batch costs nothing) and deletes it when it is done; what is still there at
the next start was not done, and its owner takes it up again (at least once, never lost). The
table is one of core's, on `chanmux.store.metadata` (schema history: chanmux.migrations).

The host keeps one for what plugs without history receive (its inbox, `Plug.journal`); a plug
keeps its own for work of its own (chanmux-irc's unconfirmed lines).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import BatchWriter, Store, insert_new, metadata

journal_table = sa.Table(
    "chanmux_journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("key", sa.String(1000), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.UniqueConstraint("owner", "key", name="uq_chanmux_journal"),
)

_COLUMNS = ("owner", "key", "data", "at")
Op = tuple[bool, str, str | None]  # (keep?, key, JSON data when kept)


class Journal:
    """One owner's journal in the host database (see the module docstring)."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner
        self.writer: BatchWriter[Op] = store.writer(f"journal:{owner}", self._apply)

    def keep(self, key: str, data: Any) -> Callable[[], None]:
        """Keep `data` (JSON-ready) under `key` until the returned callback is called."""
        self.writer.add((True, key, json.dumps(data, separators=(",", ":"), ensure_ascii=False)))
        return lambda: self.forget(key)

    def forget(self, key: str) -> None:
        """The item under `key` is done."""
        self.writer.add((False, key, None))

    def _apply(self, conn: Connection, ops: list[Op]) -> None:
        kept: dict[str, str] = {}
        gone: list[str] = []
        for keep, key, data in ops:
            if keep:
                kept[key] = data  # type: ignore[assignment]
            elif key in kept:
                del kept[key]
            else:
                gone.append(key)
        c = journal_table.c
        if gone:
            conn.execute(journal_table.delete().where(c.owner == self.owner,
                                                      c.key == sa.bindparam("k")),
                         [{"k": key} for key in gone])
        now = time.time()
        insert_new(conn, journal_table, _COLUMNS,
                   [(self.owner, key, data, now) for key, data in kept.items()])

    async def load(self) -> list[tuple[str, Any]]:
        """What is still kept, oldest first: (key, data); data that is not JSON is None."""

        def read(conn: Connection) -> list[tuple[str, str]]:
            c = journal_table.c
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(c.key, c.data).where(c.owner == self.owner).order_by(c.id))]

        out: list[tuple[str, Any]] = []
        for key, data in await self.store.transaction(read):
            try:
                out.append((key, json.loads(data)))
            except ValueError:
                out.append((key, None))
        return out


__all__ = ["Journal", "journal_table", "metadata"]
