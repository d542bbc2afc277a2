"""Deliveries that failed because a plug was down, kept in order until it is back.

Each holds its message's delivery (`chanmux.Hold`, taken when it is made, in the lane that
handles the message) until it is delivered or dropped, so the plug the message came from does
not move its resume point past it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from chanmux.delivery import Hold, hold

log = logging.getLogger("chanmux.hook.forward")

#: Failures that mean "the plug is not connected now": worth retrying once it is back.
RETRYABLE = (ConnectionError, TimeoutError, OSError)


@attrs.define(eq=False)
class Pending:
    """One delivery to retry: `kind` is put, edit or delete; `ref` the message it belongs to."""

    kind: str
    channel: Any
    msg: Any
    ref: Any = None
    receipt: Any = None
    hold: Hold = attrs.field(factory=hold, repr=False)


class Outbox:
    """Per-plug queues of failed deliveries. While a plug has a queue (or is being drained),
    new deliveries to it join the queue too, so they arrive in order."""

    def __init__(self, owner: str, limit: int) -> None:
        self.owner = owner
        self.limit = max(0, limit)
        self.queues: dict[str, deque[Pending]] = {}
        self.draining: set[str] = set()
        self.dropped = 0

    def holding(self, plug: str) -> bool:
        return plug in self.queues

    def add(self, plug: str, item: Pending) -> None:
        queue = self.queues.setdefault(plug, deque())
        if self.limit and len(queue) >= self.limit:
            queue.popleft().hold.release()
            self.dropped += 1
            log.warning("%s: retry queue for %s is full (%d); dropped the oldest delivery",
                        self.owner, plug, self.limit)
        queue.append(item)

    def replace(self, plug: str, ref: Any, channel: Any, msg: Any) -> bool:
        """Swap the queued put of `ref` to `channel` for a newer revision; False if none."""
        for item in self.queues.get(plug, ()):
            if item.kind == "put" and item.ref is ref and item.channel == channel:
                item.msg = msg
                return True
        return False

    def drop(self, ref: Any) -> None:
        """Forget every queued delivery of `ref` (it was deleted)."""
        for plug, queue in list(self.queues.items()):
            for item in queue:
                if item.ref is ref and item.kind != "delete":
                    item.hold.release()
            kept = deque(item for item in queue if item.ref is not ref or item.kind == "delete")
            if kept:
                self.queues[plug] = kept
            elif plug not in self.draining:
                del self.queues[plug]
            else:
                self.queues[plug] = kept

    def size(self, plug: str | None = None) -> int:
        if plug is not None:
            return len(self.queues.get(plug, ()))
        return sum(len(q) for q in self.queues.values())

    async def drain(self, plug: str, deliver: Callable[[Pending], Awaitable[None]]) -> None:
        """Deliver the plug's queue in order; stop (keeping the rest) at a retryable failure."""
        if plug in self.draining or plug not in self.queues:
            return
        self.draining.add(plug)
        done = 0
        try:
            queue = self.queues[plug]
            while queue:
                item = queue[0]
                try:
                    with item.hold.active():
                        await deliver(item)
                except RETRYABLE as exc:
                    log.warning("%s: %s still unreachable (%s); %d deliveries wait", self.owner,
                                plug, exc, len(queue))
                    return
                except Exception as exc:  # noqa: BLE001 - one bad delivery never blocks the queue
                    log.error("%s: retried delivery to %s failed: %s: %s", self.owner, item.channel,
                              type(exc).__name__, exc)
                if queue and queue[0] is item:
                    queue.popleft()
                item.hold.release()
                done += 1
                queue = self.queues.get(plug, deque())
            self.queues.pop(plug, None)
            if done:
                log.info("%s: delivered %d queued messages to %s", self.owner, done, plug)
        finally:
            self.draining.discard(plug)
