"""The plug type's registration, its strict config keys, and what `chanmux check` warns about."""

from __future__ import annotations

import pytest

from chanmux import ConfigError
from chanmux.testing import make_host, make_registry
from chanmux.testing import run_cli as chanmux_main
from chanmux_matrix import MatrixConfig, MatrixPlug

BASE = {"type": "matrix", "homeserver": "https://matrix.example.org",
        "user_id": "@bridge:example.org", "access_token": "secret-token"}


def host_with(**keys):
    return make_host({"plugs": {"mx": {**BASE, **keys}}})


def problems(**keys) -> str:
    with pytest.raises(ConfigError) as info:
        host_with(**keys)
    return str(info.value)


def test_the_entry_point_provides_the_matrix_type():
    registry = make_registry()
    assert registry.plug_types["matrix"] is MatrixPlug
    assert registry.type_owner["plug:matrix"] == "chanmux-matrix"


def test_defaults():
    plug = host_with().plugs["mx"]
    config = plug.config
    assert isinstance(config, MatrixConfig)
    assert config.rooms == [] and config.accept_invites is False
    assert config.max_catchup_age == 3600 and config.timeline_limit == 50
    assert config.name_format == "{name}: " and config.action_name_format == "{name} "
    caps = plug.capabilities
    assert caps.edit and caps.delete and caps.reply and caps.upload and caps.rich_text
    # reactions both ways; a burst of lines merged into one event; no typing as a bot account
    assert caps.reactions and caps.merge and not caps.typing and not caps.highlights


def test_every_key_is_accepted():
    plug = host_with(password="pw", device_name="bridge box", display_name="Bridge",
                     rooms=["!abc:example.org", "#room:example.org", "!v12roomid"],
                     accept_invites=True, max_catchup_age=60, name_format="<{name}> ",
                     action_name_format="* {name} ", request_timeout=10, sync_timeout=20.5,
                     send_retry_for=5, retry_max_delay=2, timeline_limit=10,
                     merge_lines=False).plugs["mx"]
    assert plug.config.rooms[2] == "!v12roomid" and plug.config.sync_timeout == 20.5
    assert not plug.capabilities.merge and plug.capabilities.reactions


@pytest.mark.parametrize(("keys", "expected"), [
    ({"homeserver": "matrix.example.org"}, "plugs.mx.homeserver: expected an http(s) URL"),
    ({"user_id": "bridge"}, "plugs.mx.user_id: expected a full Matrix user id"),
    ({"rooms": ["general"]}, 'rooms: "general" is neither a room id'),
    ({"rooms": "!abc:x"}, "plugs.mx.rooms: expected an array"),
    ({"max_catchup_age": "1h"}, 'plugs.mx.max_catchup_age: expected a number, got "1h"'),
    ({"accept_invites": "yes"}, "plugs.mx.accept_invites: expected true or false"),
    ({"timeline_limit": 0}, "timeline_limit: must be greater than 0"),
    ({"name_format": "{nick}: "}, 'name_format: unknown variable "{nick}"'),
    ({"sync_timout": 5}, 'plugs.mx.sync_timout: unknown key (did you mean "sync_timeout"?)'),
])
def test_config_errors_name_the_key(keys, expected):
    assert expected in problems(**keys)


def test_credentials_are_required():
    keys = {k: v for k, v in BASE.items() if k != "access_token"}
    with pytest.raises(ConfigError, match="plugs.mx: give access_token or password"):
        make_host({"plugs": {"mx": keys}})


def test_secrets_come_from_the_environment():
    host = make_host({"plugs": {"mx": {**BASE, "access_token": "${MX_TOKEN}"}}},
                     env={"MX_TOKEN": "from-env"})
    assert host.plugs["mx"].config.access_token == "from-env"


def test_check_warns_without_connecting(tmp_path, capsys):
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[plugs.mx]\ntype = "matrix"\nhomeserver = "http://matrix.example.org"\n'
        'user_id = "@bridge:example.org"\naccess_token = "t"\npassword = "p"\n')
    assert chanmux_main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "plugs.mx: homeserver http://matrix.example.org is plain http" in err
    assert "both access_token and password" in err
    assert "encrypted rooms are not supported" in err and "can't be checked offline" in err
    local = host_with(homeserver="http://127.0.0.1:8008").plugs["mx"].check_warnings()
    assert not any("plain http" in w for w in local)


def test_missing_credentials_do_not_hide_a_bad_homeserver_or_user_id():
    with pytest.raises(ConfigError) as info:
        make_host({"plugs": {"mx": {"type": "matrix", "homeserver": "matrix.example.org",
                                    "user_id": "bridge", "timeline_limit": "50"}}})
    assert sorted(info.value.issues) == [
        ("plugs.mx", "give access_token or password (the bridge account's credentials), or "
                     "registration (to run as an application service)"),
        ("plugs.mx.homeserver", ('expected an http(s) URL like "https://matrix.example.org", '
                                 'got "matrix.example.org"')),
        ("plugs.mx.timeline_limit", 'expected an integer, got "50"'),
        ("plugs.mx.user_id", 'expected a full Matrix user id like "@bridge:example.org", got "bridge"'),
    ]


@pytest.mark.parametrize(("keys", "expected"), [
    ({"homeserver": "https://"}, "plugs.mx.homeserver: expected an http(s) URL"),
    ({"homeserver": "ftp://matrix.example.org"}, "plugs.mx.homeserver: expected an http(s) URL"),
    ({"homeserver": "https://matrix.example.org:port"}, "plugs.mx.homeserver: expected an http(s) URL"),
    ({"user_id": "@bridge:"}, "plugs.mx.user_id: expected a full Matrix user id"),
    ({"user_id": "@:example.org"}, "plugs.mx.user_id: expected a full Matrix user id"),
    ({"user_id": "@bri dge:example.org"}, "plugs.mx.user_id: expected a full Matrix user id"),
    ({"access_token": ""}, "plugs.mx.access_token: must not be empty"),
    ({"device_name": " "}, "plugs.mx.device_name: must not be empty"),
    ({"request_timeout": 0}, "plugs.mx.request_timeout: must be greater than 0"),
    ({"max_catchup_age": -1}, "plugs.mx.max_catchup_age: must not be negative"),
])
def test_values_that_could_never_work_are_refused(keys, expected):
    assert expected in problems(**keys)
