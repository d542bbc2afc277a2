"""The inbox: what a plug without history received, kept until it is done.

IRC keeps no history: a line the bridge has read from the server but not yet relayed exists
nowhere else, so a bridge killed at that moment (SIGKILL, a crash, the power) would lose it.
For plugs that say so (`Plug.journal = True`), the host writes each received message to its
journal (`chanmux.journal`, owner "inbox") as it arrives, batched with the other writes, and
deletes it once the message is done: every hook handled it and every copy was delivered or kept for the next
start (`on_handled`, see `chanmux.delivery`). What is still there at the next start was not
done: the host hands it to the hooks again before the plugs connect, marked
`SentMessage.replayed`, so a relay sends it only where no copy of it is known yet.

Membership events (joins, leaves) are not kept: losing one in a crash costs nothing anyone
misses, and floods of them would cost a write each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import codec
from .journal import Journal
from .model import Channel, SentMessage
from .store import Store

log = logging.getLogger("chanmux.host")

Key = tuple[str, str, str]


def _key(key: Key) -> str:
    return json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)


def _data(sent: SentMessage) -> dict[str, Any]:
    data = codec.dump(sent)
    data["at"] = sent.at.isoformat()
    if sent.revision is not None:
        data["revision"] = sent.revision
    return data


def _sent(key: Any, data: Any) -> SentMessage:
    plug, channel, message = key
    fields = dict(data)
    at, revision = fields.pop("at", None), fields.pop("revision", None)
    extra: dict[str, Any] = {"replayed": True, "revision": revision}
    if at:
        extra["at"] = datetime.fromisoformat(at)
    return SentMessage.of(codec.load(fields), id=message, channel=Channel(plug, channel), **extra)


class Inbox:
    """The host's inbox (see the module docstring), a `Journal` owned by "inbox"."""

    def __init__(self, store: Store) -> None:
        self.journal = Journal(store, "inbox")

    def keep(self, sent: SentMessage) -> Callable[[], None]:
        """Keep `sent` until the returned callback (its `on_handled`) is called."""
        return self.journal.keep(_key(sent.key), _data(sent))

    def done(self, key: Key) -> Callable[[], None]:
        """The `on_handled` of a message handed over again (it is kept already)."""
        text = _key(key)
        return lambda: self.journal.forget(text)

    async def load(self) -> list[SentMessage]:
        """What is still kept, oldest first (what cannot be read is dropped, said)."""
        found = []
        for text, data in await self.journal.load():
            try:
                found.append(_sent(json.loads(text), data))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("a message kept from the last run (%s) cannot be read (%s); dropped",
                            text, exc)
                self.journal.forget(text)
        return found


__all__ = ["Inbox"]
