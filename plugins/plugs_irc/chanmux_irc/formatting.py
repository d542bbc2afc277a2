"""mIRC formatting codes to RichText and back, and nick mentions in received text.

Bold (\\x02), italic (\\x1d), underline (\\x1f), strikethrough (\\x1e) and monospace (\\x11)
map to RichText flags. Colours (\\x03 with up to two digits each for fore- and background,
\\x04 with hex colours), reverse (\\x16) and other control characters have no RichText
equivalent: they are consumed whole, so their digits never leak into the text. \\x0f resets.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from chanmux import RichText, Segment, User

BOLD, ITALIC, UNDERLINE, STRIKE, MONO = "\x02", "\x1d", "\x1f", "\x1e", "\x11"
COLOUR, HEX_COLOUR, REVERSE, RESET = "\x03", "\x04", "\x16", "\x0f"

_TOKENS = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x00-\x08\x0a-\x1f\x7f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: Readable mIRC colours for nicks (no white, black or greys).
NICK_COLOURS = (2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13)


_CODE_BIT = {BOLD: 1, ITALIC: 2, UNDERLINE: 4, STRIKE: 8, MONO: 16}


def _segment(text: str, bits: int) -> Segment:
    return Segment(text, bool(bits & 1), bool(bits & 2), bool(bits & 4), bool(bits & 8),
                   bool(bits & 16))


def parse(text: str) -> RichText:
    """Received IRC text (formatting codes and all) as RichText; linear in the text."""
    if not _CONTROL.search(text):
        return RichText.plain_text(text)
    runs: list[tuple[list[str], int]] = []
    bits = 0
    pos = 0

    def add(piece: str) -> None:
        if runs and runs[-1][1] == bits:
            runs[-1][0].append(piece)
        else:
            runs.append(([piece], bits))

    for match in _TOKENS.finditer(text):
        start = match.start()
        if start > pos:
            add(text[pos:start])
        pos = match.end()
        code = text[start]
        if code in _CODE_BIT:
            bits ^= _CODE_BIT[code]
        elif code == RESET:
            bits = 0
    if pos < len(text):
        add(text[pos:])
    return RichText([_segment("".join(parts), b) for parts, b in runs])


def clean(text: str) -> str:
    """Text with every control character (formatting codes, CR, LF, NUL...) removed; tabs kept."""
    return _CONTROL.sub("", text) if _CONTROL.search(text) else text


def shown(seg: Segment, mention: Callable[[Segment], str] | None = None) -> str:
    """The text IRC shows for one segment, without formatting codes: a mention as `mention`
    names it, a link as `text <url>` (or the bare URL), control characters dropped."""
    body = clean(mention(seg) if seg.mention is not None and mention else seg.text)
    if seg.link:
        link = clean(seg.link)
        if body and link not in (body, f"mailto:{body}", f"http://{body}", f"https://{body}"):
            body = f"{body} <{link}>"
        elif not body:
            body = link
    return body


def render(text: RichText, mention: Callable[[Segment], str] | None = None) -> str:
    """RichText as IRC text with formatting codes. Links become `text <url>`, code and
    preformatted text monospace; `mention` names a mentioned user (default: the segment's
    text). Control characters inside the text are dropped, so nothing can forge a code."""
    out: list[str] = []
    state = 0
    for seg in text.segments:
        body = shown(seg, mention)
        if not body:
            continue
        wanted = (seg.bold | seg.italic << 1 | seg.underline << 2 | seg.strike << 3
                  | (seg.code or seg.pre) << 4)
        if wanted != state:
            changed = wanted ^ state
            out.extend(code for code, bit in _CODE_BIT.items() if changed & bit)
            state = wanted
        out.append(body)
    return "".join(out)


def render_line(text: RichText, mention: Callable[[Segment], str] | None = None) -> str:
    """`render`, guarded so that servers which strip trailing spaces keep them (a final
    reset code after trailing white space)."""
    line = render(text, mention)
    if line and line[-1] in " \t":
        line += RESET
    return line


def nick_colour(name: str) -> int:
    """A stable mIRC colour number for `name`."""
    return NICK_COLOURS[zlib.crc32(name.encode("utf-8", "replace")) % len(NICK_COLOURS)]


def coloured(name: str) -> str:
    """`name` in its stable colour (two-digit code, so a leading digit in the name is safe)."""
    return f"{COLOUR}{nick_colour(name):02d}{name}{COLOUR}"


# -- mentions --------------------------------------------------------------------------------

#: A run of characters a nick may hold: a nick is mentioned when a whole run is that nick.
_NICK_RUN = re.compile(r"[A-Za-z0-9\[\]\\`_^{|}\-]+")
_PREFIX_RUN = re.compile(r"^([A-Za-z0-9\[\]\\`_^{|}\-]+)[:,]")


def _copy(seg: Segment, text: str, mention: User | None = None) -> Segment:
    return Segment(text, seg.bold, seg.italic, seg.underline, seg.strike, seg.code, seg.pre,
                   seg.link, mention if mention is not None else seg.mention)


def add_mentions(text: RichText, lookup: Callable[[str], User | None],
                 prefix_only: bool = False) -> RichText:
    """Mark each whole-word nick that `lookup` knows as a mention of that user (with
    `prefix_only`, only a `nick:` or `nick,` that starts the text)."""
    out: list[Segment] = []
    changed = False
    for index, seg in enumerate(text.segments):
        if seg.link or seg.mention or seg.code or seg.pre or (prefix_only and index):
            out.append(seg)
            continue
        pos = 0
        runs = [m.span(1) for m in _PREFIX_RUN.finditer(seg.text)] if prefix_only else \
            [m.span() for m in _NICK_RUN.finditer(seg.text)]
        for start, end in runs:
            user = lookup(seg.text[start:end])
            if user is None:
                continue
            if start > pos:
                out.append(_copy(seg, seg.text[pos:start]))
            out.append(_copy(seg, seg.text[start:end], user))
            pos = end
            changed = True
        if pos < len(seg.text):
            out.append(_copy(seg, seg.text[pos:]) if pos else seg)
    return RichText(out) if changed else text


__all__ = ["add_mentions", "clean", "coloured", "nick_colour", "parse",
           "render", "render_line", "shown"]
