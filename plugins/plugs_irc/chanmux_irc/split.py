"""Fitting text into IRC lines: the byte budget the server's own prefix leaves, and splitting
on word boundaries (never inside a character) with formatting carried onto every line."""

from __future__ import annotations

from collections.abc import Callable

from chanmux import RichText, Segment

from .formatting import render_line, shown

#: CTCP ACTION adds `\x01ACTION ` and `\x01` around the text.
ACTION_OVERHEAD = len("\x01ACTION \x01")


def relay_prefix(nick: str, user: str, host: str, command: str, target: str) -> str:
    """What the server puts before our text when it relays it: `:nick!user@host CMD target :`."""
    return f":{nick}!{user}@{host} {command} {target} :"


def text_budget(linelen: int, prefix: str, encoding: str = "utf-8", action: bool = False) -> int:
    """Bytes left for the text in a line of `linelen` bytes (CRLF included) after `prefix`."""
    return linelen - 2 - len(prefix.encode(encoding, "replace")) - (ACTION_OVERHEAD if action else 0)


def measure(encoding: str, mention: Callable[[Segment], str] | None = None) -> Callable[[RichText], int]:
    """Bytes a chunk takes on the wire once rendered with its formatting codes."""
    return lambda rt: len(render_line(rt, mention).encode(encoding, "replace"))


def _whole(seg: Segment) -> bool:
    """Links and mentions are shown whole (a piece of a link would repeat its URL)."""
    return bool(seg.link) or seg.mention is not None


def as_shown(text: RichText, budget: int, encoding: str = "utf-8",
             mention: Callable[[Segment], str] | None = None) -> RichText:
    """`text` with each link or mention that cannot fit in one line of `budget` bytes (and
    each link without text) replaced by what IRC shows for it (`text <url>`, the nick), as
    plain text with the same formatting: that can be broken across lines. Renders the same."""
    size = measure(encoding, mention)
    out: list[Segment] = []
    changed = False
    for seg in text.segments:
        if seg.link and not seg.text:
            seg, changed = seg.with_text(seg.link), True
        elif _whole(seg) and seg.text and size(RichText([seg])) > budget:
            seg = Segment(shown(seg, mention), seg.bold, seg.italic, seg.underline, seg.strike,
                          seg.code, seg.pre, color=seg.color, background=seg.background)
            changed = True
        out.append(seg)
    return RichText(out) if changed else text


def split(text: RichText, budget: int, encoding: str = "utf-8",
          mention: Callable[[Segment], str] | None = None) -> list[RichText]:
    """Chunks of `text` each rendering to at most `budget` bytes; never raises.

    Chunks break after white space where a chunk has any, never inside a character nor inside
    a link or mention that fits in a line; a longer link or mention is shown as plain
    `text <url>` (or the nick) broken across lines, like a word longer than a line. The only
    chunk that can exceed `budget` is a single character (with its formatting codes) larger
    than it. Joined, the chunks render as `text` does, and are `text` itself when every link
    and mention fits in a line. O(n log n) in the length of the text."""
    size = measure(encoding, mention)
    if size(text) <= budget:
        return [text]
    wire = as_shown(text, budget, encoding, mention)
    return wire.split_bytes(budget, encoding, measure=size, keep_whole=_whole) or [wire]


__all__ = ["ACTION_OVERHEAD", "as_shown", "measure", "relay_prefix", "split", "text_budget"]
