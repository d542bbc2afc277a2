"""Sending to Matrix: names, formatting, actions, mentions, replies, edits, redactions, files."""

from __future__ import annotations

import pytest

from chanmux import File, FileKind, Location, Message, Receipt, RichText, Segment, SentMessage, User
from chanmux.testing import run_host

from matrix_helpers import bridged, client, host_config, human_events, human_sees, register

pytestmark = pytest.mark.anyio

ALICE = User(id="alice@irc", plug="irc", username="alice", real_name="Alice")


def body_has(word):
    return lambda e: e["type"] == "m.room.message" and word in (e["content"].get("body") or "")


async def test_author_name_action_and_notice(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        await host.put(channel, Message(text="hello <world> & you", user=ALICE))
        (event,) = await human_events(human, room, body_has("hello"), 1)
        content = event["content"]
        assert content["msgtype"] == "m.text"
        assert content["body"] == "Alice: hello <world> & you"
        assert content["formatted_body"] == "<b>Alice</b>: hello &lt;world&gt; &amp; you"
        assert content["m.mentions"] == {}
        assert event["sender"] == bot.user_id
        await host.put(channel, Message(text="waves", action=True, user=ALICE))
        (event,) = await human_events(human, room, body_has("waves"), 1)
        assert event["content"]["msgtype"] == "m.emote" and event["content"]["body"] == "Alice waves"
        await host.put(channel, Message(text="beep", notice=True, user=None))
        (event,) = await human_events(human, room, body_has("beep"), 1)
        assert event["content"]["msgtype"] == "m.notice" and event["content"]["body"] == "beep"
        await host.put(channel, Message(joined=[ALICE], user=ALICE))
        await human_events(human, room, body_has("Alice joined"), 1)


async def test_membership_notices_name_each_person_once(synapse, bot, human, tmp_path):
    """A join, leave, change of name or title goes as a notice that names each person once,
    with no author in front ("bob joined", not "bob: bob joined")."""
    bob = User(id="bob@irc", plug="irc", username="bob")
    robert = User(id="bob@irc", plug="irc", username="robert")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        await host.put(channel, Message(joined=[bob], user=bob))
        await host.put(channel, Message(renamed=(bob, robert), user=robert))
        await host.put(channel, Message(title="new topic", user=ALICE))
        await host.put(channel, Message(left=[ALICE], user=ALICE))
        events = await human_events(human, room, lambda e: e["sender"] == bot.user_id
                                    and e["type"] == "m.room.message", 4)
        assert [e["content"]["body"] for e in events] == [
            "bob joined", "bob is now known as robert", "Alice changed the title to new topic",
            "Alice left"]
        assert all(e["content"]["msgtype"] == "m.notice" for e in events)
        seen = await human_sees(human, room, lambda s: "joined" in s.plain)
        assert seen.plain == "bob joined" and not [s for s in seen.text if s.bold]


async def test_a_leave_says_why(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        bob = User(id="bob@irc", plug="irc", username="bob", real_name="Bob M")
        await host.put(channel, Message(left=[bob], user=bob, reason="gone fishing"))
        await host.put(channel, Message(left=[ALICE], user=ALICE))
        events = await human_events(human, room, lambda e: e["sender"] == bot.user_id
                                    and e["type"] == "m.room.message", 2)
        assert [e["content"]["body"] for e in events] == ["Bob M left (gone fishing)", "Alice left"]


async def test_colours_reach_matrix_as_font_colours(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        text = RichText([Segment("red alert", color="#ff0000", background="#000000"),
                         Segment(" and "), Segment("green", bold=True, color="#00ff00")])
        await host.put(host.channels["room"], Message(text=text, user=ALICE))
        (event,) = await human_events(human, room, body_has("red alert"), 1)
        assert event["content"]["formatted_body"] == (
            '<b>Alice</b>: <font data-mx-color="#ff0000" data-mx-bg-color="#000000">red alert'
            '</font> and <font data-mx-color="#00ff00"><b>green</b></font>')
        seen = await human_sees(human, room, lambda s: "red alert" in s.plain)
        assert [(s.text, s.color, s.background) for s in seen.text if s.color] == [
            ("red alert", "#ff0000", "#000000"), ("green", "#00ff00", None)]


async def test_a_line_addressed_to_a_member_mentions_them(synapse, bot, human, human_account,
                                                           tmp_path):
    """"name: ..." or "name, ..." at the start of a copy, where name is a member's display
    name or user id localpart (case aside), is a pill of them listed in m.mentions, so
    they are notified; not in the middle of the text, not for names that are no member's,
    never for the bridge account."""
    named = register(synapse, "named")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room), \
            client(synapse, named) as person:
        channel = host.channels["room"]
        await person.set_displayname("Human Being")
        await person.join(room)  # joined after the bridge: known from the timeline
        await host.put(channel, Message(text="human being: thanks!", user=ALICE))
        await host.put(channel, Message(text=f"{human_account.localpart.upper()}, look", user=ALICE))
        await host.put(channel, Message(text="so human being: no", user=ALICE))
        await host.put(channel, Message(text="nobody: hello", user=ALICE))
        await host.put(channel, Message(text=f"{bot.localpart}: you there?", user=ALICE))
        await host.put(channel, Message(text="human being: waves", action=True, user=ALICE))
        events = await human_events(human, room, lambda e: e["sender"] == bot.user_id
                                    and e["type"] == "m.room.message", 6)
        assert [e["content"]["m.mentions"] for e in events] == [
            {"user_ids": [named.user_id]}, {"user_ids": [human.user_id]}, {}, {}, {}, {}]
        assert events[0]["content"]["formatted_body"] == (
            f'<b>Alice</b>: <a href="https://matrix.to/#/{named.user_id}">human being</a>: thanks!')
        seen = await human_sees(human, room, lambda s: s.plain == "Alice: human being: thanks!")
        assert [(s.text, s.mention.id) for s in seen.text if s.mention] == [
            ("human being", named.user_id)]


async def test_name_format_is_configurable(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml", name_format="<{name}> ",
                       action_name_format="") as (host, room):
        channel = host.channels["room"]
        await host.put(channel, Message(text="formatted", user=ALICE))
        (event,) = await human_events(human, room, body_has("formatted"), 1)
        assert event["content"]["body"] == "<Alice> formatted"
        assert event["content"]["formatted_body"] == "&lt;<b>Alice</b>&gt; formatted"
        await host.put(channel, Message(text="nameless act", action=True, user=ALICE))
        (event,) = await human_events(human, room, body_has("nameless"), 1)
        assert event["content"]["body"] == "nameless act"


async def test_mentions_are_pills(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        me = User(id=human.user_id, plug="mx", username=human.user_id, real_name="Human")
        elsewhere = User(id="bob", plug="irc", username="bob")
        text = RichText([Segment("hi "), Segment("Human", mention=me), Segment(" and "),
                         Segment("bob", mention=elsewhere)])
        await host.put(channel, Message(text=text, user=ALICE))
        (event,) = await human_events(human, room, body_has("hi Human"), 1)
        content = event["content"]
        assert content["m.mentions"] == {"user_ids": [human.user_id]}
        assert f'<a href="https://matrix.to/#/{human.user_id}">Human</a>' in content["formatted_body"]
        assert "matrix.to/#/bob" not in content["formatted_body"]
        seen = await human_sees(human, room, lambda s: "hi Human" in s.plain)
        assert [s.mention.id for s in seen.text if s.mention] == [human.user_id]


async def test_replies_both_ways(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        rec = host.hooks["rec"]
        parent = await human.send_text(room, "question?")
        got = await rec.wait_for(lambda r: r.sent.text and "question" in r.sent.text.plain)
        await host.put(channel, Message(text="answer!", user=ALICE, reply_to=got.sent))
        (event,) = await human_events(human, room, body_has("answer!"), 1)
        assert event["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": parent}}
        receipts = await host.put(channel, Message(text="second answer", user=ALICE,
                                                   reply_to=Receipt(id=parent, channel=channel)))
        (event,) = await human_events(human, room, body_has("second answer"), 1)
        assert event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == parent
        # a parent in another channel is not a Matrix reply
        other = Receipt(id="$x", channel=channel.__class__("irc", "#chan"))
        await host.put(channel, Message(text="no thread", user=ALICE, reply_to=other))
        (event,) = await human_events(human, room, body_has("no thread"), 1)
        assert "m.relates_to" not in event["content"]
        await human.reply(room, receipts[0].id, "the human replies")
        got = await rec.wait_for(lambda r: r.sent.text and "the human replies" in r.sent.text.plain)
        assert got.sent.reply_to.id == receipts[0].id


async def test_edit_and_delete_in_place(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        (receipt,) = await host.put(channel, Message(text="draft", user=ALICE))
        (edited,) = await host.edit(receipt, Message(text=RichText([Segment("final", bold=True)]),
                                                     user=ALICE))
        assert edited.id == receipt.id and edited.edited and edited.revision.startswith("$")
        seen = await human_sees(human, room, lambda s: s.kind == "edit")
        assert seen.target == receipt.id and seen.id == edited.revision
        assert seen.plain == "Alice: final" and [s.text for s in seen.text if s.bold] == ["Alice", "final"]
        (event,) = await human_events(human, room, lambda e: e["event_id"] == edited.revision, 1)
        assert event["content"]["body"] == "* Alice: final"
        assert await host.delete(receipt) is True
        seen = await human_sees(human, room, lambda s: s.kind == "delete")
        assert seen.target == receipt.id
        fetched = await human.request("GET", f"/_matrix/client/v3/rooms/{room}/event/{receipt.id}")
        assert fetched["content"] == {}
        assert await host.delete(Receipt(id="$nonexistent", channel=channel)) is False


async def test_files_and_locations(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        data = b"\x89PNG" + bytes(range(200))

        async def fetch():
            return data

        async def broken():
            raise OSError("gone")

        picture = File(title="cat.png", kind=FileKind.image, mime="image/png", fetch=fetch)
        linked = File(title="report", url="https://example.org/report.pdf", fetch=broken)
        receipts = await host.put(channel, Message(text="look", user=ALICE, attachments=[
            picture, linked, Location(latitude=51.5, longitude=-0.12, name="London")]))
        assert len(receipts) == 4
        events = await human_events(human, room, lambda e: e["sender"] == bot.user_id
                                    and e["type"] == "m.room.message", 4)
        assert [e["event_id"] for e in events] == [r.id for r in receipts]
        text, image, link, place = (e["content"] for e in events)
        assert text["body"] == "Alice: look"
        assert image["msgtype"] == "m.image" and image["body"] == "cat.png"
        assert image["info"] == {"size": len(data), "mimetype": "image/png"}
        assert await human.download(image["url"]) == data
        assert link["body"] == "Alice: report: https://example.org/report.pdf"
        assert place["msgtype"] == "m.location" and place["geo_uri"] == "geo:51.5,-0.12"


async def test_long_text_is_split(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        words = " ".join(f"w{i:05d}" for i in range(9000))
        receipts = await host.put(host.channels["room"], Message(text=words, user=ALICE))
        assert len(receipts) >= 2
        events = await human_events(human, room, lambda e: e["sender"] == bot.user_id
                                    and e["type"] == "m.room.message", len(receipts))
        joined = "".join(e["content"]["body"] for e in events)
        assert joined == "Alice: " + words


async def test_many_lines_are_one_event(synapse, bot, human, tmp_path):
    """A paste of 100 lines (as core's delivery queue merges a burst of IRC lines, which
    `merge_lines` asks for) reaches Matrix as one event of 100 lines."""
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        assert host.plugs["mx"].capabilities.merge
        lines = "\n".join(f"line {i} of the paste" for i in range(100))
        receipts = await host.put(host.channels["room"], Message(text=lines, user=ALICE))
        assert len(receipts) == 1
        (event,) = await human_events(human, room, body_has("line 99 of"), 1)
        assert event["event_id"] == receipts[0].id
        assert event["content"]["body"] == "Alice: " + lines
        seen = await human_sees(human, room, lambda s: "line 99 of" in s.plain)
        assert seen.plain.split("\n") == ["Alice: line 0 of the paste",
                                          *lines.split("\n")[1:]]


async def test_retried_put_is_not_doubled(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        channel = host.channels["room"]
        msg = Message(text="only once", user=ALICE)
        first = await host.put(channel, msg)
        again = await host.put(channel, msg)
        assert [r.id for r in first] == [r.id for r in again]
        source = SentMessage(id="m1", channel=channel.__class__("irc", "#c"), text="from irc", user=ALICE)
        one = await host.put(channel, source.clone())
        two = await host.put(channel, source)
        three = await host.put(channel, source)
        assert one[0].id != two[0].id and two[0].id == three[0].id
        await host.put(channel, Message(text="marker", user=ALICE))
        await human_events(human, room, body_has("marker"), 1)
        bodies = [e["content"].get("body", "") for e in human.events if e["room_id"] == room]
        assert len([b for b in bodies if "only once" in b]) == 1
        assert len([b for b in bodies if "from irc" in b]) == 2


async def test_channel_by_alias(synapse, bot, human, tmp_path):
    room = await human.create_room(name="aliased", alias=f"al{tmp_path.name[-8:].replace('_', '')}",
                                   preset="public_chat")
    alias = (await human.get_state(room, "m.room.canonical_alias"))["alias"]
    config = host_config(synapse, bot, alias)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        assert channel.source == alias
        await host.put(channel, Message(text="via alias", user=ALICE))
        await human_events(human, room, body_has("via alias"), 1)
        await human.send_text(room, "to the alias")
        got = await host.hooks["rec"].wait_for(lambda r: r.sent.text and "to the alias" in r.sent.text.plain)
        assert got.sent.channel == channel
        assert await host.channel_link(channel) == f"https://matrix.to/#/{alias}"
        assert channel in await host.public_channels("mx")
