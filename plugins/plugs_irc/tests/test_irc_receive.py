"""What people say and do on IRC reaches the host as chanmux messages (real servers)."""

from __future__ import annotations

import anyio
import pytest

from chanmux import Message, Receipt, User

from irc_helpers import bridge, human, humans, sees, unique

pytestmark = pytest.mark.anyio


def text_of(record) -> str:
    return record.sent.text.plain if record.sent.text is not None else ""


async def test_text_formatting_mentions_notices_and_ids(ircd, tmp_path):
    chan = "#" + unique("rx")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            humans(ircd, 2) as (a, b):
        await a.join(chan)
        await b.join(chan)
        await host.wait_ready()
        rec, room = host.hooks["rec"], host.channels["room"]
        plug = host.plugs["irc"]
        await rec.wait_until(lambda: plug.network.fold(b.nick) in plug.network.channel(chan).members)
        await a.privmsg(chan, "\x02bold\x02 \x0304,12red\x03 \x1ditalic\x1d \x1eno\x1e "
                              f"\x11x=1\x11 {b.nick}: hi")
        got = await rec.wait_for(lambda r: "hi" in text_of(r))
        sent = got.sent
        assert sent.channel == room and not sent.action and not sent.notice
        assert sent.text.plain == f"bold red italic no x=1 {b.nick}: hi"
        flags = {seg.text: seg.flags for seg in sent.text}
        assert flags["bold"] == {"bold"} and flags["italic"] == {"italic"}
        assert flags["no"] == {"strike"} and flags["x=1"] == {"code"}
        (mention,) = [seg for seg in sent.text if seg.mention]
        assert mention.text == b.nick and mention.mention.username == b.nick
        assert mention.mention.plug == "irc"
        assert sent.user.username == a.nick and not sent.user.is_self
        assert sent.user.id.startswith(f"{a.nick}!")
        if ircd.name == "inspircd":  # msgid and server-time offered
            assert sent.id == sent.raw.tags["msgid"]
            assert sent.at.isoformat().startswith(sent.raw.tags["time"][:19])

        await a.privmsg(chan, f"{b.nick.upper()}, malice{b.nick} look")
        got = await rec.wait_for(lambda r: "look" in text_of(r))
        assert [s.text for s in got.sent.text if s.mention] == [b.nick.upper()]

        await a.notice(chan, "a channel notice")
        got = await rec.wait_for(lambda r: text_of(r) == "a channel notice")
        assert got.sent.notice
        ids = [r.sent.id for r in rec.received]
        assert len(ids) == len(set(ids))


async def test_joins_parts_kicks_quits_nicks_and_topics(ircd, tmp_path):
    chan = "#" + unique("ev")
    async with humans(ircd, 2) as (op, b):
        await op.join(chan)  # first in: channel operator
        async with bridge(ircd, tmp_path, {"room": chan}) as host:
            rec = host.hooks["rec"]

            def event(kind, nick):
                def match(r):
                    users = getattr(r.sent, kind)
                    return any(u.username == nick for u in users)
                return match

            await b.join(chan)
            joined = await rec.wait_for(event("joined", b.nick))
            assert joined.sent.user.username == b.nick and not joined.sent.text
            assert any(m.username == b.nick for m in await host.channel_members(host.channels["room"]))

            await op.send_raw(f"TOPIC {chan} :a brand new topic")
            topic = await rec.wait_for(lambda r: r.sent.title == "a brand new topic")
            assert topic.sent.user.username == op.nick
            assert await host.channel_title(host.channels["room"]) == "a brand new topic"

            old, new = b.nick, unique("n")
            await b.send_raw(f"NICK {new}")
            renamed = await rec.wait_for(lambda r: r.sent.renamed is not None)
            before, after = renamed.sent.renamed
            assert (before.username, after.username) == (old, new)
            assert renamed.sent.user.username == new and not renamed.sent.text
            assert renamed.sent.is_membership

            await b.part(chan, "see you")
            await rec.wait_for(event("left", new))
            await b.join(chan)
            start = len(rec.received)
            await op.send_raw(f"KICK {chan} {new} :out")
            kicked = await rec.wait_for(lambda r: r in rec.received[start:] and event("left", new)(r))
            assert kicked.sent.user.username == op.nick
            await b.join(chan)
            start = len(rec.received)
            await b.quit()
            quit_ = await rec.wait_for(lambda r: r in rec.received[start:] and event("left", new)(r))
            assert quit_.sent.channel == host.channels["room"]
            assert all(m.username != new for m in await host.channel_members(host.channels["room"]))


async def test_plug_kicked_joins_again(ircd, tmp_path):
    chan = "#" + unique("kick")
    async with human(ircd) as op:
        await op.join(chan)
        async with bridge(ircd, tmp_path, {"room": chan}) as host:
            nick = host.plugs["irc"].nick
            await op.send_raw(f"KICK {chan} {nick} :go away")
            await op.wait_for(lambda l: l.command == "KICK" and l.params[1] == nick, since=0)
            mark = op.mark()
            await op.wait_for(lambda l: l.command == "JOIN" and l.nick == nick)
            await host.put(host.channels["room"], Message(text="back again"))
            await sees(op, nick, lambda s: s.plain == "back again", since=mark)


