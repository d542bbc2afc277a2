"""chanmux's own plugin distribution: the in-memory plug and the recorder hook types."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .memory import MemoryPlug
from .recorder import RecorderHook


@hookimpl
def chanmux_plug_types() -> dict[str, type]:
    return {"memory": MemoryPlug}


@hookimpl
def chanmux_hook_types() -> dict[str, type]:
    return {"recorder": RecorderHook}
