"""Formatted text: a RichText is an immutable sequence of Segments.

Plugs convert their network's format (mIRC codes, HTML) to and from RichText, so it offers
what they need: plain text, slicing by character, lines, normalising, and splitting into
chunks that fit a byte budget without breaking a character or losing formatting.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .model import User

_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_FLAGS = ("bold", "italic", "underline", "strike", "code", "pre")


def _colour(value: str | None) -> str | None:
    """A colour as ``#rrggbb`` in lower case (None for none); ValueError for anything else."""
    if value is None:
        return None
    if not (isinstance(value, str) and _COLOUR.fullmatch(value)):
        raise ValueError(f"a colour is #rrggbb, got {value!r}")
    return value.lower()


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@attrs.frozen
class Segment:
    """A run of text with one set of formatting; `link` is a URL, `mention` a User;
    `color` and `background` (since 0.2.4) are ``#rrggbb`` colours of the text and behind it."""

    text: str
    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    code: bool = False
    pre: bool = False
    link: str | None = None
    mention: User | None = None
    color: str | None = attrs.field(default=None, converter=_colour)
    background: str | None = attrs.field(default=None, converter=_colour)

    def same_format(self, other: Segment) -> bool:
        """True when `other` carries exactly this segment's formatting."""
        return (
            all(getattr(self, f) == getattr(other, f) for f in _FLAGS)
            and self.link == other.link
            and self.mention == other.mention
            and self.color == other.color
            and self.background == other.background
        )

    def with_text(self, text: str) -> Segment:
        """The same formatting around other text."""
        return Segment(text, self.bold, self.italic, self.underline, self.strike, self.code,
                       self.pre, self.link, self.mention, self.color, self.background)

    @property
    def flags(self) -> frozenset[str]:
        """Names of the boolean formats set on this segment."""
        return frozenset(f for f in _FLAGS if getattr(self, f))


