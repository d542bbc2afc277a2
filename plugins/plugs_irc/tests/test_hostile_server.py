"""A server that sends odd or hostile lines (the scripted raw server): every PING is answered,
nothing odd stops the connection or loses what follows, a membership flood leaves the plug's
state small, a refused login says what to change, and every line the plug sends fits."""

from __future__ import annotations

import logging

import pytest

from chanmux import Message, RichText, Segment, User
from chanmux_irc.state import PRIVATE_MEMORY

from test_raw_server import raw_bridge, register

pytestmark = pytest.mark.anyio

CJK = "漢字仮名交じり文" * 25  # 200 characters


def relayed(rec, text: str):
    return rec.wait_for(lambda r: r.sent.text is not None and r.sent.text.plain == text,
                        timeout=60)


def no_tracebacks(caplog) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [(r.getMessage(), r.exc_text) for r in bad][:3]


async def test_every_ping_is_answered_whatever_its_token_holds(tmp_path, caplog):
    """A PING token with NUL gave an `UnsafeLine` ERROR traceback and no PONG."""
    async with raw_bridge(tmp_path, "#ping") as (host, server):
        client = await server.client(0)
        nick = await register(client, "#ping")
        await host.wait_ready()
        tokens = [b"PING :abc\x00def", b"PING :a\rb", b"PING", b"PING :", b"PING one two",
                  b"PING \x00 :tail", b"PING :" + b"t" * 700, b"PING :\xff\xfe"]
        for token in tokens:
            await client.send(token)
        await client.send(":human!h@raw.host PRIVMSG #ping :after the pings")
        await relayed(host.hooks["rec"], "after the pings")
        pongs = await client.wait_count(lambda l: l.startswith("PONG"), len(tokens))
        assert pongs[:6] == ["PONG abcdef", "PONG ab", "PONG :", "PONG :", "PONG one two",
                             "PONG tail"]
        assert pongs[6] == "PONG :" + "t" * 504 and pongs[7].startswith("PONG ")
        assert all(len(p.encode()) <= 510 for p in pongs)
        assert host.plugs["irc"].connections == 1 and not client.closed
        assert nick
    no_tracebacks(caplog)


async def test_malformed_lines_never_stop_the_connection_nor_lose_what_follows(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="chanmux")
    async with raw_bridge(tmp_path, "#odd") as (host, server):
        client = await server.client(0)
        await register(client, "#odd")
        await host.wait_ready()
        rec = host.hooks["rec"]
        odd = [
            b"@a=\\;;=x;;+;k=\\;\\q;;;=;x=y=z;\xff :h!u@h PRIVMSG #odd :bad tags",
            b"@" + b"t" * 9000 + b" :h!u@h PRIVMSG #odd :huge tags",
            b":h!u@h PRIVMSG", b":h!u@h PRIVMSG #odd", b":h!u@h KICK", b":h!u@h JOIN",
            b":h!u@h PRIVMSG #odd :\xff\xfe invalid \xc3( utf-8",
            b":h!u@h PRIVMSG #odd :nul\x00inside", b":h!u@h PRIVMSG #o\x00dd :nul in target",
            b":h!u@h PRIVMSG #odd :lone\rcarriage return",
            b":h!u@h KICK #o\x00dd me :x", b":h!u@h PRIVMSG me :\x01VERSION\x01",
            b":h!u@h PRIVMSG me :\x01PING \x00\r\x01\x01",
            b":srv 464 me :late password complaint", b"ERROR :too late to matter",
            b":h!u@h NOTICE me :" + b"n" * 5000,
            b":h!u@h PRIVMSG #odd :" + b"x" * 200_000 + b" TAIL-MARKER",
        ]
        for line in odd:
            await client.send(line)
        await client.send(":human!h@raw.host PRIVMSG #odd :still here")
        await relayed(rec, "still here")
        texts = [r.sent.text.plain for r in rec.received if r.sent.text is not None]
        assert "bad tags" in texts and "huge tags" in texts and "nulinside" in texts
        assert "lonecarriage return" in texts
        assert not any("TAIL-MARKER" in t for t in texts)          # the cut part is dropped
        assert any(t.startswith("x" * 60000) for t in texts)      # the start is kept
        assert host.plugs["irc"].connections == 1 and not client.closed
        long_logs = [r.getMessage() for r in caplog.records if len(r.getMessage()) > 400]
        assert not long_logs, [m[:100] for m in long_logs]
    no_tracebacks(caplog)


