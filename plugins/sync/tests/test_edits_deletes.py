"""Edits follow a message in place where the plug can edit, as marked new messages elsewhere;
deletes remove every copy of every revision and never go back to the origin."""

import pytest

from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_anchor_edits_are_made_in_place_not_reposted(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await c.wait_for(lambda: c.texts() == ["v1"])
        await settle(host)
        await a.inject("#a", "v2", id=m.id, edited=True)
        await b.wait_for(lambda: len(b.edits) == 1)
        await c.wait_for(lambda: len(c.edits) == 1)
        await settle(host)
        for plug in (b, c):
            assert plug.texts() == ["v1"], "the edit was re-posted as a new message"
            edit = plug.edits[0]
            assert edit.receipt.id == plug.sent[0].receipt.id
            assert edit.msg.text.plain == "v2" and edit.msg.edited
        assert a.events == []


async def test_plugs_that_cannot_edit_get_a_marked_message_naming_the_earlier_copy(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"edit": False}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await b.wait_for(lambda: b.texts() == ["v1"])
        await a.inject("#a", "v2", id=m.id, edited=True)
        await a.inject("#a", "v3", id=m.id, edited=True)
        await b.wait_for(lambda: b.texts() == ["v1", "v2", "v3"])
        await c.wait_for(lambda: len(c.edits) == 2)
        await settle(host)
        first, second, third = (e for e in b.sent)
        assert second.msg.edited and second.msg.edit_of.id == first.receipt.id
        assert third.msg.edited and third.msg.edit_of.id == second.receipt.id
        assert b.edits == [] and c.texts() == ["v1"]


async def test_anchor_deletes_remove_every_revision_and_never_go_back_to_the_origin(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"edit": False}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await b.wait_for(lambda: b.texts() == ["v1"])
        await a.inject("#a", "v2", id=m.id, edited=True)
        await b.wait_for(lambda: b.texts() == ["v1", "v2"])
        await settle(host)
        await a.inject("#a", None, id=m.id, deleted=True)
        await b.wait_for(lambda: len(b.deletes) == 2)
        await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert {e.receipt.id for e in b.deletes} == {e.receipt.id for e in b.sent}
        assert c.deletes[0].receipt.id == c.sent[0].receipt.id
        assert a.deletes == [], "the delete was sent back to the origin"
        assert b.messages == {} and c.messages == {}


async def test_a_plug_that_cannot_delete_is_left_alone(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"delete": False}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await c.wait_for(lambda: c.texts() == ["v1"])
        await a.inject("#a", None, id=m.id, deleted=True)
        await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert b.deletes == [] and b.texts() == ["v1"]


async def test_deleting_a_copy_elsewhere_is_not_spread(tmp_path):
    """Only the author's delete of the original spreads; a copy removed on its own network
    (a moderator there) stays removed there alone."""
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "v1")
        await c.wait_for(lambda: c.texts() == ["v1"])
        await settle(host)
        await b.inject("#b", None, id=b.sent[0].receipt.id, deleted=True)
        await a.inject("#a", "marker")
        await c.wait_for(lambda: c.texts() == ["v1", "marker"])
        await settle(host)
        assert a.deletes == c.deletes == []


@pytest.mark.parametrize("where", ["hook", "label", "plug"])
async def test_edits_and_deletes_can_be_turned_off(tmp_path, where):
    keys = {"edits": False, "deletes": False}
    if where == "hook":
        cfg = config(**keys)
    elif where == "label":
        cfg = config(labels={"main": keys})
    else:
        cfg = config()
        cfg["hooks"]["sync"]["plugs"] = {"b": keys}
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await c.wait_for(lambda: c.texts() == ["v1"])
        await a.inject("#a", "v2", id=m.id, edited=True)
        if where == "plug":
            await c.wait_for(lambda: len(c.edits) == 1)
        await a.inject("#a", None, id=m.id, deleted=True)
        if where == "plug":
            await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert b.edits == [] and b.deletes == [] and b.texts() == ["v1"]
        if where != "plug":
            assert c.edits == [] and c.deletes == []


async def test_an_edit_of_a_message_never_synced_is_relayed_as_an_edited_message(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "changed before the bridge saw it", id="old-1", edited=True)
        await b.wait_for(lambda: b.sent)
        assert b.sent[0].msg.edited
        await a.inject("#a", None, id="old-2", deleted=True)
        await settle(host)
        assert b.deletes == [] and len(b.sent) == 1