class RichText:
    """An immutable list of Segments; indexing and slicing count characters of plain text."""

    __slots__ = ("_segments", "_plain")

    def __init__(self, segments: Iterable[Segment | str] = ()) -> None:
        segs = tuple(Segment(s) if isinstance(s, str) else s for s in segments)
        for seg in segs:
            if type(seg) is not Segment and not isinstance(seg, Segment):
                raise TypeError(f"RichText takes Segments or str, not {type(seg).__name__}")
        self._segments = segs
        self._plain: str | None = None

    @classmethod
    def plain_text(cls, text: str) -> RichText:
        """RichText of one unformatted segment."""
        made = cls.__new__(cls)  # what __init__ would make, without checking its own segment
        made._segments = (Segment(text),) if text else ()
        made._plain = text
        return made

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self._segments

    @property
    def plain(self) -> str:
        """The text without any formatting."""
        if self._plain is None:
            self._plain = "".join(s.text for s in self._segments)
        return self._plain

    def __str__(self) -> str:
        return self.plain

    def __repr__(self) -> str:
        return f"RichText({list(self._segments)!r})"

    def __len__(self) -> int:
        return len(self.plain)

    def __bool__(self) -> bool:
        return bool(self.plain)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RichText):
            return self.normalise()._segments == other.normalise()._segments
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.normalise()._segments)

    def __add__(self, other: RichText | Segment | str) -> RichText:
        if isinstance(other, RichText):
            return RichText(self._segments + other._segments)
        if isinstance(other, (Segment, str)):
            return RichText(self._segments + (Segment(other) if isinstance(other, str) else other,))
        return NotImplemented

    def __radd__(self, other: Segment | str) -> RichText:
        if isinstance(other, (Segment, str)):
            return RichText([other]) + self
        return NotImplemented

    def __getitem__(self, index: int | slice) -> RichText:
        """Characters of the plain text, keeping each character's formatting."""
        length = len(self)
        if isinstance(index, int):
            if index < 0:
                index += length
            if not 0 <= index < length:
                raise IndexError("RichText index out of range")
            return self[index : index + 1]
        start, stop, step = index.indices(length)
        if step != 1:
            raise ValueError("RichText slices take no step")
        if start == 0 and stop >= length:
            return self
        out: list[Segment] = []
        pos = 0
        for seg in self._segments:
            end = pos + len(seg.text)
            if end > start and pos < stop:
                if pos >= start and end <= stop:
                    out.append(seg)
                else:
                    out.append(seg.with_text(seg.text[max(start - pos, 0) : stop - pos]))
            pos = end
            if pos >= stop:
                break
        return RichText(out)

    def normalise(self) -> RichText:
        """Drop empty segments and merge neighbours that carry the same formatting."""
        out: list[Segment] = []
        for seg in self._segments:
            if not seg.text:
                continue
            if out and out[-1].same_format(seg):
                out[-1] = out[-1].with_text(out[-1].text + seg.text)
            else:
                out.append(seg)
        return RichText(out)

    def lines(self) -> list[RichText]:
        """Split on line breaks (\\r\\n, \\n or \\r); the breaks themselves are dropped."""
        result: list[RichText] = []
        pos = 0
        for brk in _LINE_BREAK.finditer(self.plain):
            result.append(self[pos : brk.start()])
            pos = brk.end()
        result.append(self[pos:])
        return result

    def strip(self) -> RichText:
        """Remove leading and trailing white space, keeping formatting of what remains."""
        plain = self.plain
        start = len(plain) - len(plain.lstrip())
        stop = len(plain.rstrip())
        return self[start:stop] if stop > start else RichText()

    def split_bytes(
        self,
        limit: int,
        encoding: str = "utf-8",
        *,
        measure: Callable[[RichText], int] | None = None,
        words: bool = True,
        keep_whole: Callable[[Segment], bool] | None = None,
    ) -> list[RichText]:
        """Split into chunks each measuring at most `limit` bytes; never raises.

        By default a chunk's size is its plain text encoded in `encoding`; a plug whose format
        adds bytes (formatting codes, a link's URL) passes `measure`, which is only ever given
        chunk-sized pieces. Chunks break after white space where a chunk holds any, never
        inside a character (nor before a word too long for any chunk, which is broken
        instead), and never inside a segment for which `keep_whole` is true unless that
        segment alone is larger than `limit`. Joined back they give exactly this text with
        the same formatting (empty segments dropped).

        A character that alone measures more than `limit` (any character when `limit` < 1)
        becomes a chunk of its own: it is the only kind of chunk that can exceed `limit`.
        Time is O(n log n) in the length of the text: a chunk's end is found by probing pieces
        at most about twice that chunk's length, growing then halving.
        """
        segs = [s for s in self._segments if s.text]
        plain = "".join(s.text for s in segs)
        total = len(plain)
        if not total:
            return []
        starts = list(accumulate((len(s.text) for s in segs), initial=0))

        def piece(begin: int, stop: int) -> RichText:
            index = bisect_right(starts, begin) - 1
            out: list[Segment] = []
            while index < len(segs) and starts[index] < stop:
                seg, first, last = segs[index], starts[index], starts[index + 1]
                if begin <= first and last <= stop:
                    out.append(seg)
                else:
                    out.append(seg.with_text(seg.text[max(begin - first, 0) : stop - first]))
                index += 1
            return RichText(out)

        if measure is None:
            offsets = list(accumulate((len(ch.encode(encoding, "replace")) for ch in plain),
                                      initial=0))

            def fits(begin: int, stop: int) -> bool:
                return offsets[stop] - offsets[begin] <= limit
        else:
            def fits(begin: int, stop: int) -> bool:
                return measure(piece(begin, stop)) <= limit

        def whole_around(pos: int) -> tuple[int, int] | None:
            """(start, end) of the kept-whole segment `pos` is strictly inside, if any."""
            if keep_whole is None:
                return None
            index = bisect_right(starts, pos) - 1
            if index < len(segs) and starts[index] < pos and keep_whole(segs[index]):
                return starts[index], starts[index + 1]
            return None

        def word_stop(begin: int, stop: int) -> int | None:
            """The end of the last white space in [begin, stop) not inside a kept segment."""
            high = stop
            while True:
                space = max(plain.rfind(" ", begin, high), plain.rfind("\t", begin, high))
                if space < begin:
                    return None
                inside = whole_around(space + 1)
                if inside is None:
                    return space + 1
                high = inside[0]

        def longer_than_a_chunk(begin: int, found: int, stop: int) -> bool:
            """True if the word cut at `stop` (it starts at `found`) would not fit in a chunk
            of its own either (it runs on for twice this chunk, or measures too much): then
            breaking before it only wastes a line."""
            cap = min(total, found + 2 * (stop - begin) + 1)
            ends = [e for e in (plain.find(" ", stop, cap), plain.find("\t", stop, cap)) if e >= 0]
            if not ends and cap < total:
                return True
            return not fits(found, min(ends) if ends else total)

        chunks: list[RichText] = []
        begin = 0
        while begin < total:
            low = begin  # the longest known fitting end
            index = bisect_right(starts, begin) - 1
            if keep_whole is not None and keep_whole(segs[index]) and fits(begin, starts[index + 1]):
                low = starts[index + 1]
            elif fits(begin, begin + 1):
                low = begin + 1
            if low == begin:
                stop = begin + 1  # one character larger than the limit: alone on its line
            else:
                step, high = max(1, low - begin), None
                while low < total:
                    probe = min(total, low + step)
                    if fits(begin, probe):
                        low, step = probe, step * 2
                    else:
                        high = probe
                        break
                if high is not None:
                    while high - low > 1:
                        mid = (low + high) // 2
                        if fits(begin, mid):
                            low = mid
                        else:
                            high = mid
                stop = low
                if stop < total:
                    inside = whole_around(stop)
                    if inside is not None and inside[0] > begin and fits(begin, inside[0]):
                        stop = inside[0]
                    if words:
                        found = word_stop(begin, stop)
                        if found is not None and (found == stop or (
                                fits(begin, found) and not longer_than_a_chunk(begin, found, stop))):
                            stop = found
            chunks.append(piece(begin, stop))
            begin = stop
        return chunks

    def map_segments(self, fn: Callable[[Segment], Segment]) -> RichText:
        return RichText(fn(s) for s in self._segments)

    @classmethod
    def join(cls, parts: Iterable[RichText | str], sep: RichText | str = "") -> RichText:
        out = RichText()
        sep_rt = sep if isinstance(sep, RichText) else RichText.plain_text(sep)
        for i, part in enumerate(parts):
            if i:
                out = out + sep_rt
            out = out + (part if isinstance(part, RichText) else RichText.plain_text(part))
        return out


def as_richtext(value: Any) -> RichText | None:
    """Accept RichText, str or None where a message text is expected."""
    if value is None or isinstance(value, RichText):
        return value
    if isinstance(value, str):
        return RichText.plain_text(value)
    raise TypeError(f"message text must be RichText or str, not {type(value).__name__}")
