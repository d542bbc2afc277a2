"""The copies of forwarded messages are kept in the host database: after a restart, edits,
deletes and replies of messages forwarded before it still reach their copies."""

import pytest

from chanmux import Receipt
from chanmux.testing import run_host

from forward_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_edits_deletes_and_replies_follow_forwarded_messages_after_a_restart(tmp_path):
    cfg = config(plugs={"a": {}, "b": {}, "c": {"edit": False}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        kept = await a.inject("#a", "announced")
        gone = await a.inject("#a", "to be deleted")
        await b.wait_for(lambda: len(b.sent) == 2)
        await c.wait_for(lambda: len(c.sent) == 2)
        await settle(host)
        copies = {n: [e.receipt for e in host.plugs[n].sent] for n in "bc"}
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "announced, corrected", id=kept.id, edited=True)
        await b.wait_for(lambda: len(b.edits) == 1)
        await c.wait_for(lambda: len(c.sent) == 1)          # c cannot edit: a new copy
        assert b.edits[0].receipt.id == copies["b"][0].id
        assert c.sent[0].msg.edit_of.id == copies["c"][0].id
        await a.inject("#a", None, id=gone.id, deleted=True)
        await b.wait_for(lambda: len(b.deletes) == 1)
        assert b.deletes[0].receipt.id == copies["b"][1].id
        await a.inject("#a", "a reply", reply_to=Receipt(id=kept.id, channel=kept.channel))
        await b.wait_for(lambda: b.texts()[-1:] == ["a reply"])
        assert b.sent[-1].msg.reply_to.id == copies["b"][0].id
        await settle(host)


async def test_without_persist_nothing_is_written(tmp_path):
    cfg = config({"channels": {"a": ["b"]}, "persist": False})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        first = await a.inject("#a", "once")
        await b.wait_for(lambda: b.texts() == ["once"])
        await settle(host)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "once, edited", id=first.id, edited=True)
        await a.inject("#a", "marker")
        await b.wait_for(lambda: b.texts()[-1:] == ["marker"])
        assert b.edits == []
