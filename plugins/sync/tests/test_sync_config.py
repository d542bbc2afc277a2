"""Bad configs fail at load with one clear line per problem, naming where it is."""

import pytest

from chanmux import ConfigError
from chanmux.testing import make_host

from sync_helpers import config


def problems(cfg, tmp_path):
    with pytest.raises(ConfigError) as info:
        make_host(cfg, path=tmp_path / "x.toml")
    return dict(info.value.issues)


def test_a_label_naming_a_missing_channel_is_an_error_naming_its_place(tmp_path):
    found = problems(config(channels={"main": ["a", "nope", "b"]}), tmp_path)
    assert 'unknown channel "nope"' in found["hooks.sync.channels.main[1]"]


def test_anchor_unknown_config_keys_are_refused(tmp_path):
    cfg = config()
    cfg["hooks"]["sync"]["name-format"] = "{name}"
    cfg["hooks"]["sync"]["plugs"] = {"b": {"join": False}}
    found = problems(cfg, tmp_path)
    assert 'did you mean "name_format"' in found["hooks.sync.name-format"]
    assert "unknown key" in found["hooks.sync.plugs.b.join"]


def test_wrong_types_are_refused(tmp_path):
    found = problems(config(joins="yes", cache_size="big"), tmp_path)
    assert "expected true or false" in found["hooks.sync.joins"]
    assert "expected an integer" in found["hooks.sync.cache_size"]


def test_every_problem_at_once(tmp_path):
    cfg = config(channels={"main": ["a", "b"], "other": ["a", "ghost"]},
                 name_format="{nick}", cache_size=0, labels={"nolabel": {"joins": False}},
                 titles={"nolabel2": "x"})
    cfg["hooks"]["sync"]["plugs"] = {"ghostplug": {"edits": False}, "b": {"name_format": "{oops"}}
    found = problems(cfg, tmp_path)
    assert 'already in label "main"' in found["hooks.sync.channels.other[0]"]
    assert 'unknown channel "ghost"' in found["hooks.sync.channels.other[1]"]
    assert 'unknown template variable "{nick}"' in found["hooks.sync.name_format"]
    assert "not a valid name template" in found["hooks.sync.plugs.b.name_format"]
    assert 'unknown plug "ghostplug"' in found["hooks.sync.plugs.ghostplug"]
    assert 'unknown label "nolabel"' in found["hooks.sync.labels.nolabel"]
    assert 'unknown label "nolabel2"' in found["hooks.sync.titles.nolabel2"]
    assert "at least 1" in found["hooks.sync.cache_size"]


def test_missing_channels_key_and_empty_sync(tmp_path):
    cfg = config()
    del cfg["hooks"]["sync"]["channels"]
    found = problems(cfg, tmp_path)
    assert "missing required key 'channels'" in found["hooks.sync"]
    found = problems({**config(), "hooks": {"sync": {"type": "sync", "channels": {}}}}, tmp_path)
    assert "no labels" in found["hooks.sync.channels"]


def test_a_virtual_plug_name_that_is_taken(tmp_path):
    found = problems(config(plug="a"), tmp_path)
    assert "two plugs or hooks" in found["hooks.sync.plug"]


def test_a_good_config_loads(tmp_path):
    host = make_host(config(plug="together", name_format="{name}@{network}", no_highlight=True,
                            labels={"main": {"joins": False}}), path=tmp_path / "x.toml")
    sync = host.hooks["sync"]
    assert [str(c) for c in sync.channels["main"]] == ["a:#a", "b:#b", "c:#c"]
    assert host.channels["together:main"].plug == "together"


def test_check_reports_a_hooks_unknown_channel_beside_other_errors(tmp_path, capsys):
    """`chanmux check` reports the sync's own problems (an unknown channel, a bad template)
    in the same run as the plug and channel errors (core builds the hook on a partial config;
    here, where chanmux-sync is installed)."""
    from chanmux.testing import run_cli as main

    path = tmp_path / "bridge.toml"
    path.write_text('[plugs.mem]\ntype = "memory"\nedit = "yes"\n\n'
                    '[plugs.other]\ntype = "memory"\n\n'
                    '[channels.a]\nplug = "mem"\nsource = "#a"\n\n'
                    '[channels.b]\nplug = "other"\nsource = 5\n\n'
                    '[hooks.sync]\ntype = "sync"\nname_format = "{nick}"\n'
                    '[hooks.sync.channels]\nx = ["a", "b", "nope"]\n'
                    '[hooks.sync.plugs.mem]\njoins = false\n')
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {path}: 4 problems",
        "  channels.b.source: expected a string, got 5",
        '  plugs.mem.edit: expected true or false, got "yes"',
        '  hooks.sync.channels.x[2]: unknown channel "nope" (channels: a, b)',
        ('  hooks.sync.name_format: unknown template variable "{nick}" (variables: channel, id, '
         "label, name, network, plug, real_name, username)"),
    ]
