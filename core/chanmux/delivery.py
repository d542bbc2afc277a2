"""Delivery holds: how a plug learns that everything a received message caused is done.

A plug that can fetch messages again after a restart (Matrix's /sync position, a log it
reads) must not move its resume point past a message whose copies are still on their way:
killed at that moment, the bridge would never deliver them. So it passes `on_handled` to
`Host.receive`, and the host calls it once the message is *done*: every hook has handled it,
and every hold taken on its behalf has been released.

A hold is taken by whatever keeps part of the work for later: a relay hook that queues a copy
for a slow channel, a plug whose `put` queues lines behind flood control. It is released when
that work is finished: delivered, given up on, or saved in the database to be finished after
the next start. Holds are found through a context variable, so a hook or plug only calls
`Host.hold()`; work done later in another task runs inside `hold.active()` so that holds taken
there (by a plug's `put`) count for the same message.

Messages received without `on_handled` cost nothing: `Host.hold()` returns a hold that does
nothing.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("chanmux.host")


class Tracker:
    """Counts what is still outstanding for one received message; calls back at zero."""

    __slots__ = ("count", "callback", "what")

    def __init__(self, callback: Callable[[], Any], what: str = "") -> None:
        self.count = 1  # the hooks' own handling, released by the lane when they are done
        self.callback = callback
        self.what = what

    def done(self) -> None:
        self.count -= 1
        if self.count == 0:
            callback, self.callback = self.callback, None  # type: ignore[assignment]
            if callback is None:
                return
            try:
                callback()
            except Exception:  # a plug's callback never stops the caller
                log.exception("%s: on_handled callback failed", self.what or "a message")


#: The message being worked for in the current task, if its plug asked to know when it is done.
current: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("chanmux_delivery",
                                                                         default=None)


class Hold:
    """Part of the work for a received message, kept for later; `release()` when finished.

    Releasing twice is harmless; a hold taken where no message is tracked does nothing.
    """

    __slots__ = ("_tracker",)

    def __init__(self, tracker: Tracker | None) -> None:
        self._tracker = tracker
        if tracker is not None:
            tracker.count += 1

    @property
    def held(self) -> bool:
        """True until released (always False for a hold that tracks nothing)."""
        return self._tracker is not None

    def release(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.done()

    def active(self) -> _Active:
        """Run a block on behalf of this hold's message: holds taken inside count for it
        (`with hold.active(): ...`)."""
        return _Active(self._tracker)


class _Active:
    """`Hold.active()`: a context manager of its own rather than a generator's (made for each
    copy delivered, so a third of the cost)."""

    __slots__ = ("_tracker", "_token")

    def __init__(self, tracker: Tracker | None) -> None:
        self._tracker = tracker

    def __enter__(self) -> None:
        self._token = current.set(self._tracker)

    def __exit__(self, *exc: object) -> None:
        current.reset(self._token)


def hold() -> Hold:
    """A hold on the message the current task works for (one that does nothing if none)."""
    return Hold(current.get())


__all__ = ["Hold", "Tracker", "current", "hold"]
