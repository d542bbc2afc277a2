"""Where to resume /sync after a restart: never past a message that is not yet done.

Each /sync response is a batch. Its events are handed to the host with `on_handled`, which
the host calls once the message is done: every hook has handled it and every copy is
delivered (or saved by its plug for the next start). The resume point moves to a batch's
`next_batch` token only when that batch and every earlier one are done. Events already done in
later batches are remembered by id, so that after a restart, when the homeserver sends them
again, they are skipped rather than relayed twice.

What is saved: {"user_id", "token", "done": [event ids]}. Killed at any moment, the bridge
fetches again from `token` and relays each event not in `done`: nothing fetched is lost, and
the only repeat possible is a message whose copy was sent in the moment before the kill.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any


class Batch:
    """One /sync response: how many of its messages are not done, and which ones are."""

    __slots__ = ("token", "pending", "done", "closed")

    def __init__(self) -> None:
        self.token: str | None = None
        self.pending = 0
        self.done: list[str] = []
        self.closed = False


class Positions:
    """The resume point and what is done beyond it; `changed` is called whenever either moves."""

    def __init__(self, token: str | None, done: Iterable[str] = (),
                 changed: Callable[[], Any] | None = None) -> None:
        self.token = token
        self.skip = set(done)  # done in the last run after `token`: not to be relayed again
        self.batches: deque[Batch] = deque()
        self.tracked: set[str] = set()  # handed to the host in the batches not yet passed
        self.last_done: str | None = None  # the event whose message was done last (for logs)
        self.changed = changed

    def begin(self) -> Batch:
        """Start a batch: the events of the /sync response about to be processed."""
        batch = Batch()
        self.batches.append(batch)
        return batch

    def known(self, event_id: Any) -> bool:
        """True if the event was handed to the host already: done in the last run and
        fetched again after the restart, or in a batch cut short and fetched again."""
        return isinstance(event_id, str) and (event_id in self.tracked or event_id in self.skip)

    def track(self, batch: Batch, event_id: str) -> Callable[[], None]:
        """The `on_handled` callback for one event of `batch`."""
        batch.pending += 1
        self.tracked.add(event_id)

        def done() -> None:
            batch.pending -= 1
            batch.done.append(event_id)
            self.last_done = event_id
            self._advance()

        return done

    def end(self, batch: Batch, token: Any) -> None:
        """Every event of `batch` has been handed over; `token` is its `next_batch` (None
        for a batch cut short, which then only holds back the resume point until done)."""
        batch.token = token if isinstance(token, str) else None
        batch.closed = True
        self._advance()

    def reset(self, token: str | None, done: Iterable[str] = ()) -> None:
        """Start afresh from `token` (a first start, or a position the homeserver refused), or
        from a saved resume point and what was `done` beyond it."""
        self.token = token
        self.skip = set(done)
        self.batches.clear()
        self.tracked.clear()
        if self.changed is not None:
            self.changed()

    def _advance(self) -> None:
        batches = self.batches
        while batches and batches[0].closed and batches[0].pending == 0:
            batch = batches.popleft()
            self.tracked.difference_update(batch.done)
            if batch.token is not None:
                self.token = batch.token
                self.skip = set()
            else:  # cut short: its events come again in the next batch, not to be relayed
                self.skip.update(batch.done)
        if self.changed is not None:
            self.changed()

    def state(self) -> tuple[str | None, list[str]]:
        """What to save: the resume point, and the events done beyond it."""
        done = [event_id for batch in self.batches for event_id in batch.done]
        return self.token, sorted(self.skip) + done if self.skip else done

    @property
    def waiting(self) -> int:
        """Messages handed to the host and not done yet."""
        return sum(batch.pending for batch in self.batches)


__all__ = ["Batch", "Positions"]
