"""The config is checked strictly and every problem is reported at once with its path."""

import pytest

from chanmux import ConfigError
from chanmux.config import load, parse
from chanmux.testing import make_registry


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def problems(data, registry, env=None):
    with pytest.raises(ConfigError) as err:
        parse(data, registry, env=env or {})
    return err.value.issues


def test_a_good_config_structures_into_typed_objects(registry):
    cfg = parse({"plugs": {"a": {"type": "memory", "edit": False}},
                 "channels": {"c": {"plug": "a", "source": "#x"}},
                 "hooks": {"r": {"type": "recorder", "priority": 5}},
                 "host": {"hook_timeout": 2}}, registry, env={})
    assert cfg.plugs["a"].config.edit is False
    assert cfg.hooks["r"].priority == 5
    assert cfg.host.hook_timeout == 2.0
    assert cfg.database_url() == "sqlite://"


def test_wrong_types_are_errors_not_coerced(registry):
    issues = problems({"plugs": {"a": {"type": "memory", "edit": "yes"}},
                       "host": {"lanes": "4", "hook_timeout": True}}, registry)
    assert ("plugs.a.edit", 'expected true or false, got "yes"') in issues
    assert ("host.lanes", 'expected an integer, got "4"') in issues
    assert ("host.hook_timeout", "expected a number, got true") in issues


def test_unknown_keys_are_errors_with_a_suggestion(registry):
    issues = problems({"plugs": {"a": {"type": "memory", "ecko": True}},
                       "hooks": {"r": {"type": "recorder", "priorty": 1}},
                       "chanels": {}}, registry)
    assert ("plugs.a.ecko", 'unknown key (did you mean "echo"?)') in issues
    assert ("hooks.r.priorty", 'unknown key (did you mean "priority"?)') in issues
    assert ("chanels", 'unknown section (did you mean "channels"?)') in issues


def test_unknown_type_names_installed_types_and_the_package(registry):
    missing = "irc" if "irc" not in registry.plug_types else "telegram"
    issues = problems({"plugs": {"x": {"type": missing}}}, registry)
    [(path, message)] = issues
    assert path == "plugs.x.type"
    assert f'unknown plug type "{missing}"' in message and "memory" in message
    if missing == "irc":
        assert "install chanmux-irc" in message


def test_every_error_is_reported_at_once(registry):
    issues = problems({"plugs": {"a": {"type": "memory", "edit": 1}, "b": {"type": "nope"},
                                 "c": {}},
                       "channels": {"ch": {"plug": "zz", "source": 5}},
                       "logging": {"level": "LOUD"}}, registry)
    paths = {p for p, _ in issues}
    assert {"plugs.a.edit", "plugs.b.type", "plugs.c.type", "channels.ch.source",
            "channels.ch.plug", "logging.level"} <= paths


def test_missing_required_keys_are_named(registry):
    issues = problems({"channels": {"ch": {"plug": "a"}}, "plugs": {"a": {"type": "memory"}}},
                      registry)
    assert any(p == "channels.ch" and "source" in m for p, m in issues)


def test_env_references_are_expanded_and_missing_ones_named(registry):
    cfg = parse({"plugs": {"a": {"type": "memory", "network": "${NET}-$$x"}}}, registry,
                env={"NET": "Libera"})
    assert cfg.plugs["a"].config.network == "Libera-$x"
    issues = problems({"plugs": {"a": {"type": "memory", "network": "${NOPE}"}}}, registry)
    assert ("plugs.a.network", "environment variable NOPE is not set") in issues


def test_toml_syntax_errors_name_the_line(tmp_path, registry):
    path = tmp_path / "bad.toml"
    path.write_text('[plugs.a]\ntype = "memory"\nedit = \n')
    with pytest.raises(ConfigError) as err:
        load(path, registry)
    assert "line 3" in str(err.value) and "bad.toml" in str(err.value)


def test_embedded_default_database_is_a_sqlite_file_beside_the_config(tmp_path, registry):
    path = tmp_path / "bridge.toml"
    path.write_text('[plugs.a]\ntype = "memory"\n')
    cfg = load(path, registry)
    assert cfg.database_url() == f"sqlite:///{tmp_path / 'bridge.sqlite'}"


