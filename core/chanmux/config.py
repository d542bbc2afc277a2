"""Reading the TOML config: `${ENV}` expansion, then strict structuring with cattrs.

Unknown keys and wrong types are errors, never coerced or ignored, and every error in the
file is reported at once with its path: ``plugs.libera.port: expected an integer, got "x"``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from .plugins import Registry


class ConfigError(Exception):
    """Everything wrong with a config, one `path: problem` line each."""

    def __init__(self, issues: list[tuple[str, str]], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        lines = [f"{path}: {problem}" if path else problem for path, problem in self.issues]
        if len(lines) == 1:
            return head + lines[0]
        return f"{head}{len(lines)} problems\n" + "\n".join(f"  {line}" for line in lines)


class _Strict(ValueError):
    """A value of the wrong type; the message is what was expected and what was found."""


@attrs.frozen
class DatabaseConfig:
    """Where the host keeps its state: any SQLAlchemy URL; by default a SQLite file beside
    the config named after it."""

    url: str | None = None
    echo: bool = False


@attrs.frozen
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    levels: dict[str, str] = attrs.field(factory=dict)
    file: str | None = None


@attrs.frozen
class HostConfig:
    """Timeouts and limits of the host itself (seconds)."""

    hook_timeout: float = 30.0
    put_timeout: float = 120.0
    reconnect_min: float = 1.0
    reconnect_max: float = 300.0
    lanes: int = 16
    echo_cache: int = 10_000


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
        return f'"{value}"'
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
    if attrs.has(cls) and not isinstance(data, Mapping):
        return None, [(path, f"expected a table, got {_describe(data)}")]
    try:
        with attrs.validators.disabled():
            value = converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every cattrs failure becomes a report line
        issues = list(_issues(exc, path))
        missing = [(p, m) for p, m in issues if m.startswith("missing required key")]
        rest = [(p, m) for p, m in issues if not m.startswith("missing required key")]
        fixed = [(p.rsplit(".", 1)[0] if p != path else p, m) for p, m in missing]
        return None, rest + [(f"{p}", m) for p, m in fixed]
    problems = list(_validate(value, path))
    return (None, problems) if problems else (value, [])


def _validate(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Run the attrs validators of every field, naming the field's path in each problem
    (validators are switched off while cattrs structures, which would lose the path)."""
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if field.validator is not None:
                try:
                    field.validator(value, field, item)
                except (ValueError, TypeError) as exc:
                    yield (_join(path, field.name), str(exc) or type(exc).__name__)
                    continue
            yield from _validate(item, _join(path, field.name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _validate(item, _join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _validate(item, f"{path}[{index}]")


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

_TOP = {"plugs", "channels", "hooks", "database", "logging", "host"}


def parse(data: Mapping[str, Any], registry: Registry, *, path: Path | None = None,
          env: Mapping[str, str] | None = None) -> Config:
    """Check and structure a config mapping; raise ConfigError listing every problem."""
    issues: list[tuple[str, str]] = []
    data = expand_env(dict(data), os.environ if env is None else env, "", issues)

    for key in data:
        if key not in _TOP:
            hint = difflib.get_close_matches(key, sorted(_TOP), n=1)
            issues.append((_join("", key), "unknown section" + (f' (did you mean "{hint[0]}"?)' if hint
                                                                 else f" (sections: {', '.join(sorted(_TOP))})")))

    def section(name: str, cls: type) -> Any:
        value, found = structure(data.get(name, {}), cls, name)
        issues.extend(found)
        return value if value is not None else cls()

    database = section("database", DatabaseConfig)
    logging_cfg = section("logging", LoggingConfig)
    host = section("host", HostConfig)

    channels: dict[str, ChannelConfig] = {}
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, Mapping):
        issues.append(("channels", f"expected a table, got {_describe(raw_channels)}"))
        raw_channels = {}
    for name, raw in raw_channels.items():
        value, found = structure(raw, ChannelConfig, _join("channels", name))
        issues.extend(found)
        if value is not None:
            channels[name] = value

    plugs = _entries(data, "plugs", "plug", registry.plug_types, registry, issues, PlugEntry)
    hooks = _entries(data, "hooks", "hook", registry.hook_types, registry, issues, HookEntry)

    for name, raw in raw_channels.items():
        chan_plug = raw.get("plug") if isinstance(raw, Mapping) else None
        if isinstance(chan_plug, str) and chan_plug not in registry_names(data, "plugs"):
            known = ", ".join(sorted(registry_names(data, "plugs"))) or "none configured"
            issues.append((_join(_join("channels", name), "plug"),
                           f'unknown plug "{chan_plug}" (plugs: {known})'))
    if issues:
        raise ConfigError(issues, str(path) if path else None)
    return Config(plugs=plugs, channels=channels, hooks=hooks, database=database,
                  logging=logging_cfg, host=host, path=path)


def registry_names(data: Mapping[str, Any], section: str) -> set[str]:
    """Names configured in a section, even those whose own config has problems."""
    raw = data.get(section, {})
    return set(raw) if isinstance(raw, Mapping) else set()


def _entries(data: Mapping[str, Any], section: str, kind: str, types: Mapping[str, type],
             registry: Registry, issues: list[tuple[str, str]], entry_cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw_all = data.get(section, {})
    if not isinstance(raw_all, Mapping):
        issues.append((section, f"expected a table, got {_describe(raw_all)}"))
        return out
    for name, raw in raw_all.items():
        path = _join(section, name)
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
        for key, expect in (("enabled", bool), ("priority", int)):
            if key in raw and (key != "priority" or entry_cls is HookEntry):
                value, found = structure(raw.pop(key), expect, _join(path, key))
                issues.extend(found)
                if not found:
                    common[key] = value
        value, found = structure(raw, cls.Config, path)
        candidates = [*_field_names(cls.Config), "type", "enabled",
                      *(["priority"] if entry_cls is HookEntry else [])]
        for i, (where, problem) in enumerate(found):
            key = where.rsplit(".", 1)[-1]
            if problem.startswith("unknown key") and where == _join(path, key):
                hint = difflib.get_close_matches(key, candidates, n=1)
                found[i] = (where, f'unknown key (did you mean "{hint[0]}"?)' if hint else
                            f"unknown key (known keys: {', '.join(candidates)})")
        issues.extend(found)
        if not found:
            out[name] = entry_cls(type=type_name, config=value, **common)
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
