"""A small, real IRC client on anyio that plays the "human" in chanmux's tests.

It speaks plain IRC (RFC 1459/2812) plus the IRCv3 bits tests need: message
tags, ``CAP LS 302``/``CAP REQ`` and SASL (PLAIN and EXTERNAL).  It works on
both the asyncio and the trio backends.

Nothing in here sleeps to synchronise: every wait is a wait for a received
line, bounded by ``anyio.fail_after``.

Usage::

    async with HumanIRC.connect("127.0.0.1", port, "alice") as alice:
        await alice.join("#test")
        await alice.privmsg("#test", "hello")
        line = await alice.wait_for(lambda l: l.command == "PRIVMSG")
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from anyio.abc import ByteStream

__all__ = [
    "ConnectionClosed",
    "HumanIRC",
    "IRCError",
    "Line",
    "Matcher",
    "RegistrationError",
    "SaslError",
    "escape_tag_value",
    "irc_lower",
    "make_ssl_context",
    "unescape_tag_value",
]

# ---------------------------------------------------------------------------
# Line parsing
# ---------------------------------------------------------------------------

_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}


def unescape_tag_value(value: str) -> str:
    """Decode an IRCv3 tag value (``\\:`` -> ``;``, ``\\s`` -> space, ...)."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 < len(value):
                nxt = value[i + 1]
                out.append(_TAG_UNESCAPE.get(nxt, nxt))
                i += 2
                continue
            # A lone trailing backslash is dropped.
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def escape_tag_value(value: str) -> str:
    """Encode a string as an IRCv3 tag value."""
    return "".join(_TAG_ESCAPE.get(ch, ch) for ch in value)


def irc_lower(text: str) -> str:
    """Case-fold with the rfc1459 casemapping (``[]\\~`` fold to ``{}|^``)."""
    return text.lower().translate(str.maketrans("[]\\~", "{}|^"))


@dataclass
class Line:
    """One parsed IRC protocol line."""

    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    prefix: str | None = None
    raw: str = ""

    @classmethod
    def parse(cls, raw: str) -> Line:
        """Parse ``[@tags] [:prefix] COMMAND params... [:trailing]``."""
        rest = raw.rstrip("\r\n")
        tags: dict[str, str] = {}
        if rest.startswith("@"):
            tag_part, _, rest = rest[1:].partition(" ")
            for item in tag_part.split(";"):
                if not item:
                    continue
                key, _, value = item.partition("=")
                tags[key] = unescape_tag_value(value)
            rest = rest.lstrip(" ")
        prefix = None
        if rest.startswith(":"):
            prefix, _, rest = rest[1:].partition(" ")
            rest = rest.lstrip(" ")
        trailing = None
        if " :" in rest:
            rest, _, trailing = rest.partition(" :")
        elif rest.startswith(":"):
            rest, trailing = "", rest[1:]
        words = [w for w in rest.split(" ") if w]
        command = words[0].upper() if words else ""
        params = words[1:]
        if trailing is not None:
            params.append(trailing)
        return cls(command=command, params=params, tags=tags, prefix=prefix, raw=raw.rstrip("\r\n"))

    @property
    def nick(self) -> str | None:
        """Nick (or server name) part of the prefix, if any."""
        if self.prefix is None:
            return None
        return self.prefix.split("!", 1)[0].split("@", 1)[0]

    @property
    def user(self) -> str | None:
        """The ``user`` part of a ``nick!user@host`` prefix."""
        if self.prefix is None or "!" not in self.prefix:
            return None
        return self.prefix.split("!", 1)[1].split("@", 1)[0]

    @property
    def host(self) -> str | None:
        """The ``host`` part of a ``nick!user@host`` prefix."""
        if self.prefix is None or "@" not in self.prefix:
            return None
        return self.prefix.rsplit("@", 1)[1]

    @property
    def target(self) -> str:
        """The first parameter (message target, numeric's client nick, ...)."""
        return self.params[0] if self.params else ""

    @property
    def text(self) -> str:
        """The last parameter (message text for PRIVMSG/NOTICE)."""
        return self.params[-1] if self.params else ""

    def format(self) -> str:
        """Serialise back to a wire line (without CRLF)."""
        parts: list[str] = []
        if self.tags:
            parts.append(
                "@"
                + ";".join(k if v == "" else f"{k}={escape_tag_value(v)}" for k, v in self.tags.items())
            )
        if self.prefix:
            parts.append(":" + self.prefix)
        parts.append(self.command)
        params = list(self.params)
        if params:
            last = params.pop()
            parts.extend(params)
            parts.append(":" + last if (not last or " " in last or last.startswith(":")) else last)
        return " ".join(parts)

    def __str__(self) -> str:
        return self.raw or self.format()


