"""Matrix HTML (``formatted_body``) to RichText and back, in time linear in the input.

Reading follows the HTML standard's tokenizer, so every character lands where a browser puts
it: the contents of ``<script>``, ``<style>``, ``<iframe>``, ``<title>`` and the other raw-text
elements end only at their own end tag (``<script/>`` opens one, as in a browser: the slash
means nothing on an HTML element), comments and ``<!...>``/``<?...>`` declarations are hidden,
and an unclosed comment or a tag cut off by the end of the text hides the rest.

Over the tokens, an allow-list: formatting tags become Segment flags, links keep only
http(s)/mailto targets, ``matrix.to`` links to users become mentions, blocks (paragraphs,
quotes, lists, headings, ``<pre>``) become lines, the elements whose contents a Matrix client
never shows are dropped whole (``mx-reply``, which the spec says to strip with its contents,
and script, style, template, iframe, object, svg, math, ...), and every other tag keeps its
text. No attribute other than ``href``, ``start`` and ``alt`` is read, so event handlers
cannot pass through.

Each tag and each piece of text costs constant work whatever the nesting: open elements are
counted by name instead of searched for, and lists and quotes nested deeper than
`MAX_SHOWN_DEPTH` are shown at that depth, so the text is never more than a constant times
the HTML. Rendering escapes all text and emits only the same small set of tags, so that
reading what it wrote gives back the same RichText.
"""

from __future__ import annotations

import html as _html
import re
import string
from collections import defaultdict
from collections.abc import Callable
from html.entities import html5 as _ENTITIES
from urllib.parse import unquote, urlsplit

from chanmux import RichText, Segment, User

#: Formatting tags and the flag each sets: bold, italic, underline, strike, code (pre is 5).
_FLAG_TAGS = {
    "b": 0, "strong": 0,
    "i": 1, "em": 1, "cite": 1,
    "u": 2, "ins": 2,
    "s": 3, "del": 3, "strike": 3,
    "code": 4, "kbd": 4, "samp": 4, "tt": 4,
}
_BOLD, _CODE, _PRE = 0, 4, 5
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "div", "pre", "listing", "blockquote", "ul", "ol", "li", "table", "caption", "tr",
           "details", "summary", "dl", "dt", "dd", "section", "article", *_HEADINGS}
#: Blocks that may start on the line of a list item's marker (``<li><p>item</p></li>``).
_BESIDE_MARKER = {"p", "div"}
#: Elements whose whole contents are not shown (mx-reply: the spec says to strip it).
_DROP = {"mx-reply", "script", "style", "head", "title", "template", "noscript", "noembed",
         "noframes", "iframe", "object", "svg", "math", "textarea", "select"}
#: Elements whose contents the tokenizer reads as plain text up to their own end tag.
_RAW_TEXT = {"script", "style", "iframe", "noembed", "noframes", "noscript", "title", "textarea"}
#: SVG and MathML: inside them ``<x/>`` closes at once and no element reads raw text.
_FOREIGN = {"svg", "math"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "area", "base", "col", "source",
         "track", "embed", "param", "keygen", "frame", "basefont", "bgsound"}

# What a start tag does, one lookup per tag.
_OTHER, _FLAG, _VOID_TAG, _DROP_TAG, _BLOCK, _LI, _LIST, _HEADING, _PRE_TAG, _LINK, _QUOTE, \
    _COLOUR = (object() for _ in range(12))
#: Start tags the reader's loop handles itself.
_SIMPLE_KINDS = {_OTHER, _FLAG, _BLOCK, _LI, _LIST}
_KINDS: dict[str, object] = {
    **{name: _BLOCK for name in _BLOCKS}, "ul": _LIST, "ol": _LIST, "li": _LI,
    "blockquote": _QUOTE, "pre": _PRE_TAG, "listing": _PRE_TAG,
    **{name: _HEADING for name in _HEADINGS}, "a": _LINK, "font": _COLOUR, "span": _COLOUR,
    **{name: _FLAG for name in _FLAG_TAGS}, **{name: _DROP_TAG for name in _DROP},
    **{name: _VOID_TAG for name in _VOID},
}
_SAFE_SCHEMES = {"http", "https", "mailto"}
#: A colour as Matrix HTML may give it: ``#rrggbb`` or ``#rgb`` (names and the rest ignored).
_HEX_COLOUR = re.compile(r"[\t\n\f\r ]*#([0-9A-Fa-f]{6}|[0-9A-Fa-f]{3})[\t\n\f\r ]*")
#: The attributes a ``<font>`` or ``<span>`` colours with; ``color`` only on ``<font>``.
_COLOUR_ATTRIBUTES = ("data-mx-color", "data-mx-bg-color", "color")

#: Lists and quotes nested deeper than this are shown (indented, quoted) at this depth.
MAX_SHOWN_DEPTH = 8
#: One level of list indentation: no-break spaces, which HTML keeps where it folds spaces.
_INDENT = "\u00a0\u00a0"

