"""What a forward copies where, with names, filters, edits, deletes and replies."""

import logging
import re

import anyio
import pytest

from chanmux import Channel, ConfigError, Receipt, State
from chanmux.testing import make_host, run_host
from chanmux_forward import ForwardConfig, ForwardHook

from forward_helpers import config, settle

#: the zero-width space a highlight-safe NameFormat puts after a name's first letter
ZWSP = "\u200b"

pytestmark = pytest.mark.anyio


async def test_messages_go_one_way_to_every_destination(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "news", user=a.user("alice", "Alice"))
        await b.inject("#b", "chatter in b")
        await b.wait_for(lambda: b.texts() == ["news"])
        await c.wait_for(lambda: c.texts() == ["news"])
        await settle(host)
        assert a.texts() == [] and c.texts() == ["news"]
        assert b.sent[0].msg.user.real_name == "Alice"


async def test_groups_forward_every_channel_of_a_plug_or_listed_channels(tmp_path):
    cfg = config({"groups": {"all-a": {"plugs": ["a"], "to": ["c"]},
                             "some": {"channels": ["b"], "to": ["c", "a"]}}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#anything", "from a channel not configured")
        await b.inject("#b", "from b")
        await b.inject("#b-other", "not in a group")
        await c.wait_for(lambda: len(c.sent) == 2)
        await a.wait_for(lambda: a.texts() == ["from b"])
        await settle(host)
        assert sorted(c.texts()) == ["from a channel not configured", "from b"]


async def test_users_allow_list(tmp_path):
    cfg = config({"channels": {"a": ["b"]}, "users": ["a:boss"]})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "ignored", user=a.user("intern"))
        await a.inject("#a", "nobody", user=None)
        await a.inject("#a", "announcement", user=a.user("boss"))
        await b.wait_for(lambda: b.texts() == ["announcement"])
        await settle(host)
        assert b.texts() == ["announcement"]


async def test_joins_and_renames_are_off_by_default_and_per_plug_overrides_apply(tmp_path):
    cfg = config({"channels": {"a": ["b", "c"]}, "plugs": {"c": {"joins": True, "renames": True}}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        dave, davy = a.user("dave"), a.user("davy")
        await a.inject("#a", None, joined=[dave])
        await a.inject("#a", None, user=davy, renamed=(dave, davy))
        await a.inject("#a", None, title="Topic")
        await a.inject("#a", "marker")
        await b.wait_for(lambda: b.texts() == ["marker"])
        await c.wait_for(lambda: len(c.sent) == 4)
        await settle(host)
        assert b.texts() == ["marker"]
        assert c.sent[0].msg.joined and c.sent[2].msg.title == "Topic"
        assert [u.username for u in c.sent[1].msg.renamed] == ["dave", "davy"]


async def test_name_templates_per_plug_and_no_highlight(tmp_path):
    cfg = config({"channels": {"a": ["b", "c"]}, "name_format": "{name} ({label} on {channel})",
                  "plugs": {"c": {"name_format": "{username}@{network}", "no_highlight": True}}})
    cfg["plugs"]["a"]["titles"] = {"#a": "Announcements"}
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "hi", user=a.user("alice", "Alice"))
        await b.wait_for(lambda: b.sent)
        await c.wait_for(lambda: c.sent)
        assert b.sent[0].msg.user.real_name == "Alice (a on Announcements)"
        assert c.sent[0].msg.user.real_name == f"a{ZWSP}lice@memory"


async def test_edits_and_deletes_follow_the_forwarded_copies(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"edit": False}, "c": {}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        m = await a.inject("#a", "v1")
        await c.wait_for(lambda: c.texts() == ["v1"])
        await a.inject("#a", "v2", id=m.id, edited=True)
        await c.wait_for(lambda: len(c.edits) == 1)
        await b.wait_for(lambda: b.texts() == ["v1", "v2"])
        assert c.edits[0].receipt.id == c.sent[0].receipt.id
        assert b.sent[1].msg.edit_of.id == b.sent[0].receipt.id
        await a.inject("#a", None, id=m.id, deleted=True)
        await b.wait_for(lambda: len(b.deletes) == 2)
        await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert a.events == []


async def test_replies_point_at_the_forwarded_copy_or_quote(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        parent = await a.inject("#a", "question", user=a.user("alice", "Alice"))
        await b.wait_for(lambda: b.sent)
        outside = await a.inject("#other", "said elsewhere", user=a.user("carol"))
        await a.inject("#a", "answer", reply_to=Receipt(id=parent.id, channel=parent.channel))
        await a.inject("#a", "other answer", reply_to=outside)
        await b.wait_for(lambda: len(b.sent) == 3)
        assert b.sent[1].msg.reply_to.id == b.sent[0].receipt.id
        assert b.sent[2].msg.reply_to is None
        assert b.sent[2].msg.text.plain == "> carol: said elsewhere\nother answer"


async def test_a_target_that_is_down_does_not_stop_the_others_and_catches_up(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        b.fail_next_opens(1)
        b.fail("down")
        await rec.wait_until(lambda: any(s[:2] == ("b", "failed") for s in rec.states))
        await a.inject("#a", "one")
        await a.inject("#a", "two")
        await c.wait_for(lambda: c.texts() == ["one", "two"])
        await b.wait_for(lambda: b.state is State.active and b.texts() == ["one", "two"], timeout=10)
        await settle(host)
    assert re.search(r"fwd: cannot deliver to b:#b now \(b is (disconnected|connecting)\); "
                     r"(1 copy waits|2 copies wait) until b is ready", caplog.text)


async def test_a_message_is_done_only_once_the_retried_copy_is_delivered(tmp_path):
    """The plug a message came from is told it is done only once every copy has arrived: a
    copy waiting in the retry queue for a plug that is down holds it."""
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        b.fail_next_opens(10_000)
        b.fail("down")
        await rec.wait_until(lambda: any(s[:2] == ("b", "failed") for s in rec.states))
        done = anyio.Event()
        await a.inject("#a", "held", on_handled=done.set)
        await c.wait_for(lambda: c.texts() == ["held"])
        await host.wait_idle()
        assert not done.is_set()                # c has it, b does not yet
        b.fail_next_opens(0)
        await b.wait_for(lambda: b.texts() == ["held"], timeout=30)
        with anyio.fail_after(10):
            await done.wait()


async def test_virtual_mode_takes_channels_and_is_added_by_code(tmp_path):
    cfg = config()
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        hook = ForwardHook("extra", ForwardConfig(channels={Channel("a", "#side"): [Channel("c", "#c")]}),
                           host, virtual=True)
        assert hook.virtual and hook.targets(Channel("a", "#side")) == [Channel("c", "#c")]
        host.add_hook(hook)
        await a.inject("#side", "via the virtual forward")
        await c.wait_for(lambda: c.texts() == ["via the virtual forward"])
        with pytest.raises(ConfigError):
            ForwardHook("bad", ForwardConfig(channels={"nope": ["c"]}), host, virtual=True)


async def test_send_can_be_called_directly(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        b = host.plugs["b"]
        from chanmux import Message, User

        results = await host.hooks["fwd"].send(Message(text="direct", user=User(real_name="Ops")),
                                               [host.channels["b"]])
        await b.wait_for(lambda: b.texts() == ["direct"])
        assert b.sent[0].msg.user.real_name == "Ops"
        # receipts of the copies delivered at once; the others are delivered by their queue
        assert [r.id for r in results.get(host.channels["b"], [b.sent[0].receipt])] == [
            b.sent[0].receipt.id]


def test_bad_configs_name_every_problem(tmp_path):
    cfg = config({"channels": {"a": ["nope"], "ghost": ["b"]}, "name_format": "{nick}",
                  "groups": {"g": {"plugs": ["zz"], "channels": ["missing"], "to": []}},
                  "plugs": {"qq": {"joins": True}}, "cache_size": 0})
    with pytest.raises(ConfigError) as info:
        make_host(cfg, path=tmp_path / "x.toml")
    found = dict(info.value.issues)
    assert 'unknown channel "nope"' in found["hooks.fwd.channels.a[0]"]
    assert 'unknown channel "ghost"' in found["hooks.fwd.channels.ghost"]
    assert 'unknown plug "zz"' in found["hooks.fwd.groups.g.plugs[0]"]
    assert 'unknown channel "missing"' in found["hooks.fwd.groups.g.channels[0]"]
    assert "no destination" in found["hooks.fwd.groups.g.to"]
    assert 'unknown plug "qq"' in found["hooks.fwd.plugs.qq"]
    assert "unknown template variable" in found["hooks.fwd.name_format"]
    assert "at least 1" in found["hooks.fwd.cache_size"]


def test_anchor_unknown_keys_are_refused(tmp_path):
    cfg = config({"channels": {"a": ["b"]}, "user": ["x"]})
    with pytest.raises(ConfigError) as info:
        make_host(cfg, path=tmp_path / "x.toml")
    assert 'did you mean "users"' in dict(info.value.issues)["hooks.fwd.user"]


def test_nothing_to_forward_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nothing to forward"):
        make_host(config({"channels": {}}), path=tmp_path / "x.toml")


async def test_anchor_memory_of_forwarded_messages_is_bounded(tmp_path):
    cfg = config({"channels": {"a": ["b", "c"]}, "cache_size": 3})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        fwd = host.hooks["fwd"]
        first = await a.inject("#a", "m0")
        for i in range(1, 10):
            await a.inject("#a", f"m{i}")
        await c.wait_for(lambda: len(c.sent) == 10)
        await settle(host)
        assert len(fwd._forwarded) == 3 and len(fwd._copies) == 6
        # beyond memory, the edit still reaches the first copy: it is read from the database
        await a.inject("#a", "m0 edited", id=first.id, edited=True)
        await c.wait_for(lambda: len(c.edits) == 1)
        assert c.edits[0].receipt.id == c.sent[0].receipt.id and len(c.sent) == 10
        assert len(fwd._forwarded) == 3


async def test_reactions_reach_the_forwarded_copies_only(tmp_path):
    from chanmux import Reaction

    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        news = await a.inject("#a", "news")
        await b.wait_for(lambda: b.texts() == ["news"])
        await a.inject("#a", user="bob", reaction=Reaction("👍", news.receipt()))
        await a.inject("#a", user="bob", reaction=Reaction("👎", Receipt(id="never-forwarded",
                                                                         channel=news.channel)))
        await a.inject("#a", "marker")
        await b.wait_for(lambda: "marker" in b.texts())
        await settle(host)
        reactions = [(e.msg.reaction.key, e.msg.reaction.target.id) for e in b.sent
                     if e.msg.reaction is not None]
        assert reactions == [("👍", b.sent[0].receipt.id)]
