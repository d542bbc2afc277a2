"""mIRC formatting codes to RichText and back, and nick mentions in received text.

Bold (\\x02), italic (\\x1d), underline (\\x1f), strikethrough (\\x1e) and monospace (\\x11)
map to RichText flags; colours (\\x03 with up to two digits each for fore- and background: the
16 mIRC colours and the extended 16-98, 99 being the default; \\x04 with hex colours) to
`Segment.color` and `background` (`#rrggbb`). Reverse (\\x16) and other control characters
have no RichText equivalent: they are consumed whole, so their digits never leak into the
text. \\x0f resets. Sent colours are the nearest of the 99 mIRC colours.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable

from chanmux import RichText, Segment, User

BOLD, ITALIC, UNDERLINE, STRIKE, MONO = "\x02", "\x1d", "\x1f", "\x1e", "\x11"
COLOUR, HEX_COLOUR, REVERSE, RESET = "\x03", "\x04", "\x16", "\x0f"

_TOKENS = re.compile(
    r"\x03(?:(\d{1,2})(?:,(\d{1,2}))?)?"
    r"|\x04(?:([0-9A-Fa-f]{6})(?:,([0-9A-Fa-f]{6}))?)?"
    r"|[\x00-\x08\x0a-\x1f\x7f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: Readable mIRC colours for nicks (no white, black or greys).
NICK_COLOURS = (2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13)

#: The mIRC colours 0-98 as `#rrggbb`: the 16 of mIRC and the extended 16-98 (mIRC 7,
#: modern.ircdocs.horse); 99 is the client's default colour.
PALETTE = (
    "#ffffff", "#000000", "#00007f", "#009300", "#ff0000", "#7f0000", "#9c009c", "#fc7f00",
    "#ffff00", "#00fc00", "#009393", "#00ffff", "#0000fc", "#ff00ff", "#7f7f7f", "#d2d2d2",
    "#470000", "#472100", "#474700", "#324700", "#004700", "#00472c", "#004747", "#002747",
    "#000047", "#2e0047", "#470047", "#47002a", "#740000", "#743a00", "#747400", "#517400",
    "#007400", "#007449", "#007474", "#004074", "#000074", "#4b0074", "#740074", "#740045",
    "#b50000", "#b56300", "#b5b500", "#7db500", "#00b500", "#00b571", "#00b5b5", "#0063b5",
    "#0000b5", "#7500b5", "#b500b5", "#b5006b", "#ff0000", "#ff8c00", "#ffff00", "#b2ff00",
    "#00ff00", "#00ffa0", "#00ffff", "#008cff", "#0000ff", "#a500ff", "#ff00ff", "#ff0098",
    "#ff5959", "#ffb459", "#ffff71", "#cfff60", "#6fff6f", "#65ffc9", "#6dffff", "#59b4ff",
    "#5959ff", "#c459ff", "#ff66ff", "#ff59bc", "#ff9c9c", "#ffd39c", "#ffff9c", "#e2ff9c",
    "#9cff9c", "#9cffdb", "#9cffff", "#9cd3ff", "#9c9cff", "#dc9cff", "#ff9cff", "#ff94d3",
    "#000000", "#131313", "#282828", "#363636", "#4d4d4d", "#656565", "#818181", "#9f9f9f",
    "#bcbcbc", "#e2e2e2", "#ffffff",
)
#: The colour number that means "the client's default colour".
DEFAULT_COLOUR = 99

#: Extended colours that repeat one of the 16 common ones (or nearly: 56 is #00ff00, 9 is
#: #00fc00): never sent, so that a client knowing only the 16 shows the colour too.
_TWINS = frozenset({52, 54, 56, 58, 60, 62, 88, 98})
_CANDIDATES = tuple((index, int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16))
                    for index, c in enumerate(PALETTE) if index not in _TWINS)


def colour_of(number: str | None) -> str | None:
    """The `#rrggbb` of an mIRC colour number (one or two digits); None for 99 (default)."""
    if number is None:
        return None
    index = int(number)
    return PALETTE[index] if index < len(PALETTE) else None


def _nearest(r: int, g: int, b: int) -> int:
    """The candidate colour nearest to (r, g, b): a weighted RGB distance ("redmean"), the
    lower number where two are as near."""
    best, best_distance = 0, -1.0
    for index, pr, pg, pb in _CANDIDATES:
        mean = (r + pr) / 2
        distance = ((2 + mean / 256) * (r - pr) ** 2 + 4 * (g - pg) ** 2
                    + (2 + (255 - mean) / 256) * (b - pb) ** 2)
        if best_distance < 0 or distance < best_distance:
            best, best_distance = index, distance
    return best


#: The nearest colour of each mIRC colour, itself for all but the twins.
_EXACT = {colour: _nearest(int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
          for colour in dict.fromkeys(PALETTE)}


@functools.cache
def _nearest_in_cell(r: int, g: int, b: int) -> int:
    """The nearest colour of the middle of a 16×16×16 cell of RGB: at most 4096 cells, so
    the cache stays bounded and filling all of it (a hostile text of thousands of colours)
    costs about 0.15 s of CPU once, not seconds on the event loop."""
    return _nearest(r * 16 + 8, g * 16 + 8, b * 16 + 8)


def nearest_colour(colour: str) -> int:
    """The number of the mIRC colour nearest to `#rrggbb`, out of the 99 less the twins of
    common ones. An mIRC colour gives itself (a twin its common one), so sending a received
    colour again keeps it; another colour is placed in its cell of the RGB cube (16 levels a
    channel apart at most; the 91 colours are far coarser than that)."""
    exact = _EXACT.get(colour)
    if exact is not None:
        return exact
    return _nearest_in_cell(int(colour[1:3], 16) >> 4, int(colour[3:5], 16) >> 4,
                            int(colour[5:7], 16) >> 4)


_CODE_BIT = {BOLD: 1, ITALIC: 2, UNDERLINE: 4, STRIKE: 8, MONO: 16}
#: What a run of parsed text carries: flag bits, foreground, background.
_Style = tuple[int, str | None, str | None]


def _segment(text: str, style: _Style) -> Segment:
    bits, fg, bg = style
    return Segment(text, bool(bits & 1), bool(bits & 2), bool(bits & 4), bool(bits & 8),
                   bool(bits & 16), color=fg, background=bg)


def parse(text: str) -> RichText:
    """Received IRC text (formatting codes and all) as RichText; linear in the text, and never
    raises: a code it does not know is dropped."""
    if not _CONTROL.search(text):
        return RichText.plain_text(text)
    runs: list[tuple[list[str], _Style]] = []
    bits, fg, bg = 0, None, None
    pos = 0

    def add(piece: str) -> None:
        style = (bits, fg, bg)
        if runs and runs[-1][1] == style:
            runs[-1][0].append(piece)
        else:
            runs.append(([piece], style))

    for match in _TOKENS.finditer(text):
        start = match.start()
        if start > pos:
            add(text[pos:start])
        pos = match.end()
        code = text[start]
        if code in _CODE_BIT:
            bits ^= _CODE_BIT[code]
        elif code == COLOUR:
            fore, back = match.group(1), match.group(2)
            if fore is None:
                fg = bg = None
            else:
                fg = colour_of(fore)
                if back is not None:
                    bg = colour_of(back)
        elif code == HEX_COLOUR:
            fore, back = match.group(3), match.group(4)
            if fore is None:
                fg = bg = None
            else:
                fg = "#" + fore.lower()
                if back is not None:
                    bg = "#" + back.lower()
        elif code == RESET:
            bits, fg, bg = 0, None, None
    if pos < len(text):
        add(text[pos:])
    return RichText([_segment("".join(parts), style) for parts, style in runs])


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


def _colour_code(fore: int | None, back: int | None, body: str) -> str:
    """The \\x03 code setting these colour numbers before `body` (two digits each, so a digit
    starting the body stays text; `,99` where the body starts with a comma and a digit)."""
    code = COLOUR + (f"{fore:02d}" if fore is not None else f"{DEFAULT_COLOUR}")
    if back is not None:
        code += f",{back:02d}"
    elif len(body) > 1 and body[0] == "," and body[1].isdigit():
        code += f",{DEFAULT_COLOUR}"
    return code


def render(text: RichText, mention: Callable[[Segment], str] | None = None) -> str:
    """RichText as IRC text with formatting codes. Links become `text <url>`, code and
    preformatted text monospace, colours the nearest mIRC colours; `mention` names a
    mentioned user (default: the segment's text). Control characters inside the text are
    dropped, so nothing can forge a code. Codes are only written where the formatting
    changes, before text."""
    out: list[str] = []
    state = 0
    fore: int | None = None
    back: int | None = None
    for seg in text.segments:
        body = shown(seg, mention)
        if not body:
            continue
        wanted = (seg.bold | seg.italic << 1 | seg.underline << 2 | seg.strike << 3
                  | (seg.code or seg.pre) << 4)
        want_fore = nearest_colour(seg.color) if seg.color else None
        want_back = nearest_colour(seg.background) if seg.background else None
        if (fore is not None and want_fore is None) or (back is not None and want_back is None):
            if want_fore is None and want_back is None and not body[0].isdigit():
                out.append(COLOUR)            # colours off, nothing else
            else:
                out.append(RESET)             # everything off; what stays is set again below
                state = 0
            fore = back = None
        if wanted != state:
            changed = wanted ^ state
            out.extend(code for code, bit in _CODE_BIT.items() if changed & bit)
            state = wanted
        if (want_fore, want_back) != (fore, back):
            out.append(_colour_code(want_fore, want_back, body))
            fore, back = want_fore, want_back
        out.append(body)
    return "".join(out)


def _trim_end(text: RichText) -> RichText:
    """`text` without the white space it ends with (that of a line break split at)."""
    segments = list(text.segments)
    changed = False
    while segments:
        last = segments[-1]
        if last.link or last.mention is not None:
            break
        kept = last.text.rstrip()
        if kept == last.text:
            break
        changed = True
        if kept:
            segments[-1] = last.with_text(kept)
            break
        segments.pop()
    return RichText(segments) if changed else text


def render_line(text: RichText, mention: Callable[[Segment], str] | None = None) -> str:
    """`render` for one IRC line: white space it ends with (where a longer text was split)
    is left out, so a line never ends with a space or with a code that formats nothing."""
    return render(_trim_end(text), mention)


def _tick(seg: Segment) -> Segment:
    """A backtick with the look of `seg` (no link, no mention, not monospace)."""
    return Segment("`", seg.bold, seg.italic, seg.underline, seg.strike, color=seg.color,
                   background=seg.background)


def without_monospace(text: RichText) -> RichText:
    """`text` as IRC clients without monospace show it well: inline code between backticks
    (`` `x = 1` ``), preformatted text as it is (its lines are lines of their own on IRC);
    neither marked monospace. Linear."""
    out: list[Segment] = []
    last_code: Segment | None = None  # the code segment before, while inside inline code
    for seg in text.segments:
        inline = seg.code and not seg.pre
        if last_code is not None and not inline:
            out.append(_tick(last_code))
            last_code = None
        if not (seg.code or seg.pre):
            out.append(seg)
            continue
        if inline and last_code is None:
            out.append(_tick(seg))
        out.append(Segment(seg.text, seg.bold, seg.italic, seg.underline, seg.strike, False,
                           False, seg.link, seg.mention, seg.color, seg.background))
        if inline:
            last_code = seg
    if last_code is not None:
        out.append(_tick(last_code))
    return RichText(out)


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
                   seg.link, mention if mention is not None else seg.mention, seg.color,
                   seg.background)


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


__all__ = ["DEFAULT_COLOUR", "PALETTE", "add_mentions", "clean", "colour_of", "coloured",
           "nearest_colour", "nick_colour", "parse", "render", "render_line", "shown",
           "without_monospace"]