#: matrix.to permalinks to users: https://matrix.to/#/@user:server
_MATRIX_TO = re.compile(r"^https://matrix\.to/#/(@[^/?#]+)")

MentionLookup = Callable[[str], "User | None"]

# -- the tokenizer's patterns (HTML's white space is \t \n \f and space once \r is gone) ------

_WS = re.compile(r"[\t\n\f ]+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"[\t\n\f ]*+")
#: A whole tag in one pass: (slash of an end tag, name, attributes, self-closing slash). An
#: attribute name that starts with "=", a quoted value that never closes or a tag that never
#: ends makes it fail, and `_slow_tag` reads the tag instead.
_TAG = (
    r"<(/?)([A-Za-z][^\t\n\f />]*+)"
    r"((?:[\t\n\f ]++|/(?!>)|[^\t\n\f />=][^\t\n\f />=]*+"
    r"(?:[\t\n\f ]*+=[\t\n\f ]*+(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f >\"'][^\t\n\f >]*+|(?=>)))?+)*+)"
    r"(/?)>")
#: The next tag (groups 1-4 as in `_TAG`) or any other "<" that opens markup (group 5: read by
#: `_Reader._markup`), then the text up to the next markup (group 6).
_TOKEN = re.compile(
    r"(?:" + _TAG + r"|(<(?=[A-Za-z/!?]))|)"
    r"((?:[^<]|<(?![A-Za-z/!?]))[^<]*+(?:<(?![A-Za-z/!?])[^<]*+)*+)?")
#: One attribute among those `_TAG` matched (the search skips the separators).
_ATTR = re.compile(
    r"([^\t\n\f />=][^\t\n\f />=]*+)"
    r"(?:[\t\n\f ]*+=[\t\n\f ]*+(\"[^\"]*+\"|'[^']*+'|[^\t\n\f >\"'][^\t\n\f >]*+|(?=>|\Z)))?+")
_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\f />]*+")
_ATTR_NAME_REST = re.compile(r"[^\t\n\f />=]*+")
_UNQUOTED = re.compile(r"[^\t\n\f >]*+")
_COMMENT_END = re.compile(r"--!?>")
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LIST_START = re.compile(r"[\t\n\f\r ]*([-+]?)([0-9]+)")

_CHARREF = re.compile(r"&(?:#([xX])0*([0-9A-Fa-f]+);?|#0*([0-9]+);?|([A-Za-z0-9]+;?))")
_LONGEST_ENTITY = max(len(name) for name in _ENTITIES)

_RAW_END: dict[str, re.Pattern[str]] = {}
#: Script data: "<!--" escapes, "<script" inside an escape nests, "-->" ends the escape.
_SCRIPT_STATES = (
    re.compile(r"<!--|</script(?=[\t\n\f />])", re.IGNORECASE | re.ASCII),
    re.compile(r"-->|<(/?)script(?=[\t\n\f />])", re.IGNORECASE | re.ASCII),
    re.compile(r"-->|</script(?=[\t\n\f />])", re.IGNORECASE | re.ASCII),
)

#: Attributes as the tokenizer found them: a dict, or where `_TAG` matched them in the text.
_Attrs = dict[str, str] | tuple[str, int, int]
_NO_ATTRS: dict[str, str] = {}
#: A run's formatting: bold, italic, underline, strike, code, pre, link, mention, colour and
#: background colour (the order of `Segment`'s fields).
_Format = tuple[bool, bool, bool, bool, bool, bool, "str | None", "User | None", "str | None",
                "str | None"]
_PLAIN: _Format = (False, False, False, False, False, False, None, None, None, None)
_PRE_ONLY: _Format = (False, False, False, False, False, True, None, None, None, None)
#: Marks a dropped element on the reader's stack (no tag name holds NUL: it became U+FFFD).
_HIDDEN = "\0"


def safe_link(url: str | None) -> str | None:
    """`url` if its scheme is one a link may carry (http, https, mailto), else None."""
    if not url:
        return None
    cleaned = _CONTROLS.sub("", url).strip()
    try:
        scheme = urlsplit(cleaned).scheme.lower()
    except ValueError:
        return None
    return cleaned if scheme in _SAFE_SCHEMES else None


def user_of_link(url: str | None) -> str | None:
    """The Matrix user id a ``https://matrix.to/#/@user:server`` link points at, if any."""
    if not url:
        return None
    match = _MATRIX_TO.match(unquote(url.strip()))
    if not match:
        return None
    user_id = match.group(1)
    return user_id if ":" in user_id else None


# -- tokens ------------------------------------------------------------------------------------


def _lower(name: str) -> str:
    """ASCII lower case, as HTML folds names (``str.lower`` maps some other letters, such as
    the Kelvin sign, onto ASCII ones)."""
    return name.lower() if name.isascii() else name.translate(_LOWER)


