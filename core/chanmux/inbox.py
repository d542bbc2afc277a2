"""The inbox: what a plug without history received, kept until it is done.

IRC keeps no history: a line the bridge has read from the server but not yet relayed exists
nowhere else, so a bridge killed at that moment (SIGKILL, a crash, the power) would lose it.
For plugs that say so (`Plug.journal = True`), the host writes each received message to the
table `chanmux_inbox` as it arrives (batched with the other writes) and deletes it once the
message is done: every hook handled it and every copy was delivered or kept for the next
start (`on_handled`, see `chanmux.delivery`). What is still there at the next start was not
done: the host hands it to the hooks again before the plugs connect, marked
`SentMessage.replayed`, so a relay sends it only where no copy of it is known yet.

Membership events (joins, leaves) are not kept: losing one in a crash costs nothing anyone
misses, and floods of them would cost a write each.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import codec
from .model import Channel, SentMessage
from .store import BatchWriter, Store, insert_new

log = logging.getLogger("chanmux.host")

metadata = sa.MetaData()

inbox = sa.Table(
    "chanmux_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plug", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(500), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.UniqueConstraint("plug", "channel", "message", name="uq_chanmux_inbox"),
)

_COLUMNS = ("plug", "channel", "message", "data", "received")
Key = tuple[str, str, str]


def _row(sent: SentMessage) -> tuple[Any, ...]:
    data = codec.dump(sent)
    data["at"] = sent.at.isoformat()
    if sent.revision is not None:
        data["revision"] = sent.revision
    return (sent.channel.plug, sent.channel.source, sent.id,
            json.dumps(data, separators=(",", ":"), ensure_ascii=False), time.time())


def _sent(plug: str, channel: str, message: str, data: str) -> SentMessage:
    fields = json.loads(data)
    at, revision = fields.pop("at", None), fields.pop("revision", None)
    extra: dict[str, Any] = {"replayed": True, "revision": revision}
    if at:
        extra["at"] = datetime.fromisoformat(at)
    return SentMessage.of(codec.load(fields), id=message, channel=Channel(plug, channel), **extra)


def _apply(conn: Connection, ops: list[tuple[str, Key, tuple[Any, ...] | None]]) -> None:
    """Write a batch of keeps and dones in order: a message kept and done within the batch
    costs nothing."""
    added: dict[Key, tuple[Any, ...]] = {}
    gone: list[Key] = []
    for op, key, row in ops:
        if op == "keep":
            added[key] = row  # type: ignore[assignment]
        elif key in added:
            del added[key]
        else:
            gone.append(key)
    c = inbox.c
    if gone:
        conn.execute(inbox.delete().where(c.plug == sa.bindparam("p"), c.channel == sa.bindparam("c"),
                                          c.message == sa.bindparam("m")),
                     [{"p": p, "c": ch, "m": m} for p, ch, m in gone])
    insert_new(conn, inbox, _COLUMNS, list(added.values()))


class Inbox:
    """The host's inbox (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writer: BatchWriter[tuple[str, Key, tuple[Any, ...] | None]] = store.writer(
            "inbox", _apply)

    def keep(self, sent: SentMessage) -> Callable[[], None]:
        """Keep `sent` until the returned callback (its `on_handled`) is called."""
        key = sent.key
        self.writer.add(("keep", key, _row(sent)))
        return lambda: self.writer.add(("done", key, None))

    def done(self, key: Key) -> Callable[[], None]:
        """The `on_handled` of a message handed over again (its row is stored already)."""
        return lambda: self.writer.add(("done", key, None))

    async def load(self) -> list[SentMessage]:
        """What is still kept, oldest first (rows that cannot be read are dropped, said)."""

        def read(conn: Connection) -> list[tuple[str, str, str, str]]:
            c = inbox.c
            return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                sa.select(c.plug, c.channel, c.message, c.data).order_by(c.id))]

        found = []
        for plug, channel, message, data in await self.store.transaction(read):
            try:
                found.append(_sent(plug, channel, message, data))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("a message kept from the last run (%s in %s:%s) cannot be read "
                            "(%s); dropped", message, plug, channel, exc)
                self.writer.add(("done", (plug, channel, message), None))
        return found


__all__ = ["Inbox", "inbox", "metadata"]
