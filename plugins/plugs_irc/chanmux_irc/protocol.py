"""IRC protocol lines: parsing, safe formatting, IRCv3 tag escaping, case mapping, CTCP.

Parsing never raises: a line a server should never have sent parses to whatever it holds, or
to None when it has no command at all. Formatting refuses anything that could smuggle a second
command onto the wire (CR, LF, NUL anywhere; spaces or a leading colon in a middle parameter);
`fit_line` also cuts the last parameter, on a character boundary, so the line fits its length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

_TAG_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_COMMAND = re.compile(r"[A-Za-z]+|[0-9]{3}")
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")
_UNSAFE = re.compile(r"[\r\n\0]")
#: Bytes a line may hold without its CRLF when the server announces no LINELEN (RFC 1459).
LINE_BYTES = 510
#: Bytes the tags of a line a client sends may take, with their `@` and the space after them.
CLIENT_TAG_BYTES = 4096


class UnsafeLine(ValueError):
    """A line could not be formatted without changing its meaning on the wire."""


def escape_tag_value(value: str) -> str:
    """Encode a tag value: `;`, space, backslash, CR and LF become escapes."""
    if not any(ch in value for ch in _TAG_ESCAPE):
        return value
    return "".join(_TAG_ESCAPE.get(ch, ch) for ch in value)


def unescape_tag_value(value: str) -> str:
    """Decode a tag value; an unknown escape stands for its character, a lone trailing
    backslash is dropped."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt is not None:
                out.append(_TAG_UNESCAPE.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


@attrs.define(slots=True)
class Line:
    """One protocol line: `@tags :source COMMAND params...`."""

    command: str
    params: list[str] = attrs.field(factory=list)
    tags: dict[str, str] = attrs.field(factory=dict)
    source: str | None = None

    @property
    def nick(self) -> str | None:
        """The nick (or server name) of the source."""
        if not self.source:
            return None
        return self.source.split("!", 1)[0].split("@", 1)[0]

    @property
    def user(self) -> str | None:
        if not self.source or "!" not in self.source:
            return None
        return self.source.split("!", 1)[1].split("@", 1)[0]

    @property
    def host(self) -> str | None:
        if not self.source or "@" not in self.source:
            return None
        return self.source.rsplit("@", 1)[1]

    @property
    def from_user(self) -> bool:
        """True when the source looks like a person (nick!user@host), not a server."""
        return bool(self.source) and "!" in self.source  # type: ignore[operator]

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if -len(self.params) <= index < len(self.params) else default


def parse(raw: str) -> Line | None:
    """Parse one line (without or with its CRLF); None if it holds no command."""
    rest = raw.rstrip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_part, _, rest = rest[1:].partition(" ")
        for item in tag_part.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = unescape_tag_value(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if rest.startswith(":"):
        rest, trailing = "", rest[1:]
    else:
        head, sep, tail = rest.partition(" :")
        if sep:
            rest, trailing = head, tail
    words = [w for w in rest.split(" ") if w]
    if not words:
        return None
    command = words[0].upper()
    if not _COMMAND.fullmatch(command):
        return None
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Line(command=command, params=params, tags=tags, source=source or None)


def format_line(command: str, *params: str, tags: dict[str, str] | None = None,
                trailing: bool = False) -> str:
    """A wire line (without CRLF); UnsafeLine if any part could break out of its place.
    `trailing` marks the last parameter with a colon even when it needs none."""
    if not _COMMAND.fullmatch(command):
        raise UnsafeLine(f"not an IRC command: {command!r}")
    parts: list[str] = []
    if tags:
        items = []
        for key, value in tags.items():
            if not _TAG_KEY.fullmatch(key):
                raise UnsafeLine(f"not a valid tag name: {key!r}")
            if "\0" in value:
                raise UnsafeLine(f"NUL in the value of tag {key}")
            items.append(f"{key}={escape_tag_value(value)}" if value else key)
        parts.append("@" + ";".join(items))
    parts.append(command.upper())
    for index, param in enumerate(params):
        if _UNSAFE.search(param):
            raise UnsafeLine(f"CR, LF or NUL in a parameter of {command}: {param!r}")
        last = index == len(params) - 1
        if not last:
            if not param or " " in param or param.startswith(":"):
                raise UnsafeLine(f"not a valid middle parameter of {command}: {param!r}")
            parts.append(param)
        elif trailing or not param or " " in param or param.startswith(":"):
            parts.append(":" + param)
        else:
            parts.append(param)
    return " ".join(parts)


def cut_bytes(text: str, size: int, encoding: str = "utf-8") -> str:
    """The longest start of `text` that takes at most `size` bytes in `encoding`, cut on a
    character boundary."""
    if len(text.encode(encoding, "replace")) <= size:
        return text
    low, high = 0, min(len(text), max(size, 0))
    while low < high:
        mid = (low + high + 1) // 2
        if len(text[:mid].encode(encoding, "replace")) <= size:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def sanitise(text: str) -> str:
    """`text` without CR, LF and NUL, so it can be a parameter (a server's odd token)."""
    return _UNSAFE.sub("", text) if _UNSAFE.search(text) else text


def shorten(text: str, size: int = 200) -> str:
    """A server's words fit for one log line: at most `size` characters, `…` where cut."""
    return text if len(text) <= size else text[: size - 1] + "…"


def fit_line(command: str, *params: str, limit: int = LINE_BYTES, encoding: str = "utf-8",
             tags: dict[str, str] | None = None, trailing: bool = False) -> str:
    """`format_line`, with the last parameter cut on a character boundary so that the line
    without its tags takes at most `limit` bytes, and its tags at most CLIENT_TAG_BYTES.
    UnsafeLine if the line cannot fit even with an empty last parameter, or its tags cannot."""
    line = format_line(command, *params, trailing=trailing)
    if len(line.encode(encoding, "replace")) > limit:
        if not params:
            raise UnsafeLine(f"{command} does not fit in {limit} bytes")
        head = format_line(command, *params[:-1], "", trailing=True)
        room = limit - len(head.encode(encoding, "replace"))
        if room < 0:
            raise UnsafeLine(f"{command} {params[0][:40]!r}... does not fit in {limit} bytes")
        line = head + cut_bytes(params[-1], room, encoding)
    if tags:
        tag_part = format_line(command, tags=tags).rpartition(" ")[0]
        if len(tag_part.encode(encoding, "replace")) + 1 > CLIENT_TAG_BYTES:
            raise UnsafeLine(f"the tags of {command} take more than {CLIENT_TAG_BYTES} bytes")
        line = f"{tag_part} {line}"
    return line


def join_lines(channels: Iterable[str], keys: dict[str, str] | None = None,
               limit: int = LINE_BYTES, encoding: str = "utf-8") -> tuple[list[str], list[str]]:
    """JOIN lines for `channels` (those with a key in `keys` first, as keys pair up with the
    first channels of a line), each at most `limit` bytes; and the channels that cannot fit
    in a line of their own."""
    keys = keys or {}
    names = list(channels)
    keyed = [c for c in names if keys.get(c)]
    plain = [c for c in names if not keys.get(c)]
    lines: list[str] = []
    too_long: list[str] = []

    def size(batch: list[str], with_keys: bool) -> int:
        words = ["JOIN", ",".join(batch)] + ([",".join(keys[c] for c in batch)] if with_keys else [])
        return len(" ".join(words).encode(encoding, "replace")) + 1  # room for a colon

    for group, with_keys in ((keyed, True), (plain, False)):
        batch: list[str] = []
        for chan in group:
            if size([chan], with_keys) > limit:
                too_long.append(chan)
            elif batch and size([*batch, chan], with_keys) > limit:
                lines.append(_join(batch, keys if with_keys else None))
                batch = [chan]
            else:
                batch.append(chan)
        if batch:
            lines.append(_join(batch, keys if with_keys else None))
    return lines, too_long


def _join(batch: list[str], keys: dict[str, str] | None) -> str:
    params = [",".join(batch)]
    if keys is not None:
        params.append(",".join(keys[c] for c in batch))
    return format_line("JOIN", *params)


def is_safe_target(target: str) -> bool:
    """True if `target` can be a PRIVMSG target: no space, comma, control characters."""
    return bool(target) and not any(ch in target for ch in " ,:\x07") and not re.search(
        r"[\x00-\x1f]", target) and not target.startswith(":")


# -- case mapping ----------------------------------------------------------------------------

_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")
_STRICT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\", "abcdefghijklmnopqrstuvwxyz{}|")
_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_table(mapping: str = "rfc1459") -> dict[int, int]:
    """The translation table of a CASEMAPPING (unknown mappings fold like rfc1459)."""
    return {"ascii": _ASCII, "strict-rfc1459": _STRICT}.get(mapping, _RFC1459)


def casefold(text: str, mapping: str = "rfc1459") -> str:
    """Fold a nick or channel name by the server's CASEMAPPING."""
    return text.translate(fold_table(mapping))


# -- CTCP ------------------------------------------------------------------------------------


def split_ctcp(text: str) -> tuple[str, str] | None:
    """(command, argument) if `text` is a CTCP message (`\\x01CMD arg\\x01`), else None."""
    if len(text) < 2 or not text.startswith("\x01"):
        return None
    body = text[1:]
    if body.endswith("\x01"):
        body = body[:-1]
    command, _, arg = body.partition(" ")
    if not command:
        return None
    return command.upper(), arg


def ctcp(command: str, arg: str = "") -> str:
    return f"\x01{command} {arg}\x01" if arg else f"\x01{command}\x01"


def ctcp_reply(command: str, answer: str, room: int, encoding: str = "utf-8") -> str | None:
    """The text of a NOTICE answering a CTCP request, `\\x01CMD answer\\x01`, with the answer
    cleaned (no CR, LF, NUL or \\x01) and cut to fit `room` bytes; None if nothing is left."""
    answer = sanitise(answer).replace("\x01", "")
    answer = cut_bytes(answer, room - len(f"\x01{command} \x01".encode(encoding, "replace")),
                       encoding)
    return f"\x01{command} {answer}\x01" if answer else None


# -- ISUPPORT --------------------------------------------------------------------------------


@attrs.define
class ServerInfo:
    """What the server announced in RPL_ISUPPORT (005), with the defaults of RFC 2812."""

    tokens: dict[str, str | None] = attrs.field(factory=dict)
    table: dict[int, int] = attrs.field(factory=lambda: fold_table("rfc1459"))

    def fold(self, name: str) -> str:
        """`name` folded by the server's CASEMAPPING."""
        return name.translate(self.table)

    def update(self, params: Iterable[str]) -> None:
        for token in params:
            if token.startswith("-"):
                self.tokens.pop(token[1:], None)
            else:
                key, eq, value = token.partition("=")
                if key:
                    self.tokens[key.upper()] = value if eq else None
        self.table = fold_table(self.casemapping)

    def _int(self, key: str, default: int) -> int:
        value = self.tokens.get(key)
        try:
            return int(value) if value else default
        except ValueError:
            return default

    @property
    def chantypes(self) -> str:
        value = self.tokens.get("CHANTYPES")
        if "CHANTYPES" in self.tokens and value is None:
            return ""
        return value if value is not None else "#&"

    @property
    def casemapping(self) -> str:
        return (self.tokens.get("CASEMAPPING") or "rfc1459").lower()

    @property
    def nicklen(self) -> int:
        return self._int("NICKLEN", 9)

    @property
    def linelen(self) -> int:
        return max(512, self._int("LINELEN", 512))

    @property
    def hostlen(self) -> int:
        return self._int("HOSTLEN", 63)

    @property
    def userlen(self) -> int:
        return self._int("USERLEN", 10)

    @property
    def statusmsg(self) -> str:
        return self.tokens.get("STATUSMSG") or ""

    @property
    def prefix_chars(self) -> str:
        """Membership prefix characters (`@+` ...), from PREFIX=(ov)@+."""
        value = self.tokens.get("PREFIX")
        if value is None:
            return "@+" if "PREFIX" not in self.tokens else ""
        _, _, chars = value.partition(")")
        return chars

    @property
    def monitor(self) -> bool:
        return "MONITOR" in self.tokens

    def is_channel(self, target: str) -> bool:
        return bool(target) and target[0] in self.chantypes


__all__ = ["CLIENT_TAG_BYTES", "LINE_BYTES", "Line", "ServerInfo", "UnsafeLine", "casefold", "ctcp",
           "ctcp_reply", "cut_bytes", "escape_tag_value", "fit_line", "format_line", "is_safe_target",
           "join_lines", "parse", "sanitise", "shorten", "split_ctcp", "unescape_tag_value"]