def _charref(match: re.Match[str], attribute: bool) -> str:
    hexa, hex_digits, digits, name = match.groups()
    if name is None:
        digits = hex_digits if hexa else digits
        if len(digits) > (6 if hexa else 7):
            return "\ufffd"  # beyond U+10FFFF (and int() of 5,000 digits raises)
        return _html.unescape(f"&#{hexa or ''}{digits};")
    for size in range(min(len(name), _LONGEST_ENTITY), 1, -1):
        value = _ENTITIES.get(name[:size])
        if value is None:
            continue
        if attribute and not name[:size].endswith(";"):
            following = name[size:size + 1] or match.string[match.end():match.end() + 1]
            if following == "=" or following.isascii() and following.isalnum():
                return match.group()  # "?a=1&copy=2" in an href stays as written
        return value + name[size:]
    return match.group()


def _unescape(text: str, attribute: bool = False) -> str:
    """`text` with its character references replaced as HTML reads them in text, or in an
    attribute value (where ``&name`` without ``;`` before ``=`` or a letter stays)."""
    if "&" not in text:
        return text
    return _CHARREF.sub(lambda m: _charref(m, attribute), text)


def _raw_text_end(src: str, name: str, pos: int) -> int:
    """Where the raw text of element `name`, starting at `pos`, ends: at its end tag, or at
    the end of `src`."""
    if name == "script":
        state = 0
        while True:
            match = _SCRIPT_STATES[state].search(src, pos)
            if match is None:
                return len(src)
            token = match.group()
            if token == "<!--":
                state, pos = 1, match.start() + 2  # so that "<!-->" closes the escape at once
            elif token == "-->":
                state, pos = 0, match.end()
            elif state == 1 and not match.group(1):
                state, pos = 2, match.end()  # "<script" inside an escape nests
            elif state == 2:
                state, pos = 1, match.end()
            else:
                return match.start()
    pattern = _RAW_END.get(name)
    if pattern is None:
        pattern = _RAW_END[name] = re.compile(rf"</{name}(?=[\t\n\f />])", re.IGNORECASE | re.ASCII)
    match = pattern.search(src, pos)
    return match.start() if match else len(src)


def _slow_tag(src: str, i: int) -> tuple[bool, str, dict[str, str], bool, int] | None:
    """The tag at ``src[i]`` read character by character as the HTML standard reads it: (end
    tag?, name, raw attribute values, self-closing?, where it ends), or None when the text ends
    inside it (a browser then drops the tag and everything after it)."""
    n = len(src)
    closing = src.startswith("</", i)
    j = i + 2 if closing else i + 1
    match = _TAG_NAME.match(src, j)
    if match is None:
        return None
    name, j = _lower(match.group()), match.end()
    attrs: dict[str, str] = {}
    while j < n:
        c = src[j]
        if c in "\t\n\f ":
            j = _SPACES.match(src, j).end()  # type: ignore[union-attr]
        elif c == "/":
            if src.startswith(">", j + 1):
                return closing, name, attrs, True, j + 2
            j += 1
        elif c == ">":
            return closing, name, attrs, False, j + 1
        else:
            start = j
            j = _ATTR_NAME_REST.match(src, j + 1).end()  # type: ignore[union-attr]
            key, value = _lower(src[start:j]), ""
            k = _SPACES.match(src, j).end()  # type: ignore[union-attr]
            if k < n and src[k] == "=":
                j = _SPACES.match(src, k + 1).end()  # type: ignore[union-attr]
                if j >= n:
                    return None
                quote = src[j]
                if quote in "\"'":
                    close = src.find(quote, j + 1)
                    if close < 0:
                        return None
                    value, j = src[j + 1:close], close + 1
                elif quote != ">":
                    end = _UNQUOTED.match(src, j).end()  # type: ignore[union-attr]
                    value, j = src[j:end], end
            attrs.setdefault(key, value)
    return None


def _attribute(attrs: _Attrs, key: str) -> str | None:
    """The value of attribute `key` (the first one of that name), references decoded."""
    if isinstance(attrs, dict):
        value = attrs.get(key)
    else:
        src, start, end = attrs
        value = None
        if start == end:
            return None
        for match in _ATTR.finditer(src, start, end):
            if _lower(match.group(1)) == key:
                value = match.group(2) or ""
                if value[:1] in ("'", '"'):
                    value = value[1:-1]
                break
    return None if value is None else _unescape(value, attribute=True)


def _attributes(attrs: _Attrs, keys: tuple[str, ...]) -> dict[str, str]:
    """The values of the attributes named `keys` (the first of each name), references
    decoded, in one pass over the tag's attributes."""
    if isinstance(attrs, dict):
        found = {key: attrs[key] for key in keys if key in attrs}
    else:
        src, start, end = attrs
        found = {}
        if start == end:
            return found
        for match in _ATTR.finditer(src, start, end):
            key = _lower(match.group(1))
            if key in keys and key not in found:
                value = match.group(2) or ""
                found[key] = value[1:-1] if value[:1] in ("'", '"') else value
    return {key: _unescape(value, attribute=True) for key, value in found.items()}


def hex_colour(value: str | None) -> str | None:
    """`value` as ``#rrggbb`` when it is a hex colour (``#rrggbb`` or ``#rgb``), else None:
    colour names and CSS are not read."""
    match = _HEX_COLOUR.fullmatch(value) if value else None
    if match is None:
        return None
    digits = match.group(1).lower()
    return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))


