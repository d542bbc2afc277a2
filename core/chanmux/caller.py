"""The one way the host calls async hook specifications on plug and hook instances.

pluggy knows nothing of coroutines, so the host never awaits what ``pm.hook.x()`` returns.
It walks the implementations pluggy registered for a spec and awaits each itself, isolating
failures and hangs per implementation: one that raises is logged with its plugin name and
skipped; one that hangs is cancelled after a timeout. Inside a lane (while hooks handle a
received message) the lane's watchdog enforces the timeout; elsewhere a cancel scope does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Coroutine
from typing import Any

import anyio
import pluggy

from .lanes import current_lane

log = logging.getLogger("chanmux.host")


class NoOwner(LookupError):
    """No plugin implements an owner-routed spec for the named plug."""


class HookCaller:
    """Calls async specs: `fanout` (all), `chain` (in order, passing a value), `owner` (one)."""

    def __init__(self, pm: pluggy.PluginManager, timeout: float = 30.0) -> None:
        self.pm = pm
        self.timeout = timeout
        self._cache: dict[str, list[pluggy.HookImpl]] = {}
        self._owners: dict[tuple[str, str], pluggy.HookImpl | None] = {}
        self._argnames: dict[pluggy.HookImpl, frozenset[str]] = {}

    def invalidate(self) -> None:
        """Forget cached implementation lists (after registering or unregistering a plugin)."""
        self._cache.clear()
        self._owners.clear()
        self._argnames.clear()

    def impls(self, spec: str) -> list[pluggy.HookImpl]:
        """Implementations of `spec` on instances, in priority order (lower first)."""
        found = self._cache.get(spec)
        if found is None:
            found = sorted(getattr(self.pm.hook, spec).get_hookimpls(),
                           key=lambda i: getattr(i.plugin, "priority", 0))
            self._cache[spec] = found
        return found

    def _args(self, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments `impl` takes of `kwargs` (all of them, most often: no copy then)."""
        names = self._argnames.get(impl)
        if names is None:
            names = self._argnames[impl] = frozenset(impl.argnames)
        if kwargs.keys() <= names:
            return kwargs
        return {name: kwargs[name] for name in impl.argnames if name in kwargs}

    async def _call(self, spec: str, impl: pluggy.HookImpl, kwargs: dict[str, Any],
                    timeout: float | None) -> Any:
        """Await one implementation under the lane watchdog or a timeout; exceptions pass."""
        lane = current_lane.get()
        if lane is not None:
            # in a lane even a put is bounded by the hook timeout: the lane must move on (a
            # nested budget: see the contract in lanes.py)
            before = lane.budget((impl.plugin_name, spec), self.timeout)
            try:
                return await impl.function(**self._args(impl, kwargs))
            finally:
                lane.doing = before
        limit = self.timeout if timeout is None else timeout
        with anyio.fail_after(limit if limit > 0 else math.inf):
            return await impl.function(**self._args(impl, kwargs))

    async def _one(self, spec: str, impl: pluggy.HookImpl, kwargs: dict[str, Any],
                   timeout: float | None) -> tuple[bool, Any]:
        """(True, result), or (False, None) after logging the implementation's failure."""
        try:
            return True, await self._call(spec, impl, kwargs, timeout)
        except TimeoutError:
            log.error("%s: %s timed out after %ss and was cancelled", impl.plugin_name, spec,
                      self.timeout if timeout is None else timeout)
        except Exception:  # one failing implementation never stops the rest
            log.exception("%s: %s failed", impl.plugin_name, spec)
        return False, None

    async def fanout(self, spec: str, *, timeout: float | None = None,
                     **kwargs: Any) -> list[tuple[str, Any]]:
        """Await every implementation concurrently; (plugin name, result) of those that
        succeeded, in priority order."""
        impls = self.impls(spec)
        if len(impls) <= 1:
            results = [await self._one(spec, impl, kwargs, timeout) for impl in impls]
        else:
            results = [(False, None)] * len(impls)

            async def run(index: int, impl: pluggy.HookImpl) -> None:
                results[index] = await self._one(spec, impl, kwargs, timeout)

            async with anyio.create_task_group() as tg:
                for index, impl in enumerate(impls):
                    tg.start_soon(run, index, impl)
        return [(impl.plugin_name, r[1]) for impl, r in zip(impls, results, strict=True) if r[0]]

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
        key = (spec, owner)
        try:
            return self._owners[key]
        except KeyError:
            pass
        found = next((impl for impl in self.impls(spec) if impl.plugin_name == owner), None)
        self._owners[key] = found
        return found

    def owner(self, spec: str, owner: str, *, timeout: float | None = None,
              **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """The call of the implementation registered under `owner`, to await (a coroutine
        of `_call`, not one of its own: one frame less per put). Its exceptions reach the
        caller (who decides what a failed put means); a hang raises TimeoutError; NoOwner
        is raised at once."""
        impl = self.owner_impl(spec, owner)
        if impl is None:
            raise NoOwner(f"{owner}: does not implement {spec}")
        return self._call(spec, impl, kwargs, timeout)
