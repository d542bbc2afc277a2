"""Fitting text into IRC lines: the byte budget the server's own prefix leaves, and splitting
on word boundaries (never inside a character) with formatting carried onto every line."""

from __future__ import annotations

from collections.abc import Callable

from chanmux import RichText, Segment

from .formatting import render_line

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


def split(text: RichText, budget: int, encoding: str = "utf-8",
          mention: Callable[[Segment], str] | None = None) -> list[RichText]:
    """Chunks of `text` each rendering to at most `budget` bytes: broken after white space
    where a chunk has any, never inside a character; joined they give back `text`."""
    size = measure(encoding, mention)
    if size(text) <= budget:
        return [text]
    return text.split_bytes(max(budget, 16), encoding, measure=size)


__all__ = ["ACTION_OVERHEAD", "measure", "relay_prefix", "split", "text_budget"]
