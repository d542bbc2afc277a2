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
    assert ("hooks.r.priorty", 'unknown key (did you mean "priority"?)') in issues or any(
        p == "hooks.r.priorty" for p, _ in issues)
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
