"""The one way the host calls async hook specifications on plug and hook instances.

pluggy knows nothing of coroutines, so the host never awaits what ``pm.hook.x()`` returns.
It walks the implementations pluggy registered for a spec and awaits each itself, isolating
failures and hangs per implementation: a hook that raises or hangs is logged with its plugin
name, given up on after a timeout, and cannot stop the others or the host.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import anyio
import pluggy

log = logging.getLogger("chanmux.host")


class NoOwner(LookupError):
    """No plugin implements an owner-routed spec for the named plug."""


class HookCaller:
    """Calls async specs: `fanout` (all, concurrently), `chain` (in order), `owner` (one)."""

    def __init__(self, pm: pluggy.PluginManager, timeout: float = 30.0) -> None:
        self.pm = pm
        self.timeout = timeout

    def impls(self, spec: str) -> list[pluggy.HookImpl]:
        """Implementations of `spec` on instances, in priority order (lower first)."""
        impls = getattr(self.pm.hook, spec).get_hookimpls()
        return sorted(impls, key=lambda i: getattr(i.plugin, "priority", 0))

    @staticmethod
    def _args(impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {name: kwargs[name] for name in impl.argnames if name in kwargs}

    async def _one(self, spec: str, impl: pluggy.HookImpl, kwargs: dict[str, Any],
                   timeout: float | None) -> tuple[bool, Any]:
        """Await one implementation; (True, result) or (False, None) after logging its failure."""
        limit = self.timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit if limit and limit > 0 else math.inf):
                return True, await impl.function(**self._args(impl, kwargs))
        except TimeoutError:
            log.error("%s: %s timed out after %ss and was cancelled", impl.plugin_name, spec, limit)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            log.exception("%s: %s failed", impl.plugin_name, spec)
        return False, None

    async def fanout(self, spec: str, *, timeout: float | None = None,
                     **kwargs: Any) -> list[tuple[str, Any]]:
        """Await every implementation concurrently; return (plugin name, result) of those
        that succeeded, in priority order."""
        impls = self.impls(spec)
        if not impls:
            return []
        if len(impls) == 1:
            ok, result = await self._one(spec, impls[0], kwargs, timeout)
            return [(impls[0].plugin_name, result)] if ok else []
        results: list[tuple[bool, Any] | None] = [None] * len(impls)

        async def run(index: int, impl: pluggy.HookImpl) -> None:
            results[index] = await self._one(spec, impl, kwargs, timeout)

        async with anyio.create_task_group() as tg:
            for index, impl in enumerate(impls):
                tg.start_soon(run, index, impl)
        return [(impl.plugin_name, r[1]) for impl, r in zip(impls, results) if r and r[0]]

    async def chain(self, spec: str, value_arg: str, *, timeout: float | None = None,
                    **kwargs: Any) -> Any:
        """Pass `kwargs[value_arg]` through every implementation in order; a failing one is
        skipped (the value goes on unchanged); None from one stops the chain."""
        for impl in self.impls(spec):
            ok, result = await self._one(spec, impl, kwargs, timeout)
            if not ok:
                continue
            if result is None:
                log.debug("%s: %s dropped the message", impl.plugin_name, spec)
                return None
            kwargs[value_arg] = result
        return kwargs[value_arg]

    def owner_impl(self, spec: str, owner: str) -> pluggy.HookImpl | None:
        for impl in getattr(self.pm.hook, spec).get_hookimpls():
            if impl.plugin_name == owner:
                return impl
        return None

    async def owner(self, spec: str, owner: str, *, timeout: float | None = None,
                    **kwargs: Any) -> Any:
        """Await the implementation registered under `owner`. Its exceptions reach the caller
        (who decides what a failed put means); a hang raises TimeoutError."""
        impl = self.owner_impl(spec, owner)
        if impl is None:
            raise NoOwner(f"{owner}: does not implement {spec}")
        limit = self.timeout if timeout is None else timeout
        with anyio.fail_after(limit if limit and limit > 0 else math.inf):
            return await impl.function(**self._args(impl, kwargs))


def names(impls: Sequence[pluggy.HookImpl]) -> list[str]:
    return [i.plugin_name for i in impls]
