"""Reactions, typing, deletions, leave reasons, colours and code as people on IRC see them,
against real servers: InspIRCd 3 (its `ircv3_ctctags` module gives `message-tags`, so
`TAGMSG` and client tags such as `+draft/react` and `+typing`) and ngircd (no client tags: the
text forms). REDACT and RELAYMSG, which no Debian server has, are in test_raw_ircv3.py."""

from __future__ import annotations

import logging

import pytest
import typing_hook

from chanmux import Message, Reaction, Receipt, RichText, Segment, User
from chanmux.testing import make_host, run_host
from chanmux_testservers.ircclient import Line

from irc_helpers import bridge, host_config, human, lines_from, put_confirmed, sees, tagmsgs, unique

pytestmark = pytest.mark.anyio

ALICE = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="alice")
BOB = User(id="@bob:mx", plug="mx", username="@bob:mx", real_name="bob")


def from_bridge(line: Line, nick: str) -> bool:
    return line.nick is not None and line.nick.lower() == nick.lower()


async def tag(client, target: str, **tags: str) -> None:
    """The human sends a TAGMSG with client tags (`react="👍"` becomes `+draft/react`)."""
    names = {"react": "+draft/react", "unreact": "+draft/unreact", "reply": "+draft/reply",
             "typing": "+typing"}
    await client.send_raw(Line("TAGMSG", [target], tags={names[k]: v for k, v in tags.items()}).format())


# -- reactions ---------------------------------------------------------------------------------


async def test_reactions_both_ways_as_tag_messages_where_the_server_takes_client_tags(
        inspircd, tmp_path):
    chan = "#" + unique("react")
    async with bridge(inspircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            human(inspircd, caps=["message-tags"]) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, rec, room = host.plugs["irc"], host.hooks["rec"], host.channels["room"]
        assert plug.capabilities.reactions
        mark = a.mark()
        receipts = await put_confirmed(host, room, Message(text="react to me", user=ALICE))
        line = await a.wait_for(lambda l: from_bridge(l, plug.nick) and l.text.endswith("react to me"),
                                since=mark)
        msgid = line.tags["msgid"]

        # IRC -> chanmux: a reaction to the bridge's line names the bridge's receipt
        await tag(a, chan, react="👍", reply=msgid)
        got = await rec.wait_for(lambda r: r.sent.reaction is not None)
        reaction = got.sent.reaction
        assert (reaction.key, reaction.removed, reaction.target.id) == ("👍", False, receipts[0].id)
        assert got.sent.user.username == a.nick and not got.sent.text
        await tag(a, chan, unreact="👍", reply=msgid)
        got = await rec.wait_for(lambda r: r.sent.reaction is not None and r.sent.reaction.removed)
        assert (got.sent.reaction.key, got.sent.reaction.target.id) == ("👍", receipts[0].id)

        # chanmux -> IRC: to the bridge's own line and to the human's
        await a.privmsg(chan, "a question")
        question = await rec.wait_for(lambda r: r.sent.text is not None
                                      and r.sent.text.plain == "a question")
        mark = a.mark()
        to_own = await put_confirmed(host, room, Message(user=BOB, reaction=Reaction(
            "🎉", Receipt(id=receipts[0].id, channel=room))))
        await put_confirmed(host, room, Message(user=BOB, reaction=Reaction(
            "👀", Receipt(id=question.sent.id, channel=room))))
        await put_confirmed(host, room, Message(user=BOB, reaction=Reaction(
            "🎉", Receipt(id=receipts[0].id, channel=room), removed=True)))
        await put_confirmed(host, room, Message(text="marker", user=BOB))
        await a.wait_for(lambda l: from_bridge(l, plug.nick) and l.text.endswith("marker"), since=mark)
        seen = [{k: v for k, v in l.tags.items() if k.startswith("+")}
                for l in tagmsgs(a, plug.nick, chan, mark)]
        assert seen == [{"+draft/react": "🎉", "+draft/reply": msgid},
                        {"+draft/react": "👀", "+draft/reply": question.sent.id},
                        {"+draft/unreact": "🎉", "+draft/reply": msgid}]
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == ["<bob> marker"]
        assert len(to_own) == 1 and to_own[0].id not in {r.id for r in receipts}
        # the reaction's own msgid was learnt: a reaction to the reaction maps to its receipt
        assert await plug.own_msgids.msgid_of(to_own[0].id)


@pytest.mark.parametrize("keys", [{}, {"reactions": "text"}], ids=["ngircd-auto", "inspircd-text"])
async def test_reactions_are_a_line_of_text_where_tags_cannot_be_shown(ngircd, inspircd, tmp_path,
                                                                       keys):
    """ngircd has no client tags, so a reaction is a compact line naming the message reacted
    to; `reactions = "text"` does the same on a server with tags (for channels of clients
    that show no reactions: irssi, HexChat, WeeChat without scripts)."""
    server = inspircd if keys else ngircd
    chan = "#" + unique("rtext")
    async with bridge(server, tmp_path, {"room": chan}, wait_ready=None, **keys) as host, \
            human(server) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, rec, room = host.plugs["irc"], host.hooks["rec"], host.channels["room"]
        receipts = await put_confirmed(host, room, Message(
            text="shall we have lunch at the usual place?", user=ALICE))
        await sees(a, plug.nick, lambda s: s.plain.endswith("usual place?"))
        await a.privmsg(chan, "pizza?")
        said = await rec.wait_for(lambda r: r.sent.text is not None and r.sent.text.plain == "pizza?")
        mark = a.mark()
        for key, target, removed in (("👍", receipts[0].id, False), ("🍕", said.sent.id, False),
                                     ("👍", receipts[0].id, True), ("?", "unknown", False)):
            await host.put(room, Message(user=BOB, reaction=Reaction(
                key, Receipt(id=target, channel=room), removed)))
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == [
            '* bob reacted 👍 to alice: "shall we have lunch at the usual place?"',
            f'* bob reacted 🍕 to {a.nick}: "pizza?"',
            '* bob took back 👍 to alice: "shall we have lunch at the usual place?"',
            "* bob reacted ?",
            "<bob> marker"]
        assert tagmsgs(a, plug.nick, chan, mark) == []


async def test_reactions_none_shows_nothing(ngircd, tmp_path):
    chan = "#" + unique("rnone")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None, reactions="none") as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        assert not plug.capabilities.reactions
        receipts = await put_confirmed(host, room, Message(text="hello", user=ALICE))
        await sees(a, plug.nick, lambda s: s.plain.endswith("hello"))
        mark = a.mark()
        assert await host.put(room, Message(user=BOB, reaction=Reaction(
            "👍", Receipt(id=receipts[0].id, channel=room)))) == []
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == ["<bob> marker"]


