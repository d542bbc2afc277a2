"""IRC (InspIRCd) <-> Matrix (Synapse) through one `chanmux run`: text, formatting, actions,
mentions, edits, redactions, replies and long messages, with an IRC person and a Matrix person.

One bridge serves the whole module (per anyio backend and per database: SQLite, and PostgreSQL
as a large deployment would use); each test gets a channel/room pair of its own on its own sync
label. The IRC side is InspIRCd, whose message tags let IRC people reply (`+draft/reply`).
Two IRC plugs: `irc` with the defaults (actions as `* Name text`, edits `auto`) over TLS, and
`ircalt` (actions as CTCP ACTION, edits `none`) over plaintext.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Account,
    Bridge,
    Pair,
    body,
    fresh_database,
    html,
    irc_plug,
    irc_until,
    lines,
    matrix_plug,
    module_pairs,
    pair_config,
    privmsgs,
    register,
    room_messages,
    uid,
    wire_length,
    write_config,
)

pytestmark = pytest.mark.anyio

TOKEN_ENV = "E2E_RELAY_MATRIX_TOKEN"


@dataclass
class Relay:
    bridge: Bridge
    hs: object
    ircd: object
    alice: Account
    bob: Account
    account: Account
    nicks: dict[str, str]
    pairs: dict[str, Pair]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """The bridge's database: the embedded SQLite default, or PostgreSQL."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    return request.param


@pytest.fixture(scope="module")
def relay(request: pytest.FixtureRequest, anyio_backend: str, database: str, synapse,
          inspircd, tmp_path_factory: pytest.TempPathFactory):
    """The module's bridge, with one sync label (IRC channel + Matrix room) per test."""
    hs, run = synapse, uid()
    alice = register(hs, f"alice{run}", "Alice M")
    bob = register(hs, f"bob{run}", "Bob M")
    account = register(hs, f"relay{run}")
    nicks = {"irc": f"rb{run}", "ircalt": f"ra{run}"}
    pairs = module_pairs(request, hs, alice, [], f"r{run}")
    channels, hook = pair_config(pairs.values())
    config = {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {
            "irc": irc_plug(inspircd, nicks["irc"], tls=True),
            "ircalt": irc_plug(inspircd, nicks["ircalt"], actions="ctcp", edits="none"),
            "matrix": matrix_plug(hs, account, token_env=TOKEN_ENV),
        },
        "channels": channels,
        "hooks": {"sync": hook},
    }
    if database == "postgresql":  # a database of its own: no state shared between bridges
        url = fresh_database(request.getfixturevalue("postgres_url"))
        config = {"database": {"url": url}, **config}
    path = write_config(tmp_path_factory.mktemp("relay") / "bridge.toml", config)
    bridge = Bridge(path, backend=anyio_backend, plugs=["irc", "ircalt", "matrix"],
                    env={TOKEN_ENV: account.token}, secrets=[account.token])
    bridge.start()
    try:
        bridge.ready_sync(timeout=90)
        yield Relay(bridge, hs, inspircd, alice, bob, account, nicks, pairs)
    finally:
        code = bridge.stop()
        print(f"\nrelay bridge ({anyio_backend}, {database}) exited {code}; log {bridge.log_path}")
    assert code == 0, bridge.tail()
    bridge.check_clean()


@pytest.fixture
def pair(relay: Relay, request: pytest.FixtureRequest) -> Pair:
    return relay.pairs[request.node.originalname]


@pytest.fixture(autouse=True)
def bridge_stays_healthy(relay: Relay):
    """After each test the bridge still runs and has logged no error."""
    mark = relay.bridge.mark()
    yield
    assert relay.bridge.running, relay.bridge.tail()
    bad = relay.bridge.problems(since=mark)
    assert not bad, "\n".join(bad)


@pytest.fixture
async def irc(relay: Relay, pair: Pair):
    """An IRC person (with message tags, so replies can be tagged) in the test's channel."""
    async with HumanIRC.connect(relay.ircd.host, relay.ircd.port, f"i{uid(7)}",
                                caps=("message-tags",)) as person:
        await person.join(pair.channel)
        yield person


@pytest.fixture
async def mx(relay: Relay, irc: HumanIRC, pair: Pair):
    """Alice on Matrix, in the test's room; history before the test is skipped."""
    async with HumanMatrix(relay.hs.base_url, relay.alice.user_id, relay.alice.token) as person:
        # The IRC person's join is relayed as a notice; wait for it, so the bridge has seen
        # them in the channel (mentions of their nick depend on it).
        await person.sync_until(lambda e: e.get("room_id") == pair.room and irc.nick in body(e),
                                timeout=30)
        yield person


