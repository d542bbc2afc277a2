"""Messages to IRC lines without a network: budgets, splitting, authors, edits, replies."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import Channel, File, Location, Message, Receipt, RichText, Segment, SentMessage, User
from chanmux_irc.config import IRCConfig
from chanmux_irc.edits import compact_correction
from chanmux_irc.flood import TokenBucket
from chanmux_irc.formatting import parse
from chanmux_irc.outgoing import OutLine, Renderer
from chanmux_irc.split import ACTION_OVERHEAD, relay_prefix, split, text_budget
from chanmux_irc.state import Said

CHAN = Channel("irc", "#chan")
PREFIX = relay_prefix("bridge", "~bridge", "host.example", "PRIVMSG", "#chan")


def renderer(**keys) -> tuple[Renderer, dict]:
    memory: dict[str, Said] = {}
    config = IRCConfig(server="irc.example", nick="bridge", **keys)
    return Renderer("irc", config, memory.get), memory


def budget(command: str, action: bool) -> int:
    return text_budget(512, relay_prefix("bridge", "~bridge", "host.example", command, "#chan"),
                       action=action)


def wire(line) -> str:
    return line.text()


def test_budget_is_what_the_server_prefix_leaves():
    assert PREFIX == ":bridge!~bridge@host.example PRIVMSG #chan :"
    assert text_budget(512, PREFIX) == 512 - 2 - len(PREFIX)
    assert text_budget(512, PREFIX, action=True) == 512 - 2 - len(PREFIX) - ACTION_OVERHEAD
    assert text_budget(1024, PREFIX) == 1024 - 2 - len(PREFIX)


def long_text(chars: int, seed: int = 7) -> RichText:
    """Formatted text with multi-byte characters, words of every length and a long URL-like run."""
    rng = random.Random(seed)
    words = ["hello", "wörld", "日本語のテキスト", "emoji🙂🙃", "ça", "x" * 60, "naïve", "a", "Ελληνικά"]
    segments, size = [], 0
    while size < chars:
        word = rng.choice(words) + " "
        seg = Segment(word, bold=rng.random() < 0.3, italic=rng.random() < 0.2,
                      code=rng.random() < 0.1, underline=rng.random() < 0.1)
        segments.append(seg)
        size += len(word)
    rt = RichText(segments)
    return rt[:chars]


def test_five_thousand_characters_split_and_rejoin_without_loss():
    text = long_text(5000)
    room = budget("PRIVMSG", False) - len("<Alice> ")
    chunks = split(text, room)
    assert len(chunks) > 10
    assert RichText.join(chunks) == text
    for chunk in chunks:
        assert len(parse_bytes(chunk)) <= room
    for chunk in chunks[:-1]:
        assert chunk.plain[-1].isspace() or " " not in chunk.plain, "split inside a word"


def parse_bytes(chunk: RichText) -> bytes:
    from chanmux_irc.formatting import render_line
    return render_line(chunk).encode()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(Segment, text=st.text(min_size=1, max_size=80), bold=st.booleans(),
                          italic=st.booleans(), code=st.booleans()), max_size=30),
       st.integers(min_value=32, max_value=450))
def test_split_any_text_into_any_budget(segments, room):
    text = RichText(segments)
    chunks = split(text, room)
    assert RichText.join(chunks) == text
    assert all(len(parse_bytes(c)) <= room for c in chunks)


def shown_characters(rt: RichText) -> list[tuple[str, frozenset[str]]]:
    """Each character that is not white space, with its formatting."""
    return [(ch, s.flags) for s in rt.normalise() for ch in s.text if not ch.isspace()]


def test_lines_carry_the_author_and_formatting_on_every_line():
    """Every character arrives with its formatting; only the space a line was split at is
    left out (a line never ends with a space, nor with a reset code after it)."""
    r, _ = renderer(max_lines=100, monospace=True)
    text = long_text(3000, seed=3)
    lines = r.lines(Message(text=text, user=User(id="a", real_name="Alice")), "#chan", budget)
    assert len(lines) > 5
    rebuilt = RichText()
    for line in lines:
        raw = wire(line)
        assert len((PREFIX + raw).encode()) + 2 <= 512
        assert raw.startswith("<Alice> ")
        assert not raw.endswith((" ", "\x0f")), repr(raw[-20:])
        rebuilt = rebuilt + parse(raw[len("<Alice> "):])
    assert shown_characters(rebuilt) == shown_characters(text)
    assert len(text.plain) - len(rebuilt.plain) <= len(lines)   # a space at most per line


def test_code_is_plain_text_in_backticks_unless_monospace_is_asked_for():
    """irssi draws the monospace code \\x11 as a reversed "Q": by default inline code goes
    between backticks and preformatted lines as they are; `monospace = true` sends \\x11."""
    text = RichText([Segment("run "), Segment("make test", code=True), Segment(" then\n"),
                     Segment("  def f():\n      pass", pre=True)])
    msg = Message(text=text, user=User(username="bob"))
    r, _ = renderer()
    assert [wire(l) for l in r.lines(msg, "#chan", budget)] == [
        "<bob> run `make test` then", "<bob>   def f():", "<bob>       pass"]
    r, _ = renderer(monospace=True)
    assert [wire(l) for l in r.lines(msg, "#chan", budget)] == [
        "<bob> run \x11make test\x11 then", "<bob> \x11  def f():", "<bob> \x11      pass"]


def test_a_leave_shows_its_reason_and_the_names_relays_give():
    r, _ = renderer()
    left = Message(left=[User(username="dave", real_name="d\u200bave (Matrix)")],
                   reason="gone \x02fishing\x02\nback soon")
    assert [wire(l) for l in r.lines(left, "#chan", budget)] == [
        "* d\u200bave (Matrix) left (gone fishing back soon)"]
    joined = Message(joined=[User(username="@dave:mx", real_name="d\u200bave")])
    assert [wire(l) for l in r.lines(joined, "#chan", budget)] == ["* d\u200bave joined"]


def test_multi_line_messages_become_one_line_each_and_truncate_with_a_marker():
    r, _ = renderer(max_lines=3)
    msg = Message(text="one\n\ntwo\r\nthree\rfour\nfive", user=User(username="bob"))
    lines = r.lines(msg, "#chan", budget)
    assert [wire(l) for l in lines] == [
        "<bob> one", "<bob> two", "<bob> (message truncated: 3 more lines not shown)"]
    r, _ = renderer()
    lines = r.lines(Message(text="one\ntwo", user=None), "#chan", budget)
    assert [wire(l) for l in lines] == ["one", "two"]


def test_a_long_message_ends_with_a_link_to_its_whole_text_when_there_is_one():
    r, _ = renderer(max_lines=3, nick_colours=True, anti_highlight=True)
    text = RichText([Segment("see "), Segment("docs", link="https://docs.example/x", bold=True)])
    msg = Message(text=text + RichText.plain_text("\n\ntwo\nthree\nfour"),
                  user=User(username="bob"), attachments=[File(title="f.png", url="https://f/1")])
    rendering = r.render(msg, "#chan", budget)
    assert len(rendering.lines) == 5 and r.too_long(rendering)
    # the page: the author as IRC shows them, but no colour codes or zero-width space
    assert rendering.whole == "<bob> see docs <https://docs.example/x>\n\ntwo\nthree\nfour\nf.png <https://f/1>\n"
    link = "https://bridge.example.org/text/k?e=1&s=2"
    lines = r.fit(rendering, link)
    assert [parse(wire(l)).plain for l in lines] == [
        "<b\u200bob> see docs <https://docs.example/x>", "<b\u200bob> two",
        f"<b\u200bob> (full message at <{link}>)"]
    assert wire(lines[-1]).startswith("<\x03")              # the head as on every line
    assert [wire(l) for l in r.fit(rendering)] == [wire(l) for l in lines[:2]] + [
        wire(lines[0]).split(">", 1)[0] + "> (message truncated: 3 more lines not shown)"]
    short = r.render(Message(text="one\ntwo", user=User(username="bob")), "#chan", budget)
    assert r.fit(short, link) == r.fit(short) == short.lines  # within max_lines: unchanged


def test_a_link_too_long_for_a_line_is_shown_bare_or_replaced_by_the_notice():
    r, _ = renderer(max_lines=2)
    rendering = r.render(Message(text="a\nb\nc", user=User(username="bob")), "#chan", budget)
    room = budget("PRIVMSG", False) - len("<bob> ")
    bare = "https://b.example/" + "x" * (room - len("https://b.example/"))
    assert [wire(l) for l in r.fit(rendering, bare)] == ["<bob> a", f"<bob> {bare}"]
    assert [wire(l) for l in r.fit(rendering, bare + "y")] == [
        "<bob> a", "<bob> (message truncated: 2 more lines not shown)"]


def test_names_are_cleaned_and_styled():
    r, _ = renderer(nick_colours=True, anti_highlight=True)
    (line,) = r.lines(Message(text="hi", user=User(real_name="Ev\r\nil\0 Name")), "#chan", budget)
    raw = wire(line)
    assert "\r" not in raw and "\n" not in raw and "\0" not in raw
    assert parse(raw).plain == "<E\u200bvil Name> hi"
    assert raw.startswith("<\x03")


def test_actions_as_text_or_ctcp():
    r, _ = renderer()
    (line,) = r.lines(Message(text="waves", action=True, user=User(username="al")), "#chan", budget)
    assert wire(line) == "* al waves"
    r, _ = renderer(actions="ctcp")
    (line,) = r.lines(Message(text="waves", action=True, user=User(username="al")), "#chan", budget)
    assert wire(line) == "\x01ACTION al waves\x01"
    (line,) = r.lines(Message(text="waves", action=True, user=User(username="al")), "#c", budget,
                      puppet=True)
    assert wire(line) == "\x01ACTION waves\x01"


def test_notices_stay_notices():
    r, _ = renderer()
    (line,) = r.lines(Message(text="note", notice=True), "#chan", budget)
    assert line.command == "NOTICE"


def test_edit_policies():
    old = SentMessage(id="1", channel=CHAN, text="the quick brown fox")
    edit = Message(text="the quick red fox", user=User(username="al"), edited=True, edit_of=old)
    r, memory = renderer()
    assert [wire(l) for l in r.lines(edit, "#chan", budget)] == ["<al> s/brown/red/"]
    # only a receipt: the text comes from the plug's memory, else a full correction
    edit.edit_of = Receipt(id="r1", channel=CHAN)
    assert [wire(l) for l in r.lines(edit, "#chan", budget)] == ["<al> * correction: the quick red fox"]
    memory["r1"] = Said("al", RichText.plain_text("the quick brown fox"))
    assert [wire(l) for l in r.lines(edit, "#chan", budget)] == ["<al> s/brown/red/"]
    r, _ = renderer(edits="full", edit_marker="(edit) ")
    edit.edit_of = old
    assert [wire(l) for l in r.lines(edit, "#chan", budget)] == ["<al> (edit) the quick red fox"]
    r, _ = renderer(edits="none")
    assert r.lines(edit, "#chan", budget) == []


def test_replies_name_the_parent_with_a_short_quote():
    r, memory = renderer(reply_quote=12)
    parent = SentMessage(id="p", channel=CHAN, text="a rather long parent message",
                         user=User(plug="irc", username="carol", real_name="Carol C"))
    (line,) = r.lines(Message(text="agreed", user=User(username="al"), reply_to=parent), "#chan", budget)
    assert wire(line) == '<al> carol: "a rather lo…" agreed'
    remote = SentMessage(id="q", channel=Channel("mx", "!r"), text="hi",
                         user=User(plug="mx", username="@d:x", real_name="Dee"))
    (line,) = r.lines(Message(text="yo", user=User(username="al"), reply_to=remote), "#chan", budget)
    assert wire(line) == '<al> Dee: "hi" yo'
    memory["r9"] = Said("Erin", RichText.plain_text("remembered"))
    (line,) = r.lines(Message(text="ok", reply_to=Receipt(id="r9", channel=CHAN)), "#chan", budget)
    assert wire(line) == 'Erin: "remembered" ok'
    (line,) = r.lines(Message(text="ok", reply_to=Receipt(id="unknown", channel=CHAN)), "#chan", budget)
    assert wire(line) == "ok"


def test_mentions_of_people_on_this_network_use_their_nick():
    r, _ = renderer()
    mention = User(plug="irc", username="dave_")
    other = User(plug="mx", username="@e:x")
    text = RichText([Segment("Dave", mention=mention), Segment(": and "), Segment("Eve", mention=other)])
    (line,) = r.lines(Message(text=text), "#chan", budget)
    assert line.text(r.mention) == "dave_: and Eve"
    assert wire(line) == "Dave: and Eve"


def test_events_and_attachments():
    r, _ = renderer()
    lines = r.lines(Message(joined=[User(real_name="Ann"), User(username="bo")]), "#chan", budget)
    assert [wire(l) for l in lines] == ["* Ann, bo joined"]
    ann, anna = User(real_name="Ann M"), User(real_name="Anna M")
    lines = r.lines(Message(user=anna, renamed=(ann, anna)), "#chan", budget)
    assert [wire(l) for l in lines] == ["* Ann M is now known as Anna M"]
    lines = r.lines(Message(title="New\r\ntopic", user=User(username="al")), "#chan", budget)
    assert [wire(l) for l in lines] == ["* al changed the title to: Newtopic"]
    msg = Message(text="look", user=User(username="al"), attachments=[
        File(title="cat.png", url="https://x/cat.png"), File(title="secret"),
        Location(latitude=1.5, longitude=2.5, name="Here"),
        Message(text="quoted\ntwice", user=User(username="q"))])
    got = [wire(l) for l in r.lines(msg, "#chan", budget)]
    assert got[:3] == ["<al> look", "<al> cat.png <https://x/cat.png>", "<al> (file: secret)"]
    assert got[3].startswith("<al> Here <https://www.openstreetmap.org/?mlat=1.5&mlon=2.5")
    assert got[4:] == ["<al> > q: quoted", "<al> > q: twice"]
    assert r.lines(Message(), "#chan", budget) == []


def test_compact_corrections():
    assert compact_correction("tX first version", "tX second version") == "s/first/second/"
    assert compact_correction("hello wrold how are you", "hello world how are you") == "s/wrold/world/"
    assert compact_correction("I like it", "I really like it") == "s/I /I really /"
    assert compact_correction("a b", "c d") is None                      # not shorter
    assert compact_correction("the cat and the cat", "the cat and the dog") is None  # "cat" twice
    assert compact_correction("see a/b here now", "see a/c here now") is None   # slash inside
    assert compact_correction("two\nlines", "two\nlinez") is None
    assert compact_correction("same", "same") is None
    assert compact_correction("x y x y x", "x y x z x") is None          # ambiguous in the old text


def test_token_bucket_bursts_then_keeps_the_rate():
    now = [0.0]
    bucket = TokenBucket(burst=3, rate=2.0, clock=lambda: now[0])
    for _ in range(3):
        assert bucket.delay() == 0
        bucket.tokens -= 1
    assert bucket.delay() == 0.5
    now[0] = 0.5
    assert bucket.delay() == 0
    bucket.consume()
    bucket.consume()                       # a control line: taken even in debt
    assert bucket.delay() == 1.0
    now[0] = 100.0
    assert bucket.delay() == 0 and bucket.tokens == 3
    off = TokenBucket(burst=1, rate=0, clock=lambda: now[0])
    off.consume()
    assert not off.enabled and off.delay() == 0


def connection(caps: set[str]):
    import logging

    from chanmux_irc.connection import Connection, Identity, Outbox, Settings

    conn = Connection(Settings("irc.example", 6667), Identity("bridge"), outbox=Outbox(),
                      bucket=TokenBucket(1, 0), handler=None, log=logging.getLogger("test"))
    conn.caps = caps
    return conn


def test_a_line_needing_a_capability_the_server_lost_is_said_as_text_or_left_out():
    """Lines wait in the outbox across reconnects: a reaction (TAGMSG), a REDACT or a
    RELAYMSG line that reaches a server without the capability it needs is said as its text
    (a reaction's line, the deletion notice, `<author> text` from the bridge), or left out
    where it has none."""
    react = OutLine("#c", "TAGMSG", "", RichText.plain_text("* bob reacted 👍"),
                    tags={"+draft/react": "👍", "+draft/reply": "m1"})
    bare = OutLine("#c", "TAGMSG", "", RichText(), tags={"+draft/react": "👍", "+draft/reply": "m1"})
    redact = OutLine("#c", "REDACT", "", RichText(), params=("m1",))
    relayed = OutLine("#c", "PRIVMSG", "", RichText.plain_text("waves"), action=True,
                      relay="alice/m", relay_head="* alice ")
    full = connection({"message-tags", "draft/message-redaction", "draft/relaymsg"})
    assert [full._sendable(line) for line in (react, bare, redact, relayed)] == [
        react, bare, redact, relayed]
    none = connection(set())
    text = none._sendable(react)
    assert (text.command, text.tags, text.text()) == ("PRIVMSG", None, "* bob reacted 👍")
    assert none._sendable(bare) is None and none._sendable(redact) is None
    plain = none._sendable(relayed)
    assert (plain.relay, plain.text()) == (None, "* alice waves")
    full.relay_refused = True                       # the server said FAIL RELAYMSG
    assert full._sendable(relayed).relay is None
