"""The keys of a `type = "sync"` hook (its overrides resolve through `chanmux.Policies`)."""

from __future__ import annotations

import attrs

from chanmux import Overrides, validators


@attrs.frozen
class SyncConfig:
    """Keys of a `type = "sync"` hook (see the README for each)."""

    channels: dict[str, list[str]]
    plug: str | None = None
    titles: dict[str, str] = attrs.field(factory=dict)
    joins: bool = True
    renames: bool = True
    edits: bool = True
    deletes: bool = True
    name_format: str = "{name}"
    no_highlight: bool = False
    quote_length: int = 120
    cache_size: int = 10_000
    persist: bool = True
    retry_limit: int = 10_000
    retry_max_age: float = attrs.field(default=0.0, validator=validators.non_negative)
    plugs: dict[str, Overrides] = attrs.field(factory=dict)
    labels: dict[str, Overrides] = attrs.field(factory=dict)
