"""The chanmux-forward distribution: the `forward` hook type (it keeps no database tables)."""

from __future__ import annotations

from chanmux import Hook, hookimpl

from .hook import ForwardHook


@hookimpl
def chanmux_hook_types() -> dict[str, type[Hook]]:
    return {"forward": ForwardHook}
