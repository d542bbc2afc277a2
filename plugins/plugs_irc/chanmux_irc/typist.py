"""Typing notifications sent to IRC (`+typing` on a TAGMSG), throttled as the IRCv3 typing
spec asks: `active` at most every 3 seconds per channel while anyone relayed types there, and
`done` once the last of them stopped. Who types is not shown (the notification comes from the
bridge's nick); a person who never says they stopped is forgotten after a while."""

from __future__ import annotations

import attrs

#: Seconds between two `active` notifications to one channel (the spec: at most every 3 s).
ACTIVE_EVERY = 3.0
#: Seconds after which someone who said they type, and nothing since, no longer counts.
FORGET_AFTER = 30.0
#: Channels followed at most (the least recently changed one is forgotten beyond it).
MAX_CHANNELS = 1000


@attrs.define
class _Channel:
    #: who types, with when they last said so
    typing: dict[str, float] = attrs.field(factory=dict)
    #: when `active` was last sent (None: not since the last `done`)
    sent: float | None = None


class Typists:
    """Who of the relayed people types in which channel, and what to tell IRC about it."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    def change(self, channel: str, who: str, active: bool, now: float) -> str | None:
        """`who` started (`active`) or stopped typing in `channel` at `now` (seconds): the
        `+typing` value to send there now (`"active"`, `"done"`), or None for nothing."""
        state = self._channels.get(channel)
        if state is None:
            if not active:
                return None
            if len(self._channels) >= MAX_CHANNELS:
                self._channels.pop(next(iter(self._channels)))
            state = self._channels[channel] = _Channel()
        for name in [n for n, at in state.typing.items() if now - at > FORGET_AFTER]:
            del state.typing[name]
        if active:
            state.typing[who] = now
            if state.sent is None or now - state.sent >= ACTIVE_EVERY:
                state.sent = now
                return "active"
            return None
        state.typing.pop(who, None)
        if state.typing:
            return None
        del self._channels[channel]
        return "done" if state.sent is not None else None

    def unsent(self, channel: str) -> None:
        """The `active` just returned for `channel` could not be sent: try again next time."""
        state = self._channels.get(channel)
        if state is not None:
            state.sent = None


__all__ = ["ACTIVE_EVERY", "Typists"]