async def test_private_messages_ctcp_and_private_notices(ircd, tmp_path):
    async with bridge(ircd, tmp_path, wait_ready=None) as host, human(ircd) as b:
        await host.wait_ready()
        plug, rec = host.plugs["irc"], host.hooks["rec"]
        await b.privmsg(plug.nick, "\x01VERSION\x01")
        reply = await b.wait_for(lambda l: l.command == "NOTICE" and l.nick == plug.nick)
        assert reply.text.startswith("\x01VERSION ")
        await b.notice(plug.nick, "private notice")
        await b.privmsg(plug.nick, "psst, private")
        got = await rec.wait_for(lambda r: text_of(r) == "psst, private")
        private = got.sent.channel
        assert private.source == b.nick
        assert await host.channel_is_private(private) is True
        assert private in await host.private_channels("irc")
        assert not any("VERSION" in text_of(r) or "notice" in text_of(r) for r in rec.received)
        await host.put(private, Message(text="whisper back", user=User(username="al")))
        seen = await sees(b, plug.nick, lambda s: "whisper back" in s.plain, target=b.nick)
        assert seen.plain == "<al> whisper back"


async def test_own_lines_are_never_relayed(ircd, tmp_path):
    chan = "#" + unique("echo")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, rec = host.plugs["irc"], host.hooks["rec"]
        if ircd.name == "inspircd":
            assert "echo-message" in plug.conn.caps
        for i in range(3):
            await host.put(host.channels["room"], Message(text=f"mine {i}", user=User(username="x"),
                                                         action=i == 1, notice=i == 2))
        await sees(a, plug.nick, lambda s: "mine 2" in s.plain)
        await a.privmsg(chan, "marker after")
        await rec.wait_for(lambda r: text_of(r) == "marker after")
        assert not any("mine" in text_of(r) for r in rec.received)
        assert not any(r.sent.user and r.sent.user.username == plug.nick for r in rec.received)


async def test_invalid_utf8_uses_the_fallback_encoding(ircd, tmp_path):
    chan = "#" + unique("enc")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        await a.stream.send(f"PRIVMSG {chan} :caf".encode() + b"\xe9 na\xefve\r\n")
        await a.privmsg(chan, "déjà vu ✓")
        rec = host.hooks["rec"]
        await rec.wait_for(lambda r: text_of(r) == "déjà vu ✓")
        assert any(text_of(r) == "café naïve" for r in rec.received)


async def test_reply_tags_map_to_receipts(inspircd, tmp_path):
    chan = "#" + unique("reply")
    async with bridge(inspircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            human(inspircd, caps=["message-tags"]) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, rec = host.plugs["irc"], host.hooks["rec"]
        (receipt,) = await host.put(host.channels["room"], Message(text="parent line"))
        ours = await a.wait_for(lambda l: l.command == "PRIVMSG" and l.nick == plug.nick)
        await a.privmsg(chan, "first", tags={"+draft/reply": ours.tags["msgid"]})
        got = await rec.wait_for(lambda r: text_of(r) == "first")
        assert isinstance(got.sent.reply_to, Receipt)
        assert got.sent.reply_to.id == receipt.id      # our own line: our receipt id
        await a.privmsg(chan, "second", tags={"+draft/reply": got.sent.id})
        got2 = await rec.wait_for(lambda r: text_of(r) == "second")
        assert got2.sent.reply_to.id == got.sent.id    # a human's line: its msgid


async def test_lookups(ircd, tmp_path):
    chan, other = "#" + unique("look"), "#" + unique("notjoined")
    listed = "#" + unique("listed")   # joined by the human only: known through LIST
    async with bridge(ircd, tmp_path, {"room": chan, "else": other}, wait_ready=None) as host, \
            human(ircd) as a:
        await a.join(chan)
        await a.join(listed)
        await host.wait_ready()
        room = host.channels["room"]
        plug = host.plugs["irc"]
        await host.hooks["rec"].wait_until(
            lambda: plug.network.fold(a.nick) in plug.network.channel(chan).members)
        assert await host.channel_title(room) == chan
        members = await host.channel_members(room)
        assert {m.username for m in members} == {plug.nick, a.nick}
        assert [m.is_self for m in members if m.username == plug.nick] == [True]
        assert await host.channel_is_private(room) is False
        public = await host.public_channels("irc")
        assert room in public and host.channels["else"] in public
        assert plug.channel(listed) in public
        assert await host.channel_link(room) == f"irc://{ircd.host}:{ircd.port}/%23{chan[1:]}"
        assert await host.private_channels("irc") == []
        with anyio.fail_after(5):
            assert await host.channel_title(host.channels["else"]) == other
