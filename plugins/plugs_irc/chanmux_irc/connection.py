"""One IRC connection: TCP or TLS, registration (CAP 302, SASL, nick collisions), keepalive,
regaining the wanted nick, and a flood-controlled writer that drains an outbox in order.

A connection lives for one TCP session. Lines it took from the outbox stay "unacknowledged"
until the server has answered a PING sent after them (a server handles a client's lines in
order, so it has processed them); when the connection dies, the owner puts them back at the
front of the outbox, to be sent again on the next connection: nothing queued is lost, at the
price of a possible repeat of the last lines before a crash. A clean close asks the server to
confirm them first (one more PING, its PONG awaited for a bounded time), so only lines the
server may not have got are kept.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from chanmux import describe

from .flood import TokenBucket
from .outgoing import MIN_ROOM, RELAYMSG_CAP, OutLine
from .protocol import (
    Line,
    ServerInfo,
    UnsafeLine,
    cut_bytes,
    fit_line,
    format_line,
    parse,
    sanitise,
    shorten,
)
from .split import relay_prefix, split, text_budget

if TYPE_CHECKING:
    from .config import IRCConfig

#: Capabilities requested whenever the server offers them.
WANTED_CAPS = frozenset({
    "multi-prefix", "message-tags", "server-time", "echo-message", "batch", "labeled-response",
    "account-tag", "cap-notify", "userhost-in-names", "extended-join", "account-notify",
    "chghost", "draft/relaymsg", "draft/message-redaction",
})
#: Lines taken from the outbox between two acknowledgement PINGs, at most.
ACK_EVERY = 5
#: Seconds a clean close waits for the server to close the connection after our QUIT.
QUIT_WAIT = 2.0
#: Seconds a socket may take to close gracefully (a TLS close_notify) before it is cut.
CLOSE_WAIT = 2.0
#: Longest line read (bytes): a longer one is cut there, and the rest of it dropped.
MAX_READ_LINE = 65536
#: Bytes of the user name (ident) sent in USER; servers cut it further (USERLEN).
MAX_USERNAME = 64
#: Bytes of the real name sent in USER: servers keep at most about 128 (ngircd cuts there,
#: inside a character), so it is cut here, on a character boundary.
MAX_REALNAME = 120
_NICK_ERRORS = {"431", "432", "433", "436", "437"}
#: Refusals before registration that no retry fixes: what must change.
_REFUSED = {"464": "password", "465": "ban"}
_PASSWORD_WORDS = re.compile(r"pass(?:word|wd)?\b", re.IGNORECASE)
_BAN_WORDS = re.compile(r"\bbanned\b|\b[kgzd]-?lined?\b", re.IGNORECASE)
_NOT_IDENT = re.compile(r"[\s\x00-\x1f@!:]+")


class RegistrationFailed(ConnectionError):
    """The server refused us (bad password, SASL failure, ban); the message says why.

    `needs` names what must change before a retry can pass (`"password"`, `"sasl"`,
    `"sasl_mechanism"`, `"ban"`), or is None when the refusal may pass by itself."""

    def __init__(self, message: str, needs: str | None = None, said: str = "") -> None:
        super().__init__(message)
        self.needs = needs
        self.said = said


class Outbox:
    """Lines waiting to be sent, in order; survives reconnects (it belongs to the owner)."""

    def __init__(self) -> None:
        self._items: deque[OutLine] = deque()
        self._event: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Any:
        return iter(self._items)

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    def extend(self, items: Iterable[OutLine]) -> None:
        self._items.extend(items)
        self._wake()

    def requeue(self, items: list[OutLine]) -> None:
        """Put `items` back at the front, keeping their order."""
        self._items.extendleft(reversed(items))
        if items:
            self._wake()

    def first(self) -> OutLine:
        return self._items[0]

    def pop(self) -> OutLine:
        return self._items.popleft()

    def replace_first(self, items: list[OutLine]) -> None:
        self._items.popleft()
        self._items.extendleft(reversed(items))

    async def wait(self) -> None:
        while not self._items:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()


@attrs.define
class Identity:
    """How we register: nicks, user name, real name, password and SASL."""

    nick: str
    alt_nicks: list[str] = attrs.field(factory=list)
    username: str = "chanmux"
    realname: str = "chanmux bridge"
    password: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_required: bool = True


@attrs.define
class Settings:
    """Where to connect and the connection's timings and encoding."""

    host: str
    port: int
    tls: bool = False
    ssl_context: ssl.SSLContext | None = None
    encoding: str = "utf-8"
    fallback_encoding: str = "latin-1"
    ping_interval: float = 60.0
    ping_timeout: float = 60.0
    connect_timeout: float = 30.0
    regain_interval: float = 60.0


