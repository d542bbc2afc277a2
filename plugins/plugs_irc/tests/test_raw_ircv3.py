"""REDACT (`draft/message-redaction`) and RELAYMSG (`draft/relaymsg`), which no Debian IRC
server has, against the scripted raw server of test_raw_server.py playing a server that offers
them (Ergo does): what the bridge sends, what it makes of what the server sends, and what it
does when the server refuses."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import pytest

from chanmux import Message, RichText, Segment, User
from chanmux_irc.protocol import parse as parse_line

from irc_helpers import put_confirmed
from test_raw_server import RawClient, raw_bridge

pytestmark = pytest.mark.anyio

ALICE = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="Alice Liddell")
TAGS = "message-tags echo-message labeled-response"


async def register_caps(client: RawClient, channel: str, caps: str) -> str:
    """Answer a registration like a server offering `caps` (ACKing what the plug asks for),
    and the plug's JOIN of `channel`; returns the plug's nick."""
    nick_line = await client.wait_for(lambda l: l.startswith("NICK "))
    await client.wait_for(lambda l: l.startswith("USER "))
    nick = nick_line.split()[1]
    await client.send(f":raw.test CAP * LS :{caps}")
    request = await client.wait_for(lambda l: l.startswith("CAP REQ"))
    await client.send(f":raw.test CAP {nick} ACK :{request.split(':', 1)[1]}")
    await client.wait_for(lambda l: l == "CAP END")
    await client.send(f":raw.test 001 {nick} :Welcome {nick}!user@raw.host",
                      f":raw.test 005 {nick} CHANTYPES=# NICKLEN=30 :are supported",
                      f":raw.test 376 {nick} :End of MOTD")
    await client.wait_for(lambda l: l.startswith("JOIN "))
    await client.send(f":{nick}!user@raw.host JOIN {channel}",
                      f":raw.test 353 {nick} = {channel} :{nick} @human",
                      f":raw.test 366 {nick} {channel} :End of NAMES")
    return nick


async def play_server(client: RawClient, nick: str, refuse_relay: bool = False) -> None:
    """Answer what the plug sends as a server with echo-message and labeled-response does: a
    PONG to each PING; each labelled PRIVMSG, TAGMSG or RELAYMSG echoed with a msgid (msgids
    `m1`, `m2`, ...), or, with `refuse_relay`, a RELAYMSG refused with FAIL."""
    msgids = itertools.count(1)
    for index in itertools.count():
        line = parse_line(await client.line_at(index))
        if line is None:
            continue
        if line.command == "PING":
            await client.send(f":raw.test PONG raw.test :{line.param(-1)}")
            continue
        label = line.tags.get("label")
        if label is None or line.command not in ("PRIVMSG", "TAGMSG", "RELAYMSG"):
            continue
        if line.command == "RELAYMSG" and refuse_relay:
            await client.send(f"@label={label} :raw.test FAIL RELAYMSG INVALID_NICK "
                              f"{line.param(1)} :Invalid nickname")
            continue
        tags = f"label={label};msgid=m{next(msgids)}"
        if line.command == "RELAYMSG":
            channel, sender, text = line.params[0], line.params[1], line.param(2)
            await client.send(f"@draft/relaymsg={nick};{tags} :{sender}!relay@raw.host "
                              f"PRIVMSG {channel} :{text}")
        else:
            rest = " ".join(line.params[:-1] + [":" + line.params[-1]])
            await client.send(f"@{tags} :{nick}!user@raw.host {line.command} {rest}")


def sent(client: RawClient, *commands: str, since: int = 0) -> list[str]:
    """The lines of these commands the plug sent (from line `since`), without their labels."""
    out = []
    for raw in client.lines[since:]:
        line = parse_line(raw)
        if line is not None and line.command in commands:
            rest = raw.split(" ", 1)[1] if raw.startswith("@label=") else raw
            out.append(rest)
    return out


@pytest.fixture
async def served() -> Any:
    """Runs `play_server` for a test (given to it by `start(client, nick)`)."""
    async with anyio.create_task_group() as tg:
        def start(client: RawClient, nick: str, **kwargs: Any) -> None:
            async def play() -> None:
                try:
                    await play_server(client, nick, **kwargs)
                except ConnectionError:
                    pass
            tg.start_soon(play)
        yield start
        tg.cancel_scope.cancel()


# -- REDACT --------------------------------------------------------------------------------------


async def test_a_deletion_is_a_redact_of_each_line_where_the_server_offers_it(tmp_path, served, caplog):
    caplog.set_level(logging.DEBUG, logger="chanmux.plug.irc")
    async with raw_bridge(tmp_path, "#r", flood_rate=0.0) as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/message-redaction")
        served(client, nick)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        assert "draft/message-redaction" in plug.conn.caps and plug.capabilities.delete
        receipts = await put_confirmed(host, room, Message(text="one\ntwo", user=ALICE))
        mark = len(client.lines)
        assert [await host.delete(r) for r in receipts] == [True, True]
        await put_confirmed(host, room, Message(text="after", user=ALICE))
        assert sent(client, "REDACT", "PRIVMSG", since=mark) == [
            "REDACT #r m1", "REDACT #r m2", "PRIVMSG #r :<Alice Liddell> after"]
    assert any("REDACT m1" in r.getMessage() for r in caplog.records)


async def test_with_deletions_none_a_redact_is_still_used_where_the_server_offers_it(tmp_path,
                                                                                  served):
    async with raw_bridge(tmp_path, "#r", deletions="none") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/message-redaction")
        served(client, nick)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        assert plug.capabilities.delete
        receipts = await put_confirmed(host, room, Message(text="oops", user=ALICE))
        assert await host.delete(receipts[0]) is True
        await client.wait_for(lambda l: l.endswith(" REDACT #r m1"))


async def test_a_redaction_on_irc_deletes_the_message_elsewhere(tmp_path, served):
    async with raw_bridge(tmp_path, "#r") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/message-redaction")
        served(client, nick)
        await host.wait_ready()
        rec, room = host.hooks["rec"], host.channels["room"]
        await client.send("@msgid=h1 :human!h@raw.host PRIVMSG #r :my secret",
                          ":human!h@raw.host REDACT #r h1 :oops",
                          f":{nick}!user@raw.host REDACT #r h1")  # our own: never relayed
        said = await rec.wait_for(lambda r: r.sent.text is not None)
        gone = await rec.wait_for(lambda r: r.sent.deleted)
        assert (gone.sent.id, gone.sent.channel, gone.sent.text) == (said.sent.id, room, None)
        await client.send(":human!h@raw.host PRIVMSG #r :after")
        await rec.wait_for(lambda r: r.sent.text is not None and r.sent.text.plain == "after")
        assert len([r for r in rec.received if r.sent.deleted]) == 1


# -- RELAYMSG --------------------------------------------------------------------------------------


async def test_relayed_lines_are_said_as_their_author_with_relaymsg(tmp_path, served):
    async with raw_bridge(tmp_path, "#r") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/relaymsg=/")
        served(client, nick)
        await host.wait_ready()
        plug, rec, room = host.plugs["irc"], host.hooks["rec"], host.channels["room"]
        await put_confirmed(host, room, Message(text="hello there", user=ALICE))
        await put_confirmed(host, room, Message(text="waves", action=True, user=ALICE))
        await put_confirmed(host, room, Message(text="a notice", notice=True, user=ALICE))
        await put_confirmed(host, room, Message(joined=[ALICE]))
        await put_confirmed(host, room, Message(text="from us"))
        assert sent(client, "RELAYMSG", "PRIVMSG", "NOTICE") == [
            "RELAYMSG #r Alice_Liddell/m :hello there",
            "RELAYMSG #r Alice_Liddell/m :\x01ACTION waves\x01",
            "NOTICE #r :<Alice Liddell> a notice",
            "PRIVMSG #r :* Alice Liddell joined",
            "PRIVMSG #r :from us"]
        # the server's echo of a relayed line is ours: never relayed back
        await client.send(":human!h@raw.host PRIVMSG #r :marker")
        await rec.wait_for(lambda r: r.sent.text is not None and r.sent.text.plain == "marker")
        assert [r.sent.text.plain for r in rec.received if r.sent.text] == ["marker"]
        assert not plug.puppets


async def test_a_long_relayed_message_fits_the_line_the_server_makes_of_it(tmp_path, served):
    async with raw_bridge(tmp_path, "#r", max_lines=20) as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/relaymsg=/")
        served(client, nick)
        await host.wait_ready()
        words = " ".join(f"wörd{i}" for i in range(300))
        await put_confirmed(host, host.channels["room"], Message(text=words, user=ALICE))
        relayed = sent(client, "RELAYMSG")
        assert len(relayed) > 3
        texts = [line.split(" :", 1)[1] for line in relayed]
        assert " ".join(texts) == words
        # what others get: `:Alice_Liddell/m!user@host PRIVMSG #r :text`, user and host as
        # long as the server allows (USERLEN 10, HOSTLEN 63 by default)
        worst = len(":Alice_Liddell/m!~" + "x" * 10 + "@" + "x" * 63 + " PRIVMSG #r :")
        assert all(worst + len(t.encode()) + 2 <= 512 for t in texts)


async def test_a_refused_relaymsg_is_said_by_the_bridge_instead(tmp_path, served, caplog):
    caplog.set_level(logging.WARNING)
    async with raw_bridge(tmp_path, "#r") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/relaymsg=/")
        served(client, nick, refuse_relay=True)
        await host.wait_ready()
        room = host.channels["room"]
        await put_confirmed(host, room, Message(text="first", user=ALICE))
        await client.wait_for(lambda l: l.endswith("PRIVMSG #r :<Alice Liddell> first"))
        await put_confirmed(host, room, Message(text="second", user=ALICE))
        assert sent(client, "RELAYMSG", "PRIVMSG") == [
            "RELAYMSG #r Alice_Liddell/m :first", "PRIVMSG #r :<Alice Liddell> first",
            "PRIVMSG #r :<Alice Liddell> second"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len([w for w in warnings if "refused RELAYMSG" in w]) == 1


@pytest.mark.parametrize("keys, expected", [
    ({"relaymsg": False}, "PRIVMSG #r :<Alice Liddell> hi"),
    ({"relaymsg_suffix": "mx"}, "RELAYMSG #r Alice_Liddell~mx :hi"),
])
async def test_relaymsg_can_be_switched_off_or_its_nick_changed(tmp_path, served, keys, expected):
    async with raw_bridge(tmp_path, "#r", **keys) as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", f"{TAGS} draft/relaymsg=~")
        served(client, nick)
        await host.wait_ready()
        await put_confirmed(host, host.channels["room"], Message(text="hi", user=ALICE))
        assert sent(client, "RELAYMSG", "PRIVMSG") == [expected]


async def test_without_relaymsg_lines_carry_their_author(tmp_path, served):
    async with raw_bridge(tmp_path, "#r") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", TAGS)
        served(client, nick)
        await host.wait_ready()
        await put_confirmed(host, host.channels["room"], Message(
            text=RichText([Segment("hi "), Segment("there", bold=True)]), user=ALICE))
        assert sent(client, "RELAYMSG", "PRIVMSG") == ["PRIVMSG #r :<Alice Liddell> hi \x02there"]


# -- a reaction kept at a stop ---------------------------------------------------------------------


async def test_a_reaction_kept_at_a_stop_is_said_as_text_by_a_server_without_tags(tmp_path):
    """A reaction the server had not confirmed when the bridge stopped is kept with its tags
    and sent after the next start; where that server takes no client tags (another server of
    the network), as its line of text."""
    from chanmux import Reaction, Receipt

    async with raw_bridge(tmp_path, "#r", host_settings={"close_timeout": 1.0}) as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", TAGS)
        await host.wait_ready()
        room = host.channels["room"]


        async def echo_and_confirm_once() -> None:
            said = parse_line(await client.wait_for(lambda l: "PRIVMSG #r" in l))
            ping = await client.wait_for(lambda l: l.startswith("PING :chanmux-ack-"))
            await client.send(f"@label={said.tags['label']};msgid=m1 :{nick}!user@raw.host "
                              f"PRIVMSG #r :{said.params[-1]}",
                              f":raw.test PONG raw.test :{ping.split(':', 1)[1]}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(echo_and_confirm_once)
            receipts = await put_confirmed(host, room, Message(text="lunch?", user=ALICE))
        await host.put(room, Message(user=User(real_name="bob"), reaction=Reaction(
            "👍", Receipt(id=receipts[0].id, channel=room))))
        tagged = await client.wait_for(lambda l: " TAGMSG #r" in l)
        assert parse_line(tagged).tags["+draft/react"] == "👍"
        assert parse_line(tagged).tags["+draft/reply"] == "m1"
    # this server never confirmed the TAGMSG: it was kept, and goes to the next server
    async with raw_bridge(tmp_path, "#r") as (host, server):
        client = await server.client(0)
        nick = await register_caps(client, "#r", "multi-prefix")
        await host.wait_ready()
        line = await client.wait_for(lambda l: "bob" in l)
        assert line == 'PRIVMSG #r :* bob reacted 👍 to Alice Liddell: "lunch?"'
