"""The chanmux-matrix distribution: registers the `matrix` plug type."""

from __future__ import annotations

import chanmux

from .plug import MatrixPlug


@chanmux.hookimpl
def chanmux_plug_types() -> dict[str, type[chanmux.Plug]]:
    return {"matrix": MatrixPlug}