def from_bridge(relay: Relay, pair: Pair, irc: HumanIRC, token: str):
    nick = relay.nicks[pair.plug]
    return lambda l: (l.command == "PRIVMSG" and (l.nick or "").lower() == nick.lower()
                      and token in l.text)


def in_room(relay: Relay, pair: Pair, token: str):
    return lambda e: (e.get("room_id") == pair.room and e.get("sender") == relay.account.user_id
                      and token in body(e))


# -- text and formatting -----------------------------------------------------------------------


async def test_text_irc_to_matrix_with_formatting(relay: Relay, pair: Pair, irc: HumanIRC,
                                                  mx: HumanMatrix):
    """mIRC bold, italic, underline, strikethrough and monospace become HTML; colours become
    Matrix colours (`<font data-mx-color data-mx-bg-color>`, no digits leak); the author is
    shown in bold."""
    t = uid()
    await irc.privmsg(pair.channel, f"{t} plain \x02bold\x02 \x1ditalic\x1d \x1funder\x1f "
                                    f"\x1estrike\x1e \x11mono\x11 \x0304,12red\x03 \x0310cyan\x0f end")
    ev = await mx.sync_until(in_room(relay, pair, t), timeout=20)
    assert body(ev) == f"{irc.nick}: {t} plain bold italic under strike mono red cyan end"
    assert html(ev) == (f"<b>{irc.nick}</b>: {t} plain <b>bold</b> <i>italic</i> <u>under</u> "
                        f"<del>strike</del> <code>mono</code> <font data-mx-color=\"#ff0000\" "
                        f"data-mx-bg-color=\"#0000fc\">red</font> "
                        f"<font data-mx-color=\"#009393\">cyan</font> end")
    assert ev["content"]["msgtype"] == "m.text"


async def test_text_matrix_to_irc_with_formatting(relay: Relay, pair: Pair, irc: HumanIRC,
                                                  mx: HumanMatrix):
    """HTML bold, italic, underline and strike become mIRC codes, code is shown in backticks
    (every client reads them; irssi draws mIRC's monospace code as a reversed Q); a link is
    shown with its URL; HTML entities are decoded; the author is shown as `<Name>`."""
    t = uid()
    await mx.send_text(pair.room, f"{t} plain bold italic under strike code link & <tag>",
                       html=f"{t} plain <b>bold</b> <i>italic</i> <u>under</u> <del>strike</del> "
                            f"<code>code</code> <a href=\"https://example.org/x\">link</a> "
                            f"&amp; &lt;tag&gt;")
    line = await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    assert line.text == (f"<Alice M> {t} plain \x02bold\x02 \x1ditalic\x1d \x1funder\x1f "
                         f"\x1estrike\x1e `code` link <https://example.org/x> & <tag>")


async def test_plain_text_both_ways_in_order(relay: Relay, pair: Pair, irc: HumanIRC,
                                             mx: HumanMatrix):
    """A short conversation: each message once on the other side, in the order said,
    non-ASCII intact."""
    t = uid()
    said_irc = [f"{t} irc {i} héllo ✓" for i in range(5)]
    said_mx = [f"{t} mx {i} ünïcode 日本" for i in range(5)]
    mark = irc.mark()
    for a, b in zip(said_irc, said_mx, strict=True):
        await irc.privmsg(pair.channel, a)
        await mx.send_text(pair.room, b)
    await irc_until(irc, lambda: len(privmsgs(irc, pair.channel, mark, relay.nicks["irc"])) >= 5,
                    what="5 Matrix messages on IRC")
    await mx.sync_until(in_room(relay, pair, said_irc[-1]), timeout=20)
    got_irc = [l.text for l in privmsgs(irc, pair.channel, mark, relay.nicks["irc"])]
    assert got_irc == [f"<Alice M> {s}" for s in said_mx]
    # a line per IRC line: lines that waited behind a slow put (a loaded homeserver) go out
    # as one event, named once (`Capabilities.merge`)
    events = [body(e) for e in room_messages(mx, pair.room, sender=relay.account.user_id)
              if t in body(e)]
    assert all(text.startswith(f"{irc.nick}: ") for text in events), events
    assert [line.removeprefix(f"{irc.nick}: ") for line in lines(events)] == said_irc


# -- actions -----------------------------------------------------------------------------------