# -- typing ------------------------------------------------------------------------------------


async def test_typing_both_ways_throttled(inspircd, tmp_path):
    chan = "#" + unique("typing")
    config = host_config(inspircd, unique("b"), {"room": chan})
    config["hooks"]["typists"] = {"type": "typing-recorder"}
    made = make_host(config, path=tmp_path / "bridge.toml",
                     modules=[("irc-tests-typing", typing_hook)])
    async with human(inspircd, caps=["message-tags"]) as a, \
            run_host(made, wait_ready=None) as host:
        await a.join(chan)
        await host.wait_ready()
        plug, room, typists = host.plugs["irc"], host.channels["room"], host.hooks["typists"]
        assert plug.capabilities.typing

        # IRC -> chanmux
        await tag(a, chan, typing="active")
        await tag(a, chan, typing="paused")
        await tag(a, chan, typing="done")
        assert await typists.wait_count(3) == [(chan, a.nick, True), (chan, a.nick, False),
                                               (chan, a.nick, False)]

        # chanmux -> IRC: ten notices in a row say "active" once, and "done" when it stops
        mark = a.mark()
        for _ in range(10):
            await plug.typing(room, ALICE, True)
        await plug.typing(room, BOB, True)
        await plug.typing(room, ALICE, False)            # bob still types: nothing yet
        await plug.typing(room, BOB, False)
        await put_confirmed(host, room, Message(text="typed", user=ALICE))
        await a.wait_for(lambda l: from_bridge(l, plug.nick) and l.text.endswith("typed"), since=mark)
        assert [l.tags.get("+typing") for l in tagmsgs(a, plug.nick, chan, mark)] == ["active", "done"]


async def test_typing_is_not_sent_where_the_server_has_no_client_tags(ngircd, tmp_path):
    chan = "#" + unique("notyping")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        mark = a.mark()
        await plug.typing(room, ALICE, True)
        await plug.typing(room, ALICE, False)
        await put_confirmed(host, room, Message(text="typed", user=ALICE))
        await sees(a, plug.nick, lambda s: s.plain.endswith("typed"), since=mark)
        assert [l.command for l in a.lines[mark:] if from_bridge(l, plug.nick)
                and l.command in ("PRIVMSG", "NOTICE", "TAGMSG")] == ["PRIVMSG"]


# -- deletions ---------------------------------------------------------------------------------


async def test_a_deleted_message_is_announced_once_where_irc_cannot_delete(ircd, tmp_path):
    """Neither Debian server has `draft/message-redaction`: a message deleted on another
    network gets one short notice, however many lines it took."""
    chan = "#" + unique("del")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        assert plug.capabilities.delete
        receipts = await put_confirmed(host, room, Message(
            text="my password is hunter2\nsorry, wrong window", user=ALICE))
        assert len(receipts) == 2
        await sees(a, plug.nick, lambda s: s.plain.endswith("wrong window"))
        mark = a.mark()
        assert [await host.delete(r) for r in receipts] == [True, True]
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == [
            '* a message from alice was deleted: "my password is hunter2 sorry, wrong win…"',
            "<bob> marker"]