Matcher = str | Callable[[Line], bool]


def _as_predicate(match: Matcher) -> Callable[[Line], bool]:
    if isinstance(match, str):
        wanted = match.upper()
        return lambda line: line.command == wanted
    return match


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class IRCError(Exception):
    """Base class for client errors."""


class ConnectionClosed(IRCError):
    """The server closed the connection while we were waiting for a line."""


class RegistrationError(IRCError):
    """Connection registration (NICK/USER/CAP) failed."""


class SaslError(IRCError):
    """SASL authentication failed (904/905/906/908 or missing cap)."""


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


def make_ssl_context(
    ca_file: str | Path | None = None,
    client_cert: tuple[str | Path, str | Path] | str | Path | None = None,
) -> ssl.SSLContext:
    """A verifying client TLS context trusting ``ca_file`` (never disables checks).

    ``client_cert`` is ``(cert_file, key_file)`` or one PEM holding both.
    """
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if client_cert is not None:
        if isinstance(client_cert, tuple):
            ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        else:
            ctx.load_cert_chain(str(client_cert))
    return ctx


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

_REGISTRATION_ERRORS = {"432", "433", "436", "437", "464", "465", "484"}
_SASL_FAIL = {"902", "904", "905", "906", "907", "908"}
_JOIN_ERRORS = {"403", "405", "437", "471", "473", "474", "475", "476", "477", "489", "520"}


