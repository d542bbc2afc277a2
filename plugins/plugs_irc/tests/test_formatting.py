"""mIRC formatting codes to RichText and back; colours never leak; mentions of nicks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import RichText, Segment, User
from chanmux_irc.formatting import (
    NICK_COLOURS,
    add_mentions,
    clean,
    coloured,
    nick_colour,
    parse,
    render,
    render_line,
)


def segs(rt: RichText) -> list[tuple[str, frozenset[str]]]:
    return [(s.text, s.flags) for s in rt.normalise()]


def test_parse_every_toggle_and_reset():
    text = "a\x02b\x1dc\x1fd\x1ee\x11f\x0fg"
    assert segs(parse(text)) == [
        ("a", frozenset()), ("b", {"bold"}), ("c", {"bold", "italic"}),
        ("d", {"bold", "italic", "underline"}), ("e", {"bold", "italic", "underline", "strike"}),
        ("f", {"bold", "italic", "underline", "strike", "code"}), ("g", frozenset()),
    ]
    assert segs(parse("\x02x\x02y")) == [("x", {"bold"}), ("y", frozenset())]


@pytest.mark.parametrize("raw, plain", [
    ("\x0304red\x03 normal", "red normal"),
    ("\x034,12red on blue", "red on blue"),
    ("\x0304,12 x", " x"),
    ("\x03123", "3"),               # two digits at most: "12" is the colour, "3" is text
    ("\x0312,345", "5"),
    ("\x03,5 text", ",5 text"),      # no foreground: the comma is text
    ("\x035, five", ", five"),       # comma not followed by a digit is text
    ("\x03", ""),
    ("\x04FF0000red\x04", "red"),
    ("\x04ff0000,00ff00both", "both"),
    ("\x04notcolour", "notcolour"),
    ("\x16reverse\x16", "reverse"),
    ("bell\x07 and \x01ctcp\x01 and \x7fdel", "bell and ctcp and del"),
])
def test_colours_and_other_codes_never_leak(raw, plain):
    assert parse(raw).plain == plain


def test_formatting_survives_colours():
    rt = parse("\x02\x0304bold red\x0f plain")
    assert segs(rt) == [("bold red", {"bold"}), (" plain", frozenset())]


def test_render_toggles_only_what_changes():
    rt = RichText([Segment("a"), Segment("b", bold=True), Segment("c", bold=True, italic=True),
                   Segment("d", italic=True), Segment("e")])
    assert render(rt) == "a\x02b\x1dc\x02d\x1de"


def test_render_links_code_and_pre():
    rt = RichText([Segment("see "), Segment("docs", link="https://x.org/d"), Segment(" or "),
                   Segment("https://x.org", link="https://x.org"), Segment(" "),
                   Segment("x = 1", code=True), Segment(" "), Segment("block", pre=True)])
    assert render(rt) == "see docs <https://x.org/d> or https://x.org \x11x = 1\x11 \x11block"


def test_render_drops_control_characters_so_nothing_can_forge_a_code():
    rt = RichText([Segment("a\x02b\x03\x0304c\r\nd\0e\tf")])
    assert render(rt) == "ab04cde\tf"
    assert clean("x\x1fy") == "xy"


def test_render_line_keeps_trailing_spaces_from_being_stripped():
    assert render_line(RichText.plain_text("word ")) == "word \x0f"
    assert render_line(RichText.plain_text("word")) == "word"
    assert parse(render_line(RichText.plain_text("word "))).plain == "word "


def test_render_mentions_by_callback():
    alice = User(id="a", plug="irc", username="alice")
    rt = RichText([Segment("@Alice Smith", mention=alice), Segment(": hi")])
    assert render(rt) == "@Alice Smith: hi"
    assert render(rt, lambda seg: seg.mention.username) == "alice: hi"


formatted = st.builds(
    Segment,
    text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20),
    bold=st.booleans(), italic=st.booleans(), underline=st.booleans(), strike=st.booleans(),
    code=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(formatted, max_size=8))
def test_render_then_parse_round_trips(segments):
    rt = RichText(segments)
    assert parse(render(rt)) == rt.normalise()
    assert parse(render_line(rt)) == rt.normalise()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_never_raises_nor_leaves_control_characters(text):
    plain = parse(text).plain
    assert not any(ord(ch) < 32 and ch != "\t" for ch in plain)


def test_nick_colours_are_stable_and_two_digit():
    assert nick_colour("alice") == nick_colour("alice") in NICK_COLOURS
    assert coloured("9lives") == f"\x03{nick_colour('9lives'):02d}9lives\x03"
    assert parse(coloured("9lives")).plain == "9lives"


def test_mentions_anywhere_on_word_boundaries():
    users = {"alice": User(id="alice", username="alice"), "bob[m]": User(id="bob", username="bob[m]")}
    rt = add_mentions(RichText.plain_text("alice: hi, bob[m]. malice alice_x alice"),
                      lambda w: users.get(w.lower()))
    mentioned = [(s.text, s.mention.id) for s in rt if s.mention]
    assert mentioned == [("alice", "alice"), ("bob[m]", "bob"), ("alice", "alice")]
    assert rt.plain == "alice: hi, bob[m]. malice alice_x alice"


def test_mentions_are_case_insensitive_and_skip_code_and_links():
    users = {"alice": User(id="alice", username="alice")}
    rt = RichText([Segment("ALICE ", bold=True), Segment("alice", code=True),
                   Segment(" alice", link="http://x")])
    out = add_mentions(rt, lambda w: users.get(w.lower()))
    assert [(s.text, s.bold) for s in out if s.mention] == [("ALICE", True)]
    assert out.plain == rt.plain


def test_mentions_prefix_only_mode():
    users = {"alice": User(id="alice", username="alice")}
    hit = add_mentions(RichText.plain_text("alice, look: alice"), users.get, prefix_only=True)
    assert [s.text for s in hit if s.mention] == ["alice"] and hit.segments[0].mention
    miss = add_mentions(RichText.plain_text("hi alice: x"), users.get, prefix_only=True)
    assert not any(s.mention for s in miss)
    unchanged = RichText.plain_text("nobody here")
    assert add_mentions(unchanged, users.get) is unchanged


carried = st.builds(
    Segment,
    text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60),
    bold=st.booleans(), italic=st.booleans(), underline=st.booleans(), strike=st.booleans(),
    code=st.booleans(), pre=st.booleans(),
)


def as_carried(rt: RichText) -> RichText:
    """What IRC can carry of `rt`: preformatted text is monospace, like code."""
    return RichText(Segment(s.text, s.bold, s.italic, s.underline, s.strike, s.code or s.pre)
                    for s in rt).normalise()


@settings(max_examples=500, deadline=None)
@given(st.lists(carried, max_size=30))
def test_every_format_irc_carries_round_trips_through_render_line(segments):
    rt = RichText(segments)
    assert parse(render_line(rt)) == as_carried(rt)


CODES = list("\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f\x00\x01\x07\r\n\x7f,0123456789abcdefABCDEF x✓")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(st.sampled_from(CODES), max_size=400),
                 st.binary(max_size=400).map(lambda b: b.decode("utf-8", "replace")),
                 st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_parse_takes_any_received_text_with_control_codes(text):
    rt = parse(text)
    assert not any(ord(ch) < 32 and ch != "\t" or ch == "\x7f" for ch in rt.plain)
    assert len(rt.plain) <= len(text)
    assert all(s.text for s in rt)


def test_parse_of_many_codes_keeps_every_character_between_them():
    """A long run of codes that change nothing is one segment, whole."""
    text = "a\x07" * 100_000 + "\x02b" * 1000
    rt = parse(text)
    assert rt.plain == "a" * 100_000 + "b" * 1000
    assert rt.segments[0].text == "a" * 100_000 and not rt.segments[0].bold
