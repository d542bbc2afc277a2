"""Joins, leaves, changes of name (under `joins`) and channel titles (under `renames`) are
relayed or not per config, with per-plug overrides."""

import pytest

from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def events(tmp_path, cfg):
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        dave = a.user("dave")
        await a.inject("#a", None, joined=[dave])
        await a.inject("#a", None, left=[dave])
        davy = a.user("davy")
        await a.inject("#a", None, user=davy, renamed=(dave, davy))
        await a.inject("#a", None, title="New topic", user=dave)
        await a.inject("#a", "marker")
        await b.wait_for(lambda: "marker" in b.texts())
        await c.wait_for(lambda: "marker" in c.texts())
        await settle(host)
        kinds = {}
        for plug in (b, c):
            found = []
            for e in plug.sent:
                if e.msg.joined:
                    found.append("join")
                elif e.msg.left:
                    found.append("leave")
                elif e.msg.renamed is not None:
                    before, after = e.msg.renamed
                    found.append(f"nick:{before.username}>{after.username}")
                elif e.msg.title is not None:
                    found.append(f"title:{e.msg.title}")
                else:
                    found.append(e.msg.text.plain)
            kinds[plug.name] = found
        return kinds


async def test_joins_leaves_and_renames_are_relayed_by_default(tmp_path):
    kinds = await events(tmp_path, config())
    assert kinds["b"] == kinds["c"] == ["join", "leave", "nick:dave>davy", "title:New topic", "marker"]


async def test_joins_and_renames_can_be_turned_off(tmp_path):
    kinds = await events(tmp_path, config(joins=False, renames=False))
    assert kinds["b"] == kinds["c"] == ["marker"]


async def test_per_plug_overrides_really_apply(tmp_path):
    cfg = config(joins=True, renames=True)
    cfg["hooks"]["sync"]["plugs"] = {"b": {"joins": False}, "c": {"renames": False}}
    kinds = await events(tmp_path, cfg)
    assert kinds["b"] == ["title:New topic", "marker"]
    assert kinds["c"] == ["join", "leave", "nick:dave>davy", "marker"]


async def test_per_plug_override_can_turn_on_what_the_hook_turns_off(tmp_path):
    cfg = config(joins=False, renames=False)
    cfg["hooks"]["sync"]["plugs"] = {"b": {"joins": True}}
    kinds = await events(tmp_path, cfg)
    assert kinds["b"] == ["join", "leave", "nick:dave>davy", "marker"]
    assert kinds["c"] == ["marker"]


async def test_a_rename_updates_the_channel_variable(tmp_path):
    cfg = config(name_format="{name} ({channel})")
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "one")
        await a.inject("#a", None, title="Renamed")
        await a.inject("#a", "two")
        await b.wait_for(lambda: len(b.sent) == 3)
        assert b.sent[0].msg.user.real_name == "human (#a)"
        assert b.sent[2].msg.user.real_name == "human (Renamed)"
