"""What the bridge puts reaches people on IRC: split to fit, in order, at the flood-control
pace, with nothing that could inject a command (real servers)."""

from __future__ import annotations

import anyio
import pytest

from chanmux import Channel, Message, RichText, User
from chanmux_irc.formatting import parse

from irc_helpers import bridge, human, lines_from, sees, unique
from test_outgoing import long_text, shown_characters

pytestmark = pytest.mark.anyio


def long_name(prefix: str, size: int) -> str:
    name = unique(prefix)
    return (name + "z" * size)[:size]


async def test_five_thousand_characters_arrive_whole_within_512_bytes(ircd, tmp_path):
    nick = long_name("b", ircd.nicklen)                  # longest nick the server allows
    chan = "#" + long_name("split", 45)
    text = long_text(5000, seed=11)
    async with bridge(ircd, tmp_path, {"room": chan}, nick=nick, max_lines=100, monospace=True,
                      wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        receipts = await host.put(host.channels["room"], Message(
            text=text, user=User(id="x", real_name="Ålice Ünicode")))
        await sees(a, nick, lambda s: s.plain.endswith(text.plain[-20:]), target=chan)
        got = lines_from(a, nick, chan)
        assert len(got) == len(receipts) > 10
        head = "<Ålice Ünicode> "
        rebuilt = RichText()
        for line in got:
            assert len(line.raw.encode()) + 2 <= 512, len(line.raw.encode())
            assert line.raw.startswith(f":{nick}!")
            assert line.text.startswith(head)
            rebuilt = rebuilt + parse(line.text[len(head):])
        # not a character lost nor any formatting; only the space each line was split
        # at is left out (no line ends with a space, or with a reset code after one)
        assert shown_characters(rebuilt) == shown_characters(text)
        assert len(text.plain) - len(rebuilt.plain) < len(got)
        assert not any(line.text.endswith((" ", "\x0f")) for line in got)
        assert max(len(l.raw.encode()) for l in got) > 480   # and the budget was used


async def test_lines_truncation_marker_and_order(ircd, tmp_path):
    chan = "#" + unique("lines")
    async with bridge(ircd, tmp_path, {"room": chan}, max_lines=3, wait_ready=None) as host, \
            human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        nick, room = host.plugs["irc"].nick, host.channels["room"]
        await host.put(room, Message(text="l1\nl2\n\nl3\nl4\nl5", user=User(username="al")))
        await host.put(room, Message(text="after", user=User(username="al")))
        await sees(a, nick, lambda s: s.plain == "<al> after")
        assert [l.text for l in lines_from(a, nick, chan)] == [
            "<al> l1", "<al> l2", "<al> (message truncated: 3 more lines not shown)", "<al> after"]


async def test_nothing_can_inject_a_command(ircd, tmp_path):
    chan, evil = "#" + unique("inj"), "#" + unique("evil")
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await a.join(evil)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        mark = a.mark()
        await host.put(room, Message(text=f"one\r\nJOIN {evil}\rQUIT :x\nPRIVMSG {evil} :y\0z",
                                     user=User(real_name=f"Na\r\nJOIN {evil}\0me")))
        await host.put(room, Message(text="t", title=f"x\r\nJOIN {evil}", user=User(username="u")))
        for source in (f"{chan}\r\nJOIN {evil}", f"{chan} JOIN", f"{chan},{evil}", "", f"{chan}\0"):
            with pytest.raises(ValueError):
                await host.put(Channel("irc", source), Message(text="never"))
        await host.put(room, Message(text="done"))
        await sees(a, plug.nick, lambda s: s.plain == "done", since=mark)
        from_plug = [l for l in a.lines[mark:] if l.nick == plug.nick
                     and not (l.command == "JOIN" and l.target == chan)]  # its own join may be late
        assert {l.command for l in from_plug} == {"PRIVMSG"}, [l.raw for l in from_plug]
        assert {l.target for l in from_plug} == {chan}
        assert [l.text for l in from_plug] == [
            f"<NaJOIN {evil}me> one", f"<NaJOIN {evil}me> JOIN {evil}", f"<NaJOIN {evil}me> QUIT :x",
            f"<NaJOIN {evil}me> PRIVMSG {evil} :yz", "<u> t", "done"]
        assert plug.network.channel(evil) is None


async def test_edits_replies_actions_and_colours(ircd, tmp_path):
    chan = "#" + unique("edit")
    async with bridge(ircd, tmp_path, {"room": chan}, nick_colours=True, wait_ready=None) as host, \
            human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room, rec = host.plugs["irc"], host.channels["room"], host.hooks["rec"]
        al = User(id="al", real_name="Al")
        (receipt,) = await host.put(room, Message(text="the quick brown fox", user=al))
        await host.edit(receipt, Message(text="the quick red fox", user=al))
        await host.edit(receipt, Message(text="the slow red fox", user=al))
        seen = await sees(a, plug.nick, lambda s: "slow" in s.plain)
        assert seen.plain == "<Al> s/quick/slow/"
        assert [parse(l.text).plain for l in lines_from(a, plug.nick)] == [
            "<Al> the quick brown fox", "<Al> s/brown/red/", "<Al> s/quick/slow/"]
        assert lines_from(a, plug.nick)[0].text.startswith("<\x03")   # a nick colour

        await a.privmsg(chan, "is it friday yet? asking for a friend")
        parent = await rec.wait_for(lambda r: r.sent.text and "friday" in r.sent.text.plain)
        await host.put(room, Message(text="not yet", user=al, reply_to=parent.sent))
        await host.put(room, Message(text="sighs", user=al, action=True))
        await sees(a, plug.nick, lambda s: "sighs" in s.plain)
        texts = [parse(l.text).plain for l in lines_from(a, plug.nick)]
        assert texts[-2:] == [f'<Al> {a.nick}: "is it friday yet? asking for a friend" not yet',
                              "* Al sighs"]


async def test_flood_control_keeps_the_configured_rate(ircd, tmp_path):
    burst, rate, count = 3, 10.0, 23
    chan = "#" + unique("flood")
    async with bridge(ircd, tmp_path, {"room": chan}, flood_burst=burst, flood_rate=rate,
                      wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room = host.plugs["irc"], host.channels["room"]
        mark = a.mark()
        began = anyio.current_time()
        for i in range(count):
            await host.put(room, Message(text=f"flood {i}"))
        put_time = anyio.current_time() - began
        arrivals = []
        for i in range(count):
            await a.wait_for(lambda l, i=i: l.nick == plug.nick and l.text == f"flood {i}",
                             timeout=20, since=mark)
            arrivals.append(anyio.current_time())
        span = arrivals[-1] - arrivals[0]
        expected = (count - burst) / rate
        assert put_time < expected / 4, "put waited for the flood control"
        assert span >= expected * 0.9, (span, expected)
        assert span <= expected * 2 + 1.0, (span, expected)
        assert [l.text for l in lines_from(a, plug.nick)] == [f"flood {i}" for i in range(count)]


async def test_put_to_a_channel_not_configured_joins_it(ircd, tmp_path):
    chan = "&" + unique("amp") if ircd.name == "ngircd" else "#" + unique("fresh")
    async with bridge(ircd, tmp_path, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug = host.plugs["irc"]
        await host.put(Channel("irc", chan), Message(text="hello, new channel"))
        await sees(a, plug.nick, lambda s: s.plain == "hello, new channel", target=chan)
        assert Channel("irc", chan) in await host.public_channels("irc")


async def test_a_long_link_and_a_long_mention_reach_irc_whole(ircd, tmp_path):
    """A link whose URL is over ~430 bytes made the splitter raise (`character 't' alone is
    larger than N bytes`): the message never reached IRC. It is shown `text <url>`, broken
    across lines like a long word; so is a mention whose nick is longer than a line."""
    from chanmux import Segment

    chan = "#" + unique("link")
    url = "https://example.org/" + "/".join(["segment"] * 80)
    async with bridge(ircd, tmp_path, {"room": chan}, wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        nick = host.plugs["irc"].nick
        text = RichText([Segment("see "), Segment("the docs", link=url, bold=True),
                         Segment(" and ask "),
                         Segment("Dave", mention=User(id="d", plug="irc", username="d" * 500)),
                         Segment(" end")])
        receipts = await host.put(host.channels["room"], Message(text=text))
        await sees(a, nick, lambda s: s.plain.endswith(" end"), target=chan)
        got = lines_from(a, nick, chan)
        assert len(got) == len(receipts) >= 3
        assert all(len(line.raw.encode()) + 2 <= 512 for line in got)
        shown = "".join(parse(line.text).plain for line in got)
        assert shown == f"see the docs <{url}> and ask {'d' * 500} end"
