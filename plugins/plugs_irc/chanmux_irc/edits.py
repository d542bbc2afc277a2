"""Edits on a network that cannot edit: a compact `s/old/new/` correction where it is short
and unambiguous, the way people correct themselves on IRC."""

from __future__ import annotations

import re

_TOKENS = re.compile(r"\s+|[^\s]+")


def compact_correction(old: str, new: str) -> str | None:
    """`s/old/new/` naming the words that changed, or None when the change is not one small
    region, is ambiguous in the old text, spans lines, or would not be shorter than `new`."""
    if old == new or not old or not new or "\n" in old or "\n" in new:
        return None
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    old_mid, new_mid = a[start:len(a) - end], b[start:len(b) - end]
    while old_mid and old_mid[0].isspace() and new_mid and new_mid[0] == old_mid[0]:
        old_mid, new_mid, start = old_mid[1:], new_mid[1:], start + 1
    if not "".join(old_mid).strip():
        # Pure insertion: anchor it on the word before (or after) it.
        if start > 0 and not a[start - 1].isspace():
            old_mid, new_mid = [a[start - 1], *old_mid], [a[start - 1], *new_mid]
        elif start > 1:
            old_mid, new_mid = a[start - 2:start] + old_mid, a[start - 2:start] + new_mid
        elif end > 0:
            old_mid = old_mid + [a[len(a) - end]]
            new_mid = new_mid + [a[len(a) - end]]
        else:
            return None
    before, after = "".join(old_mid), "".join(new_mid)
    if not before.strip() or "/" in before or "/" in after:
        return None
    if old.count(before) != 1:
        return None
    correction = f"s/{before}/{after}/"
    if len(correction) >= len(new):
        return None
    return correction


__all__ = ["compact_correction"]
