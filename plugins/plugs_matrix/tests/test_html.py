"""HTML <-> RichText: the allow-list parser, the renderer, and reply-fallback stripping."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import RichText, Segment, User
from chanmux_matrix.html import (
    MAX_SHOWN_DEPTH,
    parse_html,
    render_html,
    render_plain,
    strip_reply_fallback_html,
    strip_reply_fallback_text,
    user_of_link,
)


def formatted(rt: RichText, flag: str) -> str:
    return "".join(s.text for s in rt if getattr(s, flag))


def test_formatting_tags():
    rt = parse_html("<b>b</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <del>d</del> "
                    "<s>s2</s> <strike>k</strike> <code>c</code>")
    assert rt.plain == "b s i e u d s2 k c"
    assert formatted(rt, "bold") == "bs"
    assert formatted(rt, "italic") == "ie"
    assert formatted(rt, "underline") == "u"
    assert formatted(rt, "strike") == "ds2k"
    assert formatted(rt, "code") == "c"


def test_nested_formatting_and_entities():
    rt = parse_html("<b>bold <i>both</i></b> &lt;tag&gt; &amp; &#x263A;")
    assert rt.plain == "bold both <tag> & \u263a"
    both = [s for s in rt if s.text == "both"][0]
    assert both.bold and both.italic


def test_blocks_lists_quotes_headings():
    rt = parse_html("<h2>Title</h2><p>first para</p>\n<p>second</p>"
                    "<ul>\n<li>one</li>\n<li>two</li>\n</ul><ol start=\"3\"><li>three</li></ol>"
                    "<blockquote>quoted<br>again</blockquote>after")
    assert rt.plain == ("Title\nfirst para\nsecond\n• one\n• two\n3. three\n"
                        "> quoted\n> again\nafter")
    assert formatted(rt, "bold") == "Title"


def test_pre_keeps_white_space():
    rt = parse_html("<pre><code>def f():\n    return  1\n</code></pre>then")
    assert rt.plain == "def f():\n    return  1\nthen"
    code = [s for s in rt if s.pre]
    assert code and code[0].text == "def f():\n    return  1\n" and not code[0].code


def test_white_space_collapses_outside_pre():
    assert parse_html("  a \n\n  b   <b> c </b>  d ").plain == "a b c d"
    assert parse_html("line<br>next<br/><br>last").plain == "line\nnext\n\nlast"


def test_links_keep_safe_targets_only():
    rt = parse_html('<a href="https://example.org/x?a=1&amp;b=2">site</a> '
                    '<a href="mailto:a@b.c">mail</a> <a href="ftp://x">ftp</a>')
    links = {s.text: s.link for s in rt if s.link}
    assert links == {"site": "https://example.org/x?a=1&b=2", "mail": "mailto:a@b.c"}
    assert rt.plain == "site mail ftp"


HOSTILE = [
    ('<script>alert("x")</script>', ""),
    ("<style>body{display:none}</style>", ""),
    ('<img src="x" onerror="alert(1)">', ""),
    ('<a href="javascript:alert(1)">js</a>', "js"),
    ('<a href="JaVaScRiPt:alert(1)">js2</a>', "js2"),
    ('<a href=" java\tscript:alert(1)">js3</a>', "js3"),
    ('<a href="&#106;avascript:alert(1)">js4</a>', "js4"),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">data</a>', "data"),
    ('<a href="vbscript:msgbox(1)">vb</a>', "vb"),
    ('<div onclick="alert(1)" onmouseover="x()">div</div>', "div"),
    ('<iframe src="https://evil">frame</iframe>', ""),
    ("<svg><script>alert(1)</script></svg>", ""),
    ("<b onmouseover=alert(1)>bold</b>", "bold"),
    ("<SCRIPT SRC=//evil/x.js></SCRIPT>", ""),
    ("<script>unclosed alert(1)", ""),
    ("<<b>>", "<>"),
    # a browser reads this as the tag "scr<script" then text: it stays text here too
    ("<scr<script>ipt>alert(1)</script>", "ipt>alert(1)"),
]


@pytest.mark.parametrize(("source", "plain"), HOSTILE)
def test_hostile_html_never_becomes_markup_or_links(source, plain):
    rt = parse_html(source)
    assert rt.plain == plain
    assert all(seg.link is None and seg.mention is None for seg in rt)


def test_unknown_tags_keep_text():
    assert parse_html("<marquee>moving</marquee> <font color=red>red</font> <span>s</span>").plain \
        == "moving red s"


def test_mentions_from_matrix_to_links():
    users = {"@bob:example.org": User(id="@bob:example.org", plug="mx", real_name="Bob")}
    rt = parse_html('hi <a href="https://matrix.to/#/@bob:example.org">Bob</a> and '
                    '<a href="https://matrix.to/#/%40eve%3Aexample.org">Eve</a> '
                    '<a href="https://matrix.to/#/#room:example.org">room</a>', users.get)
    mentions = {s.text: s.mention for s in rt if s.mention}
    assert mentions["Bob"] is users["@bob:example.org"]
    assert mentions["Eve"].id == "@eve:example.org"
    assert "room" not in mentions
    assert user_of_link("https://matrix.to/#/@x") is None


def test_reply_fallbacks_are_stripped():
    html = "<mx-reply><blockquote><a>In reply to</a> quoted</blockquote></mx-reply>answer"
    assert parse_html(strip_reply_fallback_html(html)).plain == "answer"
    assert parse_html(html).plain == "answer"
    body = "> <@bob:x> quoted\n> more\n\nanswer\n> not a fallback"
    assert strip_reply_fallback_text(body) == "answer\n> not a fallback"
    assert strip_reply_fallback_text("plain") == "plain"


def test_render_escapes_and_formats():
    rt = RichText([Segment("<script>", bold=True), Segment(" & "), Segment("x", italic=True, underline=True),
                   Segment("\nline2 "), Segment("gone", strike=True), Segment(" "), Segment("c", code=True)])
    html = render_html(rt)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html == ("<b>&lt;script&gt;</b> &amp; <i><u>x</u></i><br>line2 <del>gone</del> <code>c</code>")
    assert render_plain(rt) == "<script> & x\nline2 gone c"


def test_render_links_and_mentions():
    bob = User(id="@bob:example.org", plug="mx", real_name="Bob")
    rt = RichText([Segment("site", link="https://example.org/?a=1&b=\"2\""), Segment(" "),
                   Segment("bad", link="javascript:alert(1)"), Segment(" "), Segment("Bob", mention=bob)])
    html = render_html(rt, lambda u: u.id)
    assert '<a href="https://example.org/?a=1&amp;b=&quot;2&quot;">site</a>' in html
    assert "javascript" not in html
    assert '<a href="https://matrix.to/#/@bob:example.org">Bob</a>' in html
    assert render_plain(rt) == 'site <https://example.org/?a=1&b="2"> bad Bob'


def test_render_pre():
    rt = RichText([Segment("a\n  b", pre=True), Segment("after")])
    assert render_html(rt) == "<pre><code>a\n  b</code></pre>after"
    assert parse_html(render_html(rt)) == RichText([Segment("a\n  b", pre=True), Segment("\nafter")])


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1, max_size=8)
_segment = st.builds(Segment, _text, bold=st.booleans(), italic=st.booleans(), underline=st.booleans(),
                     strike=st.booleans(), code=st.booleans(),
                     link=st.one_of(st.none(), st.just("https://example.org/a")))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_segment, st.just(Segment(" ")), st.just(Segment("\n"))), max_size=8))
def test_render_then_parse_round_trips(segments):
    rt = RichText(segments).strip()
    back = parse_html(render_html(rt))
    # HTML collapses runs of spaces, and a line keeps no space at its ends
    assert back.plain == re.sub(r" *\n *", "\n", re.sub(" +", " ", rt.plain))
    if not re.search(r"  | \n|\n ", rt.plain):
        assert back == rt


# -- what a browser hides stays hidden ---------------------------------------------------------

HIDDEN = [
    # the slash of <x/> means nothing on an HTML element: these open what they name
    ("<script/>X", ""),
    ("<iframe/>X", ""),
    ("<style/>X</style>Y", "Y"),
    ("<template>X</template>Y", "Y"),
    ("<object>X</object>Y", "Y"),
    ("<noscript><p>X</p></noscript>Y", "Y"),
    ("<title>X</title>Y", "Y"),
    # comments, closed the ways the HTML standard closes them, or never
    ("a<!-- X", "a"),
    ("a<!-- X -->b", "ab"),
    ("a<!-- X --!>b", "ab"),
    ("a<!-->b", "ab"),
    ("a<!--->b", "ab"),
    ("a<!-- <!-- X -->b", "ab"),
    # declarations and processing instructions: bogus comments up to the next ">"
    ("a<!DOCTYPE html>b", "ab"),
    ("a<![CDATA[X]]>b", "ab"),
    ("a<?php X ?>b", "ab"),
    ("a</ X>b", "ab"),
    ("a</>b", "ab"),
    # raw text ends only at its own end tag (ASCII letters only: ſ and K are not s and k)
    ("<script>a</\u017fcript>X</script>Y", "Y"),
    ("<script>if (a<b) {}</script>Y", "Y"),
    ("<script><!--<script></script>X</script>Y", "Y"),
    ("<script><!--</script>Y", "Y"),
    ("<style>a</style >Y", "Y"),
    # a tag cut off by the end hides the rest, as a quoted value that never closes does
    ("a<b", "a"),
    ('a<b title="x>y', "a"),
    ("a<b title='x>y", "a"),
    # an end tag does not close a hidden element it does not name
    ("<b><object></b>X</object>Y", "Y"),
    ("<mx-reply><p>X</mx-reply>Y", "Y"),
    ("<mx-reply></p></div></blockquote>X</mx-reply>Y", "Y"),
    # SVG and MathML: <x/> closes there, and their contents are hidden
    ("<svg/>X", "X"),
    ("<svg><style/>X</svg>Y", "Y"),
    ("<svg><![CDATA[</svg>X]]></svg>Y", "Y"),
    ("<math><mi>X</mi></math>Y", "Y"),
]


@pytest.mark.parametrize(("source", "plain"), HIDDEN)
def test_what_a_browser_does_not_show_is_not_relayed(source, plain):
    assert parse_html(source).plain == plain


def test_quoted_attribute_values_may_hold_angle_brackets():
    rt = parse_html('<a title="x>y" href="https://e.org/">z</a> <b class=\'<i>\'>b</b>')
    assert rt.plain == "z b"
    assert [s.link for s in rt if s.text == "z"] == ["https://e.org/"]
    assert formatted(rt, "bold") == "b" and formatted(rt, "italic") == ""


def test_attribute_names_starting_with_equals_are_read_as_browsers_read_them():
    assert parse_html('<a ="x>y">z</a>').plain == 'y">z'
    assert parse_html("<b =x>bold</b>") == RichText([Segment("bold", bold=True)])


def test_references_in_href_follow_the_attribute_rules():
    rt = parse_html('<a href="https://e.org/?a=1&copy=2&amp;b&lt=3&notin;">l</a>')
    assert rt.segments[0].link == "https://e.org/?a=1&copy=2&b&lt=3\u2209"


def test_numeric_references_of_any_length_read():
    assert parse_html("&#" + "9" * 5000 + ";x").plain == "\ufffdx"
    assert parse_html("&#x" + "0" * 5000 + "41;&#65;&#x1F600;&#0;&#xD800;").plain == \
        "AA\U0001f600\ufffd\ufffd"
    assert parse_html("&notit; &amp &#x; &unknown;").plain == "\u00acit; & &#x; &unknown;"


# -- lists, as the spec asks -------------------------------------------------------------------


@pytest.mark.parametrize(("start", "first"), [
    ("\u00b2", 1),  # str.isdigit() says yes, int() says no: it used to drop the whole event
    ("\u0663", 1),  # an Arabic-Indic digit: not an ASCII digit either
    ("3", 3), (" 7", 7), ("-2", -2), ("+4", 4), ("5th", 5), ("", 1), ("x", 1),
    ("0012", 12), ("9" * 5000, 1),
])
def test_ol_start_is_read_as_html_reads_integers(start, first):
    rt = parse_html(f'<ol start="{start}"><li>a</li><li>b</li></ol>')
    assert rt.plain == f"{first}. a\n{first + 1}. b"


def test_nested_lists_indent_with_no_break_spaces_that_html_keeps():
    rt = parse_html("<ul><li>a<ul><li>b<ol><li>c</li></ol></li></ul></li><li>d</li></ul>")
    assert rt.plain == "• a\n\u00a0\u00a0• b\n\u00a0\u00a0\u00a0\u00a01. c\n• d"
    assert parse_html(render_html(rt)) == rt


def test_paragraphs_inside_items_stay_on_the_marker_line():
    rt = parse_html("<ol><li><p>one</p></li><li><p>two</p><p>more</p></li></ol>")
    assert rt.plain == "1. one\n2. two\nmore"


def test_line_breaks_around_blocks_are_the_ones_a_browser_shows():
    assert parse_html("a<br><p>b</p>").plain == "a\nb"
    assert parse_html("<p>a</p><br>b").plain == "a\n\nb"
    assert parse_html("<pre>\ncode</pre>").plain == "code"
    assert parse_html("a<pre>\n</pre>b").segments == (Segment("a\nb"),)
    assert parse_html("a<pre>\n\n</pre>b").plain == "a\n\nb"
    assert parse_html("<blockquote>q<pre>a\n\nb</pre></blockquote>").plain == "> q\n> a\n\n> b"


# -- linear in the input, whatever it holds ----------------------------------------------------


def work(fn: Callable[..., object], *args: object) -> int:
    """Python lines run by fn(*args): a count of operations, independent of the machine."""
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return lines


def test_deeply_nested_lists_read_right_and_in_proportion():
    n = 3000  # 23 KiB; this took 11 s, and a 64 KiB event minutes, before
    lines = parse_html("<ol><li>" * n + "x").plain.split("\n")
    assert len(lines) == n
    for depth in (0, 1, 2, MAX_SHOWN_DEPTH, MAX_SHOWN_DEPTH + 1, n - 2):
        assert lines[depth] == "\u00a0\u00a0" * min(depth, MAX_SHOWN_DEPTH) + "1."
    assert lines[-1] == "\u00a0\u00a0" * MAX_SHOWN_DEPTH + "1. x"
    assert sum(map(len, lines)) < 25 * n


def test_deep_quotes_stay_in_proportion():
    n = 2000
    rt = parse_html("<blockquote>" * n + "x<br>" * n)
    assert rt.plain.split("\n") == ["> " * MAX_SHOWN_DEPTH + "x"] * n


HOSTILE_FAMILIES = {
    "nested lists": lambda n: "<ol><li>" * n + "x",
    "nested items with text": lambda n: "<ul><li>item " * n,
    "nested inline tags": lambda n: "<b><i><u>" * n + "x",
    "inline tags and text": lambda n: "<i>x" * n,
    "many end tags": lambda n: "<i>" * n + "</p>" * n,
    "nested links": lambda n: "<a href='https://e.org/'>x" * n,
    "nested quotes": lambda n: "<blockquote>" * n + "x<br>" * n,
    "unclosed tags": lambda n: "<a " * n,
    "many attributes": lambda n: "<a " + "b=c " * n + ">x",
    "names starting with =": lambda n: "<a =b>x" * n,
    "entities": lambda n: "&amp;&notin;&#x263A;" * n,
    "comments": lambda n: "<!-- c -->x" * n,
    "bogus markup": lambda n: "</ <? <!x>" * n,
    "preformatted lines": lambda n: "<blockquote><pre>" + "x\n" * n + "</pre>" * n,
    "raw text": lambda n: "<script><!--<script>" * n,
    "nested colours": lambda n: "<font data-mx-color='#ff0000' data-mx-bg-color='#000'>x" * n,
    "coloured runs": lambda n: "<span data-mx-color='#00ff00'>x</span>y" * n,
    "many colour attributes": lambda n: "<font " + "color=#fff data-mx-color=red " * n + ">x",
}


@pytest.mark.parametrize("family", HOSTILE_FAMILIES)
def test_work_grows_in_proportion_to_the_input(family):
    make = HOSTILE_FAMILIES[family]
    small, large = work(parse_html, make(200)), work(parse_html, make(800))
    assert large <= 5 * small, f"{family}: {small} lines for 200 units, {large} for 800"


def test_rendering_work_grows_in_proportion_to_the_text():
    def text(n: int) -> RichText:
        return RichText([Segment("x", bold=i % 3 == 0, pre=i % 7 == 0) for i in range(n)] +
                        [Segment("y")] * n + [Segment("z\n", link="https://e.org/")] * n)

    small, large = work(render_html, text(200)), work(render_html, text(800))
    assert large <= 5 * small
    assert render_html(RichText([Segment("y")] * 3000)) == "y" * 3000


def test_pre_blocks_keep_their_formatting_and_line_breaks():
    rt = parse_html("<pre><b>bold\n\n</b><a href='https://e.org/'>link\n</a></pre>after")
    assert rt == RichText([Segment("bold\n\n", bold=True, pre=True),
                           Segment("link\n", link="https://e.org/", pre=True), Segment("after")])
    html = render_html(rt)
    assert html == '<pre><code><b>bold\n\n</b><a href="https://e.org/">link\n</a></code></pre>after'
    assert parse_html(html) == rt
    # a browser shows no empty line for the line break that ends a block
    assert parse_html("<pre>a\n</pre>b").plain == "a\nb"
    assert parse_html("<pre>a\n\n</pre>b").plain == "a\n\nb"
    assert parse_html("a<br><p>b</p>").plain == "a\nb"


def test_nested_and_neighbouring_links_keep_their_own_targets():
    rt = parse_html('<a href="https://a.org/"><a href="https://b.org/">b</a>a</a>'
                    '<a href="https://c.org/">c</a><a href="javascript:x">c2</a><i>d</i>')
    assert [(s.text, s.link) for s in rt] == [
        ("b", "https://b.org/"), ("a", "https://a.org/"), ("c", "https://c.org/"),
        ("c2", None), ("d", None)]


def colours(rt: RichText) -> list[tuple[str, str | None, str | None]]:
    """The text in runs of one colour and background each (other formatting aside)."""
    runs: list[tuple[str, str | None, str | None]] = []
    for seg in rt:
        if runs and runs[-1][1:] == (seg.color, seg.background):
            runs[-1] = (runs[-1][0] + seg.text, seg.color, seg.background)
        else:
            runs.append((seg.text, seg.color, seg.background))
    return runs


def test_colours_of_font_and_span_are_read():
    rt = parse_html('<font data-mx-color="#FF0000" data-mx-bg-color="#00f">red on blue '
                    '<b>bold</b></font> <span data-mx-color="#00ff00">green</span> '
                    '<font color="#123456">old style</font> plain')
    assert colours(rt) == [("red on blue bold", "#ff0000", "#0000ff"), (" ", None, None),
                           ("green", "#00ff00", None), (" ", None, None),
                           ("old style", "#123456", None), (" plain", None, None)]
    assert [s.text for s in rt if s.bold] == ["bold"]


def test_only_hex_colours_on_font_and_span_colour_text():
    rt = parse_html('<font color="red">named</font> <span color="#ff0000">span color</span> '
                    '<b data-mx-color="#ff0000">bold</b> <font data-mx-color="rgb(1,2,3)">css</font> '
                    '<font data-mx-color="#ff00">short</font>')
    assert colours(rt) == [("named span color bold css short", None, None)]


def test_nested_colours_keep_what_the_inner_one_does_not_set():
    rt = parse_html('<font data-mx-color="#ff0000">red <span data-mx-bg-color="#000000">on black'
                    '</span> <font color="#00ff00">green</font> red again</font> none')
    assert colours(rt) == [("red ", "#ff0000", None), ("on black", "#ff0000", "#000000"),
                           (" ", "#ff0000", None), ("green", "#00ff00", None),
                           (" red again", "#ff0000", None), (" none", None, None)]


def test_colours_render_as_font_with_data_mx_attributes():
    rt = RichText([Segment("red", color="#ff0000"), Segment(" and "),
                   Segment("on black", bold=True, color="#ffffff", background="#000000"),
                   Segment(" behind", background="#00ff00")])
    html = render_html(rt)
    assert html == ('<font data-mx-color="#ff0000">red</font> and '
                    '<font data-mx-color="#ffffff" data-mx-bg-color="#000000"><b>on black</b></font>'
                    '<font data-mx-bg-color="#00ff00"> behind</font>')
    assert parse_html(html) == rt
    assert render_plain(rt) == "red and on black behind"
