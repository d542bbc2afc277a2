"""The keys of a `type = "sync"` hook, and how per-plug and per-label overrides combine."""

from __future__ import annotations

from typing import Any

import attrs

from chanmux import NameFormat, Overrides, validators



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


@attrs.frozen
class Policy:
    """What a copy sent to one plug for one label does: the result of resolving overrides."""

    name: NameFormat
    joins: bool
    renames: bool
    edits: bool
    deletes: bool


def resolve(config: Any, label: str | None, plug: str) -> dict[str, Any]:
    """Effective values of the overridable keys for copies to `plug` in `label`."""
    values = {f.name: getattr(config, f.name) for f in attrs.fields(Overrides)}
    layers = [getattr(config, "labels", {}).get(label) if label is not None else None,
              config.plugs.get(plug)]
    for layer in layers:
        if layer is None:
            continue
        for f in attrs.fields(Overrides):
            value = getattr(layer, f.name)
            if value is not None:
                values[f.name] = value
    return values
