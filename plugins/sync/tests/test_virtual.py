"""The virtual SyncPlug: one channel per label; a put there reaches every member; look-ups
aggregate the members; every synced message is also received there."""

import pytest

from chanmux import Channel, Message, Receipt, User
from chanmux.testing import run_host
from chanmux_sync import SyncPlug

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_a_put_to_the_virtual_channel_reaches_every_member_once(tmp_path):
    async with run_host(config(plug="together"), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        channel = host.channels["together:main"]
        [receipt] = await host.put(channel, Message(text="announcement", user=User(real_name="Bot")))
        for plug in (a, b, c):
            await plug.wait_for(lambda p=plug: p.texts() == ["announcement"])
        await settle(host)
        assert all(p.texts() == ["announcement"] for p in (a, b, c))
        ref = host.hooks["sync"].cache[receipt.id]
        assert ref.origin is None and len(list(ref.copies())) == 3
        await host.edit(receipt, Message(text="announcement v2"))
        for plug in (a, b, c):
            await plug.wait_for(lambda p=plug: len(p.edits) == 1)
        assert await host.delete(receipt) is True
        for plug in (a, b, c):
            await plug.wait_for(lambda p=plug: len(p.deletes) == 1)
        await settle(host)
        assert all(len(p.sent) == 1 for p in (a, b, c))


async def test_synced_messages_are_received_in_the_virtual_channel(tmp_path):
    async with run_host(config(plug="together"), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        rec = host.hooks["rec"]
        m = await a.inject("#a", "hello")
        got = await rec.wait_for(lambda r: r.sent.channel == Channel("together", "main"))
        assert got.sent.text.plain == "hello" and not got.is_echo
        assert got.sent.id == host.hooks["sync"].cache[m].key
        await host.put(host.channels["together:main"], Message(text="from outside"))
        echo = await rec.wait_for(lambda r: r.sent.channel.plug == "together"
                                  and r.sent.text.plain == "from outside")
        assert echo.is_echo
        await a.inject("#a", "v2", id=m.id, edited=True)
        await rec.wait_for(lambda r: r.sent.channel.plug == "together" and r.sent.edited)
        await a.inject("#a", None, id=m.id, deleted=True)
        await rec.wait_for(lambda r: r.sent.channel.plug == "together" and r.sent.deleted)
        await settle(host)
        assert b.texts() == ["hello", "from outside"]


async def test_lookups_aggregate_the_members(tmp_path):
    cfg = config(plug="together", channels={"main": ["a", "b"], "quiet": ["c"]},
                 titles={"quiet": "The quiet room"})
    cfg["plugs"]["a"]["titles"] = {"#a": "Alpha"}
    cfg["plugs"]["c"]["private"] = ["#c"]
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        plug = host.plugs["together"]
        main, quiet = Channel("together", "main"), Channel("together", "quiet")
        assert isinstance(plug, SyncPlug)
        assert await host.channel_title(main) == "Alpha / #b"
        assert await host.channel_title(quiet) == "The quiet room"
        assert await host.channel_title(Channel("together", "nope")) is None
        assert await host.channel_is_private(main) is False
        assert await host.channel_is_private(quiet) is True
        assert await host.channel_is_private(Channel("together", "nope")) is None
        await host.plugs["a"].inject("#a", None, joined=[host.plugs["a"].user("ann")])
        await host.plugs["b"].inject("#b", None, joined=[host.plugs["b"].user("ben")])
        await settle(host)
        names = sorted(u.username for u in await host.channel_members(main))
        assert names == ["ann", "ben", "bridge", "bridge"]
        assert await host.channel_members(Channel("together", "nope")) is None
        assert sorted(c.source for c in await host.public_channels("together")) == ["main", "quiet"]
        assert await host.private_channels("together") == []
        assert plug.in_sync(main) == [host.channels["a"], host.channels["b"]]
        assert plug.in_sync(host.channels["a"]) == []
        assert plug.sync_for(host.channels["b"]) == main
        assert plug.sync_for(Channel("a", "#other")) is None
        assert SyncPlug.any_sync(host, host.channels["c"]) == quiet
        assert SyncPlug.any_sync(host, Channel("x", "y")) is None


async def test_a_put_to_an_unknown_virtual_channel_fails_cleanly(tmp_path):
    async with run_host(config(plug="together"), path=tmp_path / "x.toml") as host:
        with pytest.raises(LookupError):
            await host.put(Channel("together", "nope"), Message(text="x"))


async def test_editing_or_deleting_through_the_virtual_channel_leaves_the_original_alone(tmp_path):
    async with run_host(config(plug="together"), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "original")
        await c.wait_for(lambda: c.sent)
        key = host.hooks["sync"].cache[m].key
        virtual = Receipt(id=key, channel=Channel("together", "main"))
        await host.edit(virtual, Message(text="moderated"))
        await b.wait_for(lambda: len(b.edits) == 1)
        await c.wait_for(lambda: len(c.edits) == 1)
        assert await host.delete(virtual) is True
        await b.wait_for(lambda: len(b.deletes) == 1)
        await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert a.events == []