async def test_a_membership_flood_leaves_the_plugs_state_small(tmp_path):
    """20 000 people join and quit (and strangers talk in private, change hosts, accounts and
    nicks): the plug remembers only who shares a channel with it, and a bounded number of
    private conversations."""
    pairs = 20_000
    async with raw_bridge(tmp_path, "#flood") as (host, server):
        client = await server.client(0)
        nick = await register(client, "#flood")
        await host.wait_ready()
        plug = host.plugs["irc"]
        lines = [f":raw.test 353 {nick} = #big :{nick} " + " ".join(f"m{i}" for i in range(300)),
                 f":raw.test 366 {nick} #big :End of NAMES"]
        await client.send(f":{nick}!user@raw.host JOIN #big", *lines,
                          ":m1!u@h PRIVMSG #big :names done")
        await relayed(host.hooks["rec"], "names done")
        assert len(plug.network.channel("#big").members) == 301
        assert len(plug.network.people) >= 301
        flood = []
        for i in range(pairs):
            who = f"f{i}!u{i}@h{i}"
            flood.append(f":{who} JOIN #flood")
            if i % 2:
                flood.append(f":{who} QUIT :bye")
            else:
                flood.append(f":{who} PART #flood :bye")
        for i in range(2 * PRIVATE_MEMORY):
            flood += [f"@account=a{i} :s{i}!u@h PRIVMSG {nick} :psst {i}",
                      f":s{i}!u@h CHGHOST x y", f":s{i}!u@h ACCOUNT acct",
                      f":s{i}!u@h NICK :t{i}"]
        flood += [f":op!o@o KICK #big {nick} :out", ":human!h@raw.host PRIVMSG #flood :the end"]
        await client.stream.send("".join(line + "\r\n" for line in flood).encode())
        await relayed(host.hooks["rec"], "the end")
        state = plug.network
        assert set(state.channels) == {"#flood"}
        assert set(state.channel("#flood").members) == {nick.lower(), "human"}
        assert len(state.people) <= 2, len(state.people)
        assert len(state.private) == PRIVATE_MEMORY
        assert plug.connections == 1


# -- refused logins --------------------------------------------------------------------------


def refusals(host) -> list[str]:
    """Why the plug failed, as the host was told (the ActionRequired message)."""
    return [(reason or "").removeprefix("ActionRequired: ")
            for _, state, reason in host.hooks["rec"].states if state == "failed"]


@pytest.mark.parametrize("answer, extra, expected", [
    (":raw.test 464 * :Password incorrect", {"password": "wrong"},
     "the server refused the password (464 Password incorrect): check plugs.irc.password"),
    (":raw.test 464 * :Password required", {},
     "the server asks for a password (464 Password required): set plugs.irc.password"),
    ("ERROR :Closing link: raw.host (Bad password)", {"password": "wrong"},
     "the server refused the password (ERROR Closing link: raw.host (Bad password)): "
     "check plugs.irc.password"),
    (":raw.test 465 * :You are banned from this server", {},
     "the server has banned this bridge (465 You are banned from this server): the ban must "
     "be lifted by the server's operators (or plugs.irc.server changed)"),
    ("ERROR :Closing Link: raw.host (K-Lined)", {},
     "the server has banned this bridge (ERROR Closing Link: raw.host (K-Lined)): the ban "
     "must be lifted by the server's operators (or plugs.irc.server changed)"),
])
async def test_a_refusal_no_retry_fixes_says_what_to_change(tmp_path, answer, extra, expected):
    async with raw_bridge(tmp_path, **extra) as (host, server):
        client = await server.client(0)
        await client.wait_for(lambda l: l.startswith("USER "))
        await client.send(answer)
        await host.hooks["rec"].wait_until(lambda: refusals(host))
        assert refusals(host)[0] == expected
        assert host.plugs["irc"].connections == 0


