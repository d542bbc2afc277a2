"""The chanmux-irc distribution: registers the `irc` plug type and its database table."""

from __future__ import annotations

import sqlalchemy as sa

import chanmux

from .plug import IRCPlug
from .store import metadata


@chanmux.hookimpl
def chanmux_plug_types() -> dict[str, type[chanmux.Plug]]:
    return {"irc": IRCPlug}


@chanmux.hookimpl
def chanmux_metadata() -> sa.MetaData:
    return metadata
