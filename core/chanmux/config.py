"""Reading the TOML config: `${ENV}` expansion, then strict structuring with cattrs.

Unknown keys and wrong types are errors, never coerced or ignored, and every error in the
file is reported at once with its path: ``plugs.libera.port: expected an integer, got "x"``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from . import validators as check
from .plug import NoConfig
from .registry import Registry
from .store import check_url

#: The plug type of the stand-ins `chanmux check` puts where a plug's config has problems,
#: so that hooks can still be checked against every name the file configures.
STAND_IN = "chanmux:stand-in"


class ConfigError(Exception):
    """Everything wrong with a config, one `path: problem` line each."""

    def __init__(self, issues: list[tuple[str, str]], source: str | None = None, *,
                 partial: Config | None = None) -> None:
        self.issues = issues
        self.source = source
        #: What could be structured despite the problems (see `parse`), for further checks.
        self.partial = partial
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        lines = [f"{path}: {problem}" if path else problem for path, problem in self.issues]
        if len(lines) == 1:
            return head + lines[0]
        return f"{head}{len(lines)} problems\n" + "\n".join(f"  {line}" for line in lines)


class _Strict(ValueError):
    """A value of the wrong type; the message is what was expected and what was found."""


def _database_url(_inst: Any, _attr: Any, value: str) -> None:
    problem = check_url(value)
    if problem:
        raise ValueError(problem)


@attrs.frozen
class DatabaseConfig:
    """Where the host keeps its state: a SQLite or PostgreSQL SQLAlchemy URL; by default a
    SQLite file beside the config named after it."""

    url: str | None = attrs.field(default=None, validator=attrs.validators.optional(_database_url))
    echo: bool = False


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _levels(_inst: Any, _attr: Any, value: dict[str, str]) -> None:
    for logger, level in value.items():
        if level.upper() not in _LEVELS:
            raise ValueError(f'level of logger "{logger}": expected one of '
                             f"{', '.join(_LEVELS)}, got {_describe(level)}")


@attrs.frozen
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    levels: dict[str, str] = attrs.field(factory=dict, validator=_levels)
    file: str | None = attrs.field(default=None, validator=attrs.validators.optional(check.non_empty))
    #: "text": one line per event, for people; "json": one JSON object per line, for a log
    #: collector (journald, Loki, Elasticsearch)
    format: Literal["text", "json"] = "text"


@attrs.frozen
class HostConfig:
    """Timeouts and limits of the host itself (seconds)."""

    hook_timeout: float = attrs.field(default=30.0, validator=check.positive)
    put_timeout: float = attrs.field(default=120.0, validator=check.positive)
    #: Seconds a plug or hook gets to close, and a plug then to save its state; a plug whose
    #: close has work on the network (sending what is queued, QUIT) keeps it under this.
    close_timeout: float = attrs.field(default=10.0, validator=check.positive)
    reconnect_min: float = attrs.field(default=1.0, validator=check.positive)
    reconnect_max: float = attrs.field(default=300.0, validator=check.positive)
    lanes: int = attrs.field(default=16, validator=check.at_least(1))
    echo_cache: int = attrs.field(default=10_000, validator=check.at_least(1))
    #: Seconds the event loop may be held by one piece of code (nothing else runs meanwhile:
    #: no plug reads, no PING is answered) before a warning names that code; 0: no watchdog.
    loop_block_warning: float = attrs.field(default=1.0, validator=check.non_negative)
    #: Allocations the garbage collector lets pass before its youngest collection (Python's
    #: default is 700 or 2000). Messages on their way are many short-lived objects: at
    #: Python's default a busy bridge spent a fifth of its CPU collecting the same objects
    #: again (benchmarks/relay.py). The host raises the process's threshold to this when it
    #: starts, never lowers it; 0 leaves it as it is. Since 0.2.5.
    gc_threshold: int = attrs.field(default=10_000, validator=check.non_negative)

    def __attrs_post_init__(self) -> None:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError(f"reconnect_max ({self.reconnect_max}) must not be less than "
                             f"reconnect_min ({self.reconnect_min})")


_LOOPBACK = ("127.", "::1", "[::1]", "localhost")


def _listen(_inst: Any, _attr: Any, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f'must be an address and port like "127.0.0.1:9180", got {json.dumps(value)}')


def listen_address(listen: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9180` for IPv6) as the host and port to bind."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    return host.startswith(_LOOPBACK)


@attrs.frozen
class HttpConfig:
    """The HTTP listener: off unless `listen` is set. It serves `/health`, `/metrics`
    (Prometheus) and `/status`, and the routes plugins add (`http_routes`)."""

    listen: str | None = attrs.field(default=None, validator=attrs.validators.optional(_listen))
    #: A secret that `/metrics` and `/status` need (`Authorization: Bearer ...`); required when
    #: `listen` is not a loopback address. `/health` needs none: it names only plugs and states.
    token: str | None = attrs.field(default=None, validator=attrs.validators.optional(check.non_empty))
    #: Where people reach the listener (a reverse proxy in front of it, usually): links the
    #: bridge gives out (a Matrix file for IRC people, a long message's full text) start
    #: with it. Without it no such links are made.
    public_url: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(check.url("http", "https", example="https://bridge.example.org")))
    #: Days a link the bridge gave out keeps working.
    link_days: float = attrs.field(default=7.0, validator=check.positive)

    def __attrs_post_init__(self) -> None:
        if self.public_url and not self.listen:
            raise ValueError("public_url is set but listen is not: links would point at "
                             "nothing; set listen (the address the public_url forwards to)")
        if not self.listen or self.token is not None:
            return
        try:
            _listen(None, None, self.listen)
        except ValueError:
            return  # the key's own check says what is wrong
        if not is_loopback(listen_address(self.listen)[0]):
            raise ValueError(f'listen = "{self.listen}" is reachable from other machines: set '
                             f'token (a secret the metrics and status routes then need), or '
                             f'listen on "127.0.0.1:{listen_address(self.listen)[1]}"')


@attrs.frozen
class PluginsConfig:
    """Which installed plugin packages not to load (as pytest's ``-p no:NAME``); the
    environment variable ``CHANMUX_DISABLE_PLUGINS`` adds to it."""

    disable: list[str] = attrs.field(factory=list)


@attrs.frozen
class ChannelConfig:
    plug: str
    source: str


@attrs.frozen
class PlugEntry:
    type: str
    config: Any
    enabled: bool = True


@attrs.frozen
class HookEntry:
    type: str
    config: Any
    priority: int = 100
    enabled: bool = True


@attrs.frozen
class Config:
    """A whole chanmux config, structured and checked."""

    plugs: dict[str, PlugEntry] = attrs.field(factory=dict)
    channels: dict[str, ChannelConfig] = attrs.field(factory=dict)
    hooks: dict[str, HookEntry] = attrs.field(factory=dict)
    database: DatabaseConfig = DatabaseConfig()
    logging: LoggingConfig = LoggingConfig()
    host: HostConfig = HostConfig()
    plugins: PluginsConfig = PluginsConfig()
    http: HttpConfig = HttpConfig()
    path: Path | None = None

    def database_url(self) -> str:
        """The configured URL, or the embedded default: `<config name>.sqlite` beside it."""
        if self.database.url:
            return self.database.url
        if self.path is None:
            return "sqlite://"
        return f"sqlite:///{self.path.with_suffix('.sqlite')}"


# -- the strict converter --------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _strict(kind: type, expected: str, accept: tuple[type, ...]) -> Any:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise _Strict(f"expected {expected}, got {_describe(value)}")
        if not isinstance(value, accept):
            raise _Strict(f"expected {expected}, got {_describe(value)}")
        return kind(value)

    return structure


def make_converter() -> cattrs.Converter:
    """A cattrs converter that refuses unknown keys and never coerces types."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, "an integer", (int,)))
    conv.register_structure_hook(float, _strict(float, "a number", (int, float)))
    conv.register_structure_hook(str, _strict(str, "a string", (str,)))
    conv.register_structure_hook(bool, _strict(bool, "true or false", (bool,)))

    def literal_hook(value: Any, typ: Any) -> Any:
        options = get_args(typ)
        if value not in options or type(value) is not type(options[0]):
            shown = ", ".join(_describe(o) for o in options)
            raise _Strict(f"expected one of {shown}, got {_describe(value)}")
        return value

    conv.register_structure_hook_func(lambda t: get_origin(t) is Literal, literal_hook)

    def dict_check(value: Any, typ: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Strict(f"expected a table, got {_describe(value)}")
        key_type, value_type = get_args(typ) or (str, Any)
        out, errors = {}, []
        for key, item in value.items():
            try:
                out[conv.structure(key, key_type)] = conv.structure(item, value_type)
            except Exception as exc:  # noqa: BLE001 - collected and reported with the key
                exc.__notes__ = [*getattr(exc, "__notes__", []),
                                 AttributeValidationNote(f"key {key!r}", key, value_type)]
                errors.append(exc)
        if errors:
            raise ClassValidationError(f"while structuring {typ}", errors, dict)
        return out

    conv.register_structure_hook_func(lambda t: get_origin(t) is dict or t is dict, dict_check)

    def list_check(value: Any, typ: Any) -> Any:
        if not isinstance(value, list):
            raise _Strict(f"expected an array, got {_describe(value)}")
        (item_type,) = get_args(typ) or (Any,)
        out, errors = [], []
        for index, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type))
            except Exception as exc:  # noqa: BLE001 - collected and reported with the index
                exc.__notes__ = [*getattr(exc, "__notes__", []),
                                 IterableValidationNote(f"index {index}", index, item_type)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"while structuring {typ}", errors, list)
        return out

    conv.register_structure_hook_func(lambda t: get_origin(t) is list or t is list, list_check)
    conv.register_structure_hook(Any, lambda v, _: v)
    return conv


