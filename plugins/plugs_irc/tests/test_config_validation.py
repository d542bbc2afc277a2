"""Values of an `irc` plug's keys that could never work are refused, all at once, each with
its key's path (ports, host names, sizes, timeouts), using core's shared validators."""

from __future__ import annotations

import pytest

from chanmux import ConfigError
from chanmux.testing import make_host


def problems(**keys) -> list[tuple[str, str]]:
    cfg = {"plugs": {"libera": {"type": "irc", "server": "irc.example.org", "nick": "bridge", **keys}}}
    with pytest.raises(ConfigError) as failure:
        make_host(cfg)
    return failure.value.issues


@pytest.mark.parametrize("port", [70000, -5, 0, 65536, 99999999999999999999])
def test_a_port_outside_1_to_65535_is_refused(port):
    assert problems(port=port) == [
        ("plugs.libera.port", f"must be a port number from 1 to 65535, got {port}")]


@pytest.mark.parametrize("server", ["", "   ", "irc://irc.libera.chat", "irc.libera.chat/6697",
                                    "irc libera", "irc.libera.chat\r\nQUIT"])
def test_a_server_that_is_not_a_host_name_is_refused(server):
    [(path, problem)] = problems(server=server)
    assert path == "plugs.libera.server" and problem.startswith('must be a host name like "irc.example.org"')
    assert "\n" not in problem and "\r" not in problem


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("ping_timeout", 0, "must be greater than 0, got 0.0"),
    ("connect_timeout", -1, "must be greater than 0, got -1.0"),
    ("join_timeout", -0.5, "must not be negative, got -0.5"),
    ("flood_rate", float("nan"), "must not be negative, got nan"),
    ("text_cache", -1, "must not be negative, got -1"),
    ("puppet_max", 0, "must be greater than 0, got 0"),
    ("username", "", 'must not be empty, got ""'),
    ("realname", "", 'must not be empty, got ""'),
    ("sasl_username", " ", 'must not be empty, got " "'),
    ("client_cert", "", 'must not be empty, got ""'),
])
def test_sizes_timeouts_and_names_that_could_never_work(key, value, problem):
    assert problems(**{key: value}) == [(f"plugs.libera.{key}", problem)]


def test_every_problem_of_the_table_at_once():
    issues = problems(server="", port=70000, tls="yes", flood_burst=0, nick="1bad",
                      sasl_mechanism="PLAIN")
    assert sorted(issues) == [
        ("plugs.libera", "sasl_mechanism PLAIN needs sasl_username and sasl_password"),
        ("plugs.libera.flood_burst", "must be greater than 0, got 0"),
        ("plugs.libera.nick", '"1bad" is not a valid IRC nick'),
        ("plugs.libera.port", "must be a port number from 1 to 65535, got 70000"),
        ("plugs.libera.server", 'must be a host name like "irc.example.org", got ""'),
        ("plugs.libera.tls", 'expected true or false, got "yes"'),
    ]


def test_ip_addresses_and_the_default_port_are_accepted():
    for server in ("127.0.0.1", "::1", "irc.libera.chat"):
        host = make_host({"plugs": {"libera": {"type": "irc", "server": server, "nick": "bridge",
                                               "port": 6697}}})
        assert host.plugs["libera"].config.server == server


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("reactions", "emoji", 'expected one of "auto", "tags", "text", "none", got "emoji"'),
    ("deletions", "redact", 'expected one of "notice", "none", got "redact"'),
    ("monospace", "yes", 'expected true or false, got "yes"'),
    ("typing", 1, "expected true or false, got 1"),
    ("relaymsg", "on", 'expected true or false, got "on"'),
    ("relaymsg_suffix", "m x", 'must be 1 to 10 letters, digits or _-[]\\`^{}| (a part of a nick), '
                               'got "m x"'),
    ("relaymsg_suffix", "", 'must be 1 to 10 letters, digits or _-[]\\`^{}| (a part of a nick), '
                            'got ""'),
    ("relaymsg_suffix", "matrix.org", 'must be 1 to 10 letters, digits or _-[]\\`^{}| (a part of '
                                      'a nick), got "matrix.org"'),
])
def test_the_keys_of_reactions_deletions_typing_and_relaymsg_refuse_what_they_do_not_know(
        key, value, problem):
    assert problems(**{key: value}) == [(f"plugs.libera.{key}", problem)]


def test_the_defaults_of_reactions_deletions_typing_and_relaymsg():
    config = make_host({"plugs": {"libera": {"type": "irc", "server": "irc.example.org",
                                             "nick": "bridge"}}}).plugs["libera"].config
    assert (config.reactions, config.deletions, config.monospace, config.typing,
            config.relaymsg, config.relaymsg_suffix) == ("auto", "notice", False, True, True, None)
    assert make_host({"plugs": {"libera": {"type": "irc", "server": "irc.example.org",
                                           "nick": "bridge", "relaymsg_suffix": "[m]"}}})
