"""Puppet mode: each remote author speaks through an IRC connection of their own."""

from __future__ import annotations

import logging

import pytest

from chanmux import Message, User
from chanmux_irc.config import IRCConfig
from chanmux_irc.outgoing import OutLine
from chanmux_irc.puppets import Puppets, puppet_nick
from chanmux_irc.state import NetworkState

from irc_helpers import bridge, human, sees, unique

pytestmark = pytest.mark.anyio

ALICE = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="Alice Ünïcode")
BOB = User(id="@bob:mx", plug="mx", username="@bob:mx", real_name="Bob")


def test_puppet_nicks_are_valid_and_fit():
    assert puppet_nick("Alice Ünïcode", "", "[b]", 30) == "Alice_Unicode[b]"
    assert puppet_nick("日本", "m_", "", 30) == "m_user"
    assert puppet_nick("9lives", "", "|x", 30) == "_9lives|x"
    assert puppet_nick("a" * 40, "", "[b]", 16) == "a" * 13 + "[b]"
    assert puppet_nick("x\r\nQUIT", "", "", 30) == "xQUIT"


def offline_puppets(**config: object) -> Puppets:
    """Puppets of a plug named `irc`, built without a host or a plug, never connected."""
    network = NetworkState()
    network.info.update(["NICKLEN=30"])
    irc = IRCConfig(server="irc.example", nick="bridge", puppets=True, **config)
    return Puppets("irc", irc, network, log=logging.getLogger("test.puppets"),
                   mention=lambda seg: seg.text)


async def test_a_remote_author_gets_a_puppet_and_the_rest_the_main_connection():
    puppets = offline_puppets()
    alice = puppets.route("#room", Message(text="hi", user=ALICE))
    assert alice is not None and alice.nick == "Alice_Unicode[b]" and alice.user == ALICE
    assert list(alice.channels.values()) == ["#room"]          # joined once it connects
    assert puppets.route("#other", Message(text="again", user=ALICE)) is alice
    assert sorted(alice.channels.values()) == ["#other", "#room"]
    assert puppets.route("#room", Message(text="no author")) is None
    assert puppets.route("#room", Message(text="ours", user=User(id="x", is_self=True))) is None
    assert puppets.route("#room", Message(text="from IRC", user=User(id="n", plug="irc"))) is None
    assert puppets.route("#room", Message(joined=[ALICE], user=ALICE)) is None   # an event
    assert puppets.route("somebody", Message(text="private", user=BOB)).channels == {}


async def test_over_the_limit_the_idle_puppet_retires_and_a_busy_one_stays():
    puppets = offline_puppets(puppet_max=1)
    alice = puppets.route("#room", Message(text="hi", user=ALICE))
    bob = puppets.route("#room", Message(text="hi", user=BOB))      # alice was idle: retired
    assert alice.retired and list(puppets.by_key.values()) == [bob]
    bob.outbox.extend([OutLine("#room", "PRIVMSG", "", None, False, "r1")])
    assert puppets.route("#room", Message(text="hi", user=ALICE)) is None   # bob is busy
    assert puppets.queued() == [(BOB, list(bob.outbox))]


async def test_a_puppet_whose_put_waits_for_a_link_is_not_retired_to_make_room():
    puppets = offline_puppets(puppet_max=1)
    alice = puppets.route("#room", Message(text="long", user=ALICE))
    alice.putting += 1                  # its put waits for the link to a long message's text
    assert puppets.route("#room", Message(text="hi", user=BOB)) is None   # the main nick says it
    assert not alice.retired and list(puppets.by_key.values()) == [alice]
    alice.putting -= 1
    assert puppets.route("#room", Message(text="hi", user=BOB)) is not None and alice.retired


async def test_a_puppet_nick_is_known_by_case_folding_and_follows_a_rename():
    puppets = offline_puppets()
    alice = puppets.route("#room", Message(text="hi", user=ALICE))
    puppets.nicks[puppets.network.fold(alice.nick)] = alice          # as when it connects
    assert puppets.is_puppet("alice_unicode{B}") and puppets.user_for("ALICE_UNICODE[B]") == ALICE
    puppets.renamed("Alice_Unicode[b]", "Alice2[b]")
    assert not puppets.is_puppet("Alice_Unicode[b]") and puppets.user_for("alice2{b}") == ALICE
    assert puppets.user_for("stranger") is None


