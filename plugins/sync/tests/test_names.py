"""Author names of copies: a template per hook, label and plug; never "None"; optionally
highlight-safe; the formatted name is the copy's `user.real_name`."""

import pytest

from chanmux import NameFormat, User
from chanmux.testing import run_host

from sync_helpers import config, settle

#: the zero-width space a highlight-safe NameFormat puts after a name's first letter
ZWSP = "\u200b"

pytestmark = pytest.mark.anyio


async def relay_name(tmp_path, cfg, user=None):
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "hi", user=user or a.user("alice", "Alice Liddell"))
        await b.wait_for(lambda: b.sent)
        await c.wait_for(lambda: c.sent)
        await settle(host)  # nothing left on its way to be delivered after the next run's start
        return b.sent[0].msg.user, c.sent[0].msg.user


async def test_every_template_variable(tmp_path):
    cfg = config(name_format="{real_name}|{username}|{name}|{id}|{network}|{plug}|{channel}|{label}")
    cfg["plugs"]["a"]["network"] = "Memoria"
    cfg["plugs"]["a"]["titles"] = {"#a": "Alpha room"}
    user_b, _ = await relay_name(tmp_path, cfg)
    assert user_b.real_name == "Alice Liddell|alice|Alice Liddell|a:alice|Memoria|a|Alpha room|main"
    assert user_b.username == "alice" and user_b.id == "a:alice"


async def test_anchor_channel_variable_is_never_none(tmp_path):
    cfg = config(name_format="{name} in {channel}")
    user_b, _ = await relay_name(tmp_path, cfg)
    assert user_b.real_name == "Alice Liddell in #a"
    assert "None" not in user_b.real_name


async def test_anchor_per_plug_name_format_overrides_apply(tmp_path):
    cfg = config(name_format="<{name}>")
    cfg["hooks"]["sync"]["plugs"] = {"b": {"name_format": "{username}@{network}"}}
    user_b, user_c = await relay_name(tmp_path, cfg)
    assert user_b.real_name == "alice@memory"
    assert user_c.real_name == "<Alice Liddell>"


async def test_label_override_and_plug_beats_label(tmp_path):
    cfg = config(labels={"main": {"name_format": "[{label}] {name}"}})
    cfg["hooks"]["sync"]["plugs"] = {"c": {"name_format": "{username}"}}
    user_b, user_c = await relay_name(tmp_path, cfg)
    assert user_b.real_name == "[main] Alice Liddell"
    assert user_c.real_name == "alice"


async def test_no_highlight_inserts_a_zero_width_space_in_names(tmp_path):
    cfg = config(name_format="<{name}>")
    cfg["hooks"]["sync"]["plugs"] = {"b": {"no_highlight": True}}
    user_b, user_c = await relay_name(tmp_path, cfg)
    assert user_b.real_name == f"<A{ZWSP}lice Liddell>"
    assert user_b.real_name.replace(ZWSP, "") == "<Alice Liddell>"
    assert ZWSP not in user_c.real_name


async def test_a_user_with_only_an_id_or_username(tmp_path):
    user_b, _ = await relay_name(tmp_path, config(), user=User(id="u1"))
    assert user_b.real_name == "u1"
    user_b, _ = await relay_name(tmp_path, config(name_format="{real_name}"), user=User(username="zed"))
    assert user_b.real_name == "zed", "an empty rendering falls back to the best name"


def test_name_format_checks_templates():
    with pytest.raises(ValueError, match="unknown template variable"):
        NameFormat("{nick}")
    with pytest.raises(ValueError, match="not a valid name template"):
        NameFormat("{name")
    with pytest.raises(ValueError, match="plain variable"):
        NameFormat("{name.upper}")
    fmt = NameFormat("{name!r:>10}")
    assert fmt.render(User(real_name="x"), network="n", plug="p", channel="c", label="l") == "       'x'"
    assert NameFormat("{name}").apply(None, network="n", plug="p", channel="c", label="l") is None
