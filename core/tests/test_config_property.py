"""Property: whatever TOML document is loaded as a config, the result is a Config or a
ConfigError listing `path: problem` lines, never another exception. Documents are written as
real TOML text and read by `chanmux.config.load`, as `chanmux check` reads them; they are
shaped like configs (the known sections, plug and hook types, and keys of the installed
plugins) with random keys, types and values mixed in."""

import datetime
import math
import tomllib

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanmux import Config, ConfigError
from chanmux.config import load
from chanmux.testing import make_registry

REGISTRY = make_registry()


def _keys(types):
    names = set()
    for cls in types.values():
        if attrs.has(cls.Config):
            names |= {f.name for f in attrs.fields(cls.Config)}
    return sorted(names)


PLUG_KEYS = _keys(REGISTRY.plug_types) + ["type", "enabled"]
HOOK_KEYS = _keys(REGISTRY.hook_types) + ["type", "enabled", "priority"]
NAMES = ["a", "b", "libera", "mx", "sync", "x y", "é", ""]

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
word = st.one_of(st.sampled_from(NAMES), text)
scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(["${UNSET_VAR}", "$$", "${", "sqlite://", "mysql://x/y", "https://m.org",
                     "@b:m.org", "#chan", "{name}", "{nick}", "DEBUG", "irc.example.org"]),
    st.dates(), st.times(), st.datetimes(),
)
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(word, inner, max_size=3)), max_leaves=8)


def table(keys, extra=()):
    chosen = st.one_of(st.sampled_from(list(keys) + list(extra)), word)
    return st.dictionaries(chosen, value, max_size=6)


plug = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(sorted(REGISTRY.plug_types)), value)},
                             optional={}).flatmap(lambda d: table(PLUG_KEYS).map(lambda t: {**t, **d}))
hook = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(sorted(REGISTRY.hook_types)), value)}
                             ).flatmap(lambda d: table(HOOK_KEYS).map(lambda t: {**t, **d}))
channel = table(["plug", "source"])
document = st.fixed_dictionaries({}, optional={
    "plugs": st.one_of(st.dictionaries(word, st.one_of(plug, value), max_size=3), value),
    "channels": st.one_of(st.dictionaries(word, st.one_of(channel, value), max_size=3), value),
    "hooks": st.one_of(st.dictionaries(word, st.one_of(hook, value), max_size=2), value),
    "database": st.one_of(table(["url", "echo"]), value),
    "host": st.one_of(table(["hook_timeout", "put_timeout", "reconnect_min", "reconnect_max",
                             "lanes", "echo_cache"]), value),
    "logging": st.one_of(table(["level", "levels", "file"]), value),
}).flatmap(lambda d: st.dictionaries(word, value, max_size=2).map(lambda extra: {**extra, **d}))


def toml_string(v):
    out = []
    for char in v:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(i) for i in v) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(i)}" for k, i in v.items()) + "}"


def toml(doc):
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=document)
def test_any_document_gives_a_config_or_every_problem_with_its_path(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "bridge.toml"
    path.write_text(toml(doc), encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8")) is not None  # the document is TOML
    try:
        cfg = load(path, REGISTRY, env={})
    except ConfigError as exc:
        assert exc.issues
        for where, problem in exc.issues:
            assert isinstance(where, str) and isinstance(problem, str) and problem
            assert "\n" not in problem, problem
        assert str(exc)
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=document)
def test_check_with_its_hooks_and_plugs_built_gives_one_error_or_a_host(tmp_path_factory, doc):
    """The same through `chanmux check`'s loader, which also builds every plug and hook and
    runs the hooks' own checks (the database left at its default: a file beside the config)."""
    from chanmux.cli import load_checked
    from chanmux.host import Host

    doc.pop("database", None)
    path = tmp_path_factory.mktemp("cfg") / "bridge.toml"
    path.write_text(toml(doc), encoding="utf-8")
    try:
        cfg, host = load_checked(str(path), make_registry())
    except ConfigError as exc:
        assert exc.issues and all(problem for _, problem in exc.issues)
    else:
        assert isinstance(cfg, Config) and isinstance(host, Host)
        host.store.dispose()
    assert sorted(p.name for p in path.parent.iterdir()) == ["bridge.toml"]