async def test_actions_both_ways(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """/me on IRC (CTCP ACTION) becomes an m.emote; an m.emote becomes `* Name text` on IRC
    (the plug's default `actions = "text"`)."""
    t = uid()
    await irc.privmsg(pair.channel, f"\x01ACTION waves {t}\x01")
    ev = await mx.sync_until(in_room(relay, pair, t), timeout=20)
    assert ev["content"]["msgtype"] == "m.emote"
    assert body(ev) == f"{irc.nick} waves {t}"
    t2 = uid()
    await mx.send_emote(pair.room, f"nods {t2}")
    line = await irc.wait_for(from_bridge(relay, pair, irc, t2), timeout=20)
    assert line.text == f"* Alice M nods {t2}"


@pytest.mark.label(plug="ircalt")
async def test_actions_as_ctcp(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """With `actions = "ctcp"` an m.emote reaches IRC as a real CTCP ACTION `Name text`."""
    t = uid()
    await mx.send_emote(pair.room, f"dances {t}")
    line = await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    assert line.text == f"\x01ACTION Alice M dances {t}\x01"


# -- mentions ----------------------------------------------------------------------------------


async def test_mentions(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """Matrix -> IRC: a pill of a Matrix user shows as their name (no URL, no HTML); an IRC nick
    typed in the text arrives as that very word, so the IRC person's client highlights it.
    IRC -> Matrix: the bridge never pings anyone by accident: a Matrix person's display name
    in IRC text is not a mention (`m.mentions` is empty)."""
    t = uid()
    pill = f'<a href="https://matrix.to/#/{relay.bob.user_id}">Bob M</a>'
    await mx.send_text(pair.room, f"Bob M: {irc.nick}: look {t}",
                       html=f"{pill}: {irc.nick}: look {t}")
    line = await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    assert line.text == f"<Alice M> Bob M: {irc.nick}: look {t}"
    assert re.search(rf"(^|\W){re.escape(irc.nick)}(\W|$)", line.text)
    t2 = uid()
    await irc.privmsg(pair.channel, f"Alice M and Bob M: hello {t2}")
    ev = await mx.sync_until(in_room(relay, pair, t2), timeout=20)
    assert ev["content"].get("m.mentions") == {}
    assert "matrix.to" not in html(ev)


# -- edits -------------------------------------------------------------------------------------


async def test_matrix_edit_on_irc(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """IRC cannot edit. With `edits = "auto"` a small edit shows as `s/old/new/`, a larger one
    as the full new text after the edit marker; each edit is one line, never a repost of
    every message."""
    t = uid()
    eid = await mx.send_text(pair.room, f"{t} the quick brown fox")
    await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    mark = irc.mark()
    await mx.edit(pair.room, eid, f"{t} the quick red fox")
    line = await irc.wait_for(from_bridge(relay, pair, irc, "s/"), timeout=20)
    assert line.text == "<Alice M> s/brown/red/"
    await mx.edit(pair.room, eid, f"{t} completely different words now")
    line = await irc.wait_for(from_bridge(relay, pair, irc, "different"), timeout=20)
    assert line.text == f"<Alice M> * correction: {t} completely different words now"
    assert len(privmsgs(irc, pair.channel, mark, relay.nicks["irc"])) == 2


@pytest.mark.label(plug="ircalt")
async def test_matrix_edit_with_edits_none(relay: Relay, pair: Pair, irc: HumanIRC,
                                           mx: HumanMatrix):
    """With `edits = "none"` an edit shows nothing on IRC (the next message comes straight
    after the original)."""
    t = uid()
    eid = await mx.send_text(pair.room, f"{t} first")
    await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    mark = irc.mark()
    await mx.edit(pair.room, eid, f"{t} first, edited")
    await mx.send_text(pair.room, f"{t} after")
    await irc.wait_for(from_bridge(relay, pair, irc, f"{t} after"), timeout=20)
    assert [l.text for l in privmsgs(irc, pair.channel, mark)] == [f"<Alice M> {t} after"]


# -- redactions --------------------------------------------------------------------------------


async def test_matrix_redaction(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """IRC cannot delete (ngircd has no draft/message-redaction): a redacted Matrix message
    is announced on IRC once, with its first words, so people know it no longer stands
    (chanmux-irc's `deletions = "notice"`). Redacting the bridge's copy of an IRC message
    (Alice is the room's admin) deletes nothing elsewhere. Nothing crashes: the next messages
    go through both ways."""
    t = uid()
    eid = await mx.send_text(pair.room, f"{t} oops")
    await irc.wait_for(from_bridge(relay, pair, irc, t), timeout=20)
    await irc.privmsg(pair.channel, f"{t} from irc")
    copy = await mx.sync_until(in_room(relay, pair, f"{t} from irc"), timeout=20)
    mark = irc.mark()
    await mx.redact(pair.room, eid, reason="typo")
    await mx.redact(pair.room, copy["event_id"])
    await mx.send_text(pair.room, f"{t} still here")
    await irc.wait_for(from_bridge(relay, pair, irc, f"{t} still here"), timeout=20)
    assert [l.text for l in privmsgs(irc, pair.channel, mark)] == [
        f'* a message from Alice M was deleted: "{t} oops"', f"<Alice M> {t} still here"]
    await irc.privmsg(pair.channel, f"{t} and back")
    await mx.sync_until(in_room(relay, pair, f"{t} and back"), timeout=20)


# -- replies -----------------------------------------------------------------------------------


async def test_replies_matrix_to_irc(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """A Matrix reply reaches IRC as `parent-author: "quote" text`: to an IRC message it names
    the IRC nick, to a Matrix message the Matrix name; the quote is the right parent's text."""
    t = uid()
    await irc.privmsg(pair.channel, f"{t} question from irc")
    parent_irc = await mx.sync_until(in_room(relay, pair, f"{t} question"), timeout=20)
    own = await mx.send_text(pair.room, f"{t} statement from matrix")
    await irc.wait_for(from_bridge(relay, pair, irc, f"{t} statement"), timeout=20)
    await mx.reply(pair.room, parent_irc["event_id"], f"{t} answer one")
    line = await irc.wait_for(from_bridge(relay, pair, irc, f"{t} answer one"), timeout=20)
    assert line.text == f'<Alice M> {irc.nick}: "{t} question from irc" {t} answer one'
    await mx.reply(pair.room, own, f"{t} answer two")
    line = await irc.wait_for(from_bridge(relay, pair, irc, f"{t} answer two"), timeout=20)
    assert line.text == f'<Alice M> Alice M: "{t} statement from matrix" {t} answer two'


async def test_replies_irc_to_matrix(relay: Relay, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """An IRC reply (`+draft/reply` with the parent's msgid) becomes a Matrix reply to the right
    event: to the Matrix original of a relayed line, and to the Matrix copy of an IRC line."""
    t = uid()
    original = await mx.send_text(pair.room, f"{t} matrix says")
    relayed = await irc.wait_for(from_bridge(relay, pair, irc, f"{t} matrix says"), timeout=20)
    assert relayed.tags.get("msgid"), relayed.raw
    await irc.privmsg(pair.channel, f"{t} reply to matrix", tags={"+draft/reply": relayed.tags["msgid"]})
    ev = await mx.sync_until(in_room(relay, pair, f"{t} reply to matrix"), timeout=20)
    assert ev["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == original
    async with HumanIRC.connect(relay.ircd.host, relay.ircd.port, f"j{uid(7)}",
                                caps=("message-tags",)) as other:
        await other.join(pair.channel)
        await other.privmsg(pair.channel, f"{t} other says")
        said = await irc.wait_for(lambda l: l.command == "PRIVMSG" and l.nick == other.nick, timeout=10)
        copy = await mx.sync_until(in_room(relay, pair, f"{t} other says"), timeout=20)
        await irc.privmsg(pair.channel, f"{t} reply to irc", tags={"+draft/reply": said.tags["msgid"]})
        ev = await mx.sync_until(in_room(relay, pair, f"{t} reply to irc"), timeout=20)
        assert ev["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == copy["event_id"]


# -- long messages -----------------------------------------------------------------------------


async def test_long_multiline_matrix_message(relay: Relay, pair: Pair, irc: HumanIRC,
                                             mx: HumanMatrix):
    """A multi-line Matrix message with one very long line (multi-byte characters) arrives as
    IRC lines that each fit the 512-byte limit, split between words, nothing lost, in order."""
    t = uid()
    words = [f"w{i:03d}{'é' if i % 3 else '日本'}" for i in range(260)]
    lines = [f"{t} first line", " ".join(words), "a third line, short", "and the end"]
    await mx.send_text(pair.room, "\n".join(lines))
    mark = irc.mark()
    await irc.wait_for(from_bridge(relay, pair, irc, "and the end"), timeout=20)
    got = privmsgs(irc, pair.channel, mark, relay.nicks["irc"])
    assert all(wire_length(l) <= 512 for l in got), [wire_length(l) for l in got]
    assert all(l.text.startswith("<Alice M> ") for l in got)
    # A line is split between words: each piece ends with its last word, with no trailing
    # space or reset code (irssi showed the " \x0f" some clients print)
    texts = [l.text.removeprefix("<Alice M> ") for l in got]
    assert texts[0] == lines[0] and texts[-2:] == lines[2:]
    middle = texts[1:-2]
    assert len(middle) >= 3, texts
    assert " ".join(middle) == lines[1]
    assert all(piece.split(" ")[-1] in words and "\x0f" not in piece for piece in middle), \
        "split inside a word, or a stray code at the end"
    assert max(wire_length(l) for l in got) > 400, "lines should be filled, not split early"
