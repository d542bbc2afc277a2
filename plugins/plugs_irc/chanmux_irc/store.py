"""The plug's table in the host database: server msgids of the bridge's own lines.

With echo-message and labeled-response the server tells the msgid of each line we said; a
reply on IRC (`+draft/reply`) names that msgid, and the plug maps it back to its own receipt
id. The newest `text_cache` pairs stay in memory; the same number per plug is kept in the
database (written in batches), so replies to lines said before a restart still map.
"""

from __future__ import annotations

from collections import deque

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chanmux import BatchWriter, Store, insert_new

from .state import Bounded

#: The tables; their schema history is in chanmux_irc.migrations (run by the host at start).
metadata = sa.MetaData(info={"migrations": "chanmux_irc.migrations"})

own_msgids = sa.Table(
    "irc_own_msgid",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plug", sa.String(200), nullable=False),
    sa.Column("msgid", sa.String(500), nullable=False),
    sa.Column("receipt", sa.String(200), nullable=False),
    sa.UniqueConstraint("plug", "msgid", name="uq_irc_own_msgid"),
    sa.Index("ix_irc_own_msgid_age", "plug", "id"),
)


def write_rows(conn: Connection, rows: list[tuple[str, str, str]], keep: int) -> None:
    """Insert (plug, msgid, receipt) rows (a msgid already stored is left alone), then drop
    each plug's rows beyond its newest `keep` (blocking)."""
    if not rows:
        return
    insert_new(conn, own_msgids, ("plug", "msgid", "receipt"), rows)
    t = own_msgids
    for plug in {row[0] for row in rows}:
        oldest_kept = (sa.select(t.c.id).where(t.c.plug == plug).order_by(t.c.id.desc())
                       .limit(1).offset(keep - 1).scalar_subquery())
        conn.execute(t.delete().where(t.c.plug == plug, t.c.id < oldest_kept))


def read_receipt(conn: Connection, plug: str, msgid: str) -> str | None:
    """Our receipt id for the server msgid `msgid`, if stored (blocking)."""
    return conn.execute(sa.select(own_msgids.c.receipt).where(
        own_msgids.c.plug == plug, own_msgids.c.msgid == msgid)).scalar()


def read_msgid(conn: Connection, plug: str, receipt: str) -> str | None:
    """The server msgid of our line `receipt`, if stored (blocking)."""
    return conn.execute(sa.select(own_msgids.c.msgid).where(
        own_msgids.c.plug == plug, own_msgids.c.receipt == receipt).limit(1)).scalar()


class OwnMsgids:
    """Server msgid -> our receipt id for the plug's own lines: the newest `size` in memory,
    as many in the database. Setting one never waits (the row goes to the host's batch
    writer); `fetch` falls back to the database for what memory no longer holds."""

    def __init__(self, plug: str, size: int, store: Store) -> None:
        self.plug = plug
        self.size = size
        self.store = store
        self.memory: Bounded[str, str] = Bounded(size)
        #: the other way round: our receipt id -> the server's msgid (to react to or REDACT
        #: one of our lines)
        self.by_receipt: Bounded[str, str] = Bounded(size)
        self.writer: BatchWriter[tuple[str, str, str]] | None = (
            store.writer(f"irc:{plug}:msgids", self._write) if size > 0 else None)
        #: once the host has stopped its writers (the plug is closing for good), rows wait
        #: here for `save`
        self.closing = False
        #: rows handed to the writer, rows it wrote, and the newest rows not known written
        self.added = 0
        self.written = 0
        self._unwritten: deque[tuple[str, str, str]] = deque()
        self._held: list[tuple[str, str, str]] = []
        self.reads = 0

    def __setitem__(self, msgid: str, receipt: str) -> None:
        if self.writer is None or self.memory.get(msgid) == receipt:
            return
        self.memory[msgid] = receipt
        self.by_receipt[receipt] = msgid
        row = (self.plug, msgid, receipt)
        if self.closing:
            self._held.append(row)
            return
        self.writer.add(row)
        self.added += 1
        self._unwritten.append(row)
        self._trim()

    def __contains__(self, msgid: object) -> bool:
        return msgid in self.memory

    def __len__(self) -> int:
        return len(self.memory)

    def get(self, msgid: str, default: str | None = None) -> str | None:
        """The receipt id from memory only (never waits)."""
        return self.memory.get(msgid, default)

    async def fetch(self, msgid: str) -> str | None:
        """The receipt id from memory, else from the database (in a worker thread)."""
        found = self.memory.get(msgid)
        if found is not None or self.writer is None:
            return found
        self.reads += 1
        found = await self.store.transaction(lambda conn: read_receipt(conn, self.plug, msgid))
        if found is not None:
            self.memory[msgid] = found
        return found

    async def msgid_of(self, receipt: str) -> str | None:
        """The server's msgid of our line `receipt`: from memory, else from the database."""
        found = self.by_receipt.get(receipt)
        if found is not None or self.writer is None:
            return found
        self.reads += 1
        found = await self.store.transaction(lambda conn: read_msgid(conn, self.plug, receipt))
        if found is not None:
            self.by_receipt[receipt] = found
        return found

    def _write(self, conn: Connection, rows: list[tuple[str, str, str]]) -> None:
        """The batch writer's function (in a worker thread)."""
        write_rows(conn, rows, self.size)
        self.written += len(rows)

    def _trim(self) -> None:
        """Forget rows the writer has written: it keeps their order, so those not yet written
        are always the newest `added - written`."""
        excess = len(self._unwritten) - (self.added - self.written)
        while excess > 0:
            self._unwritten.popleft()
            excess -= 1

    async def save(self) -> int:
        """Write what the batch writer has not (the host stops it before plugs close, and a
        clean close still learns the msgids of its last lines); how many rows. Call it once
        the writer has stopped."""
        self._trim()
        rows = [*self._unwritten, *self._held]
        if not rows:
            return 0
        await self.store.transaction(lambda conn: write_rows(conn, rows, self.size))
        self._unwritten.clear()
        self._held.clear()
        return len(rows)


__all__ = ["OwnMsgids", "metadata", "own_msgids", "read_msgid", "read_receipt", "write_rows"]