def make_ssl_context(verify: bool = True, ca_file: str | None = None, client_cert: str | None = None,
                     client_key: str | None = None) -> ssl.SSLContext:
    """A TLS context: certificates verified against the system store or `ca_file`, and an
    optional client certificate (for SASL EXTERNAL)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key or None)
    return ctx


def connection_settings(config: IRCConfig) -> tuple[Settings, Identity]:
    """Where and how a connection of a plug configured by `config` connects and registers
    (a fresh TLS context each time, so a renewed client certificate is read again)."""
    c = config
    ctx = make_ssl_context(c.tls_verify, c.ca_file, c.client_cert, c.client_key) if c.tls else None
    settings = Settings(
        host=c.server, port=c.effective_port, tls=c.tls, ssl_context=ctx, encoding=c.encoding,
        fallback_encoding=c.fallback_encoding, ping_interval=c.ping_interval,
        ping_timeout=c.ping_timeout, connect_timeout=c.connect_timeout,
        regain_interval=c.nick_regain_interval)
    identity = Identity(
        nick=c.nick, alt_nicks=list(c.alt_nicks), username=c.username or c.nick,
        realname=c.realname, password=c.password, sasl_mechanism=c.sasl_mechanism,
        sasl_username=c.sasl_username, sasl_password=c.sasl_password,
        sasl_required=c.sasl_required)
    return settings, identity


Handler = Callable[[Line], Awaitable[None]]


class Connection:
    """One IRC session. `connect()` registers; `run()` lives until the connection ends and
    then raises ConnectionError saying why; `close()` says goodbye and releases the socket."""

    def __init__(self, settings: Settings, identity: Identity, *, outbox: Outbox,
                 bucket: TokenBucket, handler: Handler, log: logging.Logger,
                 info: ServerInfo | None = None,
                 mention: Callable[[Any], str] | None = None) -> None:
        self.settings = settings
        self.identity = identity
        self.outbox = outbox
        self.bucket = bucket
        self.handler = handler
        self.log = log
        self.info = info if info is not None else ServerInfo()
        self.mention = mention
        self.nick = identity.nick
        self.wanted_nick = identity.nick
        self.user: str | None = None
        self.host: str | None = None
        self.account: str | None = None
        self.offered: dict[str, str | None] = {}
        self.caps: set[str] = set()
        self.registered = False
        self.welcomed = False
        self.error: str | None = None
        self.unacked: deque[tuple[int, OutLine]] = deque()
        self.sent_lines = 0
        self._stream: Any = None
        self._buffer = b""
        self._discarding = False
        self._pending: deque[bytes] = deque()
        self._send_lock: anyio.Lock | None = None
        self._ls_buffer: dict[str, str | None] = {}
        self._cap_pending = 0
        self._cap_ended = False
        self._sasl_started = False
        self._sasl_ok = False
        self._nick_attempt = 0
        self._seq = 0
        self._last_ack_ping = 0
        self._broken = False
        self.last_rx = 0.0
        self._regain_wake: anyio.Event | None = None
        #: the server refused a RELAYMSG (FAIL RELAYMSG): lines are said as ours from then on
        self.relay_refused = False

    # -- properties ----------------------------------------------------------------------------

    def fold(self, name: str) -> str:
        return name.translate(self.info.table)

    def is_me(self, nick: str | None) -> bool:
        return nick is not None and self.fold(nick) == self.fold(self.nick)

    @property
    def connected(self) -> bool:
        return self._stream is not None and not self._broken and self.welcomed

    def prefix(self, command: str, target: str) -> str:
        """Our prefix as the server will relay it; worst case for what we do not know yet."""
        user = self.user or ("~" + self.identity.username)[: self.info.userlen + 1]
        host = self.host or "x" * self.info.hostlen
        return relay_prefix(self.nick, user, host, command, target)

    def budget(self, target: str, command: str = "PRIVMSG", action: bool = False,
               relay: str | None = None) -> int:
        """Bytes of text one line to `target` can hold (said as `relay` with RELAYMSG)."""
        prefix = self.relay_prefix(relay, target) if relay else self.prefix(command, target)
        return text_budget(self.info.linelen, prefix, self.settings.encoding, action)

    def relay_prefix(self, nick: str, target: str) -> str:
        """The prefix a server relays a RELAYMSG line with: the spoofed nick, and a user and
        host of the server's choice (the longest it allows assumed); at least as long as
        what we send (`RELAYMSG target nick :`)."""
        relayed = relay_prefix(nick, "~" + "x" * self.info.userlen, "x" * self.info.hostlen,
                               "PRIVMSG", target)
        ours = f"RELAYMSG {target} {nick} :"
        return relayed if len(relayed) >= len(ours) else ours

    @property
    def can_relay(self) -> bool:
        """True while lines can be said as others (`draft/relaymsg`, not refused)."""
        return RELAYMSG_CAP in self.caps and not self.relay_refused

    @property
    def relay_separator(self) -> str:
        """The character a RELAYMSG nick must hold (the cap's value; `/` if it names none)."""
        value = self.offered.get(RELAYMSG_CAP) or ""
        return value[0] if value and not value[0].isspace() else "/"

    # -- connecting and registering --------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket and register; returns after the welcome (end of MOTD)."""
        s = self.settings
        self._send_lock = anyio.Lock()
        with anyio.fail_after(s.connect_timeout):
            if s.tls:
                self._stream = await anyio.connect_tcp(
                    s.host, s.port, ssl_context=s.ssl_context or ssl.create_default_context(),
                    tls_standard_compatible=False)
            else:
                self._stream = await anyio.connect_tcp(s.host, s.port)
            self.last_rx = anyio.current_time()
            ident = self.identity
            if ident.password:
                await self.send(format_line("PASS", ident.password))
            await self.send("CAP LS 302")
            await self.send(self.nick_line(self.nick))
            await self.send(self.user_line())
            while not self.welcomed:
                await self.dispatch(await self.read_line())

    def user_line(self) -> str:
        """USER with a valid user name and the real name cut to fit the line."""
        ident = self.identity
        username = cut_bytes(_NOT_IDENT.sub("", ident.username), MAX_USERNAME,
                             self.settings.encoding) or "chanmux"
        realname = cut_bytes(" ".join(sanitise(ident.realname).split()), MAX_REALNAME,
                             self.settings.encoding) or username
        return fit_line("USER", username, "0", "*", realname, limit=self.info.linelen - 2,
                        encoding=self.settings.encoding, trailing=True)

    def nick_line(self, nick: str) -> str:
        """NICK, cut to the server's NICKLEN once it told it."""
        if "NICKLEN" in self.info.tokens and self.info.nicklen > 0:
            nick = nick[: self.info.nicklen]
        return fit_line("NICK", nick, limit=self.info.linelen - 2, encoding=self.settings.encoding)

    def relayed_line(self, command: str, *params: str) -> str:
        """A line the server relays to others with our prefix before it (PRIVMSG, NOTICE,
        QUIT, PART...): its last parameter cut so that the relayed line fits too."""
        source = self.prefix("", "").split(" ", 1)[0]  # ":nick!user@host"
        room = self.info.linelen - 2 - len(source.encode(self.settings.encoding, "replace")) - 1
        if command == "QUIT":
            room -= len("Quit: ")  # servers put this before the reason
        return fit_line(command, *params, limit=room, encoding=self.settings.encoding)

    def _candidate_nick(self) -> str:
        """The next nick to try after a collision: alternatives, then underscores, then digits."""
        self._nick_attempt += 1
        alts = self.identity.alt_nicks
        if self._nick_attempt <= len(alts):
            return alts[self._nick_attempt - 1]
        extra = self._nick_attempt - len(alts)
        limit = self.info.nicklen if "NICKLEN" in self.info.tokens else max(9, len(self.wanted_nick) + 2)
        limit = max(limit, 4)
        base = self.wanted_nick
        if extra <= 2:
            return base[: limit - extra] + "_" * extra
        suffix = str(secrets.randbelow(9000) + 1000)
        return base[: limit - len(suffix)] + suffix

    async def _cap_done(self) -> None:
        """Capability negotiation settled: authenticate if configured, else end it."""
        mech = self.identity.sasl_mechanism
        if mech and not self._sasl_started and not self.registered:
            offered = self.offered.get("sasl")
            if "sasl" in self.caps and (not offered or mech in offered.split(",")):
                self._sasl_started = True
                await self.send(f"AUTHENTICATE {mech}")
                return
            if "sasl" not in self.offered:
                why, needs = "the server does not offer SASL", None
            else:
                why = f"the server does not offer SASL {mech} (offers {shorten(offered or '', 100)})"
                needs = "sasl_mechanism"
            if self.identity.sasl_required:
                raise RegistrationFailed(why, needs)
            self.log.warning("%s; continuing without logging in", why)
        await self._end_cap()

    async def _end_cap(self) -> None:
        if not self._cap_ended and not self.registered:
            self._cap_ended = True
            await self.send("CAP END")

    async def _request_caps(self, caps: Iterable[str]) -> None:
        wanted = [c for c in caps if c in WANTED_CAPS or (c == "sasl" and self.identity.sasl_mechanism)]
        chunk: list[str] = []
        for cap in wanted:
            if chunk and len(" ".join(chunk + [cap])) > 400:
                await self._req(chunk)
                chunk = []
            chunk.append(cap)
        if chunk:
            await self._req(chunk)

    async def _req(self, caps: list[str]) -> None:
        self._cap_pending += 1
        await self.send(format_line("CAP", "REQ", " ".join(caps), trailing=True))

    async def _on_cap(self, line: Line) -> None:
        sub = line.param(1).upper()
        caps = line.param(-1).split()
        if sub in ("LS", "NEW"):
            for item in caps:
                name, eq, value = item.partition("=")
                self._ls_buffer[name] = value if eq else None
            if sub == "LS" and len(line.params) >= 4 and line.params[2] == "*":
                return
            new, self._ls_buffer = self._ls_buffer, {}
            self.offered.update(new)
            if sub == "NEW":
                await self._request_caps(c for c in new if c not in self.caps)
            elif not self.registered:
                await self._request_caps(new)
                if not self._cap_pending:
                    await self._cap_done()
        elif sub == "ACK":
            for cap in caps:
                if cap.startswith("-"):
                    self.caps.discard(cap[1:])
                else:
                    self.caps.add(cap)
            await self._cap_answered()
        elif sub == "NAK":
            if len(caps) > 1:
                for cap in caps:  # ask one by one: the server refuses a request as a whole
                    if cap in WANTED_CAPS or (cap == "sasl" and self.identity.sasl_mechanism):
                        await self._req([cap])
            await self._cap_answered()
        elif sub == "DEL":
            for cap in caps:
                self.caps.discard(cap)
                self.offered.pop(cap, None)

    async def _cap_answered(self) -> None:
        self._cap_pending = max(0, self._cap_pending - 1)
        if not self._cap_pending and not self.registered:
            await self._cap_done()

    async def _on_authenticate(self, line: Line) -> None:
        if line.param(0) != "+" or not self._sasl_started:
            return
        ident = self.identity
        if ident.sasl_mechanism == "PLAIN":
            raw = f"{ident.sasl_username}\0{ident.sasl_username}\0{ident.sasl_password}"
            payload = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        else:
            payload = ""
        chunks = [payload[i:i + 400] for i in range(0, len(payload), 400)]
        for chunk in chunks:
            await self.send(f"AUTHENTICATE {chunk}")
        if not chunks or len(chunks[-1]) == 400:
            await self.send("AUTHENTICATE +")

    async def _sasl_failed(self, line: Line) -> None:
        said = f"{line.command} {shorten(line.param(-1), 120)}".strip()
        why = f"SASL {self.identity.sasl_mechanism} failed: {said}"
        if self.identity.sasl_required:
            raise RegistrationFailed(why, "sasl" if line.command != "906" else None, said)
        self.log.warning("%s; continuing without logging in", why)
        await self._end_cap()

    # -- reading ---------------------------------------------------------------------------------

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.settings.encoding)
        except UnicodeDecodeError:
            return raw.decode(self.settings.fallback_encoding, "replace")

    async def read_line(self) -> Line:
        """The next parseable line; ConnectionError when the connection ends."""
        while True:
            while self._pending:
                raw = self._pending.popleft().rstrip(b"\r")
                if not raw:
                    continue
                line = parse(self._decode(raw))
                if line is not None:
                    return line
                self.log.debug("ignored a line that is not IRC: %r", raw[:100])
            stream = self._stream
            if stream is None:
                raise ConnectionError("connection closed")
            try:
                chunk = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError, ssl.SSLError) as exc:
                self._broken = True
                why = f"server said: {self.error}" if self.error else (
                    "the server closed the connection" if isinstance(exc, anyio.EndOfStream)
                    else f"connection lost ({type(exc).__name__}: {exc})")
                raise ConnectionError(why) from None
            self.last_rx = anyio.current_time()
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        """Cut received bytes into lines. A line longer than MAX_READ_LINE keeps its first
        MAX_READ_LINE bytes; the rest of it, up to its end, is dropped."""
        if self._discarding:
            end = chunk.find(b"\n")
            if end < 0:
                return
            chunk, self._discarding = chunk[end + 1:], False
        self._buffer += chunk
        if b"\n" in chunk:
            *complete, self._buffer = self._buffer.split(b"\n")
            self._pending.extend(complete)
        if len(self._buffer) > MAX_READ_LINE:
            self.log.info("the server sent a line longer than %d bytes; the rest of it is "
                          "dropped", MAX_READ_LINE)
            self._pending.append(self._buffer[:MAX_READ_LINE])
            self._buffer, self._discarding = b"", True

    async def dispatch(self, line: Line) -> None:
        """Handle one line: connection matters here, then the owner's handler. A line that
        makes the handler fail is logged (one short line) and skipped; only a refused
        registration and a lost connection raise."""
        try:
            await self._handle(line)
        except (RegistrationFailed, ConnectionError):
            raise
        except Exception as exc:  # noqa: BLE001 - one odd line never ends the connection
            self._odd_line(line, exc)
        try:
            await self.handler(line)
        except ConnectionError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._odd_line(line, exc)

    def _odd_line(self, line: Line, exc: Exception) -> None:
        self.log.warning("skipped a %s line from the server that could not be handled (%s): "
                         "%s", line.command, shorten(describe(exc), 120),
                         shorten(" ".join(line.params), 120))
        self.log.debug("the line that could not be handled", exc_info=True)

    async def _handle(self, line: Line) -> None:
        cmd = line.command
        if cmd == "PING":
            await self.send(self._pong(line), count=False)
        elif cmd == "PONG":
            self._on_pong(line.param(-1))
        elif cmd == "CAP":
            await self._on_cap(line)
        elif cmd == "AUTHENTICATE":
            await self._on_authenticate(line)
        elif cmd == "900":
            self.account = line.param(2) or None
            self.log.info("logged in as %s", shorten(self.account or ""))
        elif cmd == "903":
            self._sasl_ok = True
            await self._end_cap()
        elif cmd in ("902", "904", "905", "906"):
            if not self.registered:
                await self._sasl_failed(line)
        elif cmd == "907":
            self._sasl_ok = True
            await self._end_cap()
        elif cmd == "001":
            ident = self.identity
            if ident.sasl_mechanism and ident.sasl_required and not self._sasl_ok:
                raise RegistrationFailed(f"SASL {ident.sasl_mechanism} did not complete before "
                                         "registration (does the server support CAP?)")
            self.registered = True
            self.nick = line.param(0) or self.nick
            self._learn_mask(line.param(-1).rsplit(" ", 1)[-1])
        elif cmd == "005":
            self.info.update(line.params[1:-1])
        elif cmd in ("376", "422"):
            if self.registered and not self.welcomed:
                self.welcomed = True
                nicklen = self.info.nicklen if "NICKLEN" in self.info.tokens else 0
                if nicklen and len(self.wanted_nick) > nicklen:
                    self.wanted_nick = self.wanted_nick[:nicklen]
        elif cmd in _NICK_ERRORS:
            if not self.registered:
                taken = self.nick
                self.nick = self._candidate_nick()
                self.log.info("nick %s unavailable (%s); trying %s", taken, cmd, self.nick)
                await self.send(self.nick_line(self.nick))
        elif cmd in _REFUSED and not self.registered:
            said = f"{cmd} {shorten(line.param(-1), 120)}".strip()
            raise RegistrationFailed(f"the server refused us: {said}", _REFUSED[cmd], said)
        elif cmd == "466":
            self.log.warning("the server warns that this bridge will soon be banned: %s",
                             shorten(line.param(-1)))
        elif cmd == "ERROR":
            self.error = shorten(line.param(-1), 300) or "ERROR"
            if not self.registered:
                needs = ("password" if _PASSWORD_WORDS.search(self.error)
                         else "ban" if _BAN_WORDS.search(self.error) else None)
                if needs:
                    raise RegistrationFailed(f"the server refused us: {self.error}", needs,
                                             f"ERROR {self.error}")
        elif cmd == "396":
            self.host = line.param(1) or self.host
        elif cmd == "FAIL" and line.param(0).upper() == "RELAYMSG":
            self._relay_failed(line)
        elif cmd == "NICK" and self.is_me(line.nick):
            self.nick = line.param(0) or self.nick
            if self.fold(self.nick) == self.fold(self.wanted_nick):
                self.log.info("regained nick %s", shorten(self.nick, 60))
        elif cmd == "JOIN" and self.is_me(line.nick):
            self.user, self.host = line.user or self.user, line.host or self.host
        elif cmd == "CHGHOST" and self.is_me(line.nick):
            self.user, self.host = line.param(0) or self.user, line.param(1) or self.host
        elif cmd in ("QUIT", "NICK") and line.nick and self.fold(line.nick) == self.fold(self.wanted_nick):
            self._regain_now()
        elif cmd == "731" and any(self.fold(t.split("!")[0]) == self.fold(self.wanted_nick)
                                  for t in line.param(-1).split(",")):
            self._regain_now()

    def _relay_failed(self, line: Line) -> None:
        """The server refused a RELAYMSG: say the lines as ours from now on, the refused one
        again (found by its label) first."""
        said = shorten(" ".join(line.params[1:]), 200)
        if not self.relay_refused:
            self.relay_refused = True
            self.log.warning("the server refused RELAYMSG (%s); relayed lines are said by the "
                             "bridge's nick with their author from now on", said)
        label = line.tags.get("label")
        refused = [item for _, item in self.unacked if label and item.receipt == label and item.relay]
        if not refused:
            if not label:
                self.log.warning("a RELAYMSG line the server refused cannot be told apart without "
                                 "labeled-response; it is not said again")
            return
        again = []
        for item in refused:
            plain = item.plain()
            if plain is None:
                continue
            item.hold, item.forget = None, None  # they go with the line said again
            again.append(plain)
        self.outbox.requeue(again)

    async def try_send(self, line: str) -> bool:
        """Send a line that may as well be left out (typing notifications) if flood control
        has a token for it now; True if sent."""
        if not self.connected or self.bucket.delay() > 0:
            return False
        await self.send(line)
        return True

    def _pong(self, line: Line) -> str:
        """The answer to a PING, whatever its token holds (CR, LF and NUL are dropped)."""
        params = [sanitise(p) for p in line.params] or [""]
        params = [p for p in params[:-1] if p and not p.startswith(":")] + params[-1:]
        return fit_line("PONG", *params, limit=self.info.linelen - 2,
                        encoding=self.settings.encoding)

    def _learn_mask(self, mask: str) -> None:
        if "!" in mask and "@" in mask:
            nick, _, rest = mask.partition("!")
            user, _, host = rest.partition("@")
            if self.fold(nick) == self.fold(self.nick) and user and host:
                self.user, self.host = user, host

    # -- nick regain -----------------------------------------------------------------------------

    @property
    def has_wanted_nick(self) -> bool:
        return self.fold(self.nick) == self.fold(self.wanted_nick)

    def _regain_now(self) -> None:
        if self._regain_wake is not None:
            self._regain_wake.set()

    async def _regain(self) -> None:
        """Take the wanted nick back when it frees up: at once when we see its holder go (or
        MONITOR says so), else every `regain_interval` seconds."""
        if self.info.monitor and not self.has_wanted_nick:
            await self.send(format_line("MONITOR", "+", self.wanted_nick))
        interval = self.settings.regain_interval
        while True:
            self._regain_wake = anyio.Event()
            if interval > 0:
                with anyio.move_on_after(interval):
                    await self._regain_wake.wait()
            else:
                await self._regain_wake.wait()
            if not self.has_wanted_nick:
                await self.send(self.nick_line(self.wanted_nick))

    # -- writing ---------------------------------------------------------------------------------

    async def send(self, line: str, *, count: bool = True) -> None:
        """Send a control line now (no waiting for flood tokens, though it uses one)."""
        if self._stream is None or self._send_lock is None:
            raise ConnectionError("not connected")
        if count and self.welcomed:  # registration lines do not count against us
            self.bucket.consume()
        await self._write(line)

    async def _write(self, line: str) -> None:
        data = line.encode(self.settings.encoding, "replace") + b"\r\n"
        if b"\r" in data[:-2] or b"\n" in data[:-2] or b"\0" in data:
            raise UnsafeLine(f"refusing to send a line with CR, LF or NUL: {line!r}")
        async with self._send_lock:  # type: ignore[union-attr]
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError) as exc:
                self._broken = True
                raise ConnectionError(f"connection lost while sending ({type(exc).__name__})") from None

    def _fits(self, item: OutLine, wire_text: str) -> bool:
        limit = self.info.linelen - 2
        prefix = (self.relay_prefix(item.relay, item.target) if item.relay
                  else self.prefix(item.command, item.target))
        size = len(prefix.encode(self.settings.encoding, "replace"))
        return size + len(wire_text.encode(self.settings.encoding, "replace")) <= limit

    def _sendable(self, item: OutLine) -> OutLine | None:
        """`item` as this connection can send it: a line needing a capability the server has
        not acknowledged (TAGMSG without `message-tags`, REDACT, RELAYMSG, one refused) said
        as plain text instead, or None when it has no text to say."""
        needs = item.needs
        if needs is None or (needs in self.caps and not (item.relay and self.relay_refused)):
            return item
        return item.plain()

    async def _writer(self) -> None:
        """Send outbox lines in order at the bucket's pace, re-splitting any line that our
        prefix on the server has made too long since it was queued."""
        while True:
            await self.outbox.wait()
            await self.bucket.take()
            item = self.outbox.first()
            sendable = self._sendable(item)
            if sendable is None:
                self.log.debug("not sending a %s the server cannot take (no %s)", item.command,
                               item.needs)
                self.outbox.pop().done()
                self.bucket.tokens += 1
                continue
            if sendable is not item:
                self.outbox.replace_first([sendable])
                item = sendable
            if item.command in ("TAGMSG", "REDACT"):
                await self._send_item(item, None)
                continue
            text = item.text(self.mention)
            if not self._fits(item, text):
                budget = self.budget(item.target, item.command, item.action, item.relay)
                head = item.head
                room = budget - len(head.encode(self.settings.encoding, "replace"))
                if room < MIN_ROOM:  # as when the line was made: the text needs the room
                    head, room = "", budget
                pieces = split(item.body, room, self.settings.encoding, self.mention)
                if len(pieces) > 1 or head != item.head:  # the last piece carries the hold
                    self.outbox.replace_first([attrs.evolve(item, head=head, body=p, hold=None,
                                                             forget=None)
                                               for p in pieces[:-1]]
                                              + [attrs.evolve(item, head=head, body=pieces[-1])])
                    self.bucket.tokens += 1
                    continue
            await self._send_item(item, text)

    async def _send_item(self, item: OutLine, text: str | None) -> None:
        """Write the outbox's first line (`item`, with its `text` if it is a message) and
        take it from the outbox; ask the server to confirm it when nothing follows soon."""
        tags = dict(item.tags or {})
        if item.receipt and {"labeled-response", "echo-message"} <= self.caps:
            tags["label"] = item.receipt  # the echo then tells the line's msgid
        try:
            if text is None:
                wire = format_line(item.command, item.target, *item.params, tags=tags or None)
            elif item.relay:
                wire = format_line("RELAYMSG", item.target, item.relay, text, tags=tags or None,
                                   trailing=True)
            else:
                wire = format_line(item.command, item.target, text, tags=tags or None)
        except UnsafeLine as exc:
            self.log.error("not sending a line that cannot be sent safely: %s", shorten(str(exc)))
            self.outbox.pop().done()
            return
        await self._write(wire)
        self.outbox.pop()
        self._seq += 1
        self.sent_lines += 1
        self.unacked.append((self._seq, item))
        # confirm at once when nothing follows soon (the outbox is empty, or the next line
        # waits for flood control), else every few lines
        if (not len(self.outbox) or self.bucket.delay() > 0
                or self._seq - self._last_ack_ping >= ACK_EVERY):
            self._last_ack_ping = self._seq
            await self.send(f"PING :chanmux-ack-{self._seq}", count=False)

    def _on_pong(self, token: str) -> None:
        if token.startswith("chanmux-ack-"):
            try:
                upto = int(token.removeprefix("chanmux-ack-"))
            except ValueError:
                return
            while self.unacked and self.unacked[0][0] <= upto:
                self.unacked.popleft()[1].done()

    def take_unacked(self) -> list[OutLine]:
        """Lines sent but not known to be processed by the server (for re-sending)."""
        items = [item for _, item in self.unacked]
        self.unacked.clear()
        return items

    # -- living ----------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            await self.dispatch(await self.read_line())

    async def _keepalive(self) -> None:
        """PING when the server has been quiet; a dead connection ends after the timeout."""
        s = self.settings
        while True:
            idle = anyio.current_time() - self.last_rx
            if idle < s.ping_interval:
                await anyio.sleep(s.ping_interval - idle)
                continue
            sent_at = anyio.current_time()
            await self.send(f"PING :chanmux-keepalive-{int(sent_at)}", count=False)
            await anyio.sleep(s.ping_timeout)
            if self.last_rx < sent_at:
                raise ConnectionError(f"ping timeout: no reply from the server in "
                                      f"{s.ping_interval + s.ping_timeout:.0f}s")

    async def run(self, *extra: Callable[[], Awaitable[None]]) -> None:
        """Read, write and keep alive until the connection ends; then raise ConnectionError."""
        failure: list[str] = []

        async def guard(fn: Callable[[], Awaitable[None]], tg: anyio.abc.TaskGroup) -> None:
            try:
                await fn()
            except Exception as exc:  # becomes the reason the connection ended
                if not failure:
                    failure.append(str(exc) if isinstance(exc, ConnectionError) and str(exc)
                                   else f"{type(exc).__name__}: {exc}")
                    if not isinstance(exc, ConnectionError):
                        self.log.debug("connection task failed", exc_info=True)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for fn in (self._reader, self._writer, self._keepalive, self._regain, *extra):
                tg.start_soon(guard, fn, tg)
        raise ConnectionError(failure[0] if failure else "connection ended")

    async def confirm(self, timeout: float) -> bool:
        """Ask the server to confirm every line written so far (a PING: the server answers it
        only after handling the lines before it) and handle what it sends meanwhile (echoes
        tell msgids) until it does, for at most `timeout` seconds; True if all are confirmed."""
        if not self.unacked:
            return True
        if self._stream is None or self._broken:
            return False
        try:
            await self.send(f"PING :chanmux-ack-{self._seq}", count=False)
            with anyio.move_on_after(timeout):
                while self.unacked:
                    await self.dispatch(await self.read_line())
        except ConnectionError:
            pass
        return not self.unacked

    async def close(self, quit_message: str | None = None, *, confirm: float = 0.0) -> None:
        """Say QUIT (if still connected and a message is given) and close the socket.

        With `confirm` (seconds), a QUIT is preceded by `confirm()`, so that `take_unacked`
        afterwards holds only lines the server may not have received. After the QUIT the
        server's goodbye is read (up to QUIT_WAIT seconds) before the socket closes, so the
        close never cuts off lines in flight. The socket is closed even when the close is
        cancelled, gracefully (up to CLOSE_WAIT seconds) only within the caller's deadline."""
        stream = self._stream
        if stream is None:
            return
        deadline = anyio.current_effective_deadline()
        try:
            if quit_message is not None and self.registered and not self._broken:
                if confirm > 0:
                    await self.confirm(confirm)
                await self._quit(quit_message)
        finally:
            self._stream = None
            self._broken = True
            with anyio.CancelScope(shield=True):
                wait = max(0.0, min(CLOSE_WAIT, deadline - anyio.current_time()))
                with anyio.move_on_after(wait) as scope:
                    try:
                        await stream.aclose()
                    except Exception:  # noqa: BLE001
                        pass
                if scope.cancelled_caught:
                    await anyio.aclose_forcefully(stream)

    async def _quit(self, quit_message: str) -> None:
        """Send QUIT and read until the server closes the connection (a late PONG still
        confirms lines); best effort, bounded by QUIT_WAIT."""
        with anyio.move_on_after(QUIT_WAIT):
            try:
                await self._write(self.relayed_line("QUIT", sanitise(quit_message)))
                while True:
                    line = await self.read_line()
                    if line.command == "PONG":
                        self._on_pong(line.param(-1))
                    elif line.command == "ERROR":
                        self.error = line.param(-1) or "ERROR"
            except Exception:  # noqa: BLE001 - the connection ends here either way
                pass


__all__ = ["Connection", "Identity", "Outbox", "RegistrationFailed", "Settings", "WANTED_CAPS",
           "connection_settings", "make_ssl_context"]
