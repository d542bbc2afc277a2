"""Puppets: one IRC connection per remote author, so people on IRC see each author as a nick.

A puppet connects when its author first speaks, joins the channels it speaks in, sends at its
own flood-controlled pace, and quits after `puppet_idle` seconds of silence. At most
`puppet_max` puppets exist; beyond that the least recently used idle one is retired, or (when
every puppet is busy) the message goes through the main connection as `<Name> text`. Puppets
live inside the main connection's `run`: when it ends they are closed too and come back with
it, their queued lines kept.

`Puppets` is given what it reads, and nothing of the plug: the plug's name and config, the
`NetworkState` of the main connection (case folding, the server's limits; only read), where to
log and how mentions are written. The plug calls it: `route` at each put, `run` inside the
main connection's `run`, `close` at the plug's close, `renamed` when the main connection
sees a puppet change nick, `queued` for the lines to keep at a stop.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable

import anyio

from chanmux import Message, Segment, User

from .config import IRCConfig
from .connection import Connection, Outbox, connection_settings
from .flood import TokenBucket
from .formatting import clean
from .outgoing import MAX_NAME, OutLine
from .protocol import Line, cut_bytes, format_line, is_safe_target
from .split import relay_prefix, text_budget
from .state import NetworkState

#: How a mention is written on IRC (the renderer's `mention`).
Mention = Callable[[Segment], str]

_NOT_NICK = re.compile(r"[^A-Za-z0-9_\-\[\]\\`^{}|]+")
#: Bytes of a puppet's real name at most: what servers keep whole (ngircd about 127).
REALNAME_BYTES = 100
MARK = "(chanmux)"


def puppet_nick(name: str, prefix: str, suffix: str, nicklen: int) -> str:
    """A valid nick for `name`, at most `nicklen` characters (at least 1): accents folded,
    other characters dropped, the name cut before the suffix; a suffix that leaves no room
    for the name is cut too."""
    nicklen = max(1, nicklen)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = _NOT_NICK.sub("", ascii_name.replace(" ", "_")) or "user"
    prefix, suffix = _NOT_NICK.sub("", prefix), _NOT_NICK.sub("", suffix)[: nicklen - 1]
    nick = (prefix + base)[: nicklen - len(suffix)] + suffix
    if nick[0].isdigit() or nick[0] == "-":
        nick = ("_" + nick)[:nicklen]
    return nick


def relay_nick(name: str, separator: str, suffix: str, nicklen: int) -> str:
    """The nick a RELAYMSG line shows: `name` as a nick (accents folded, other characters
    dropped, as `puppet_nick` does), the server's `separator` and `suffix` (`alice/m`), cut
    to `nicklen` characters (the name is cut, never the separator)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = _NOT_NICK.sub("", ascii_name.replace(" ", "_")) or "user"
    tail = separator + _NOT_NICK.sub("", suffix)
    return base[: max(1, nicklen - len(tail))] + tail


def puppet_realname(display: str | None, encoding: str = "utf-8") -> str:
    """The real name (gecos) of a puppet: the author's name, cut like shown names and to
    REALNAME_BYTES in all, marked as ours."""
    name = " ".join(clean(display or "").split())
    room = REALNAME_BYTES - len(f"… {MARK}".encode(encoding, "replace"))
    cut = cut_bytes(name[:MAX_NAME - 1], room, encoding)
    if cut != name:
        name = cut + "…"
    return f"{name} {MARK}" if name else "chanmux"


