"""The memory cache is bounded (least recently used go first) and reads evicted refs back
from the database on demand; its API is the seed's."""

import pytest

from chanmux import Channel, Message, Receipt
from chanmux.testing import run_host
from chanmux_sync import SyncBackRef, SyncCache, SyncRef

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_anchor_the_cache_is_bounded_and_evicted_refs_come_back_from_the_database(tmp_path):
    cfg = config(cache_size=5, plugs={"a": {}, "b": {"edit": False}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        sync = host.hooks["sync"]
        originals = []
        for i in range(30):
            originals.append(await a.inject("#a", f"m{i}"))
        await c.wait_for(lambda: len(c.sent) == 30)
        await settle(host)
        assert len(sync.cache) == 5 and sync.cache.evicted >= 25
        assert sync.cache.indexed <= 5 * 3
        assert b.texts() == [f"m{i}" for i in range(30)], "a copy was relayed twice"
        await a.inject("#a", "m0 edited", id=originals[0].id, edited=True)
        await c.wait_for(lambda: len(c.edits) == 1)
        assert c.edits[0].receipt.id == c.sent[0].receipt.id
        await b.wait_for(lambda: len(b.sent) == 31)
        assert b.sent[-1].msg.edit_of.id == b.sent[0].receipt.id
        await a.inject("#a", None, id=originals[0].id, deleted=True)
        await b.wait_for(lambda: len(b.deletes) == 2)
        await settle(host)
        assert sync.cache.reads >= 1
        assert b.texts()[:30] == [f"m{i}" for i in range(30)] and len(b.sent) == 31


async def test_dict_like_access_by_receipt_or_key(tmp_path):
    async with run_host(config(plug="together"), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        sync = host.hooks["sync"]
        m = await a.inject("#a", "hello")
        await b.wait_for(lambda: b.sent)
        await settle(host)
        ref = sync.cache[m]
        assert sync.cache[b.sent[0].receipt] is ref
        assert sync.cache[ref.key] is ref
        assert sync.cache[Receipt(id=ref.key, channel=Channel("together", "main"))] is ref
        assert ref.source.text.plain == "hello" and ref.origin.id == m.id
        assert m in sync.cache and "nope" not in sync.cache
        with pytest.raises(KeyError):
            sync.cache["nope"]
        assert sync.cache.get(Receipt(id="x", channel=a.channel("#a"))) is None
        assert await sync.cache.fetch("nope") is None
        await sync.cache.writer.flush()
        assert (await SyncBackRef.map_from_sent(b.sent[0].receipt, hook=sync))[0] == ref.key
        key, mapped = await SyncBackRef.map_from_key(ref.key, hook=sync)
        assert key == ref.key and set(mapped) == {("a", "#a"), ("b", "#b"), ("c", "#c")}
        rebuilt = SyncRef.from_backref_map(key, mapped, host)
        assert rebuilt.ids == ref.ids and rebuilt.origin.id == m.id and rebuilt.source is None
        assert rebuilt.quote(50) == ("human", "hello")
        with pytest.raises(KeyError):
            await SyncBackRef.map_from_key("missing", hook=sync)


async def test_sync_ref_and_cache_add(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        sync = host.hooks["sync"]
        chan = Channel("b", "#b")
        origin = Receipt(id="o1", channel=Channel("a", "#a"))
        ref = SyncRef({chan: ["x1"]}, source=Message(text="t"), origin=origin)
        assert ref.ids == {chan: ["x1"], origin.channel: ["o1"]}
        assert len(ref.key) > 32 and SyncRef({}).key != SyncRef({}).key
        assert await sync.cache.add(ref) is ref
        assert sync.cache[Receipt(id="x1", channel=chan)] is ref
        await sync.cache.writer.flush()
        _, mapped = await SyncBackRef.map_from_key(ref.key, hook=sync)
        assert [r.message for r in mapped[("b", "#b")]] == ["x1"]
        back = SyncRef({chan: ["x9"]})
        await sync.cache.add(back, back=True)
        await sync.cache.writer.flush()
        with pytest.raises(KeyError):
            await SyncBackRef.map_from_key(back.key, hook=sync)


async def test_memory_stays_flat_on_a_long_run(tmp_path):
    cfg = config(cache_size=50)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        sync = host.hooks["sync"]
        sizes = []
        for round_ in range(4):
            for i in range(100):
                await a.inject("#a", f"r{round_} m{i}")
            await c.wait_for(lambda r=round_: len(c.sent) == 100 * (r + 1))
            await settle(host)
            sizes.append((len(sync.cache), sync.cache.indexed))
        assert sizes == [(50, 150)] * 4


def test_cache_type_is_constructible_from_a_hook_like_object():
    class Fake:
        name = "x"
        plug = None

        class config:
            cache_size = 3
            quote_length = 10

    cache = SyncCache(Fake())
    for i in range(5):
        cache.remember(SyncRef({Channel("p", "#c"): [str(i)]}))
    assert len(cache) == 3 and cache.evicted == 2
