"""The chanmux-forward distribution: the `forward` hook type and its table of copies."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import sqlalchemy as sa

from chanmux import Hook, hookimpl

from .hook import ForwardHook
from .store import metadata


@hookimpl
def chanmux_hook_types() -> dict[str, type[Hook]]:
    return {"forward": ForwardHook}


@hookimpl
def chanmux_metadata() -> sa.MetaData:
    return metadata


@hookimpl(optionalhook=True)  # a spec since chanmux 0.2.0
def chanmux_examples() -> dict[str, Any]:
    return {"announcements": files(__package__) / "examples" / "announcements.toml"}
