"""Matrix HTML (``formatted_body``) to RichText and back.

Parsing goes through an allow-list on the standard library's ``html.parser``: formatting tags
become Segment flags, links keep only http(s)/mailto targets, ``matrix.to`` links to users
become mentions, blocks (paragraphs, quotes, lists, headings) become lines, the contents of
``<script>``, ``<style>`` and ``<mx-reply>`` are dropped, and every other tag keeps its text.
No attribute other than ``href`` is ever read, so event handlers cannot pass through.
Rendering escapes all text and emits only the same small set of tags.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from chanmux import RichText, Segment, User

_FLAG_TAGS = {
    "b": "bold", "strong": "bold",
    "i": "italic", "em": "italic", "cite": "italic",
    "u": "underline", "ins": "underline",
    "s": "strike", "del": "strike", "strike": "strike",
    "code": "code", "kbd": "code", "samp": "code", "tt": "code",
}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "div", "pre", "blockquote", "ul", "ol", "li", "table", "tr", "hr",
           "details", "summary", "dl", "dt", "dd", "section", "article", *_HEADINGS}
_DROP = {"script", "style", "mx-reply", "head", "title", "template", "noscript", "iframe",
         "object", "embed", "svg", "math", "textarea", "select"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "area", "base", "col", "source", "track"}
_SAFE_SCHEMES = {"http", "https", "mailto"}
_WS = re.compile(r"[ \t\n\r\f]+")

#: matrix.to permalinks to users: https://matrix.to/#/@user:server
_MATRIX_TO = re.compile(r"^https://matrix\.to/#/(@[^/?#]+)")

MentionLookup = Callable[[str], "User | None"]


def safe_link(url: str | None) -> str | None:
    """`url` if its scheme is one a link may carry (http, https, mailto), else None."""
    if not url:
        return None
    cleaned = "".join(ch for ch in url.strip() if ch >= " " and ch != "\x7f")
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


class _Parser(HTMLParser):
    def __init__(self, mention: MentionLookup | None) -> None:
        super().__init__(convert_charrefs=True)
        self.mention = mention
        self.out: list[Segment] = []
        self.flags: dict[str, int] = {f: 0 for f in ("bold", "italic", "underline", "strike", "code", "pre")}
        self.links: list[tuple[str, str | None, User | None]] = []
        self.stack: list[str] = []
        self.drop = 0
        self.lists: list[list[int]] = []
        self.quote = 0
        self.breaks = 0
        self.at_line_start = True

    # -- output ------------------------------------------------------------------------------

    def _segment(self, text: str) -> Segment:
        link = mention = None
        for _tag, href, user in reversed(self.links):
            if user is not None:
                mention = user
                break
            if href is not None:
                link = href
                break
        flags = {f: n > 0 for f, n in self.flags.items()}
        if flags["pre"]:
            flags["code"] = False
        return Segment(text, link=link, mention=mention, **flags)

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.breaks and self.out:
            self._trim_trailing_space()
            self.out.append(Segment("\n" * self.breaks))
            self.at_line_start = True
        self.breaks = 0
        if self.at_line_start and self.quote:
            self.out.append(Segment("> " * self.quote))
        self.out.append(self._segment(text))
        self.at_line_start = text.endswith("\n")

    def _trim_trailing_space(self) -> None:
        while self.out and self.out[-1].text.endswith(" ") and not self.out[-1].pre:
            last = self.out[-1]
            trimmed = last.text.rstrip(" ")
            if trimmed:
                self.out[-1] = last.with_text(trimmed)
                break
            self.out.pop()

    def _block(self, count: int = 1) -> None:
        if self.out:
            self.breaks = max(self.breaks, count)

    def _line_break(self) -> None:
        self.breaks = 0
        self._trim_trailing_space()
        self.out.append(Segment("\n"))
        self.at_line_start = True

    # -- parser callbacks --------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag in _DROP:
            if tag not in _VOID:
                self.drop += 1
                self.stack.append(tag)
            return
        if self.drop:
            if tag not in _VOID:
                self.stack.append(tag)
            return
        if tag == "br":
            self._line_break()
            return
        if tag in _VOID:
            if tag == "img":
                alt = next((v for k, v in attrs if k == "alt" and v), None)
                if alt:
                    self._emit(alt)
            elif tag == "hr":
                self._block()
            return
        self.stack.append(tag)
        if tag in _FLAG_TAGS:
            self.flags[_FLAG_TAGS[tag]] += 1
        elif tag in _HEADINGS:
            self._block()
            self.flags["bold"] += 1
        elif tag == "pre":
            self._block()
            self.flags["pre"] += 1
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href"), None)
            target = user_of_link(href)
            user = self.mention(target) if (target and self.mention) else None
            if target and user is None:
                user = User(id=target, username=target)
            self.links.append((tag, safe_link(href) if user is None else None, user))
        elif tag == "blockquote":
            self._block()
            self.quote += 1
        elif tag in ("ul", "ol"):
            self._block()
            start = next((v for k, v in attrs if k == "start"), None)
            first = int(start) if start and start.isdigit() else 1
            self.lists.append([1 if tag == "ol" else 0, first])
        elif tag == "li":
            self._block()
            marker = "• "
            if self.lists and self.lists[-1][0]:
                marker = f"{self.lists[-1][1]}. "
                self.lists[-1][1] += 1
            indent = "  " * max(0, len(self.lists) - 1)
            self._emit_plain(indent + marker)
        elif tag in _BLOCKS:
            self._block()

    def _emit_plain(self, text: str) -> None:
        saved, saved_links = self.flags, self.links
        self.flags = {f: 0 for f in saved}
        self.links = []
        try:
            self._emit(text)
        finally:
            self.flags, self.links = saved, saved_links
        self.at_line_start = False

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:
            open_tag = self.stack.pop()
            self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in _DROP:
            self.drop -= 1
            return
        if self.drop:
            return
        if tag in _FLAG_TAGS:
            self.flags[_FLAG_TAGS[tag]] -= 1
        elif tag in _HEADINGS:
            self.flags["bold"] -= 1
            self._block()
        elif tag == "pre":
            self.flags["pre"] -= 1
            if self.out and self.out[-1].text.endswith("\n"):
                last = self.out[-1]
                self.out[-1] = last.with_text(last.text[:-1])
            self._block()
        elif tag == "a":
            if self.links:
                self.links.pop()
        elif tag == "blockquote":
            self.quote -= 1
            self._block()
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._block()
        elif tag in _BLOCKS:
            self._block()

    def handle_data(self, data: str) -> None:
        if self.drop or not data:
            return
        if self.flags["pre"]:
            if not self.quote:
                self._emit(data)
                return
            for i, line in enumerate(data.split("\n")):
                if i:
                    self._emit("\n")
                if line:
                    self._emit(line)
            return
        text = _WS.sub(" ", data)
        if self.at_line_start or self.breaks or not self.out or self.out[-1].text.endswith(" "):
            text = text.lstrip(" ")
        self._emit(text)

    def result(self) -> RichText:
        while self.stack:
            self._close(self.stack.pop())
        self._trim_trailing_space()
        return RichText(self.out).normalise().strip()


def parse_html(source: str, mention: MentionLookup | None = None) -> RichText:
    """RichText of a ``formatted_body``; `mention(user_id)` gives the User a pill names."""
    parser = _Parser(mention)
    parser.feed(source)
    parser.close()
    return parser.result()


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

_OPEN = (("bold", "<b>", "</b>"), ("italic", "<i>", "</i>"), ("underline", "<u>", "</u>"),
         ("strike", "<del>", "</del>"), ("code", "<code>", "</code>"))


def mention_href(user_id: str) -> str:
    return f"https://matrix.to/#/{user_id}"


def _escape(text: str) -> str:
    return _html.escape(text, quote=False)


def render_html(text: RichText, mention_id: Callable[[User], str | None] | None = None) -> str:
    """HTML for `text`: every character escaped, formatting as tags, line breaks as ``<br>``.

    `mention_id(user)` gives the Matrix id to link a mention to (None renders its text only).
    """
    parts: list[str] = []
    pre_run: list[Segment] = []

    def flush_pre() -> None:
        if pre_run:
            parts.append("<pre><code>" + "".join(_escape(s.text) for s in pre_run) + "</code></pre>")
            pre_run.clear()

    for seg in text.normalise():
        if seg.pre:
            pre_run.append(seg)
            continue
        flush_pre()
        body = _escape(seg.text).replace("\n", "<br>")
        for flag, open_tag, close_tag in reversed(_OPEN):
            if getattr(seg, flag):
                body = f"{open_tag}{body}{close_tag}"
        target = None
        if seg.mention is not None and mention_id is not None:
            target = mention_id(seg.mention)
        if target is not None:
            body = f'<a href="{_html.escape(mention_href(target))}">{body}</a>'
        elif seg.link and safe_link(seg.link):
            body = f'<a href="{_html.escape(safe_link(seg.link) or "")}">{body}</a>'
        parts.append(body)
    flush_pre()
    return "".join(parts)


def render_plain(text: RichText) -> str:
    """The plain ``body``: the text itself, with links that differ from their text appended."""
    parts: list[str] = []
    for seg in text.normalise():
        parts.append(seg.text)
        link = safe_link(seg.link) if seg.mention is None else None
        if link and link != seg.text and link.removeprefix("mailto:") != seg.text:
            parts.append(f" <{link}>")
    return "".join(parts)


__all__ = ["mention_href", "parse_html", "render_html", "render_plain", "safe_link",
           "strip_reply_fallback_html", "strip_reply_fallback_text", "user_of_link"]