converter = make_converter()


def _field_names(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []


def _issues(exc: BaseException, path: str) -> Iterator[tuple[str, str]]:
    """Walk a cattrs error tree into (dotted path, problem) pairs."""
    if isinstance(exc, ForbiddenExtraKeysError):
        names = _field_names(exc.cl)
        for key in sorted(exc.extra_fields):
            hint = difflib.get_close_matches(key, names, n=1)
            more = f' (did you mean "{hint[0]}"?)' if hint else (
                f" (known keys: {', '.join(names)})" if names else "")
            yield (_join(path, key), f"unknown key{more}")
        return
    if isinstance(exc, (ClassValidationError, IterableValidationError)) or isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    sub_path = _join(path, name)
                elif index is not None:
                    sub_path = f"{path}[{index}]" if not isinstance(index, str) else _join(path, index)
            yield from _issues(sub, sub_path)
        return
    if isinstance(exc, KeyError):
        yield (path, f"missing required key {exc.args[0]!r}" if exc.args else "missing key")
        return
    if isinstance(exc, _Strict):
        yield (path, str(exc))
        return
    yield (path, str(exc) or type(exc).__name__)


def _join(path: str, key: Any) -> str:
    key = str(key)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = f'"{key}"'
    return f"{path}.{key}" if path else key


def structure(data: Any, cls: type, path: str) -> tuple[Any, list[tuple[str, str]]]:
    """Structure `data` into `cls`; (result or None, every problem with its path)."""
    value, issues = _structure(data, cls, path)
    return (None, issues) if issues else (value, [])


def _structure(data: Any, cls: type, path: str) -> tuple[Any, list[tuple[str, str]]]:
    """(value, issues): `value` is the structured object whenever every type is right, even
    if its validators found problems; None when cattrs could not build it. When it could not,
    the keys that had no problem are still structured one by one and validated, so a wrong
    type never hides a bad value elsewhere in the same table."""
    if attrs.has(cls) and not isinstance(data, Mapping):
        return None, [(path, f"expected a table, got {_describe(data)}")]
    try:
        with attrs.validators.disabled():
            value = converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every cattrs failure becomes a report line
        issues = []
        for where, problem in _issues(exc, path):
            if problem.startswith("missing required key") and where != path:
                where = where.rsplit(".", 1)[0]
            issues.append((where, problem))
        reported = {where for where, _ in issues}
        for issue in _salvage(data, cls, path, reported):
            if issue not in issues:
                issues.append(issue)
        return None, _missing_last(issues)
    return value, list(_validate(value, path))


def _missing_last(issues: list[tuple[str, str]]) -> list[tuple[str, str]]:
    missing = [i for i in issues if i[1].startswith("missing required key")]
    return [i for i in issues if i not in missing] + missing


def _check_field(inst: Any, field: attrs.Attribute, value: Any, path: str) -> Iterator[tuple[str, str]]:
    """The field's own validators, then those of the values inside it."""
    if field.validator is not None:
        try:
            field.validator(inst, field, value)
        except (ValueError, TypeError) as exc:
            yield (path, str(exc) or type(exc).__name__)
            return
    yield from _validate(value, path)


def _validate(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Run the attrs validators of every field, naming the field's path in each problem
    (validators are switched off while cattrs structures, which would lose the path)."""
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from _check_field(value, field, getattr(value, field.name), _join(path, field.name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _validate(item, _join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _validate(item, f"{path}[{index}]")


def _has_problem(path: str, reported: set[str]) -> bool:
    return any(p == path or p.startswith((path + ".", path + "[")) for p in reported)


def _structure_quietly(data: Any, typ: Any) -> tuple[bool, Any]:
    try:
        with attrs.validators.disabled():
            return True, converter.structure(data, typ)
    except Exception:  # noqa: BLE001 - its problems are reported already
        return False, None


def _salvage(data: Any, typ: Any, path: str, reported: set[str]) -> Iterator[tuple[str, str]]:
    """After cattrs failed on `data`: validate every part of it that has no reported problem."""
    origin, args = get_origin(typ), get_args(typ)
    if origin in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        if data is not None and len(inner) == 1:
            yield from _salvage(data, inner[0], path, reported)
        return
    if attrs.has(typ) and isinstance(data, Mapping):
        try:
            attrs.resolve_types(typ)
        except Exception:  # noqa: BLE001 - annotations that do not resolve: nothing to salvage
            return
        good: dict[str, Any] = {}
        complete = True
        for field in attrs.fields(typ):
            where = _join(path, field.name)
            if field.name not in data:
                if field.default is attrs.NOTHING:
                    complete = False
                elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                    if not field.default.takes_self:
                        good[field.name] = field.default.factory()
                    else:
                        complete = False
                else:
                    good[field.name] = field.default
                continue
            if _has_problem(where, reported):
                complete = False
                yield from _salvage(data[field.name], field.type, where, reported)
                continue
            ok, value = _structure_quietly(data[field.name], field.type)
            if not ok:
                complete = False
                continue
            good[field.name] = value
            yield from _check_field(None, field, value, where)
        post_init = getattr(typ, "__attrs_post_init__", None)
        if post_init is not None and not complete:
            yield from _cross_check(typ, post_init, good, path)
        return
    if (origin is dict or typ is dict) and isinstance(data, Mapping):
        item_type = args[1] if len(args) == 2 else Any
        for key, item in data.items():
            yield from _salvage_item(item, item_type, _join(path, key), reported)
    elif (origin is list or typ is list) and isinstance(data, list):
        item_type = args[0] if args else Any
        for index, item in enumerate(data):
            yield from _salvage_item(item, item_type, f"{path}[{index}]", reported)


def _salvage_item(item: Any, typ: Any, path: str, reported: set[str]) -> Iterator[tuple[str, str]]:
    if _has_problem(path, reported):
        yield from _salvage(item, typ, path, reported)
        return
    ok, value = _structure_quietly(item, typ)
    if ok:
        yield from _validate(value, path)


def _cross_check(typ: type, post_init: Any, good: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """Run a class's `__attrs_post_init__` (its checks spanning several keys) on an instance
    holding only the keys that are right; a check that reads a wrong key is left for later."""
    inst = object.__new__(typ)
    for name, value in good.items():
        object.__setattr__(inst, name, value)
    try:
        post_init(inst)
    except AttributeError:
        return
    except (ValueError, TypeError) as exc:
        yield (path, str(exc) or type(exc).__name__)
    except Exception:  # noqa: BLE001 - a check surprised by a half-built instance
        return


# -- ${ENV} expansion ------------------------------------------------------------------------

_ENV = re.compile(r"\$\$|\$\{([^}]*)\}")


def expand_env(data: Any, env: Mapping[str, str], path: str = "",
               issues: list[tuple[str, str]] | None = None) -> Any:
    """Replace `${NAME}` in every string with the environment's value (`$$` is a literal `$`);
    each missing variable is an issue naming it."""
    if issues is None:
        issues = []
    if isinstance(data, dict):
        return {k: expand_env(v, env, _join(path, k), issues) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env, f"{path}[{i}]", issues) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
                issues.append((path, f'"${{{name}}}" is not a valid environment variable reference'))
                return ""
            if name not in env:
                issues.append((path, f"environment variable {name} is not set"))
                return ""
            return env[name]

        return _ENV.sub(sub, data)
    return data


# -- the whole file --------------------------------------------------------------------------

_TOP = {"plugs", "channels", "hooks", "database", "logging", "host", "plugins", "http"}


def parse(data: Mapping[str, Any], registry: Registry, *, path: Path | None = None,
          env: Mapping[str, str] | None = None) -> Config:
    """Check and structure a config mapping; raise ConfigError listing every problem.

    The error's `partial` is a Config of what could be built anyway, so that the hooks'
    own checks (`on_load`) can run in the same pass: plugs with problems are replaced by
    stand-ins of type `STAND_IN`, channels with problems by placeholders, and hooks whose
    keys have the right types are kept even where their values have problems."""
    issues: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"expected a table, got {_describe(data)}")],
                          str(path) if path else None)
    data = expand_env(dict(data), os.environ if env is None else env, "", issues)

    for key in data:
        if key not in _TOP:
            hint = difflib.get_close_matches(str(key), sorted(_TOP), n=1)
            issues.append((_join("", key), "unknown section" + (f' (did you mean "{hint[0]}"?)' if hint
                                                                 else f" (sections: {', '.join(sorted(_TOP))})")))

    def section(name: str, cls: type) -> Any:
        value, found = structure(data.get(name, {}), cls, name)
        issues.extend(found)
        return value if value is not None else cls()

    database = section("database", DatabaseConfig)
    logging_cfg = section("logging", LoggingConfig)
    host = section("host", HostConfig)
    plugins = section("plugins", PluginsConfig)
    http = section("http", HttpConfig)
    issues.extend(_disable_issues(plugins, registry))

    channels: dict[str, ChannelConfig] = {}
    partial_channels: dict[str, ChannelConfig] = {}
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, Mapping):
        issues.append(("channels", f"expected a table, got {_describe(raw_channels)}"))
        raw_channels = {}
    for name, raw in raw_channels.items():
        value, found = structure(raw, ChannelConfig, _join("channels", name))
        issues.extend(found)
        if value is not None:
            channels[name] = partial_channels[name] = value
        else:
            fields = raw if isinstance(raw, Mapping) else {}
            partial_channels[name] = ChannelConfig(
                plug=fields["plug"] if isinstance(fields.get("plug"), str) else "",
                source=fields["source"] if isinstance(fields.get("source"), str) else f"<{name}>")

    partial_plugs: dict[str, PlugEntry] = {}
    partial_hooks: dict[str, HookEntry] = {}
    plugs = _entries(data, "plugs", "plug", registry.plug_types, registry, issues, PlugEntry,
                     partial_plugs)
    hooks = _entries(data, "hooks", "hook", registry.hook_types, registry, issues, HookEntry,
                     partial_hooks)

    plug_names = registry_names(data, "plugs")
    for name, raw in raw_channels.items():
        chan_plug = raw.get("plug") if isinstance(raw, Mapping) else None
        if isinstance(chan_plug, str) and chan_plug not in plug_names:
            known = ", ".join(sorted(str(n) for n in plug_names)) or "none configured"
            issues.append((_join(_join("channels", name), "plug"),
                           f'unknown plug "{chan_plug}" (plugs: {known})'))
    if issues:
        partial = Config(plugs=partial_plugs, channels=partial_channels, hooks=partial_hooks,
                         database=database, logging=logging_cfg, host=host, plugins=plugins,
                         http=http, path=path)
        raise ConfigError(issues, str(path) if path else None, partial=partial)
    return Config(plugs=plugs, channels=channels, hooks=hooks, database=database,
                  logging=logging_cfg, host=host, plugins=plugins, http=http, path=path)


def _disable_issues(plugins: PluginsConfig, registry: Registry) -> Iterator[tuple[str, str]]:
    """A name in ``plugins.disable`` that no installed plugin package has (a misspelt name
    would leave the plugin loaded)."""
    installed = sorted({d.name for d in registry.distributions if not d.test_kit}
                       | {d.ep_name for d in registry.distributions if d.test_kit and d.ep_name})
    for index, name in enumerate(plugins.disable):
        if registry.find(name) is None:
            hint = difflib.get_close_matches(name, installed, n=1)
            more = f'did you mean "{hint[0]}"?' if hint else f"installed: {', '.join(installed) or 'none'}"
            yield (f"plugins.disable[{index}]", f'no plugin package "{name}" is installed ({more})')


def disabled_in(path: str | Path) -> list[str]:
    """The ``plugins.disable`` names of a config file, read before the plugins load (so a
    disabled plugin is never imported); [] when the file or the key is unreadable (its
    problems are reported when the file is checked)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return disabled_of(data)


def disabled_of(data: Mapping[str, Any]) -> list[str]:
    """The ``plugins.disable`` names of a config mapping; [] when the key is not a list (its
    problems are reported when the config is checked)."""
    section = data.get("plugins")
    names = section.get("disable") if isinstance(section, Mapping) else None
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str)]