class Puppet:
    """One remote author's IRC connection, its outbox and flood bucket.

    `nicks` is the registry of puppets by folded nick that this puppet keeps up to date
    with its own nick while it is connected; the rest as for `Puppets`."""

    def __init__(self, key: str, user: User, nick: str, *, config: IRCConfig,
                 network: NetworkState, nicks: dict[str, Puppet], log: logging.Logger,
                 mention: Mention) -> None:
        self.key = key
        self.user = user
        self.nick = nick
        self.config = config
        self.network = network
        self.nicks = nicks
        self.log = log
        self.mention = mention
        self.outbox = Outbox()
        self.bucket = TokenBucket(config.puppet_flood_burst, config.puppet_flood_rate)
        self.channels: dict[str, str] = {}
        self.conn: Connection | None = None
        self.last_used = anyio.current_time()
        self.scope: anyio.CancelScope | None = None
        self.running = False
        self.retired = False
        #: puts under way that will give it lines (a put may wait for a link to a long text)
        self.putting = 0

    @property
    def busy(self) -> bool:
        """True while it has lines to send, or a put is about to give it some."""
        return bool(len(self.outbox) or self.putting)

    @property
    def current_nick(self) -> str:
        return self.conn.nick if self.conn is not None else self.nick

    def budget_for(self, target: str) -> Callable[[str, bool], int]:
        def budget(command: str, action: bool) -> int:
            if self.conn is not None and self.conn.welcomed:
                return self.conn.budget(target, command, action)
            info = self.network.info
            prefix = relay_prefix(self.nick + "__", "~" + "x" * info.userlen, "x" * info.hostlen,
                                  command, target)
            return text_budget(info.linelen, prefix, self.config.encoding, action)
        return budget

    async def want(self, channel: str) -> None:
        """Make sure the puppet is (or will be) in `channel`."""
        folded = self.network.fold(channel)
        if folded in self.channels or not self.network.info.is_channel(channel):
            return
        self.channels[folded] = channel
        if self.conn is not None and self.conn.welcomed:
            try:
                await self.conn.send(format_line("JOIN", channel))
            except ConnectionError:
                pass

    async def _on_line(self, line: Line) -> None:
        conn = self.conn
        if conn is None:
            return
        if (line.command == "KICK" and len(line.params) >= 2 and conn.is_me(line.params[1])
                and is_safe_target(line.params[0])):
            await conn.send(format_line("JOIN", line.params[0]))

    async def live(self) -> None:
        """Connect, join, send; reconnect after failures (backoff up to a minute) until
        retired or cancelled."""
        attempt = 0
        self.running = True
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                while not self.retired:
                    settings, identity = connection_settings(self.config)
                    identity.nick = self.nick
                    identity.alt_nicks = []
                    identity.username = "puppet"
                    identity.realname = puppet_realname(self.user.display, settings.encoding)
                    identity.sasl_mechanism = None
                    conn = Connection(settings, identity, outbox=self.outbox, bucket=self.bucket,
                                      handler=self._on_line, log=self.log, mention=self.mention)
                    self.conn = conn
                    began = anyio.current_time()
                    try:
                        await conn.connect()
                        self.nicks[self.network.fold(conn.nick)] = self
                        for channel in list(self.channels.values()):
                            await conn.send(format_line("JOIN", channel))
                        await conn.run()
                    except anyio.get_cancelled_exc_class():
                        if conn.connected and not self.retired:
                            # the plug is closing: Puppets.close says goodbye, on a stop after
                            # the server confirmed what it got
                            raise
                        await self._drop(conn)
                        raise
                    except Exception as exc:  # noqa: BLE001 - a puppet failing never stops the plug
                        self.log.info("puppet %s disconnected (%s: %s)", self.nick,
                                      type(exc).__name__, exc)
                        await self._drop(conn)
                    else:
                        await self._drop(conn)
                    attempt = 1 if anyio.current_time() - began > 60 else attempt + 1
                    await anyio.sleep(min(60.0, 0.5 * 2 ** attempt))
        finally:
            self.running = False
            self.scope = None

    async def _drop(self, conn: Connection) -> None:
        """Close a connection that ended (no goodbye); lines it did not get confirmed go back
        to the front of the outbox."""
        self.forget(conn)
        with anyio.CancelScope(shield=True):
            await conn.close(None)
        self.outbox.requeue(conn.take_unacked())

    def forget(self, conn: Connection) -> None:
        """`conn` is ending: the puppet no longer answers to its nick."""
        nicks = self.nicks
        for folded in [k for k, v in nicks.items() if v is self]:
            del nicks[folded]
        if self.conn is conn:
            self.conn = None

    async def retire(self, quit_message: str | None) -> None:
        self.retired = True
        conn = self.conn
        if conn is not None:
            self.forget(conn)
            await conn.close(quit_message)
        if self.scope is not None:
            self.scope.cancel()