async def test_deletions_none_leaves_irc_as_it_is_and_says_so_in_the_log(ngircd, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    chan = "#" + unique("delnone")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None, deletions="none") as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        assert not plug.capabilities.delete                 # the host does not even ask
        receipts = await put_confirmed(host, room, Message(text="stays", user=ALICE))
        await sees(a, plug.nick, lambda s: s.plain.endswith("stays"))
        mark = a.mark()
        assert await host.delete(receipts[0]) is False
        assert await plug.delete(receipts[0]) is False
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == ["<bob> marker"]
    said = [r.getMessage() for r in caplog.records]
    assert any("messages deleted on other networks stay on IRC as they are" in m for m in said)
    assert any("a deleted message is left as it is" in m and "deletions = none" in m for m in said)


# -- names and reasons -------------------------------------------------------------------------


async def test_leave_reasons_both_ways_and_names_as_relays_give_them(ircd, tmp_path):
    chan = "#" + unique("why")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            human(ircd) as a, human(ircd) as b:
        await a.join(chan)
        await b.join(chan)
        await host.wait_ready()
        plug, rec, room = host.plugs["irc"], host.hooks["rec"], host.channels["room"]
        assert plug.capabilities.highlights
        await b.part(chan, "off to \x02lunch\x02")
        got = await rec.wait_for(lambda r: r.sent.left)
        assert got.sent.left[0].username == b.nick and got.sent.reason == "off to lunch"
        mark = a.mark()
        # a relay gives names already kept from highlighting (a zero-width space)
        dave = User(id="@dave:mx", plug="mx", username="@dave:mx", real_name="d\u200bave")
        await host.put(room, Message(joined=[dave]))
        await host.put(room, Message(left=[dave], reason="gone fishing"))
        await host.put(room, Message(renamed=(dave, User(id="@dave:mx", plug="mx",
                                                         real_name="d\u200bavid"))))
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        assert [l.text for l in lines_from(a, plug.nick, chan, mark)] == [
            "* d\u200bave joined", "* d\u200bave left (gone fishing)",
            "* d\u200bave is now known as d\u200bavid", "<bob> marker"]


# -- colours and code --------------------------------------------------------------------------


async def test_colours_both_ways(ngircd, tmp_path):
    chan = "#" + unique("colour")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None) as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, rec, room = host.plugs["irc"], host.hooks["rec"], host.channels["room"]
        await a.privmsg(chan, "\x0304red\x03 \x0312,01blue on black\x0f \x0342extended\x03 plain")
        got = await rec.wait_for(lambda r: r.sent.text is not None and "plain" in r.sent.text.plain)
        assert [(s.text, s.color, s.background) for s in got.sent.text] == [
            ("red", "#ff0000", None), (" ", None, None), ("blue on black", "#0000fc", "#000000"),
            (" ", None, None), ("extended", "#b5b500", None), (" plain", None, None)]
        mark = a.mark()
        await host.put(room, Message(user=BOB, text=RichText([
            Segment("red", color="#ff0000"), Segment(" 5 ", color="#ff0000", background="#000000"),
            Segment("orange-ish", color="#ff8800"), Segment(" plain")])))
        line = await a.wait_for(lambda l: from_bridge(l, plug.nick) and "plain" in l.text, since=mark)
        # colours are set where they change; a background ends with a reset (\x0f)
        assert line.text == "<bob> \x0304red\x0304,01 5 \x0f\x0353orange-ish\x03 plain"


async def test_code_reads_well_in_every_client_and_split_lines_end_cleanly(ngircd, tmp_path):
    """Inline code is in backticks and preformatted lines as they are (irssi draws \\x11 as a
    reversed Q); no line of a split message ends with a space or a stray reset code."""
    chan = "#" + unique("code")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None, max_lines=50) as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        mark = a.mark()
        await host.put(room, Message(user=BOB, text=RichText([
            Segment("try "), Segment("make check", code=True), Segment(":\n"),
            Segment("for x in y:\n    print(x)", pre=True, code=True)])))
        words = " ".join(f"word{i}" for i in range(400))
        await host.put(room, Message(user=BOB, text=RichText([Segment(words, bold=True)])))
        await host.put(room, Message(text="marker", user=BOB))
        await sees(a, plug.nick, lambda s: s.plain.endswith("marker"), since=mark)
        got = [l.text for l in lines_from(a, plug.nick, chan, mark)]
        assert got[:3] == ["<bob> try `make check`:", "<bob> for x in y:", "<bob>     print(x)"]
        split = got[3:-1]
        assert len(split) > 3
        assert all(not t.endswith((" ", "\x0f")) for t in split), [t[-10:] for t in split]
        assert " ".join(t.removeprefix("<bob> \x02") for t in split) == words
        assert not any("\x11" in t for t in got)


async def test_monospace_is_an_opt_in(ngircd, tmp_path):
    chan = "#" + unique("mono")
    async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None, monospace=True) as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        mark = a.mark()
        await host.put(room, Message(user=BOB, text=RichText([
            Segment("try "), Segment("make check", code=True)])))
        line = await a.wait_for(lambda l: from_bridge(l, plug.nick) and "make" in l.text, since=mark)
        assert line.text == "<bob> try \x11make check"
