"""A message in one channel of a label appears once in each other channel, never back, never
twice, in order, whatever the echoes and the concurrency."""

import anyio
import pytest

from chanmux import Message, RichText, Segment
from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_a_message_reaches_every_other_channel_once_and_never_its_own(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "hello", user=a.user("alice", "Alice"))
        await b.wait_for(lambda: b.texts() == ["hello"])
        await c.wait_for(lambda: c.texts() == ["hello"])
        await settle(host)
        assert a.texts() == [] and b.texts() == ["hello"] and c.texts() == ["hello"]
        await c.inject("#c", "from c")
        await a.wait_for(lambda: a.texts() == ["from c"])
        await settle(host)
        assert b.texts() == ["hello", "from c"] and c.texts() == ["hello"]


async def test_formatting_action_and_author_survive(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        text = RichText([Segment("plain "), Segment("bold", bold=True)])
        await a.inject("#a", text, user=a.user("alice", "Alice"), action=True)
        await b.wait_for(lambda: b.sent)
        copy = b.sent[0].msg
        assert copy.text == text and copy.action
        assert copy.user.real_name == "Alice" and copy.user.username == "alice"


async def test_echoes_are_never_relayed_even_without_the_host_knowing_them(tmp_path):
    """The memory plug echoes every put with the same id; the sync recognises its copies by
    id too (here the host's echo memory is tiny, so it forgets them)."""
    cfg = config()
    cfg["host"]["echo_cache"] = 1
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        for i in range(20):
            await a.inject("#a", f"m{i}")
        await c.wait_for(lambda: len(c.sent) == 20)
        await settle(host)
        assert b.texts() == c.texts() == [f"m{i}" for i in range(20)]
        assert a.texts() == []


async def test_the_same_message_received_twice_is_relayed_once(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "once", id="dup-1")
        await a.inject("#a", "once", id="dup-1")
        await b.wait_for(lambda: b.texts() == ["once"])
        await settle(host)
        assert b.texts() == ["once"]


async def test_concurrent_channels_lose_nothing_duplicate_nothing_and_keep_order(tmp_path):
    plugs = {name: {} for name in ("a", "b", "c", "d")}
    cfg = config(plugs=plugs)
    cfg["host"]["lanes"] = 4
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        count = 40

        async def talk(name):
            plug = host.plugs[name]
            for i in range(count):
                await plug.inject(f"#{name}", f"{name}{i}")

        async with anyio.create_task_group() as tg:
            for name in plugs:
                tg.start_soon(talk, name)
        for name in plugs:
            plug = host.plugs[name]
            await plug.wait_for(lambda p=plug: len(p.sent) == 3 * count)
        await settle(host)
        for name in plugs:
            got = host.plugs[name].texts()
            assert len(got) == len(set(got)) == 3 * count
            for other in plugs:
                mine = [t for t in got if t.startswith(other)]
                expected = [] if other == name else [f"{other}{i}" for i in range(count)]
                assert mine == expected


async def test_labels_are_separate_conversations(tmp_path):
    plugs = {name: {} for name in ("a", "b", "c", "d")}
    cfg = config(plugs=plugs, channels={"one": ["a", "b"], "two": ["c", "d"]})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c, d = (host.plugs[n] for n in "abcd")
        await a.inject("#a", "to one")
        await c.inject("#c", "to two")
        await b.wait_for(lambda: b.texts() == ["to one"])
        await d.wait_for(lambda: d.texts() == ["to two"])
        await settle(host)
        assert a.texts() == c.texts() == []


async def test_messages_outside_any_label_are_ignored(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#elsewhere", "not synced")
        await a.inject("#a", "synced")
        await b.wait_for(lambda: b.texts() == ["synced"])
        await settle(host)
        assert b.texts() == ["synced"]


async def test_no_user_and_empty_text_do_not_crash(tmp_path, caplog):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "nobody said this", user=None)
        await a.inject("#a", "")
        await a.inject("#a", None)
        await a.inject("#a", "last")
        await b.wait_for(lambda: b.texts() == ["nobody said this", "last"])
        await settle(host)
        assert b.sent[0].msg.user is None
        assert b.texts() == ["nobody said this", "last"]
    assert "Traceback" not in caplog.text and "failed" not in caplog.text


async def test_messages_other_hooks_put_into_a_synced_channel_are_relayed(tmp_path):
    """A bot hook answering in one channel is seen in all of them (it is not the sync's copy)."""
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        b, c = host.plugs["b"], host.plugs["c"]
        await host.put(host.channels["a"], Message(text="bot says", user=host.plugs["a"].user("bot")))
        await c.wait_for(lambda: c.texts() == ["bot says"])
        await settle(host)
        assert b.texts() == ["bot says"] and c.texts() == ["bot says"]
        assert host.plugs["a"].texts() == ["bot says"]


async def test_two_syncs_sharing_channels_do_not_loop(tmp_path):
    cfg = config()
    cfg["hooks"]["sync2"] = {"type": "sync", "channels": {"main": ["a", "b"]}}
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "hi")
        await c.wait_for(lambda: c.texts())
        await settle(host)
        # both syncs copy a -> b (two copies in b is what that config asks for); the second
        # sync's copy reaches c through the first sync once; nothing ever comes back to a
        assert b.texts() == ["hi", "hi"]
        assert c.texts() == ["hi", "hi"]
        assert a.texts() == []
