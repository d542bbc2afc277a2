"""The chanmux-irc distribution: registers the `irc` plug type and its database table."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

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


STARTER = """\
# chanmux-irc: one nick on one IRC network (keys: see the chanmux-irc README).
[plugs.libera]
type = "irc"
server = "irc.libera.chat"   # change to your network
port = 6697                  # TLS, certificate verified
nick = "mybridge"            # change to your bridge's nick
join = ["#myproject"]        # the channels to join
# sasl_username = "mybridge"
# sasl_password = "${LIBERA_PASSWORD}"

[channels.irc]
plug = "libera"
source = "#myproject"
"""


@chanmux.hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_starter() -> str:
    return STARTER


@chanmux.hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_examples() -> dict[str, Any]:
    return {"libera-sasl": files(__package__) / "examples" / "libera-sasl.toml"}