async def test_a_refusal_that_may_pass_is_retried_as_usual(tmp_path):
    async with raw_bridge(tmp_path) as (host, server):
        first = await server.client(0)
        await first.wait_for(lambda l: l.startswith("USER "))
        await first.send("ERROR :Trying to reconnect too fast")
        await first.stream.send_eof()
        await host.hooks["rec"].wait_until(lambda: refusals(host))
        assert refusals(host)[0] == "ConnectionError: server said: Trying to reconnect too fast" \
            or refusals(host)[0].endswith("server said: Trying to reconnect too fast")
        await register(await server.client(1))
        await host.wait_ready()


async def test_a_refused_sasl_login_says_what_to_change(tmp_path):
    async with raw_bridge(tmp_path, sasl_mechanism="PLAIN", sasl_username="acct",
                          sasl_password="wrong") as (host, server):
        client = await server.client(0)
        await client.wait_for(lambda l: l.startswith("USER "))
        await client.send(":raw.test CAP * LS :sasl=PLAIN")
        await client.wait_for(lambda l: l == "CAP REQ :sasl")
        await client.send(":raw.test CAP * ACK :sasl")
        await client.wait_for(lambda l: l == "AUTHENTICATE PLAIN")
        await client.send("AUTHENTICATE +")
        await client.wait_for(lambda l: l.startswith("AUTHENTICATE ") and l != "AUTHENTICATE PLAIN")
        await client.send(":raw.test 904 * :SASL authentication failed")
        await host.hooks["rec"].wait_until(lambda: refusals(host))
        assert refusals(host)[0] == (
            "the server refused the SASL PLAIN login of acct (904 SASL authentication failed): "
            "check plugs.irc.sasl_username and plugs.irc.sasl_password")


# -- every line the plug sends fits ------------------------------------------------------------


async def test_every_line_the_plug_sends_fits_in_512_bytes(tmp_path):
    """Long names, a long real name, quit message and CTCP answer, long links and mentions,
    many channels: no line the plug (or a puppet) sends is longer than 510 bytes + CRLF."""
    long_chans = ["#" + "c" * 150 + str(i) for i in range(8)]
    extra = {"realname": CJK * 2, "quit_message": "bye " * 200, "ctcp_version": "v" * 700,
             "join": long_chans, "channel_keys": {long_chans[0]: "k" * 40},
             "puppets": True, "flood_rate": 0.0, "join_timeout": 0.5}
    async with raw_bridge(tmp_path, "#fit", **extra) as (host, server):
        main = await server.client(0)
        nick = await register(main, "#fit")
        await host.wait_ready()
        room = host.channels["room"]
        link = RichText([Segment("the docs", link="https://example.org/" + "a" * 700),
                         Segment(" and "),
                         Segment("someone", mention=User(id="z", plug="irc", username="z" * 600))])
        await host.put(room, Message(text=link, user=User(id="a", plug="mx", real_name=CJK)))
        puppet = await server.client(1)
        puppet_nick = await register(puppet)
        await puppet.wait_for(lambda l: l.startswith("PRIVMSG #fit ") and l.endswith("z" * 10))
        await host.put(room, Message(text="bridge says " + "w " * 600 + "end-of-it"))
        await main.send(f":human!h@raw.host PRIVMSG {nick} :\x01VERSION\x01")
        await main.wait_for(lambda l: l.startswith("NOTICE human :\x01VERSION "))
        await main.wait_for(lambda l: l.startswith("PRIVMSG #fit :") and l.endswith("end-of-it"))
        assert puppet_nick
    sent = [(c.lines, i) for i, c in enumerate(server.clients)]
    assert any(l.startswith("QUIT ") for l in main.lines)
    user_lines = [l for lines, _ in sent for l in lines if l.startswith("USER ")]
    assert len(user_lines) == 2 and "(chanmux)" in user_lines[1]
    for lines, index in sent:
        for line in lines:
            assert len(line.encode()) <= 510, (index, len(line.encode()), line[:80])
    joins = [l for l in main.lines if l.startswith("JOIN ")]
    assert len(joins) >= 3 and {c for l in joins for c in l.split()[1].split(",")} >= set(long_chans)