class Puppets:
    """The puppets of one plug (named `name`, configured by `config`), by remote author;
    `network` is the main connection's state (read only), `log` where puppets log and
    `mention` how their lines write a mention."""

    def __init__(self, name: str, config: IRCConfig, network: NetworkState, *,
                 log: logging.Logger, mention: Mention) -> None:
        self.name = name
        self.config = config
        self.network = network
        self.log = log
        self.mention = mention
        self.by_key: dict[str, Puppet] = {}
        self.nicks: dict[str, Puppet] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def renamed(self, old: str, new: str) -> None:
        """A puppet changed nick (the main connection saw it first)."""
        fold = self.network.fold
        puppet = self.nicks.pop(fold(old), None)
        if puppet is not None:
            self.nicks[fold(new)] = puppet

    def is_puppet(self, nick: str) -> bool:
        return self.network.fold(nick) in self.nicks

    def user_for(self, nick: str) -> User | None:
        puppet = self.nicks.get(self.network.fold(nick))
        return puppet.user if puppet is not None else None

    def route(self, target: str, msg: Message) -> Puppet | None:
        """The puppet that should say `msg` (started if needed), or None for the main
        connection: messages without a remote author, events, or no puppet to spare."""
        user = msg.user
        if user is None or user.is_self or user.plug == self.name or msg.is_event:
            return None
        key = f"{user.plug}\0{user.id or user.username or user.display}"
        puppet = self.by_key.get(key)
        config = self.config
        if puppet is None:
            if len(self.by_key) >= config.puppet_max and not self._evict():
                return None
            nick = puppet_nick(user.display, config.puppet_prefix, config.puppet_suffix,
                               min(self.network.info.nicklen, 30))
            puppet = self.by_key[key] = Puppet(key, user, nick, config=config, network=self.network,
                                               nicks=self.nicks, log=self.log, mention=self.mention)
        puppet.user = user
        puppet.last_used = anyio.current_time()
        self._want(puppet, target)
        self._start(puppet)
        return puppet

    def _want(self, puppet: Puppet, target: str) -> None:
        if self._tg is not None:
            self._tg.start_soon(puppet.want, target)
        else:
            folded = self.network.fold(target)
            if self.network.info.is_channel(target):
                puppet.channels.setdefault(folded, target)

    def _evict(self) -> bool:
        idle = [p for p in self.by_key.values() if not p.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda p: p.last_used)
        self._retire_soon(oldest)
        return True

    def _retire_soon(self, puppet: Puppet) -> None:
        self.by_key.pop(puppet.key, None)
        if self._tg is not None:
            self._tg.start_soon(puppet.retire, "idle")
        else:
            puppet.retired = True

    def _start(self, puppet: Puppet) -> None:
        if self._tg is not None and not puppet.running and not puppet.retired:
            puppet.running = True
            self._tg.start_soon(puppet.live)

    async def run(self) -> None:
        """Run the puppets with pending lines, and retire idle ones, while the main
        connection lives."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for puppet in list(self.by_key.values()):
                    puppet.running = False
                    if len(puppet.outbox):
                        self._start(puppet)
                idle = self.config.puppet_idle
                while True:
                    await anyio.sleep(min(idle / 4, 30.0))
                    now = anyio.current_time()
                    for puppet in list(self.by_key.values()):
                        if now - puppet.last_used > idle and not puppet.busy:
                            self._retire_soon(puppet)
        finally:
            self._tg = None

    async def close(self, quit_message: str | None, confirm: float = 0.0) -> None:
        """Close every puppet's connection at once; with `confirm`, each asks its server to
        confirm the lines it got first (see Connection.close), so they are not said again."""

        async def close_one(puppet: Puppet) -> None:
            conn = puppet.conn
            try:
                if conn is not None:
                    puppet.forget(conn)
                    await conn.close(quit_message, confirm=confirm)  # the caller's deadline holds
            finally:
                if conn is not None:
                    puppet.outbox.requeue(conn.take_unacked())
                puppet.running = False

        async with anyio.create_task_group() as tg:
            for puppet in list(self.by_key.values()):
                tg.start_soon(close_one, puppet)


    def queued(self) -> list[tuple[User, list[OutLine]]]:
        """Each puppet's author with the lines waiting in its outbox."""
        return [(puppet.user, list(puppet.outbox)) for puppet in self.by_key.values()]


__all__ = ["Puppet", "Puppets", "puppet_nick", "puppet_realname", "relay_nick"]
