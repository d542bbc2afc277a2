"""The chanmux-irc distribution: registers the `irc` plug type."""

from __future__ import annotations

import chanmux

from .plug import IRCPlug


@chanmux.hookimpl
def chanmux_plug_types() -> dict[str, type[chanmux.Plug]]:
    return {"irc": IRCPlug}