async def test_puppets_speak_as_their_authors_and_are_never_relayed(ircd, tmp_path):
    chan = "#" + unique("pup")
    async with bridge(ircd, tmp_path, {"room": chan}, puppets=True, wait_ready=None) as host, \
            human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug, room, rec = host.plugs["irc"], host.channels["room"], host.hooks["rec"]
        await host.put(room, Message(text="hello from alice", user=ALICE))
        await host.put(room, Message(text="waves", user=BOB, action=True))
        await host.put(room, Message(text="bridge notice"))          # no author: main connection
        said = await sees(a, "Alice_Unicode[b]", lambda s: True, target=chan)
        assert said.plain == "hello from alice"
        acted = await sees(a, "Bob[b]", lambda s: True, target=chan)
        assert acted.action and acted.plain == "waves"
        await sees(a, plug.nick, lambda s: s.plain == "bridge notice")

        await a.privmsg(chan, "Alice_Unicode[b]: you are a puppet")
        got = await rec.wait_for(lambda r: r.sent.text and "puppet" in r.sent.text.plain)
        (mention,) = [s for s in got.sent.text if s.mention]
        assert mention.mention == ALICE                    # a highlight reaches the real author
        for record in rec.received:
            assert record.sent.user is None or record.sent.user.username not in (
                "Alice_Unicode[b]", "Bob[b]"), record.sent
        assert set(plug.puppets.by_key) and len(plug.puppets.by_key) == 2


async def test_puppet_limit_and_idle_disconnect(ngircd, tmp_path):
    chan = "#" + unique("idle")
    async with bridge(ngircd, tmp_path, {"room": chan}, puppets=True, puppet_max=1,
                      puppet_idle=0.5, wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        room = host.channels["room"]
        await host.put(room, Message(text="first", user=ALICE))
        await sees(a, "Alice_Unicode[b]", lambda s: s.plain == "first")
        await host.put(room, Message(text="second", user=BOB))      # over the limit: alice retires
        await a.wait_for(lambda l: l.command == "QUIT" and l.nick == "Alice_Unicode[b]", since=0)
        await sees(a, "Bob[b]", lambda s: s.plain == "second")
        await a.wait_for(lambda l: l.command == "QUIT" and l.nick == "Bob[b]", since=0)   # idle
        assert not host.plugs["irc"].puppets.by_key


async def test_a_clean_restart_repeats_no_puppet_line(ngircd, tmp_path):
    """A stop asks each puppet's server to confirm what it got before QUIT: after the next
    start every line is said once (the rest by the main connection, with the author shown)."""
    chan = "#" + unique("pupstop")
    async with human(ngircd) as a:
        await a.join(chan)
        async with bridge(ngircd, tmp_path, {"room": chan}, puppets=True, wait_ready=None,
                          flood_burst=1, flood_rate=1.0) as host:
            await host.wait_ready()
            room = host.channels["room"]
            for i in range(3):
                await host.put(room, Message(text=f"line {i}", user=ALICE))
            await sees(a, "Alice_Unicode[b]", lambda s: s.plain == "line 0", target=chan)
        mark = len(a.lines)
        async with bridge(ngircd, tmp_path, {"room": chan}, wait_ready=None) as host:
            await host.wait_ready()
            await host.put(host.channels["room"], Message(text="after", user=BOB))
            await sees(a, host.plugs["irc"].nick, lambda s: s.plain.endswith("after"), since=mark,
                       target=chan, timeout=30)
    said = [l.text for l in a.lines if l.command == "PRIVMSG" and l.params[0] == chan]
    # a puppet line is bare; the main connection shows the author ("<Name> text")
    assert [t.split("> ", 1)[-1] for t in said] == ["line 0", "line 1", "line 2", "after"], said


async def test_puppets_with_200_character_cjk_names_connect_and_speak(ngircd, tmp_path):
    """A puppet's realname was the display name + " (chanmux)" uncut: 200 CJK characters
    made a 629-byte USER line and ngircd closed the connection; the puppet never spoke."""
    chan = "#" + unique("cjk")
    names = ["漢字仮名交じり文" * 25, "ひらがなカタカナ" * 25]
    authors = [User(id=f"@cjk{i}:mx", plug="mx", username=f"@cjk{i}:mx", real_name=name)
               for i, name in enumerate(names)]
    async with bridge(ngircd, tmp_path, {"room": chan}, puppets=True, wait_ready=None) as host, \
            human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        room = host.channels["room"]
        for i, author in enumerate(authors):
            await host.put(room, Message(text=f"hello {i} " + "字" * 300, user=author))
        said = {}
        for i in range(2):
            line = await a.wait_for(lambda l, i=i: l.command == "PRIVMSG" and l.target == chan
                                    and l.text.startswith(f"hello {i} 字"), timeout=30, since=0)
            said[i] = line.nick
        assert said[0] != said[1] and all(n.startswith("user") for n in said.values())
        puppets = host.plugs["irc"].puppets.by_key.values()
        assert all(p.conn is not None and p.conn.welcomed for p in puppets)
        await a.send_raw(f"WHOIS {said[0]}")
        whois = await a.wait_for(lambda l: l.command == "311" and l.params[1] == said[0])
        assert whois.params[-1].startswith(names[0][:20]) and whois.params[-1].endswith("… (chanmux)")
        for line in a.lines:
            assert len(line.raw.encode()) + 2 <= 512