def registry_names(data: Mapping[str, Any], section: str) -> set[str]:
    """Names configured in a section, even those whose own config has problems."""
    raw = data.get(section, {})
    return set(raw) if isinstance(raw, Mapping) else set()


def _entries(data: Mapping[str, Any], section: str, kind: str, types: Mapping[str, type],
             registry: Registry, issues: list[tuple[str, str]], entry_cls: type,
             partial: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw_all = data.get(section, {})
    if not isinstance(raw_all, Mapping):
        issues.append((section, f"expected a table, got {_describe(raw_all)}"))
        return out
    stand_in = PlugEntry(type=STAND_IN, config=NoConfig())
    for name, raw in raw_all.items():
        path = _join(section, name)
        if entry_cls is PlugEntry:
            partial[name] = stand_in
        if not isinstance(raw, Mapping):
            issues.append((path, f"expected a table, got {_describe(raw)}"))
            continue
        raw = dict(raw)
        type_name = raw.pop("type", None)
        if type_name is None:
            issues.append((_join(path, "type"), f"missing: every {kind} needs a type "
                                                f"(installed: {', '.join(sorted(types)) or 'none'})"))
            continue
        if not isinstance(type_name, str):
            issues.append((_join(path, "type"), f"expected a string, got {_describe(type_name)}"))
            continue
        cls = types.get(type_name)
        if cls is None:
            installed = ", ".join(sorted(types)) or "none"
            issues.append((_join(path, "type"), f'unknown {kind} type "{type_name}" — installed '
                                                f"{kind} types: {installed}; "
                                                f"{registry.provider_hint(kind, type_name)}"))
            continue
        common: dict[str, Any] = {}
        common_ok = True
        for key, expect in (("enabled", bool), ("priority", int)):
            if key in raw and (key != "priority" or entry_cls is HookEntry):
                value, found = structure(raw.pop(key), expect, _join(path, key))
                issues.extend(found)
                if not found:
                    common[key] = value
                else:
                    common_ok = False
        value, found = _structure(raw, cls.Config, path)
        candidates = [*_field_names(cls.Config), "type", "enabled",
                      *(["priority"] if entry_cls is HookEntry else [])]
        for i, (where, problem) in enumerate(found):
            key = where.rsplit(".", 1)[-1]
            if problem.startswith("unknown key") and where == _join(path, key):
                hint = difflib.get_close_matches(key, candidates, n=1)
                found[i] = (where, f'unknown key (did you mean "{hint[0]}"?)' if hint else
                            f"unknown key (known keys: {', '.join(candidates)})")
        issues.extend(found)
        if value is not None:
            entry = entry_cls(type=type_name, config=value, **common)
            if not found and common_ok:
                out[name] = partial[name] = entry
            elif entry_cls is HookEntry:
                partial[name] = entry
    return out


def load(path: str | Path, registry: Registry, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML config file; a syntax error is a ConfigError with its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"no such file: {path}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"cannot read {path}: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"not valid TOML: {exc}")], str(path)) from None
    return parse(data, registry, path=path.resolve(), env=env)
