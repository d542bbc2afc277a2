"""The chanmux-sync distribution: the `sync` hook type and its database tables."""

from __future__ import annotations

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