class HumanIRC:
    """A connected, registered IRC client.

    ``lines`` holds every line received so far.  :meth:`wait_for` scans
    forward from a cursor: by default it starts right after the line it
    returned last time, so successive waits see successive events.
    """

    def __init__(self, stream: ByteStream, nick: str, *, encoding: str = "utf-8") -> None:
        self._stream = stream
        self.nick = nick
        self.encoding = encoding
        self.lines: list[Line] = []
        self.sent: list[str] = []
        self.offered_caps: dict[str, str | None] = {}
        self.enabled_caps: set[str] = set()
        self.isupport: dict[str, str | None] = {}
        self.account: str | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._cursor = 0
        self._send_lock = anyio.Lock()
        self._changed = anyio.Event()

    @property
    def stream(self) -> ByteStream:
        """The underlying anyio stream (e.g. for ``TLSAttribute.ssl_object``)."""
        return self._stream

    # -- connection --------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        host: str,
        port: int,
        nick: str,
        *,
        tls: bool = False,
        ca_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_cert: tuple[str | Path, str | Path] | str | Path | None = None,
        caps: Iterable[str] = (),
        sasl: tuple[str, str] | Literal["EXTERNAL"] | None = None,
        username: str | None = None,
        realname: str | None = None,
        password: str | None = None,
        timeout: float = 20.0,
        quit_message: str = "bye",
    ) -> AsyncIterator[HumanIRC]:
        """Connect, register (CAP, optional SASL, NICK/USER, wait for 001) and yield the client.

        ``caps`` must all be offered by the server (else :class:`RegistrationError`).
        ``sasl`` is ``(account, password)`` for PLAIN or ``"EXTERNAL"`` (needs a
        ``client_cert`` over TLS).  On exit the client sends QUIT and disconnects.
        """
        if tls and ssl_context is None:
            ssl_context = make_ssl_context(ca_file, client_cert)
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(
                host, port, tls=tls, ssl_context=ssl_context if tls else None,
                tls_standard_compatible=False,
            )
        body_error: Exception | None = None
        async with stream:
            client = cls(stream, nick)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._read_loop)
                try:
                    await client._register(
                        caps=list(caps), sasl=sasl, username=username or "human",
                        realname=realname or f"chanmux test human {nick}", password=password,
                        timeout=timeout,
                    )
                    yield client
                except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                    body_error = exc
                finally:
                    if not client.closed:
                        with anyio.move_on_after(2, shield=True):
                            try:
                                await client.send_raw(f"QUIT :{quit_message}")
                                await client.wait_closed(timeout=2)
                            except (IRCError, anyio.BrokenResourceError,
                                    anyio.ClosedResourceError, OSError, TimeoutError):
                                pass
                    tg.cancel_scope.cancel()
        if body_error is not None:
            raise body_error

    async def _read_loop(self) -> None:
        """Receive bytes, split lines, answer PINGs, wake waiters."""
        buffer = b""
        try:
            while True:
                try:
                    chunk = await self._stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                        OSError, ssl.SSLError) as exc:
                    self.close_reason = f"connection closed ({type(exc).__name__}: {exc})"
                    return
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    raw = raw.rstrip(b"\r")
                    if not raw:
                        continue
                    line = Line.parse(raw.decode(self.encoding, errors="replace"))
                    self._handle(line)
                    self.lines.append(line)
                    if line.command == "PING":
                        await self.send_raw(Line("PONG", list(line.params)).format())
                    self._notify()
        finally:
            self.closed = True
            self._notify()

    def _notify(self) -> None:
        event, self._changed = self._changed, anyio.Event()
        event.set()

    def _handle(self, line: Line) -> None:
        """Track state that the harness cares about (nick, caps, ISUPPORT, account)."""
        cmd = line.command
        if cmd == "NICK" and line.nick and irc_lower(line.nick) == irc_lower(self.nick) and line.params:
            self.nick = line.params[0]
        elif cmd == "001" and line.params:
            self.nick = line.params[0]
        elif cmd == "005":
            for token in line.params[1:-1]:
                if token.startswith("-"):
                    self.isupport.pop(token[1:], None)
                else:
                    key, eq, value = token.partition("=")
                    self.isupport[key] = value if eq else None
        elif cmd == "CAP" and len(line.params) >= 3:
            sub = line.params[1].upper()
            caps = line.params[-1].split()
            if sub in ("LS", "NEW"):
                for cap in caps:
                    name, eq, value = cap.partition("=")
                    self.offered_caps[name] = value if eq else None
            elif sub == "DEL":
                for cap in caps:
                    self.offered_caps.pop(cap, None)
                    self.enabled_caps.discard(cap)
            elif sub == "ACK":
                for cap in caps:
                    if cap.startswith("-"):
                        self.enabled_caps.discard(cap[1:])
                    else:
                        self.enabled_caps.add(cap)
        elif cmd == "900" and len(line.params) >= 3:
            self.account = line.params[2]
        elif cmd == "901":
            self.account = None
        elif cmd == "ERROR":
            self.close_reason = line.text

    # -- sending -----------------------------------------------------------

    async def send_raw(self, line: str) -> None:
        """Send one raw protocol line (CRLF is added)."""
        if "\r" in line or "\n" in line:
            raise ValueError("a raw IRC line must not contain CR or LF")
        async with self._send_lock:
            self.sent.append(line)
            await self._stream.send(line.encode(self.encoding) + b"\r\n")

    async def privmsg(self, target: str, text: str, *, tags: dict[str, str] | None = None) -> None:
        """Send a PRIVMSG (optionally with client tags, needs ``message-tags``)."""
        await self.send_raw(Line("PRIVMSG", [target, text], tags=tags or {}).format())

    async def notice(self, target: str, text: str) -> None:
        """Send a NOTICE."""
        await self.send_raw(Line("NOTICE", [target, text]).format())

    async def join(self, channel: str, key: str | None = None, *, timeout: float = 10.0) -> list[str]:
        """JOIN and wait for our JOIN echo and end of NAMES; return the NAMES entries."""
        mark = self.mark()
        await self.send_raw(f"JOIN {channel} {key}" if key else f"JOIN {channel}")
        chan = irc_lower(channel)

        def end_or_error(line: Line) -> bool:
            if len(line.params) < 2 or irc_lower(line.params[1]) != chan:
                return False
            return line.command == "366" or line.command in _JOIN_ERRORS

        index, end = await self._wait_index(end_or_error, timeout, mark)
        if end.command != "366":
            raise IRCError(f"cannot join {channel}: {end.raw}")
        window = self.lines[mark:index]
        if not any(
            l.command == "JOIN" and l.params and irc_lower(l.params[0]) == chan and self.is_me(l.nick)
            for l in window
        ):
            raise IRCError(f"got end of NAMES for {channel} without our JOIN: {end.raw}")
        names: list[str] = []
        for line in window:
            if line.command == "353" and len(line.params) >= 3 and irc_lower(line.params[-2]) == chan:
                names.extend(line.text.split())
        return names

    async def part(self, channel: str, reason: str = "", *, timeout: float = 10.0) -> Line:
        """PART and wait for our PART echo."""
        mark = self.mark()
        await self.send_raw(Line("PART", [channel, reason] if reason else [channel]).format())
        chan = irc_lower(channel)
        return await self.wait_for(
            lambda l: l.command == "PART" and self.is_me(l.nick) and irc_lower(l.target) == chan,
            timeout=timeout, since=mark,
        )

    async def quit(self, message: str = "bye", *, timeout: float = 10.0) -> None:
        """QUIT and wait until the server closes the connection."""
        await self.send_raw(f"QUIT :{message}")
        await self.wait_closed(timeout=timeout)

    # -- waiting -----------------------------------------------------------

    def mark(self) -> int:
        """Index of the next line to arrive; pass it as ``since=`` to wait_for."""
        return len(self.lines)

    def is_me(self, nick: str | None) -> bool:
        """True when ``nick`` is our current nick (rfc1459 case-insensitive)."""
        return nick is not None and irc_lower(nick) == irc_lower(self.nick)

    async def wait_for(self, match: Matcher, timeout: float = 10.0, *, since: int | None = None) -> Line:
        """Return the first line at index >= ``since`` matching ``match``.

        ``match`` is a command name/numeric (``"PRIVMSG"``, ``"001"``) or a
        predicate.  ``since`` defaults to the position after the line the
        previous ``wait_for`` returned.  Raises ``TimeoutError`` after
        ``timeout`` seconds and :class:`ConnectionClosed` if the connection
        closes first.
        """
        return (await self._wait_index(match, timeout, since))[1]

    async def _wait_index(self, match: Matcher, timeout: float, since: int | None) -> tuple[int, Line]:
        """Like wait_for, but also return the matching line's index in ``lines``."""
        predicate = _as_predicate(match)
        index = self._cursor if since is None else since
        with anyio.fail_after(timeout):
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if predicate(line):
                        self._cursor = max(self._cursor, index)
                        return index - 1, line
                if self.closed:
                    raise ConnectionClosed(self.close_reason or "connection closed")
                await self._changed.wait()

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the connection has been closed by the server."""
        with anyio.fail_after(timeout):
            while not self.closed:
                await self._changed.wait()

    def received(self, match: Matcher) -> list[Line]:
        """All lines received so far that match (no waiting)."""
        predicate = _as_predicate(match)
        return [line for line in self.lines if predicate(line)]

    # -- registration --------------------------------------------------------

    async def _register(
        self, *, caps: list[str], sasl: tuple[str, str] | str | None, username: str,
        realname: str, password: str | None, timeout: float,
    ) -> None:
        with anyio.fail_after(timeout):
            if password:
                await self.send_raw(f"PASS :{password}")
            await self.send_raw("CAP LS 302")
            await self.send_raw(f"NICK {self.nick}")
            await self.send_raw(Line("USER", [username, "0", "*", realname]).format())
            # Collect the (possibly multi-line) CAP LS reply.  Servers without
            # CAP support answer with 001 straight away.
            while True:
                line = await self.wait_for(
                    lambda l: (l.command == "CAP" and len(l.params) >= 3 and l.params[1].upper() == "LS")
                    or l.command in ("001", "ERROR") or l.command in _REGISTRATION_ERRORS,
                    timeout,
                )
                if line.command == "001":
                    if caps or sasl:
                        raise RegistrationError("server does not support CAP negotiation")
                    return
                self._check_registration_error(line)
                if not (len(line.params) >= 4 and line.params[2] == "*"):
                    break
            wanted = list(dict.fromkeys(caps))
            if sasl is not None and "sasl" not in wanted:
                wanted.append("sasl")
            missing = [cap for cap in wanted if cap not in self.offered_caps]
            if missing:
                raise RegistrationError(
                    f"server does not offer caps {missing}; offered: {sorted(self.offered_caps)}"
                )
            if wanted:
                await self.send_raw("CAP REQ :" + " ".join(wanted))
                reply = await self.wait_for(
                    lambda l: l.command == "CAP" and len(l.params) >= 3 and l.params[1].upper() in ("ACK", "NAK"),
                    timeout,
                )
                if reply.params[1].upper() == "NAK":
                    raise RegistrationError(f"server refused caps: {reply.raw}")
            if sasl is not None:
                await self._authenticate(sasl, timeout)
            await self.send_raw("CAP END")
            line = await self.wait_for(
                lambda l: l.command in ("001", "ERROR") or l.command in _REGISTRATION_ERRORS, timeout
            )
            self._check_registration_error(line)

    def _check_registration_error(self, line: Line) -> None:
        if line.command == "ERROR" or line.command in _REGISTRATION_ERRORS:
            raise RegistrationError(f"registration as {self.nick!r} failed: {line.raw}")

    async def _authenticate(self, sasl: tuple[str, str] | str, timeout: float) -> None:
        """Run the SASL AUTHENTICATE exchange; raise SaslError unless 903 arrives."""
        mechanism = "EXTERNAL" if sasl == "EXTERNAL" else "PLAIN"
        if mechanism == "PLAIN":
            account, secret = sasl  # type: ignore[misc]
            payload = base64.b64encode(f"\0{account}\0{secret}".encode()).decode()
        else:
            payload = "+"
        await self.send_raw(f"AUTHENTICATE {mechanism}")
        reply = await self.wait_for(
            lambda l: (l.command == "AUTHENTICATE") or l.command in _SASL_FAIL or l.command == "ERROR",
            timeout,
        )
        if reply.command != "AUTHENTICATE" or reply.target != "+":
            raise SaslError(f"SASL {mechanism} not accepted: {reply.raw}")
        # Payloads of 400 bytes or more go in chunks; a final exact chunk is followed by "+".
        chunks = [payload[i:i + 400] for i in range(0, len(payload), 400)] or ["+"]
        for chunk in chunks:
            await self.send_raw(f"AUTHENTICATE {chunk}")
        if len(chunks[-1]) == 400:
            await self.send_raw("AUTHENTICATE +")
        result = await self.wait_for(
            lambda l: l.command == "903" or l.command in _SASL_FAIL or l.command == "ERROR",
            timeout,
        )
        if result.command != "903":
            raise SaslError(f"SASL {mechanism} failed: {result.raw}")
