"""The `irc` plug type is found through its entry point, and its config is checked strictly."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from chanmux import ConfigError
from chanmux.testing import make_host, make_registry, run_cli
from chanmux_irc import IRCConfig, IRCPlug, __version__

README = Path(__file__).resolve().parents[1] / "README.md"


def config(http=None, **keys):
    cfg = {"plugs": {"irc": {"type": "irc", "server": "irc.example", "nick": "bridge", **keys}}}
    if http is not None:
        cfg["http"] = http
    return cfg


def problems(**keys) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as failure:
        make_host(config(**keys))
    return failure.value.issues


def test_the_entry_point_provides_the_irc_type():
    registry = make_registry()
    assert registry.plug_types["irc"] is IRCPlug
    (dist,) = [d for d in registry.distributions if d.name == "chanmux-irc"]
    assert dist.version == __version__ and dist.error is None


def test_every_key_is_documented_in_the_readme():
    table = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == {f.name for f in attrs.fields(IRCConfig)}


def test_unknown_keys_and_wrong_types_are_errors():
    issues = dict(problems(prot=6697, tls="yes", flood_rate="fast"))
    assert issues["plugs.irc.prot"].startswith('unknown key (did you mean "port"?)')
    assert issues["plugs.irc.tls"] == 'expected true or false, got "yes"'
    assert issues["plugs.irc.flood_rate"] == 'expected a number, got "fast"'
    assert problems(edits="sometimes") == [
        ("plugs.irc.edits", 'expected one of "auto", "full", "none", got "sometimes"')]
    assert problems(long_messages="paste") == [
        ("plugs.irc.long_messages", 'expected one of "link", "truncate", got "paste"')]
    assert problems(long_messages=True) == [
        ("plugs.irc.long_messages", 'expected one of "link", "truncate", got true')]


@pytest.mark.parametrize("keys, message", [
    ({"nick": "two words"}, 'nick: "two words" is not a valid IRC nick'),
    ({"nick": "bad\r\nQUIT"}, "is not a valid IRC nick"),
    ({"alt_nicks": ["ok", "#no"]}, 'alt_nicks: "#no" is not a valid IRC nick'),
    ({"commands": ["MODE x +i\r\nQUIT"]}, "commands: must not contain line breaks"),
    ({"realname": "a\nb"}, "realname: must not contain line breaks"),
    ({"channel_keys": {"#a": "k\r\n"}}, "channel_keys: must not contain line breaks"),
    ({"join": ["#a b"]}, 'join: "#a b" is not a valid channel name'),
    ({"encoding": "klingon"}, 'encoding: unknown encoding "klingon"'),
    ({"max_lines": 1}, "max_lines: must be at least 2"),
    ({"flood_burst": 0}, "flood_burst: must be greater than 0"),
    ({"author_format": "<{nick}> "}, 'author_format: unknown variable "{nick}"'),
    ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism PLAIN needs sasl_username and sasl_password"),
    ({"sasl_mechanism": "EXTERNAL"}, "sasl_mechanism EXTERNAL needs tls = true and a client_cert"),
    ({"client_key": "k.pem"}, "client_key given without client_cert"),
])
def test_values_that_could_never_work_are_refused(keys, message):
    (issue,) = problems(**keys)
    key, _, text = message.partition(": ")
    if key in keys and text:
        assert issue[0] == f"plugs.irc.{key}" and text in issue[1], issue
    else:
        assert message in issue[1]


def test_defaults_are_safe_for_public_networks():
    cfg = IRCConfig(server="irc.example", nick="bridge")
    assert cfg.tls and cfg.tls_verify and cfg.effective_port == 6697
    assert (cfg.flood_burst, cfg.flood_rate) == (4, 0.5)
    assert IRCConfig(server="x", nick="n", tls=False).effective_port == 6667


def test_secrets_come_from_the_environment(tmp_path):
    host = make_host(config(sasl_mechanism="PLAIN", sasl_username="me",
                            sasl_password="${IRC_PASSWORD}"), path=tmp_path / "c.toml",
                     env={"IRC_PASSWORD": "hunter2"})
    assert host.plugs["irc"].config.sasl_password == "hunter2"


def test_check_warnings(tmp_path):
    def warnings(http=None, **keys):
        return make_host(config(http, **keys), path=tmp_path / "c.toml").plugs["irc"].check_warnings()

    links = {"listen": "127.0.0.1:9180", "public_url": "https://bridge.example.org/"}
    assert warnings(links) == []
    assert warnings(long_messages="truncate") == []
    assert warnings() == []  # no listener: the bridge gives out no links, by choice
    assert warnings({"listen": "127.0.0.1:9180"}) == [
        'long_messages = "link" but [http] public_url is not set: a message over max_lines (10) '
        "lines ends with a truncation notice, not a link to its whole text (set [http] "
        'public_url, or long_messages = "truncate")']
    assert any("travels unencrypted" in w for w in warnings(links, tls=False, password="x"))
    assert any("not checked" in w for w in warnings(links, tls_verify=False))
    assert any("flood control is off" in w for w in warnings(links, flood_rate=0.0))
    assert any("exceed what large public networks allow" in w for w in warnings(links, flood_rate=5.0))


def test_chanmux_check_says_when_long_messages_cannot_have_links(tmp_path, capsys):
    path = tmp_path / "bridge.toml"
    path.write_text('[plugs.libera]\ntype = "irc"\nserver = "irc.example.org"\nnick = "b"\n'
                    'max_lines = 4\n\n[http]\nlisten = "127.0.0.1:9180"\n')
    assert run_cli(["check", str(path)]) == 0
    assert ('warning: plugs.libera: long_messages = "link" but [http] public_url is not set: '
            "a message over max_lines (4) lines ends with a truncation notice"
            in capsys.readouterr().err)
    path.write_text(path.read_text() + 'public_url = "https://bridge.example.org/"\n')
    assert run_cli(["check", str(path)]) == 0
    assert "long_messages" not in capsys.readouterr().err
