"""mIRC formatting codes to RichText and back; colours never leak; mentions of nicks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import RichText, Segment, User
from chanmux_irc.formatting import (
    NICK_COLOURS,
    PALETTE,
    add_mentions,
    clean,
    coloured,
    nearest_colour,
    nick_colour,
    parse,
    render,
    render_line,
    without_monospace,
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


def colours(rt: RichText) -> list[tuple[str, str | None, str | None]]:
    return [(s.text, s.color, s.background) for s in rt.normalise()]


@pytest.mark.parametrize("raw, expected", [
    ("\x0304red\x03 normal", [("red", "#ff0000", None), (" normal", None, None)]),
    ("\x034,12red on blue", [("red on blue", "#ff0000", "#0000fc")]),
    ("\x0312,04a\x0303b", [("a", "#0000fc", "#ff0000"), ("b", "#009300", "#ff0000")]),
    ("\x0352x\x0398y\x0399z", [("x", "#ff0000", None), ("y", "#ffffff", None), ("z", None, None)]),
    ("\x0304,99x", [("x", "#ff0000", None)]),
    ("\x0304a\x0fb", [("a", "#ff0000", None), ("b", None, None)]),
    ("\x04FF8000orange\x04 \x04000000,FFFFFFbw", [("orange", "#ff8000", None), (" ", None, None),
                                                ("bw", "#000000", "#ffffff")]),
    ("\x0304\x02bold\x16rev", [("boldrev", "#ff0000", None)]),
])
def test_mirc_colours_become_segment_colours(raw, expected):
    """The 16 colours, the extended 16-98 (99 is the default colour) and hex colours are read
    as `#rrggbb`; a colour code without a background keeps the background."""
    assert colours(parse(raw)) == expected


def test_colours_are_sent_as_the_nearest_mirc_colour():
    rt = RichText([Segment("red", color="#fe0102"), Segment(" on blue", color="#ff0000",
                                                          background="#0000fc"),
                   Segment(" plain")])
    assert render(rt) == "\x0304red\x0304,12 on blue\x03 plain"
    assert nearest_colour("#00ff00") == 9          # the common green, not its extended twin 56
    assert nearest_colour("#123456") not in range(16)
    assert render(RichText([Segment("x", background="#ff0000")])) == "\x0399,04x"


@pytest.mark.parametrize("segments", [
    [Segment("12 apples", color="#ff0000")],                      # digits after a colour code
    [Segment("a", color="#ff0000"), Segment("5 left")],              # digits after colours off
    [Segment("a", color="#ff0000", background="#0000fc"), Segment("7", color="#ff0000")],
    [Segment(",5 a", color="#009300")],                           # a comma and a digit
    [Segment("b", bold=True, color="#009300"), Segment("2", bold=True)],
])
def test_text_after_a_colour_code_is_never_taken_for_its_digits(segments):
    rt = RichText(segments)
    assert parse(render(rt)) == rt.normalise()


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


def test_a_line_never_ends_with_a_space_or_a_code_that_formats_nothing():
    """Where a long text was split after a space, the line IRC shows ends with the word:
    no trailing space, no reset code (`" \\x0f"` used to end every split line)."""
    assert render_line(RichText.plain_text("word ")) == "word"
    assert render_line(RichText.plain_text("word")) == "word"
    assert render_line(RichText([Segment("word"), Segment("  ", bold=True)])) == "word"
    assert render_line(RichText([Segment("a "), Segment("b ", bold=True)])) == "a \x02b"
    link = RichText([Segment("see "), Segment("x", link="https://x.org/")])
    assert render_line(link) == "see x <https://x.org/>"


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


def trimmed(rt: RichText) -> RichText:
    """`rt` without the white space it ends with (what `render_line` leaves out)."""
    segments = list(rt.normalise())
    while segments and not segments[-1].text.rstrip():
        segments.pop()
    if segments:
        segments[-1] = segments[-1].with_text(segments[-1].text.rstrip())
    return RichText(segments)


@settings(max_examples=300, deadline=None)
@given(st.lists(formatted, max_size=8))
def test_render_then_parse_round_trips(segments):
    rt = RichText(segments)
    assert parse(render(rt)) == rt.normalise()
    assert parse(render_line(rt)) == trimmed(rt)


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
    assert parse(render_line(rt)) == trimmed(as_carried(rt))


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


hex_colours = st.from_regex(r"#[0-9a-f]{6}", fullmatch=True)
palette_colours = st.sampled_from(sorted({PALETTE[nearest_colour(c)] for c in PALETTE}))
coloured_segments = st.builds(
    Segment,
    text=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12),
    bold=st.booleans(), italic=st.booleans(),
    color=st.one_of(st.none(), palette_colours), background=st.one_of(st.none(), palette_colours),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(coloured_segments, max_size=12))
def test_colours_of_the_mirc_palette_round_trip_through_render_and_parse(segments):
    rt = RichText(segments)
    assert parse(render(rt)) == rt.normalise()


@settings(max_examples=300, deadline=None)
@given(hex_colours, st.one_of(st.none(), hex_colours))
def test_any_colour_comes_back_as_its_nearest_mirc_colour_and_stays_so(fore, back):
    rt = RichText([Segment("x", color=fore, background=back)])
    (seen,) = parse(render(rt)).segments
    assert seen.color == PALETTE[nearest_colour(fore)]
    assert seen.background == (PALETTE[nearest_colour(back)] if back else None)
    assert parse(render(RichText([seen]))).segments == (seen,)      # sent again, unchanged


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(CODES), max_size=2000))
def test_parse_is_linear_in_the_codes_it_reads(text):
    """However codes are mixed, parsing makes at most one segment per code and keeps every
    character that is not part of a code."""
    rt = parse(text)
    assert len(rt.segments) <= text.count("\x02") + text.count("\x03") + text.count("\x04") \
        + sum(text.count(c) for c in "\x0f\x11\x16\x1d\x1e\x1f") + 1


def test_parse_of_a_flood_of_colour_codes_takes_time_in_proportion():
    """Many colour changes (a hostile line) are read in one pass: doubling the input doubles
    the segments, never more (benchmarks/hostile.py measures the time)."""
    small = parse("\x0304,12x\x0305y" * 2000)
    large = parse("\x0304,12x\x0305y" * 4000)
    assert len(large.segments) == 2 * len(small.segments) == 8000


def test_inline_code_goes_between_backticks_and_pre_as_it_is():
    rt = RichText([Segment("run "), Segment("make", code=True), Segment(" test", code=True,
                                                                         bold=True),
                   Segment(" now"), Segment("  indented()", pre=True, code=True)])
    out = without_monospace(rt)
    assert out.plain == "run `make test` now  indented()"
    assert not any(s.code or s.pre for s in out)
    assert render(out) == "run `make\x02 test`\x02 now  indented()"
