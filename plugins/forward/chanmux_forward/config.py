"""The keys of a `type = "forward"` hook."""

from __future__ import annotations

from typing import Any

import attrs

from chanmux import Overrides, validators


@attrs.frozen
class Group:
    """Sources given by plug (any channel of it) or by channel name, forwarded to `to`."""

    to: list[Any]
    plugs: list[str] = attrs.field(factory=list)
    channels: list[Any] = attrs.field(factory=list)


@attrs.frozen
class ForwardConfig:
    """Keys of a `type = "forward"` hook (see the README for each).

    In a virtual ForwardHook (built by code, not the config file) channel entries may be
    `Channel` objects instead of `[channels]` names.
    """

    channels: dict[str, list[str]] = attrs.field(factory=dict)
    groups: dict[str, Group] = attrs.field(factory=dict)
    users: list[str] | None = None
    joins: bool = False
    renames: bool = False
    edits: bool = True
    deletes: bool = True
    name_format: str = "{name}"
    no_highlight: bool = False
    cache_size: int = 10_000
    persist: bool = True
    retry_limit: int = 10_000
    retry_max_age: float = attrs.field(default=0.0, validator=validators.non_negative)
    plugs: dict[str, Overrides] = attrs.field(factory=dict)
