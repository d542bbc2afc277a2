"""Properties of the HTML <-> RichText converter, over generated tag soup and rich text.

Reading what was rendered changes nothing; no input makes the reader raise; nothing inside an
element or comment a browser hides comes out; rich text that Matrix HTML can carry comes back
as it was.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import RichText, Segment, User
from chanmux_matrix.html import parse_html, render_html

BOB = User(id="@bob:example.org", username="@bob:example.org", real_name="Bob")
ANN = User(id="@ann:example.org", username="@ann:example.org", real_name="Ann")
USERS = {user.id: user for user in (BOB, ANN)}


def lookup(user_id: str) -> User | None:
    return USERS.get(user_id)


def mention_id(user: User) -> str:
    return user.id


def reread(rt: RichText) -> RichText:
    return parse_html(render_html(rt, mention_id), lookup)


# -- tag soup --------------------------------------------------------------------------------

#: Every kind of element the reader treats its own way, and some it does not know.
TAGS = ["b", "strong", "i", "em", "u", "ins", "s", "del", "strike", "code", "kbd", "tt", "pre",
        "listing", "p", "div", "br", "hr", "blockquote", "ul", "ol", "li", "h1", "h4", "a", "span",
        "font", "img", "table", "tr", "td", "details", "summary", "sup", "xmp", "plaintext",
        "mx-reply", "script", "style", "template", "iframe", "object", "svg", "math", "title",
        "textarea", "noscript", "select", "option", "head", "P", "LI", "A", "Script"]
#: Drop regions below carry this character; no other generated text does.
SECRET = "\u00a7"
TEXT_CHARS = "ab Z \n\t\f\r&;#x0123=\"'/!?->\u00a0\u2009\u00e9\u4e2d\U0001f600"

HREFS = st.sampled_from([
    "https://example.org/a?b=1&amp;c=2", "https://example.org/?q=&copy=x", "mailto:a@b.c",
    "http://e.org/&quot;q&quot;", "javascript:alert(1)", "ftp://x", " https://e.org/ ", "",
    "https://matrix.to/#/@bob:example.org", "https://matrix.to/#/%40ann%3Aexample.org",
    "https://matrix.to/#/@eve:example.org", "https://matrix.to/#/#room:example.org",
])
COLOURS = st.sampled_from(["#ff0000", "#00FF7f", "#abc", " #123456 ", "#12345", "red",
                           "rgb(1,2,3)", "&#35;00ff00", "#ff000g"])
ATTR_VALUES = st.one_of(HREFS, COLOURS, st.text(alphabet="19\u00b2-+ x<>&#;=/", max_size=6))


@st.composite
def attribute(draw) -> str:
    name = draw(st.sampled_from(["href", "HREF", "start", "alt", "title", "onclick", "x", "=y",
                                 "a\"b", "data-mx-color", "data-mx-bg-color", "DATA-MX-COLOR",
                                 "color"]))
    value = draw(ATTR_VALUES)
    form = draw(st.sampled_from(["bare", "double", "single", "unquoted", "spaced"]))
    if form == "bare":
        return name
    if form == "double":
        return f'{name}="{value.replace(chr(34), "&quot;")}"'
    if form == "single":
        return f"{name}='{value.replace(chr(39), '&#39;')}'"
    if form == "spaced":
        return f'{name} = "{value.replace(chr(34), "")}"'
    unquoted = "".join(ch for ch in value if ch not in " \t\n\f>\"'") or "v"
    return f"{name}={unquoted}"


def text_token(alphabet: str = TEXT_CHARS, entities: bool = True) -> st.SearchStrategy[str]:
    plain = st.text(alphabet=alphabet, min_size=1, max_size=6)
    if not entities:
        return plain
    return st.one_of(plain, st.sampled_from(["&amp;", "&lt;", "&gt;", "&nbsp;", "&#x263A;",
                                             "&notin;", "&not", "&#0;", "&#99999999;", "&x;"]))


@st.composite
def tag_token(draw, exclude: frozenset[str] = frozenset()) -> str:
    """A whole start, end or self-closing tag (never cut off)."""
    name = draw(st.sampled_from([t for t in TAGS if t.lower() not in exclude]))
    kind = draw(st.sampled_from(["start", "start", "end", "self"]))
    if kind == "end":
        return f"</{name}>"
    attrs = "".join(" " + a for a in draw(st.lists(attribute(), max_size=2)))
    return f"<{name}{attrs}{'/' if kind == 'self' else ''}>"


#: Markup that is neither a tag nor text, each complete.
OTHER_MARKUP = st.sampled_from(["<!-- c -->", "<!---->", "<!-->", "<!-- a --!>", "<!DOCTYPE html>",
                                "<![CDATA[ c ]]>", "<?x y?>", "</ x>", "</>", "< b>", "a < b"])


def soup(exclude: frozenset[str] = frozenset(), lt_in_text: bool = True,
         max_size: int = 30) -> st.SearchStrategy[str]:
    """Tag soup made of whole tokens."""
    chars = TEXT_CHARS + ("<" if lt_in_text else "")
    token = st.one_of(tag_token(exclude), tag_token(exclude), text_token(chars), OTHER_MARKUP)
    return st.lists(token, max_size=max_size).map("".join)


#: Anything at all, weighted towards the characters that matter to HTML.
ANYTHING = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="<>/!?-=\"' &#;abiprstuxyzABPS0129\n\t\r\x00", max_size=120),
    soup(),
)


@settings(max_examples=300, deadline=None)
@given(ANYTHING)
def test_reading_never_raises_and_rendering_what_it_read_never_raises(source):
    rt = parse_html(source, lookup)
    assert isinstance(rt, RichText)
    render_html(rt, mention_id)


@settings(max_examples=300, deadline=None)
@given(st.one_of(soup(), soup(max_size=80)))
def test_reading_rendered_html_gives_the_same_richtext(source):
    first = parse_html(source, lookup)
    second = reread(first)
    assert second.normalise().segments == first.normalise().segments, render_html(first, mention_id)
    assert render_html(second, mention_id) == render_html(first, mention_id)


@settings(max_examples=200, deadline=None)
@given(soup(exclude=frozenset({"font", "span"})))
def test_only_font_and_span_colour_text(source):
    """Colour attributes on any other element (and colours in text) colour nothing."""
    assert not [s for s in parse_html(source, lookup) if s.color or s.background], source


# -- what is dropped stays dropped ---------------------------------------------------------------

RAW_TEXT = ["script", "style", "iframe", "noscript", "title", "textarea", "noembed", "noframes"]
HIDING = ["mx-reply", "template", "object", "svg", "math", "head", "select"]


#: Elements that hide what follows them: tag soup around or before a region leaves none open,
#: so that nothing it left open can end a region early by ending itself (a browser would show
#: the rest of the region too, then).
SELF_CONTAINED = frozenset(RAW_TEXT + HIDING)


@st.composite
def hidden_region(draw, last: bool) -> str:
    """An element or comment whose text a browser does not show, holding SECRET; only the
    `last` may hold elements that hide more, and miss its end."""
    kind = draw(st.sampled_from(["comment", "raw", "element"]))
    if kind == "comment":
        body = draw(st.text(alphabet="ab <!&;=/\n" + SECRET, max_size=10)) + SECRET
        return "<!--" + body + draw(st.sampled_from(["-->", "--!>", " -->"] + [""] * last))
    name = draw(st.sampled_from(RAW_TEXT if kind == "raw" else HIDING))
    spelled = draw(st.sampled_from([name, name.upper(), name.capitalize()]))
    # the region's own end tag is what ends it, so its contents never spell that
    exclude = frozenset({name}) if last else SELF_CONTAINED
    inside = draw(soup(exclude=exclude, lt_in_text=False, max_size=8))
    secret_at = draw(st.integers(0, len(inside)))
    inside = inside[:secret_at] + SECRET + inside[secret_at:]
    opening = draw(st.sampled_from([f"<{spelled}>", f"<{spelled}/>", f"<{spelled} x=1>"]))
    if name in ("svg", "math") and opening.endswith("/>"):
        opening = f"<{spelled}>"  # <svg/> closes at once: nothing is inside it
    closing = draw(st.sampled_from([f"</{spelled}>", f"</{spelled} >"] + [""] * last))
    return opening + inside + closing


@settings(max_examples=400, deadline=None)
@given(soup(exclude=SELF_CONTAINED, lt_in_text=False, max_size=10),
       st.lists(hidden_region(last=False), max_size=2), hidden_region(last=True),
       soup(exclude=SELF_CONTAINED, lt_in_text=False, max_size=10))
def test_no_text_from_a_dropped_region_comes_out(before, regions, last, after):
    source = before + "".join(regions) + last + after
    assert SECRET not in parse_html(source, lookup).plain, source


# -- rich text through HTML and back ------------------------------------------------------------

WORD = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Z")),
               min_size=1, max_size=5)
LINKS = st.sampled_from([None, None, "https://example.org/a?b=1&c=2", "mailto:a@b.c",
                         'http://e.org/"q"<x>'])
MENTIONS = st.sampled_from([None, None, None, BOB, ANN])
SHADES = st.sampled_from([None, None, None, "#ff0000", "#00aa33", "#000000"])


@st.composite
def inline_segment(draw, text: st.SearchStrategy[str]) -> Segment:
    mention = draw(MENTIONS)
    return Segment(draw(text), bold=draw(st.booleans()), italic=draw(st.booleans()),
                   underline=draw(st.booleans()), strike=draw(st.booleans()),
                   code=draw(st.booleans()), link=None if mention else draw(LINKS), mention=mention,
                   color=draw(SHADES), background=draw(SHADES))


@st.composite
def inline_line(draw) -> list[Segment]:
    """Words with one space between them: what HTML keeps of spaces."""
    out: list[Segment] = []
    for i in range(draw(st.integers(1, 4))):
        if i:
            out.append(draw(inline_segment(st.just(" "))))
        out.append(draw(inline_segment(WORD)))
    return out


@st.composite
def pre_line(draw) -> list[Segment]:
    """Preformatted text keeps every space; <code> is implied inside <pre>."""
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl",
                                                                "Zp")), min_size=1, max_size=6)
    segs = draw(st.lists(inline_segment(text), min_size=1, max_size=3))
    return [Segment(s.text, s.bold, s.italic, s.underline, s.strike, False, True, s.link, s.mention,
                    s.color, s.background) for s in segs]


@st.composite
def carried_richtext(draw) -> RichText:
    """Rich text Matrix HTML can carry: preformatted text in whole lines, single spaces."""
    segments: list[Segment] = []
    was_pre = None
    for line in draw(st.lists(st.one_of(inline_line(), pre_line()), min_size=1, max_size=5)):
        is_pre = line[0].pre
        if was_pre is not None:
            breaks = "\n" * draw(st.integers(1, 2))
            if was_pre and is_pre and breaks == "\n" and draw(st.booleans()):
                segments.append(Segment(breaks, pre=True))  # one <pre> block of two lines
            elif was_pre:
                segments.append(Segment(breaks))  # the line break a block ends with is plain
            else:
                segments.append(draw(inline_segment(st.just(breaks))))
        segments.extend(line)
        was_pre = is_pre
    return RichText(segments).strip()


@settings(max_examples=300, deadline=None)
@given(carried_richtext())
def test_richtext_comes_back_from_html_as_it_was(rt):
    assert reread(rt).normalise().segments == rt.normalise().segments, render_html(rt, mention_id)


@given(carried_richtext(), st.integers(min_value=40, max_value=600))
@settings(max_examples=150, deadline=None)
def test_long_texts_split_into_events_that_fit_and_join_back(rt, limit):
    """A text too long for one event is cut into events whose body and formatted_body fit
    the limit (a single character alone excepted), which joined give the text back."""
    from chanmux_matrix.outgoing import Renderer

    renderer = Renderer("mx", "{name}: ", "{name} ")
    chunks = renderer._split(rt, limit)
    for chunk, (body, html) in chunks:
        assert (body, html) == renderer._render(chunk)
        assert len(body.encode()) + len(html.encode()) <= limit or len(chunk.plain) == 1
    joined = RichText([seg for chunk, _ in chunks for seg in chunk])
    assert joined.normalise() == rt.normalise()
