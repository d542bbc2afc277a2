"""A hook type for the tests, `typing-recorder`: keeps every `on_typing` the host fans out, so a
test sees what a plug reported of people typing (loaded with `make_host(modules=)`)."""

from __future__ import annotations

from typing import Any

import anyio

from chanmux import Hook, hookimpl


class TypingRecorder(Hook):
    """Keeps (channel source, username, active) for each `on_typing`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str | None, bool]] = []
        self._changed = anyio.Event()

    async def on_typing(self, channel: Any, user: Any, active: bool) -> None:
        self.seen.append((channel.source, user.username, active))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_count(self, count: int, timeout: float = 10.0) -> list[tuple[str, str | None, bool]]:
        with anyio.fail_after(timeout):
            while len(self.seen) < count:
                await self._changed.wait()
        return list(self.seen)


@hookimpl
def chanmux_hook_types() -> dict[str, type]:
    return {"typing-recorder": TypingRecorder}