def _list_start(value: str | None) -> int:
    """An ``<ol start>`` as HTML reads integers: leading white space, a sign, ASCII digits,
    anything after ignored; 1 when there are none (or more than nine)."""
    match = _LIST_START.match(value or "")
    if match is None:
        return 1
    digits = match.group(2).lstrip("0") or "0"
    if len(digits) > 9:
        return 1
    return -int(digits) if match.group(1) == "-" else int(digits)


# -- HTML to RichText ----------------------------------------------------------------------------


class _Reader:
    """One ``formatted_body`` to RichText: tokens in, runs of equally formatted text out.

    Open elements are kept on a stack, and each stretch of it between two dropped elements
    (a frame) counts its elements by name, so an end tag finds in O(1) whether it closes
    anything; an end tag never closes past a dropped element it does not name, so nothing can
    end a hidden region early. Every pop is paid for by its push.
    """

    def __init__(self, mention: MentionLookup | None) -> None:
        self.mention = mention
        self.runs: list[tuple[_Format, list[str]]] = []
        self.flags = [0, 0, 0, 0, 0, 0]  # open elements setting each flag
        self.mask = 0  # the flags set, one bit each
        self.links: list[tuple[str | None, User | None, int]] = [(None, None, 0)]
        #: the colour and background of the innermost <font> or <span>, numbered as links are
        self.colours: list[tuple[str | None, str | None, int]] = [(None, None, 0)]
        self.format: _Format | None = None
        self.formats: dict[tuple[int, int, int], _Format] = {(0, 0, 0): _PLAIN}
        self.serial = 0  # the last number given to a link
        self.shade = 0  # the last number given to a colour
        self.stack: list[str] = []  # names; a dropped element's with _HIDDEN in front
        self.frames: list[defaultdict[str, int]] = [defaultdict(int)]
        self.owners: list[str | None] = [None]
        self.drop = 0
        self.foreign = 0
        self.lists: list[list[int]] = []
        self.quote = 0
        self.pending: _Format | None = None  # a line break is due before what comes next
        self.line_start = True
        self.gap: _Format | None = None  # a space is due before more text on this line
        self.marker = False  # the line holds a list marker and nothing else yet
        self.pre_text_at = -1  # where the text right after a <pre> starts

    # -- output --------------------------------------------------------------------------------

    def _format(self) -> _Format:
        """The formatting of text here, one tuple for each (flags, link, colours) met."""
        if self.format is None:
            link, mention, serial = self.links[-1]
            colour, background, shade = self.colours[-1]
            key = (self.mask, serial, shade)
            fmt = self.formats.get(key)
            if fmt is None:
                m = self.mask
                pre = bool(m & 1 << _PRE)
                fmt = self.formats[key] = (bool(m & 1), bool(m & 2), bool(m & 4), bool(m & 8),
                                           bool(m & 1 << _CODE) and not pre, pre, link, mention,
                                           colour, background)
            self.format = fmt
        return self.format

    def _flag_up(self, flag: int) -> None:
        if not self.flags[flag]:
            self.mask |= 1 << flag
            self.format = None
        self.flags[flag] += 1

    def _flag_down(self, flag: int) -> None:
        self.flags[flag] -= 1
        if not self.flags[flag]:
            self.mask &= ~(1 << flag)
            self.format = None

    def _structure(self) -> _Format:
        """The formatting of what the reader adds itself: markers, quotes, line breaks."""
        return _PRE_ONLY if self.flags[_PRE] else _PLAIN

    def _put(self, text: str, fmt: _Format) -> None:
        runs = self.runs
        if runs:
            last = runs[-1]
            if last[0] is fmt or last[0] == fmt:
                last[1].append(text)
                return
        runs.append((fmt, [text]))

    def _newline(self, fmt: _Format) -> None:
        """A line break; a space due at the end of the line is never shown."""
        self._put("\n", fmt)
        self.line_start = True
        self.pending = self.gap = None
        self.marker = False

    def _content(self, text: str, fmt: _Format) -> None:
        """`text` on the current line, after the line break, quote marks or space due."""
        if self.pending is not None:
            self._newline(self.pending)
        if self.line_start:
            if self.quote:
                self._put("> " * min(self.quote, MAX_SHOWN_DEPTH), self._structure())
            self.line_start = False
        elif self.gap is not None:
            self._put(" ", self.gap)
        self.gap = None
        self._put(text, fmt)
        self.marker = False

    def _block(self, name: str = "") -> None:
        """A block starts or ends here: what follows goes on a line of its own."""
        if self.pending is None and self.runs and not self.line_start and not (
                self.marker and name in _BESIDE_MARKER):
            self.pending = self._structure()

    def _chars(self, data: str, at: int = -2) -> None:
        """Text (references already decoded) in the current formatting; `at` is where it
        starts in the source."""
        if self.flags[_PRE]:
            if at == self.pre_text_at and data.startswith("\n"):
                data = data[1:]  # the line break right after <pre> is not shown
            if data:
                self._pre_text(data)
            return
        data = _WS.sub(" ", data)
        fmt = self._format()
        if data.startswith(" "):
            data = data[1:]
            if self.gap is None and not self.line_start and self.pending is None:
                self.gap = fmt
        if data:
            trail = data.endswith(" ")
            self._content(data[:-1] if trail else data, fmt)
            if trail:
                self.gap = fmt

    def _pre_text(self, data: str) -> None:
        fmt = self._format()
        if not self.quote:
            self._content(data, fmt)
            self.line_start = data.endswith("\n")
            return
        for i, line in enumerate(data.split("\n")):
            if i:
                self._pre_newline(fmt)
            if line:
                self._content(line, fmt)

    def _pre_newline(self, fmt: _Format) -> None:
        if self.pending is not None:
            self._newline(self.pending)
        self._put("\n", fmt)
        self.line_start = True
        self.marker = False
        self.gap = None

    def _item(self) -> None:
        """A list item's marker, on a line of its own: "• ", or its number in an ``<ol>``."""
        lists = self.lists
        if lists and lists[-1][0]:
            marker = f"{lists[-1][1]}."
            lists[-1][1] += 1
        else:
            marker = "•"
        if len(lists) > 1:
            marker = _INDENT * min(len(lists) - 1, MAX_SHOWN_DEPTH) + marker
        fmt = _PRE_ONLY if self.flags[_PRE] else _PLAIN
        runs = self.runs
        newline = self.pending
        if newline is None and runs and not self.line_start:
            newline = fmt
        if newline is not None or self.line_start:
            if newline is not None:
                self._put("\n", newline)
                self.pending = None
            if self.quote:
                self._put("> " * min(self.quote, MAX_SHOWN_DEPTH), fmt)
            self.line_start = False
        last = runs[-1] if runs else None
        if last is not None and (last[0] is fmt or last[0] == fmt):
            last[1].append(marker)
        else:
            self._put(marker, fmt)
        self.gap = fmt  # "• item"
        self.marker = True

    # -- tree ----------------------------------------------------------------------------------

    def text(self, data: str) -> None:
        if not self.drop and data:
            self._chars(_unescape(data))

    def start(self, name: str, attrs: _Attrs, self_closing: bool) -> None:
        kind = _KINDS.get(name, _OTHER)
        if kind is _VOID_TAG:
            if not self.drop:
                if name == "br":
                    if self.pending is not None:
                        self._newline(self.pending)
                    self._newline(self._format())
                elif name == "img":
                    alt = _attribute(attrs, "alt")
                    if alt:
                        self._chars(alt)
                elif name == "hr":
                    self._block()
            return
        if self_closing and (self.foreign or name in _FOREIGN):
            return  # <svg/>, and <x/> inside SVG or MathML, close at once
        if kind is _DROP_TAG:
            self.stack.append(_HIDDEN + name)
            self.frames.append(defaultdict(int))
            self.owners.append(name)
            self.drop += 1
            if name in _FOREIGN:
                self.foreign += 1
            return
        self.stack.append(name)
        self.frames[-1][name] += 1
        if self.drop or kind is _OTHER:
            return
        if kind is _FLAG:
            self._flag_up(_FLAG_TAGS[name])
        elif kind is _LI:
            self._item()
        elif kind is _LIST:
            self._block()
            first = 0
            if name == "ol":
                first = _list_start(_attribute(attrs, "start"))
            self.lists.append([name == "ol", first])
        elif kind is _BLOCK:
            self._block(name)
        elif kind is _HEADING:
            self._block()
            self._flag_up(_BOLD)
        elif kind is _PRE_TAG:
            self._block()
            self._flag_up(_PRE)
        elif kind is _LINK:
            self.links.append(self._link(attrs))
            self.format = None
        elif kind is _COLOUR:
            self.colours.append(self._colour(name, attrs))
            self.format = None
        elif kind is _QUOTE:
            self._block()
            self.quote += 1

    def _link(self, attrs: _Attrs) -> tuple[str | None, User | None, int]:
        """What an ``<a>`` makes of the text inside: a mention, a link, or what the ``<a>``
        around it made (with a number of its own, for `_format`)."""
        href = _attribute(attrs, "href")
        target = user_of_link(href)
        user = self.mention(target) if (target and self.mention) else None
        if target and user is None:
            user = User(id=target, username=target)
        link = safe_link(href) if user is None else None
        if not (link or user):
            return self.links[-1]
        self.serial += 1
        return link, user, self.serial

    def _colour(self, name: str, attrs: _Attrs) -> tuple[str | None, str | None, int]:
        """The colours of the text inside a ``<font>`` or ``<span>``: its hex
        ``data-mx-color`` (or, on ``<font>``, ``color``) and ``data-mx-bg-color``, each else
        the one around it (with a number of its own when it sets one, for `_format`)."""
        outer = self.colours[-1]
        if isinstance(attrs, tuple) and attrs[1] == attrs[2]:
            return outer
        values = _attributes(attrs, _COLOUR_ATTRIBUTES)
        colour = hex_colour(values.get("data-mx-color"))
        if colour is None and name == "font":
            colour = hex_colour(values.get("color"))
        background = hex_colour(values.get("data-mx-bg-color"))
        if colour is None and background is None:
            return outer
        self.shade += 1
        return colour or outer[0], background or outer[1], self.shade

    def end(self, name: str) -> None:
        if name == "br":
            self.start("br", _NO_ATTRS, False)  # </br> is a line break to a browser too
        elif self.frames[-1][name]:
            while self._pop() != name:
                pass
        elif self.owners[-1] == name:
            while self._pop() != _HIDDEN:
                pass
        elif name == "p" and not self.drop:
            self._block()  # </p> without <p>: an empty paragraph

    def _pop(self) -> str:
        """Close the innermost open element; its name (_HIDDEN for a dropped element)."""
        name = self.stack.pop()
        if name[0] == _HIDDEN:
            self.frames.pop()
            self.owners.pop()
            self.drop -= 1
            if name[1:] in _FOREIGN:
                self.foreign -= 1
            return _HIDDEN
        self.frames[-1][name] -= 1
        if not self.drop:
            kind = _KINDS.get(name, _OTHER)
            if kind is _FLAG:
                self._flag_down(_FLAG_TAGS[name])
            elif kind is not _OTHER:
                self._close(name, kind)
        return name

    def _close(self, name: str, kind: object) -> None:
        if kind is _LIST:
            self.lists.pop()
            self._block()
        elif kind is _BLOCK or kind is _LI:
            self._block(name)
        elif kind is _HEADING:
            self._flag_down(_BOLD)
            self._block()
        elif kind is _PRE_TAG:
            self._flag_down(_PRE)
            self._block()  # after a final line break, as after a <br>, no empty line
        elif kind is _LINK:
            self.links.pop()
            self.format = None
        elif kind is _COLOUR:
            self.colours.pop()
            self.format = None
        elif kind is _QUOTE:
            self.quote -= 1
            self._block()

    # -- the tokenizer -------------------------------------------------------------------------

    def read(self, src: str) -> RichText:
        src = src.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
        runs, stack, frames, flags = self.runs, self.stack, self.frames, self.flags
        kinds, flag_tags, ws_sub = _KINDS, _FLAG_TAGS, _WS.sub
        names: dict[str, str] = {}
        pos = 0
        while pos < len(src):
            # What most tokens do is written out here rather than in methods, which would cost
            # several times as much per token. Markup that moves the reading position (raw
            # text, what `_TAG` does not read) restarts the scan after it.
            for match in _TOKEN.finditer(src, pos):
                raw, other, data = match.group(2, 5, 6)
                if raw is not None:
                    name = names.get(raw)
                    if name is None:
                        name = names[raw] = _lower(raw)
                    kind = kinds.get(name, _OTHER)
                    if match[1]:  # an end tag
                        if not stack or stack[-1] != name:
                            self.end(name)
                        else:  # it closes the innermost element, as most end tags do
                            stack.pop()
                            frames[-1][name] -= 1
                            if self.drop or kind is _OTHER:
                                pass
                            elif kind is _FLAG:
                                flag = flag_tags[name]
                                flags[flag] -= 1
                                if not flags[flag]:
                                    self.mask &= ~(1 << flag)
                                    self.format = None
                            elif kind is _BLOCK:
                                if self.pending is None and runs and not self.line_start and not (
                                        self.marker and name in _BESIDE_MARKER):
                                    self.pending = _PRE_ONLY if flags[_PRE] else _PLAIN
                            else:
                                self._close(name, kind)
                    elif kind in _SIMPLE_KINDS:
                        stack.append(name)
                        frames[-1][name] += 1
                        if self.drop or kind is _OTHER:
                            pass
                        elif kind is _FLAG:
                            flag = flag_tags[name]
                            if not flags[flag]:
                                self.mask |= 1 << flag
                                self.format = None
                            flags[flag] += 1
                        elif kind is _LI:
                            self._item()
                        else:  # a block, or a list
                            if self.pending is None and runs and not self.line_start and not (
                                    self.marker and name in _BESIDE_MARKER):
                                self.pending = _PRE_ONLY if flags[_PRE] else _PLAIN
                            if kind is _LIST:
                                first = 0
                                if name == "ol":
                                    first = 1 if match.start(3) == match.end(3) else _list_start(
                                        _attribute((src, match.start(3), match.end(3)), "start"))
                                self.lists.append([name == "ol", first])
                    else:
                        end = match.end(4) + 1
                        self.start(name, (src, match.start(3), match.end(3)), bool(match[4]))
                        if name in _RAW_TEXT and not self.foreign:
                            pos = _raw_text_end(src, name, end)  # all of them are dropped
                            break
                        if kind is _PRE_TAG:
                            self.pre_text_at = end
                elif other is not None:
                    pos = self._markup(src, match.start())
                    break
                if data is None or self.drop:
                    continue
                if "&" in data:
                    data = _unescape(data)
                    if not data:
                        continue
                if flags[_PRE] or self.quote and (self.line_start or self.pending is not None):
                    self._chars(data, match.start(6))
                    continue
                # text outside <pre> and quotes: what _chars does, written out
                if not data.isalnum():
                    data = ws_sub(" ", data)
                fmt = self.format or self._format()
                newline = self.pending
                if newline is not None or self.line_start:
                    if data[0] == " ":
                        data = data[1:]
                        if not data:
                            continue
                    if newline is not None:
                        self._put("\n", newline)
                        self.pending = None
                    self.line_start = False
                    gap = None
                else:
                    gap = self.gap
                    if data[0] == " ":
                        data = data[1:]
                        if gap is None:
                            gap = fmt
                        if not data:
                            self.gap = gap
                            continue
                trail = data[-1] == " "
                if trail:
                    data = data[:-1]
                last = runs[-1] if runs else None
                if gap is not None:
                    if last is not None and (last[0] is gap or last[0] == gap):
                        last[1].append(" ")
                    else:
                        last = (gap, [" "])
                        runs.append(last)
                if last is not None and (last[0] is fmt or last[0] == fmt):
                    last[1].append(data)
                else:
                    runs.append((fmt, [data]))
                self.marker = False
                self.gap = fmt if trail else None
            else:
                break
        # What is still open closes at the end: that adds no text, and the end is stripped.
        # Segments are immutable, so runs alike share one (a Segment costs microseconds).
        made: dict[tuple[int, str], Segment] = {}
        segments = []
        for fmt, parts in runs:
            text = parts[0] if len(parts) == 1 else "".join(parts)
            segment = made.get((id(fmt), text))
            if segment is None:
                segment = made[id(fmt), text] = Segment(text, *fmt)
            segments.append(segment)
        return RichText(segments).strip()

    def _markup(self, src: str, i: int) -> int:
        """Read the markup at ``src[i]`` that `_TAG` does not: a tag `_slow_tag` reads, a
        comment or declaration, a "</" that closes nothing; where the text goes on."""
        c = src[i + 1:i + 2]
        if c.isascii() and c.isalpha() or c == "/" and src[i + 2:i + 3].isascii() \
                and src[i + 2:i + 3].isalpha():
            if src.find(">", i) < 0:
                return len(src)  # the text ends inside this tag
            tag = _slow_tag(src, i)
            if tag is None:
                return len(src)  # the text ends inside a tag
            closing, name, values, self_closing, end = tag
            if closing:
                self.end(name)
                return end
            self.start(name, values, self_closing)
            if name in _RAW_TEXT and not self.foreign:
                return _raw_text_end(src, name, end)
            if name == "pre" or name == "listing":
                self.pre_text_at = end
            return end
        if src.startswith("<!--", i):
            if src.startswith(">", i + 4):
                return i + 5
            if src.startswith("->", i + 4):
                return i + 6
            comment_end = _COMMENT_END.search(src, i + 4)
            return comment_end.end() if comment_end else len(src)  # unclosed: hides the rest
        if self.foreign and src.startswith("<![CDATA[", i):
            close = src.find("]]>", i + 9)
            return close + 3 if close >= 0 else len(src)
        if c == "/":
            if src.startswith(">", i + 2):
                return i + 3  # "</>" is nothing
            if i + 2 >= len(src):
                self.text("</")
                return len(src)
        close = src.find(">", i + 2)  # <!...>, <?...>, </ ...>: a bogus comment
        return close + 1 if close >= 0 else len(src)


