"""HTML <-> RichText: the allow-list parser, the renderer, and reply-fallback stripping."""

from __future__ import annotations

import re

import pytest
from chanmux import RichText, Segment, User
from chanmux_matrix.html import (
    parse_html,
    render_html,
    render_plain,
    strip_reply_fallback_html,
    strip_reply_fallback_text,
    user_of_link,
)
from hypothesis import given, settings
from hypothesis import strategies as st


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
    assert code and code[0].text == "def f():\n    return  1" and not code[0].code


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