def test_validator_errors_name_the_key_they_belong_to(registry):
    import attrs

    from chanmux import Plug

    def positive(inst, attribute, value):
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")

    @attrs.frozen
    class Inner:
        size: int = attrs.field(default=1, validator=positive)

    @attrs.frozen
    class PickyConfig:
        rate: float = attrs.field(default=1.0, validator=positive)
        inner: Inner = Inner()

    class PickyPlug(Plug):
        Config = PickyConfig

    registry.plug_types["picky"] = PickyPlug
    try:
        issues = problems({"plugs": {"p": {"type": "picky", "rate": -1, "inner": {"size": 0}}}},
                          registry)
        assert ("plugs.p.rate", "must be positive, got -1.0") in issues
        assert ("plugs.p.inner.size", "must be positive, got 0") in issues
        cfg = parse({"plugs": {"p": {"type": "picky", "rate": 2}}}, registry, env={})
        assert cfg.plugs["p"].config.rate == 2.0
    finally:
        del registry.plug_types["picky"]


# -- every problem in one pass ---------------------------------------------------------------

def test_a_wrong_type_does_not_hide_a_bad_value_of_another_key(registry):
    import attrs

    from chanmux import Plug, validators

    @attrs.frozen
    class Inner:
        size: int = attrs.field(default=1, validator=validators.positive)
        name: str = "x"

    @attrs.frozen
    class NetConfig:
        port: int = attrs.field(default=1, validator=validators.port)
        tls: bool = True
        inner: Inner = Inner()
        items: dict[str, Inner] = attrs.field(factory=dict)

        def __attrs_post_init__(self):
            if self.port == 6667 and self.tls:
                raise ValueError("port 6667 is plain text: set tls = false")

    class NetPlug(Plug):
        Config = NetConfig

    registry.plug_types["net"] = NetPlug
    try:
        issues = problems({"plugs": {"p": {"type": "net", "port": 70000, "tls": "yes",
                                           "inner": {"size": 0, "name": 5},
                                           "items": {"a": {"size": -1}, "b": {"size": "1"}}}}},
                          registry)
        assert sorted(issues) == sorted([
            ("plugs.p.tls", 'expected true or false, got "yes"'),
            ("plugs.p.port", "must be a port number from 1 to 65535, got 70000"),
            ("plugs.p.inner.name", "expected a string, got 5"),
            ("plugs.p.inner.size", "must be greater than 0, got 0"),
            ("plugs.p.items.a.size", "must be greater than 0, got -1"),
            ("plugs.p.items.b.size", 'expected an integer, got "1"')])
        # a check spanning keys runs beside a wrong type when the keys it reads are right
        issues = problems({"plugs": {"p": {"type": "net", "port": 6667, "inner": {"name": 5}}}},
                          registry)
        assert ("plugs.p", "port 6667 is plain text: set tls = false") in issues
        assert ("plugs.p.inner.name", "expected a string, got 5") in issues
    finally:
        del registry.plug_types["net"]


@pytest.mark.parametrize(("host", "expected"), [
    ({"hook_timeout": 0}, ("host.hook_timeout", "must be greater than 0, got 0.0")),
    ({"put_timeout": -1}, ("host.put_timeout", "must be greater than 0, got -1.0")),
    ({"lanes": 0}, ("host.lanes", "must be at least 1, got 0")),
    ({"echo_cache": 0}, ("host.echo_cache", "must be at least 1, got 0")),
    ({"reconnect_min": 10, "reconnect_max": 5},
     ("host", "reconnect_max (5.0) must not be less than reconnect_min (10.0)")),
])
def test_host_timeouts_and_limits_that_could_never_work(registry, host, expected):
    assert problems({"host": host}, registry) == [expected]


def test_logger_levels_and_database_urls_are_checked(registry):
    issues = problems({"logging": {"levels": {"chanmux.irc": "LOUD"}},
                       "database": {"url": "mysql://u:p@h/db"}}, registry)
    assert ("logging.levels", ('level of logger "chanmux.irc": expected one of DEBUG, INFO, '
                               'WARNING, ERROR, CRITICAL, got "LOUD"')) in issues
    assert any(p == "database.url" and m.startswith("mysql is not supported") for p, m in issues)


def test_control_characters_in_a_bad_value_stay_on_one_line(registry):
    issues = problems({"plugs": {"a": {"type": "memory", "echo": "y\r\nes"}}}, registry)
    assert issues == [("plugs.a.echo", 'expected true or false, got "y\\r\\nes"')]
