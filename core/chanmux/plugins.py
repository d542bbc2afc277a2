"""Finding plugin distributions through entry points and registering plugins with pluggy."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import logging
from typing import Any

import attrs
import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from . import __version__, hookspecs
from .plug import Hook, Plug

ENTRY_POINT_GROUP = "chanmux.plugins"
log = logging.getLogger("chanmux.plugins")
_ASYNC_SPECS = {n for n, f in hookspecs.spec_functions().items() if f.chanmux_call != "register"}


class LoadError(Exception):
    """A plugin could not be loaded; the message is one line naming it and why."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, which also takes plug and hook instances' plain methods named like an
    async spec as implementations, so plug authors need no decorators."""

    def __init__(self) -> None:
        super().__init__("chanmux")
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and isinstance(plugin, (Plug, Hook)) and name in _ASYNC_SPECS:
            method = getattr(type(plugin), name, None)
            base = Plug if isinstance(plugin, Plug) else Hook
            if inspect.iscoroutinefunction(method) and method is not getattr(base, name, None):
                opts = {"wrapper": False, "hookwrapper": False, "optionalhook": False,
                        "tryfirst": False, "trylast": False, "specname": None}
        return opts


@attrs.define
class Distribution:
    """One installed plugin package and what it provides."""

    name: str
    version: str
    entry_point: str
    module: Any = None
    plug_types: dict[str, type] = attrs.field(factory=dict)
    hook_types: dict[str, type] = attrs.field(factory=dict)
    specs: list[str] = attrs.field(factory=list)
    error: str | None = None


def _core_requirement(dist: md.Distribution | None) -> Requirement | None:
    if dist is None:
        return None
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == "chanmux" and not req.marker:
            return req
    return None


@attrs.define
class Registry:
    """Every plugin distribution found, with the plug and hook types they provide."""

    pm: PluginManager
    distributions: list[Distribution] = attrs.field(factory=list)
    plug_types: dict[str, type[Plug]] = attrs.field(factory=dict)
    hook_types: dict[str, type[Hook]] = attrs.field(factory=dict)
    type_owner: dict[str, str] = attrs.field(factory=dict)

    @property
    def errors(self) -> list[str]:
        return [f"{d.name}: {d.error}" for d in self.distributions if d.error]

    def add_module(self, module: Any, name: str, version: str = "", entry_point: str = "") -> Distribution:
        """Register a distribution's plugin module (used by entry points and by tests)."""
        dist = Distribution(name=name, version=version, entry_point=entry_point, module=module)
        self.distributions.append(dist)
        try:
            self.pm.register(module, name=f"dist:{name}")
            dist.specs = sorted({impl_name for impl_name in dir(module)
                                 if impl_name in hookspecs.spec_functions()
                                 and self.pm.parse_hookimpl_opts(module, impl_name) is not None})
            for kind, spec, target in (("plug", "chanmux_plug_types", self.plug_types),
                                       ("hook", "chanmux_hook_types", self.hook_types)):
                impl = getattr(module, spec, None)
                if impl is None:
                    continue
                provided = impl() or {}
                for type_name, cls in provided.items():
                    base = Plug if kind == "plug" else Hook
                    if not (isinstance(cls, type) and issubclass(cls, base)):
                        raise LoadError(f"{kind} type {type_name!r} is not a {base.__name__} subclass")
                    key = f"{kind}:{type_name}"
                    if key in self.type_owner and self.type_owner[key] != name:
                        raise LoadError(f"{kind} type {type_name!r} is also provided by "
                                        f"{self.type_owner[key]}")
                    (dist.plug_types if kind == "plug" else dist.hook_types)[type_name] = cls
            for type_name, cls in dist.plug_types.items():
                self.plug_types[type_name] = cls
                self.type_owner[f"plug:{type_name}"] = name
            for type_name, cls in dist.hook_types.items():
                self.hook_types[type_name] = cls
                self.type_owner[f"hook:{type_name}"] = name
        except Exception as exc:
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            dist.error = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
            log.error("plugin %s not loaded: %s", name, dist.error)
        return dist

    def load_entry_points(self) -> None:
        """Load every distribution of the entry-point group; one failing never stops the rest."""
        core = Version(__version__)
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_meta = ep.dist
            name = dist_meta.metadata["Name"] if dist_meta else ep.name
            version = dist_meta.version if dist_meta else ""
            req = _core_requirement(dist_meta)
            if req is not None and req.specifier and not req.specifier.contains(core, prereleases=True):
                error = (f"needs chanmux{req.specifier} but chanmux {__version__} is installed; "
                         f"install a {name} release made for chanmux {__version__}")
                self.distributions.append(Distribution(name, version, ep.value, error=error))
                log.error("plugin %s not loaded: %s", name, error)
                continue
            try:
                module = ep.load()
            except Exception as exc:
                error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                self.distributions.append(Distribution(name, version, ep.value, error=error))
                log.error("plugin %s not loaded: %s", name, error)
                continue
            self.add_module(module, name, version, ep.value)

    def provider_hint(self, kind: str, type_name: str) -> str:
        """Which package would provide an unknown type, as a hint for error messages."""
        known = {"plug": {"irc": "chanmux-irc", "matrix": "chanmux-matrix"},
                 "hook": {"sync": "chanmux-sync", "forward": "chanmux-forward"}}
        package = known.get(kind, {}).get(type_name)
        return f"install {package}" if package else "is the plugin package installed?"

    def check_pending(self) -> list[str]:
        """One line for every implementation of a spec that does not exist."""
        problems = []
        for name in self.pm.hook.__dict__:
            caller = getattr(self.pm.hook, name)
            if caller.spec is None:
                for impl in caller.get_hookimpls():
                    plugin = impl.plugin_name.removeprefix("dist:")
                    problems.append(f"{plugin}: implements {name!r}, which is not a chanmux "
                                    f"hook specification")
        return problems


def load_registry(entry_points: bool = True) -> Registry:
    registry = Registry(pm=PluginManager())
    if entry_points:
        registry.load_entry_points()
    return registry
