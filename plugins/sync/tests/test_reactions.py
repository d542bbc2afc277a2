"""Reactions follow their message to every copy; a reaction taken back is taken back everywhere;
typing is shown in the other channels, throttled; the people a membership notice names are
named as authors are, and `no_highlight` breaks names only where names notify people."""

import pytest

from chanmux import Reaction, Receipt
from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio

ZWSP = "\u200b"


def reactions(plug, source):
    return [(e.msg.user.real_name, e.msg.reaction.key, e.msg.reaction.target.id,
             e.msg.reaction.removed) for e in plug.sent
            if e.channel.source == source and e.msg.reaction is not None]


async def test_a_reaction_goes_to_the_copy_of_its_message_in_every_channel(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        said = await a.inject("#a", "react to me")
        await b.wait_for(lambda: b.texts() == ["react to me"])
        await c.wait_for(lambda: c.texts() == ["react to me"])
        copy_b, copy_c = b.sent[0].receipt, c.sent[0].receipt
        like = await a.inject("#a", user="bob", reaction=Reaction("👍", Receipt(id=said.id,
                                                                              channel=said.channel)))
        await settle(host)
        assert reactions(b, "#b") == [("bob", "👍", copy_b.id, False)]
        assert reactions(c, "#c") == [("bob", "👍", copy_c.id, False)]
        # on a network that takes a reaction back by deleting it (Matrix), the others hear
        # that it is taken back
        await a.inject("#a", id=like.id, deleted=True)
        await settle(host)
        assert reactions(b, "#b")[-1] == ("bob", "👍", copy_b.id, True)
        assert reactions(c, "#c")[-1] == ("bob", "👍", copy_c.id, True)
        # one that says it with an event of its own (IRC)
        await b.inject("#b", user="carol", reaction=Reaction("🎉", copy_b))
        await b.inject("#b", user="carol", reaction=Reaction("🎉", copy_b, removed=True))
        await settle(host)
        assert reactions(a, "#a") == [("carol", "🎉", said.id, False), ("carol", "🎉", said.id, True)]
        assert [(r[1], r[3]) for r in reactions(c, "#c")][-2:] == [("🎉", False), ("🎉", True)]


async def test_a_reaction_to_a_message_a_channel_never_got_goes_nowhere_there(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", user="bob", reaction=Reaction("👍", Receipt(id="unknown",
                                                                         channel=a.channel("#a"))))
        await a.inject("#a", "marker")
        await b.wait_for(lambda: "marker" in b.texts())
        await settle(host)
        assert reactions(b, "#b") == []


async def test_typing_is_shown_in_the_other_channels_throttled(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        for _ in range(5):
            await a.type("#a", "alice")
        await a.type("#a", "alice", active=False)
        await a.type("#a", "alice", active=False)  # a second stop: nothing started it
        assert b.typings["#b"] == c.typings["#c"] == [("alice", True), ("alice", False)]
        assert "#a" not in a.typings


async def test_membership_notices_name_people_as_authors_are_and_keep_the_reason(tmp_path):
    cfg = config(name_format="{name}@{plug}")
    cfg["hooks"]["sync"]["plugs"] = {"b": {"no_highlight": True}}
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        dave = a.user("dave")
        await a.inject("#a", None, joined=[dave])
        await a.inject("#a", None, left=[dave], reason="gone fishing")
        await a.inject("#a", "marker")
        await b.wait_for(lambda: "marker" in b.texts())
        await c.wait_for(lambda: "marker" in c.texts())
        await settle(host)
        joins_b = [e.msg.joined[0].real_name for e in b.sent if e.msg.joined]
        leaves_c = [(e.msg.left[0].real_name, e.msg.reason) for e in c.sent if e.msg.left]
        assert joins_b == [f"d{ZWSP}ave@a"]
        assert leaves_c == [("dave@a", "gone fishing")]


async def test_no_highlight_breaks_names_only_where_names_notify(tmp_path):
    """A name is broken with a zero-width space only for a network where saying a name pings
    its owner (`Capabilities.highlights`, IRC); elsewhere (Matrix) it stays whole, so it can
    be copied and searched."""
    cfg = config(plugs={"a": {}, "b": {"highlights": False}, "c": {}}, no_highlight=True)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "hi", user=a.user("bob"))
        await b.wait_for(lambda: b.texts() == ["hi"])
        await c.wait_for(lambda: c.texts() == ["hi"])
        assert b.sent[0].msg.user.real_name == "bob"
        assert c.sent[0].msg.user.real_name == f"b{ZWSP}ob"


async def test_a_burst_of_lines_waiting_for_a_plug_that_prefers_it_goes_as_one_message(tmp_path):
    """Ten lines pasted on a network that cannot edit them (`edit = false`, as IRC) while the
    target that prefers merged lines (`merge = true`, as Matrix) reconnects: it gets them as one
    message, the other target line by line; a reaction to the merged message reaches a line."""
    cfg = config(plugs={"a": {"edit": False}, "b": {"merge": True}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        gate = b.hold_opens()
        b.fail("reconnecting")
        await host.hooks["rec"].wait_until(lambda: any(s[:2] == ("b", "failed")
                                                       for s in host.hooks["rec"].states))
        lines = [await a.inject("#a", f"line {n}", user="paster") for n in range(10)]
        await c.wait_for(lambda: len(c.texts()) == 10)
        gate.set()
        await b.wait_for(lambda: b.texts())
        await settle(host)
        assert b.texts() == ["\n".join(f"line {n}" for n in range(10))]
        assert c.texts() == [f"line {n}" for n in range(10)]
        await b.inject("#b", user="bob", reaction=Reaction("👀", b.sent[0].receipt))
        await settle(host)
        got = [e.msg.reaction.target.id for e in a.sent if e.msg.reaction is not None]
        assert len(got) == 1 and got[0] in {line.id for line in lines}


async def test_lines_of_a_network_that_can_edit_them_are_not_merged(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"merge": True}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        gate = b.hold_opens()
        b.fail("reconnecting")
        await host.hooks["rec"].wait_until(lambda: any(s[:2] == ("b", "failed")
                                                       for s in host.hooks["rec"].states))
        for n in range(3):
            await a.inject("#a", f"line {n}", user="editor")
        await host.wait_idle()
        gate.set()
        await b.wait_for(lambda: len(b.texts()) == 3)
        assert b.texts() == ["line 0", "line 1", "line 2"]