def parse_html(source: str, mention: MentionLookup | None = None) -> RichText:
    """RichText of a ``formatted_body``; `mention(user_id)` gives the User a pill names."""
    return _Reader(mention).read(source)


def strip_reply_fallback_html(source: str) -> str:
    """Drop a rich reply's ``<mx-reply>...</mx-reply>`` quote of its parent."""
    start = source.find("<mx-reply>")
    end = source.find("</mx-reply>")
    if start != -1 and end > start:
        return source[:start] + source[end + len("</mx-reply>"):]
    return source


def strip_reply_fallback_text(body: str) -> str:
    """Drop a rich reply's leading ``> `` quote lines (and the blank line after them)."""
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0:
        return body
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


# -- rendering -------------------------------------------------------------------------------

_TAGS = (("<b>", "</b>"), ("<i>", "</i>"), ("<u>", "</u>"), ("<del>", "</del>"),
         ("<code>", "</code>"))
#: (opening tags, closing tags) for each combination of the five inline flags (code is implied
#: inside <pre>).
_WRAP: dict[tuple[bool, ...], tuple[str, str]] = {}


def mention_href(user_id: str) -> str:
    return f"https://matrix.to/#/{user_id}"


def _runs(text: RichText) -> list[tuple[_Format, str]]:
    """The text of `text` in runs of one formatting each, merged in one pass
    (``RichText.normalise`` copies the text merged so far at every merge)."""
    out: list[tuple[_Format, str]] = []
    texts: list[str] = []
    current: _Format | None = None
    for seg in text.segments:
        if not seg.text:
            continue
        fmt = (seg.bold, seg.italic, seg.underline, seg.strike, seg.code, seg.pre, seg.link,
               seg.mention, seg.color, seg.background)
        if fmt == current:
            texts.append(seg.text)
            continue
        if current is not None:
            out.append((current, texts[0] if len(texts) == 1 else "".join(texts)))
        current, texts = fmt, [seg.text]
    if current is not None:
        out.append((current, texts[0] if len(texts) == 1 else "".join(texts)))
    return out


