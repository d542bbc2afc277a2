"""A hook that records what the host hands to hooks, for tests to wait on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import attrs

from ..model import Message, SentMessage
from ..plug import Hook


@attrs.define
class Received:
    sent: SentMessage
    source: Message
    primary: bool

    @property
    def is_echo(self) -> bool:
        """True when the host knew this as the network's copy of something it put."""
        return self.source is not self.sent


class RecorderHook(Hook):
    """`type = "recorder"`: keeps every `on_receive` call in `received`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[Received] = []
        self.states: list[tuple[str, str, str | None]] = []
        self._changed = anyio.Event()

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        self.received.append(Received(sent, source, primary))
        self._changed.set()
        self._changed = anyio.Event()

    async def on_plug_state(self, plug: Any, state: str, reason: str | None) -> None:
        self.states.append((plug.name, state, reason))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[Received], Any], timeout: float = 10.0) -> Received:
        """The first recorded message matching `predicate`, waiting up to `timeout` for it."""
        seen = 0  # each message is looked at once, however many arrive meanwhile
        with anyio.fail_after(timeout):
            while True:
                received = self.received
                while seen < len(received):
                    item = received[seen]
                    seen += 1
                    if predicate(item):
                        return item
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        with anyio.fail_after(timeout):
            while not (result := condition()):
                await self._changed.wait()
            return result
