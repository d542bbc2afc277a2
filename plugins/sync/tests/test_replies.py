"""Replies point at the target channel's own copy of the parent, or quote it where the parent
never arrived."""

import pytest

from chanmux import Receipt, SentMessage
from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_a_reply_points_at_each_channels_own_copy_of_the_parent(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        parent = await a.inject("#a", "question?", user=a.user("alice", "Alice"))
        await c.wait_for(lambda: c.texts() == ["question?"])
        await settle(host)
        # bob answers on b, replying to b's copy of the question
        b_copy = b.sent[0].receipt
        await b.inject("#b", "answer", user=b.user("bob"),
                       reply_to=Receipt(id=b_copy.id, channel=b_copy.channel))
        await a.wait_for(lambda: a.texts() == ["answer"])
        await c.wait_for(lambda: len(c.sent) == 2)
        await settle(host)
        to_a = a.sent[0].msg.reply_to
        assert to_a.id == parent.id and to_a.channel == parent.channel
        assert to_a.text.plain == "question?"
        to_c = c.sent[1].msg.reply_to
        assert to_c.id == c.sent[0].receipt.id and to_c.channel == c.sent[0].channel
        assert c.sent[1].msg.text.plain == "answer"


async def test_a_reply_to_a_parent_that_never_reached_a_channel_carries_a_quote(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        unsynced = await a.inject("#elsewhere", "said outside the bridge", user=a.user("carol", "Carol"))
        await a.inject("#a", "replying", reply_to=unsynced)
        await b.wait_for(lambda: b.sent)
        copy = b.sent[0].msg
        assert copy.reply_to is None
        assert copy.text.plain.startswith("> Carol: said outside the bridge\n")
        assert copy.text.plain.endswith("replying")


async def test_a_reply_to_an_unknown_receipt_without_text_does_not_crash(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "replying", reply_to=Receipt(id="nope", channel=a.channel("#a")))
        await b.wait_for(lambda: b.sent)
        assert b.sent[0].msg.text.plain == "> (an earlier message)\nreplying"


async def test_a_parent_missing_from_one_channel_is_quoted_there_only(tmp_path):
    """The parent reached b but c was down and dropped it: b gets a real reply, c a quote."""
    cfg = config(retry_limit=0)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        parent = await a.inject("#a", "first", user=a.user("alice", "Alice"))
        await c.wait_for(lambda: c.sent)
        await settle(host)
        ref = host.hooks["sync"].cache[parent]
        ref.ids.pop(c.channel("#c"))
        await a.inject("#a", "second", reply_to=SentMessage(id=parent.id, channel=parent.channel))
        await b.wait_for(lambda: len(b.sent) == 2)
        await c.wait_for(lambda: len(c.sent) == 2)
        assert b.sent[1].msg.reply_to.id == b.sent[0].receipt.id
        assert c.sent[1].msg.reply_to is None
        assert c.sent[1].msg.text.plain == "> Alice: first\nsecond"
