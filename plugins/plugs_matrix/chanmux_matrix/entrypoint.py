"""The chanmux-matrix distribution: registers the `matrix` plug type."""

from __future__ import annotations

import chanmux

from .plug import MatrixPlug


@chanmux.hookimpl
def chanmux_plug_types() -> dict[str, type[chanmux.Plug]]:
    return {"matrix": MatrixPlug}


STARTER = """\
# chanmux-matrix: one Matrix account (keys: see the chanmux-matrix README).
[plugs.matrix]
type = "matrix"
homeserver = "https://matrix.example.org"   # change to your homeserver
user_id = "@mybridge:example.org"
access_token = "${MATRIX_TOKEN}"   # from the environment; never written to the log
rooms = ["#myproject:example.org"]   # the rooms to join

[channels.matrix]
plug = "matrix"
source = "#myproject:example.org"
"""


@chanmux.hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_starter() -> str:
    return STARTER


@chanmux.hookimpl(optionalhook=True)  # a spec since chanmux 0.2.2
def chanmux_commands() -> list[chanmux.Command]:
    from .commands import COMMANDS

    return COMMANDS
