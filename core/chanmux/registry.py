"""The plugin registry: finding plugin distributions through entry points (`chanmux.plugins`)
and registering their modules, plugs and hooks with pluggy."""

from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from . import hookspecs
from ._version import __version__
from .plug import Hook, Plug

ENTRY_POINT_GROUP = "chanmux.plugins"
#: Comma-separated plugin package names not to load, like pytest's `-p no:NAME`.
DISABLE_ENV = "CHANMUX_DISABLE_PLUGINS"
#: The distribution whose entry point is the test kit (the memory plug and recorder hook).
TEST_KIT = "chanmux-testing"
#: The first-party packages and the types they provide, for hints when a type is missing.
KNOWN_TYPES = {"plug": {"irc": "chanmux-irc", "matrix": "chanmux-matrix"},
               "hook": {"sync": "chanmux-sync", "forward": "chanmux-forward"}}
log = logging.getLogger("chanmux.registry")
_ASYNC_SPECS = {n for n, f in hookspecs.spec_functions().items() if f.chanmux_call != "register"}  # type: ignore[attr-defined]


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


def misspelt_specs(component: Plug | Hook) -> list[tuple[str, str]]:
    """`(method, spec)` for each public method of a plug or hook class that is not a hook
    specification but is spelt nearly like one (`on_recieve`): it would never be called."""
    base = Plug if isinstance(component, Plug) else Hook
    found = []
    for klass in type(component).__mro__:
        if issubclass(base, klass):  # Plug/Hook themselves and what they derive from
            continue
        for name, value in vars(klass).items():
            if (name.startswith("_") or name in _ASYNC_SPECS or hasattr(base, name)
                    or not callable(value)):
                continue
            close = [spec for spec in difflib.get_close_matches(name, _ASYNC_SPECS, n=3,
                                                                 cutoff=0.8)
                     if abs(len(spec) - len(name)) <= 2]  # `receive` is not `on_receive`
            if close and (name, close[0]) not in found:
                found.append((name, close[0]))
    return found


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
    #: Why it was not loaded on purpose (``CHANMUX_DISABLE_PLUGINS``, ``plugins.disable``).
    disabled: str | None = None
    #: True when its required chanmux range excludes the installed core (see `error`).
    refused: bool = False
    #: The entry point's name (a distribution may be disabled by it as by its own name).
    ep_name: str = ""

    @property
    def test_kit(self) -> bool:
        """The test kit's memory plug and recorder: for tests and trying chanmux out."""
        return self.entry_point.startswith("chanmux.testing")

    def matches(self, name: str) -> bool:
        """True if `name` is this distribution's name (in any spelling) or its entry point's."""
        wanted = canonicalize_name(name)
        return wanted in {canonicalize_name(self.name), canonicalize_name(self.ep_name or self.name)}


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

    def find(self, name: str) -> Distribution | None:
        """The distribution named `name` (its package or entry-point name), loaded or not."""
        return next((d for d in self.distributions if d.matches(name)), None)

    def add_module(self, module: Any, name: str, version: str = "", entry_point: str = "") -> Distribution:
        """Register a distribution's plugin module (used by entry points and by tests)."""
        dist = Distribution(name=name, version=version, entry_point=entry_point, module=module)
        self.distributions.append(dist)
        try:
            self.pm.register(module, name=f"dist:{name}")
            dist.specs = sorted({impl_name for impl_name in dir(module)
                                 if impl_name in hookspecs.spec_functions()
                                 and self.pm.parse_hookimpl_opts(module, impl_name) is not None})
            for kind, spec in (("plug", "chanmux_plug_types"), ("hook", "chanmux_hook_types")):
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
        except Exception as exc:  # noqa: BLE001 - a plugin's own code failing is its load error
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            dist.error = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
        return dist

    def load_entry_points(self, disable: Mapping[str, str] | None = None) -> None:
        """Load every distribution of the entry-point group; one failing never stops the rest.

        `disable` maps plugin names not to load (not even import) to where that was said.
        Failures are kept in `distributions` (see `errors`), not logged: the command line
        reports each once, where its output goes."""
        disable = {canonicalize_name(k): v for k, v in (disable or {}).items()}
        core = Version(__version__)
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_meta = ep.dist
            name = dist_meta.metadata["Name"] if dist_meta else ep.name
            version = dist_meta.version if dist_meta else ""
            entry = Distribution(name, version, ep.value, ep_name=ep.name)
            said = next((v for k, v in disable.items() if entry.matches(k)), None)
            if said is not None:
                entry.disabled = said
                self.distributions.append(entry)
                continue
            req = _core_requirement(dist_meta)
            if req is not None and req.specifier and not req.specifier.contains(core, prereleases=True):
                entry.error = f"needs chanmux{req.specifier} but chanmux {__version__} is installed"
                entry.refused = True
                self.distributions.append(entry)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - one plugin failing to import is reported
                entry.error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                self.distributions.append(entry)
                continue
            self.add_module(module, name, version, ep.value).ep_name = ep.name

    def provider_hint(self, kind: str, type_name: str) -> str:
        """What to do about a type no loaded plugin provides, for error messages: the package
        that provides it is disabled, refused by its chanmux range, broken, or to install."""
        package = KNOWN_TYPES.get(kind, {}).get(type_name)
        dist = self.find(package) if package else None
        if dist is not None and dist.disabled:
            return f"{dist.name} is installed but disabled ({dist.disabled})"
        if dist is not None and dist.refused:
            return f"{dist.name} is installed but was refused: {dist.error}"
        if dist is not None and dist.error:
            return f"{dist.name} is installed but failed to load: {dist.error}"
        if package:
            return f"install {package}"
        unloaded = [d for d in self.distributions if d.disabled or d.error]
        if unloaded:
            return "not loaded, which may provide it: " + "; ".join(
                f"{d.name} ({'disabled: ' + d.disabled if d.disabled else d.error})" for d in unloaded)
        return "is the plugin package installed?"

    def check_pending(self) -> list[str]:
        """One line for every implementation of a spec that does not exist."""
        problems = []
        for name in self.pm.hook.__dict__:
            caller = getattr(self.pm.hook, name)
            if caller.spec is None:
                for impl in caller.get_hookimpls():
                    if impl.optionalhook:  # for a spec of a later core, e.g. chanmux_starter
                        continue
                    plugin = impl.plugin_name.removeprefix("dist:")
                    problems.append(f"{plugin}: implements {name!r}, which is not a chanmux "
                                    f"hook specification")
        return problems


def disabled_by_env(env: Mapping[str, str] | None = None) -> list[str]:
    """The plugin names `CHANMUX_DISABLE_PLUGINS` lists (comma-separated)."""
    value = (os.environ if env is None else env).get(DISABLE_ENV, "")
    return [n.strip() for n in value.split(",") if n.strip()]


def load_registry(entry_points: bool = True, disable: Iterable[str] = (), *,
                  source: str = "plugins.disable", env: Mapping[str, str] | None = None) -> Registry:
    """Every installed plugin distribution, except those `CHANMUX_DISABLE_PLUGINS` or
    `disable` (from the config's `plugins.disable`, named by `source`) name."""
    registry = Registry(pm=PluginManager())
    if entry_points:
        said = {name: DISABLE_ENV for name in disabled_by_env(env)}
        said.update({name: source for name in disable if name not in said})
        registry.load_entry_points(said)
    return registry
