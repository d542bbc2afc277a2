"""Building and running a host from a config mapping inside a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..host import Host
from ..registry import Registry, load_registry


def make_registry(modules: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Every installed plugin distribution, plus extra `(name, module)` pairs."""
    return _registry(modules)


def _registry(modules: Iterable[tuple[str, Any]], disable: Iterable[str] = ()) -> Registry:
    registry = load_registry(disable=disable, source="plugins.disable")
    for name, module in modules:
        registry.add_module(module, name)
    return registry


def make_host(config: Mapping[str, Any], *, path: str | Path | None = None,
              modules: Iterable[tuple[str, Any]] = (), env: Mapping[str, str] | None = None) -> Host:
    """A host (not yet running) from a config mapping, as if read from a TOML file at `path`
    (the plugins its `plugins.disable` names are not loaded, as with `chanmux run`)."""
    registry = _registry(modules, config_mod.disabled_of(config))
    parsed = config_mod.parse(config, registry, path=Path(path) if path else None, env=env or {})
    return Host(parsed, registry)


@asynccontextmanager
async def run_host(config: Mapping[str, Any] | Host, *, path: str | Path | None = None,
                   modules: Iterable[tuple[str, Any]] = (), wait_ready: float | None = 30.0,
                   env: Mapping[str, str] | None = None) -> AsyncIterator[Host]:
    """Run a host for the duration of the block; every plug is connected when it starts."""
    host = config if isinstance(config, Host) else make_host(config, path=path, modules=modules, env=env)
    async with host.running_context(wait_ready=wait_ready) as running:
        yield running