def _wrap(flags: tuple[bool, ...]) -> tuple[str, str]:
    """The opening and closing tags for the six flags of a run."""
    tags = _WRAP.get(flags)
    if tags is None:
        on = flags[:5] if not flags[_PRE] else (*flags[:4], False)  # <code> is implied in <pre>
        used = [pair for pair, wanted in zip(_TAGS, on, strict=True) if wanted]
        tags = _WRAP[flags] = ("".join(o for o, _ in used), "".join(c for _, c in reversed(used)))
    return tags


def _font(colour: str | None, background: str | None) -> tuple[str, str]:
    """The ``<font>`` that colours a run, as Matrix clients read it (``data-mx-color``,
    ``data-mx-bg-color``); nothing for a run without colours."""
    if colour is None and background is None:
        return "", ""
    shown = (f' data-mx-color="{colour}"' if colour else "") + (
        f' data-mx-bg-color="{background}"' if background else "")
    return f"<font{shown}>", "</font>"


def render_html(text: RichText, mention_id: Callable[[User], str | None] | None = None) -> str:
    """HTML for `text`: every character escaped, formatting as tags, colours as ``<font
    data-mx-color data-mx-bg-color>``, line breaks as ``<br>``, preformatted lines as one
    ``<pre><code>`` block. Reading it back with `parse_html` gives `text` again when HTML can
    say it (single spaces, ``pre`` in whole lines).

    `mention_id(user)` gives the Matrix id to link a mention to (None renders its text only).
    """
    runs = _runs(text)
    parts: list[str] = []
    wrap = _WRAP
    anchors: dict[object, str] = {}  # the <a href="..."> of each link and mention, once each
    fonts: dict[tuple[str | None, ...], tuple[str, str]] = {}
    in_block = after_block = ends_line = False
    for fmt, body in runs:
        pre = bool(fmt[_PRE])
        if pre and not in_block:
            parts.append("<pre><code>")
        elif in_block and not pre:
            # the reader starts a new line after a block, unless the block ended one
            parts.append("</code></pre>")
            after_block = not ends_line
        in_block = pre
        if "\r" in body:
            body = body.replace("\r\n", "\n").replace("\r", "\n")
        ends_line = body.endswith("\n")
        if after_block:
            after_block = False
            if body.startswith("\n") and fmt == _PLAIN:
                body = body[1:]
                if not body:
                    continue
        if "&" in body or "<" in body or ">" in body:
            body = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if not pre and "\n" in body:
            body = body.replace("\n", "<br>")
        opening, closing = wrap.get(fmt[:6]) or _wrap(fmt[:6])
        if fmt[8] is not None or fmt[9] is not None:
            font = fonts.get(fmt[8:])
            if font is None:
                font = fonts[fmt[8:]] = _font(fmt[8], fmt[9])
            opening, closing = font[0] + opening, closing + font[1]
        link, mention = fmt[6], fmt[7]
        if link is None and mention is None:
            parts.append(f"{opening}{body}{closing}" if opening else body)
            continue
        anchor = None
        if mention is not None and mention_id is not None:
            anchor = anchors.get(id(mention))
            if anchor is None:
                target = mention_id(mention)
                href = _html.escape(mention_href(target)) if target is not None else None
                anchor = anchors[id(mention)] = f'<a href="{href}">' if href else ""
        if not anchor and link:
            anchor = anchors.get(link)
            if anchor is None:
                safe = safe_link(link)
                anchor = anchors[link] = f'<a href="{_html.escape(safe)}">' if safe else ""
        if anchor:
            parts.append(f"{anchor}{opening}{body}{closing}</a>")
        else:
            parts.append(f"{opening}{body}{closing}" if opening else body)
    if in_block:
        parts.append("</code></pre>")
    return "".join(parts)


def render_plain(text: RichText) -> str:
    """The plain ``body``: the text itself, with links that differ from their text appended."""
    parts: list[str] = []
    links: dict[str, str | None] = {}
    for fmt, body in _runs(text):
        parts.append(body)
        if fmt[6] is None or fmt[7] is not None:
            continue
        if fmt[6] not in links:
            links[fmt[6]] = safe_link(fmt[6])
        link = links[fmt[6]]
        if link and link != body and link.removeprefix("mailto:") != body:
            parts.append(f" <{link}>")
    return "".join(parts)


__all__ = ["MAX_SHOWN_DEPTH", "mention_href", "parse_html", "render_html", "render_plain",
           "safe_link", "strip_reply_fallback_html", "strip_reply_fallback_text", "user_of_link"]
