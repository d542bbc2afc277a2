"""The chanmux-sync distribution: the `sync` hook type and its database tables."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import sqlalchemy as sa

from chanmux import Hook, hookimpl

from .hook import SyncHook
from .store import metadata


@hookimpl
def chanmux_hook_types() -> dict[str, type[Hook]]:
    return {"sync": SyncHook}


@hookimpl
def chanmux_metadata() -> sa.MetaData:
    return metadata


@hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_starter(channels: list[str]) -> str:
    linked = ", ".join(f'"{name}"' for name in channels)
    if len(channels) < 2:
        return ("# chanmux-sync joins channels on any networks into one conversation; with two\n"
                "# channels configured above, link them like this:\n"
                "# [hooks.sync]\n# type = \"sync\"\n# [hooks.sync.channels]\n"
                "# myproject = [\"irc\", \"matrix\"]\n")
    return f"""\
# chanmux-sync joins channels on any networks into one conversation: what is said in one
# appears in the others, with edits, deletes and replies (keys: see the chanmux-sync README).
[hooks.sync]
type = "sync"
name_format = "{{name}}"      # how authors are shown on the other side

[hooks.sync.channels]
myproject = [{linked}]      # a label and the channels it joins
"""


@hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_examples() -> dict[str, Any]:
    folder = files(__package__) / "examples"
    return {"irc-matrix": folder / "irc-matrix.toml", "three-way": folder / "three-way.toml"}
