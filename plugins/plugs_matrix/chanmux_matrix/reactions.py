"""The reactions the plug sends, so that taking one back redacts the right event.

On Matrix a reaction is an ``m.reaction`` event annotating another event with a key, and it
is taken back by redacting it. A relay asks for a reaction and later for its removal by
(target event, key, who); `Reactions` keeps in memory which event the plug sent for each
(room, target, key, sender) and, when it does not know (after a restart), asks the
homeserver's relations API for the sender's annotation of the target with that key.

Matrix lets one account annotate an event only once per key. Where the bridge account
reacts for everyone of the other networks (the bot mode, or a ghost that cannot join), the
plug sends one reaction for the first person and counts who else reacted with that key; it
takes the reaction back when the last of them did (`join`, `leave`). After a restart the
count is gone, and the next removal takes it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import MatrixClient, MatrixError, q
from .rooms import Bounded

#: (room id, target event id, key, sender): one reaction the plug sent.
Where = tuple[str, str, str, str]
#: Pages of the relations API read to find one reaction (100 reactions each).
MAX_PAGES = 20


def content(target: str, key: str) -> dict[str, Any]:
    """The content of an ``m.reaction`` with `key` on the event `target`."""
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


class Reactions:
    """Which event holds each reaction the plug sent, and who shares one (see the module)."""

    def __init__(self, *, client: Callable[[], MatrixClient], retry_for: float | None,
                 size: int = 10_000) -> None:
        self.client = client
        self.retry_for = retry_for
        self.events: Bounded = Bounded(size)  # Where -> event id
        self.people: Bounded = Bounded(size)  # Where -> who reacted (one sender for many)

    def remember(self, where: Where, event_id: str) -> None:
        self.events[where] = event_id

    def forget(self, where: Where) -> None:
        self.events.pop(where, None)
        self.people.pop(where, None)

    def join(self, where: Where, person: str) -> None:
        """`person` reacted through the one sender of `where`."""
        people = self.people.get(where)
        self.people[where] = (people or set()) | {person}

    def leave(self, where: Where, person: str) -> bool:
        """`person` took their reaction back: True when nobody known still shares it (so it
        is to be redacted)."""
        people = self.people.get(where)
        if people is None:
            return True
        people = people - {person}
        if people:
            self.people[where] = people
            return False
        self.people.pop(where, None)
        return True

    async def find(self, where: Where) -> str | None:
        """The event of the reaction at `where`: known, or found through the relations API
        (None when the sender has no such annotation, or the target is gone)."""
        known = self.events.get(where)
        if known is not None:
            return known
        room_id, target, key, sender = where
        path = (f"/_matrix/client/v1/rooms/{q(room_id)}/relations/{q(target)}"
                f"/m.annotation/m.reaction")
        token: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": 100, **({"from": token} if token else {})}
            try:
                page = await self.client().request("GET", path, params=params,
                                                   retry_for=self.retry_for)
            except MatrixError as exc:
                if exc.status in (403, 404):
                    return None
                raise
            chunk = page.get("chunk") if isinstance(page, dict) else None
            for event in chunk if isinstance(chunk, list) else []:
                if not isinstance(event, dict) or event.get("sender") != sender:
                    continue
                found = event.get("content")
                relates = found.get("m.relates_to") if isinstance(found, dict) else None
                if isinstance(relates, dict) and relates.get("key") == key \
                        and isinstance(event.get("event_id"), str):
                    self.events[where] = event["event_id"]
                    return event["event_id"]
            token = page.get("next_batch") if isinstance(page, dict) else None
            if not isinstance(token, str):
                break
        return None


__all__ = ["Reactions", "Where", "content"]
