"""IRCPlug: one IRC network connection (plus optional puppets) as a chanmux plug.

Reconnecting is the host's job: `run` raises when the connection ends, the host closes the
plug, waits (exponential backoff with jitter, capped) and calls `open` again, logging one line
saying why. The outbox, the edit/reply memory and the channel list belong to the plug object,
which the host keeps across reconnects, so messages put while disconnected wait and go out,
in order, once the plug is back in its channels.

When the host stops, lines still queued (and lines sent that the server has not confirmed
within a few seconds) are kept in the host database and sent after the next start; the
msgids of our own lines are in the database too (`store.py`), so IRC replies to lines said
before a restart still map to our receipts.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar
from urllib.parse import quote

import anyio
import attrs

from chanmux import (
    ActionRequired,
    Capabilities,
    Channel,
    Hold,
    Journal,
    Message,
    Plug,
    Receipt,
    RichText,
    SentMessage,
    State,
    Tracker,
    User,
    describe,
    unique_id,
)

from .config import IRCConfig
from .connection import Connection, Outbox, RegistrationFailed, connection_settings
from .flood import TokenBucket
from .formatting import parse, render_line
from .incoming import (
    CtcpRequest,
    Effect,
    Incoming,
    Joined,
    Kicked,
    NamesDone,
    OwnEcho,
    PuppetRenamed,
    Remember,
    Typing,
)
from .outgoing import MAX_KEY, MIN_ROOM, OutLine, Renderer, Rendering, flat
from .protocol import (
    Line,
    ServerInfo,
    ctcp_reply,
    format_line,
    is_safe_target,
    join_lines,
    sanitise,
    shorten,
)
from .puppets import Puppets, relay_nick
from .split import relay_prefix, split, text_budget
from .state import Bounded, NetworkState, Said
from .store import OwnMsgids
from .typist import Typists

#: Numerics that answer a JOIN with a refusal (the channel is the second parameter).
JOIN_ERRORS = {"403", "405", "437", "471", "473", "474", "475", "476", "477", "489"}
#: Seconds between two answers to CTCP requests (so a CTCP flood cannot flood through us).
CTCP_GAP = 2.0
#: Kicked again within this many seconds, the plug waits for the next reconnect to rejoin.
REJOIN_GAP = 60.0
#: Warn each time the outbox grows past another multiple of this many lines.
BACKLOG_WARNING = 500
#: Where lines still queued when the host stops are kept (host state, by plug name).
OUTBOX_STATE = "outbox"
#: Seconds a clean stop waits at most for the server to confirm the lines it was sent.
CONFIRM_TIMEOUT = 4.0
#: Share of the host's `close_timeout` a close may spend on the network (confirming what the
#: server got, QUIT), so that what must be kept is always saved within the host's timeout.
NETWORK_SHARE = 0.7
#: Share of that network time the confirmation may take at most, so a QUIT still goes out.
CONFIRM_SHARE = 0.6
#: Seconds the link to a long message's whole text is given again for the same text (a copy
#: to another channel, or the delivery queue trying the same copy again) instead of a new one.
LINK_REUSE = 600.0
#: Links to whole texts remembered for reuse.
LINK_MEMORY = 200
#: The capability REDACT needs.
REDACTION_CAP = "draft/message-redaction"
#: Commands a line kept in the database may have (anything else read back is dropped).
KEPT_COMMANDS = {"PRIVMSG", "NOTICE", "TAGMSG", "REDACT"}


def close_budget(close_timeout: float) -> tuple[float, float]:
    """Seconds a close may spend on the network, and of them on confirming lines, for a host
    that gives a plug `close_timeout` seconds to close (7 and 4 at the default 10)."""
    network = close_timeout * NETWORK_SHARE
    return network, min(CONFIRM_TIMEOUT, network * CONFIRM_SHARE)


class IRCPlug(Plug):
    """`type = "irc"`: relays the channels (and private conversations) of one IRC nick."""

    Config = IRCConfig
    network_name: ClassVar[str] = "IRC"
    #: IRC keeps no history: the host keeps what we receive until it is relayed (inbox)
    journal = True
    capabilities = Capabilities(
        edit=False, delete=False, reply=False, upload=False, rich_text=True, actions=True,
        joins=True, titles=True, message_ids=True, max_message_bytes=4000, highlights=True)

    def __init__(self, name: str, config: IRCConfig, host: Any) -> None:
        super().__init__(name, config, host)
        self.config: IRCConfig = config
        #: `delete` is True where deletions are shown (a notice), and where the server REDACTs
        self.capabilities = Capabilities(
            edit=False, delete=config.deletions == "notice", reply=False, upload=False,
            rich_text=True, actions=True, joins=True, titles=True, message_ids=True,
            max_message_bytes=config.max_lines * 350, reactions=config.reactions != "none",
            typing=config.typing, highlights=True)
        #: the capabilities the server acknowledged on the last connection (while between two)
        self.caps: set[str] = set()
        self.typists = Typists()
        self.network = NetworkState()
        self.outbox = Outbox()
        self.bucket = TokenBucket(config.flood_burst, config.flood_rate)
        self.said: Bounded[str, Said] = Bounded(config.text_cache)
        #: lines put and not yet confirmed by the server, kept in the host database
        self.unsent = Journal(host.store, f"{name}:unsent")
        self.own_msgids = OwnMsgids(name, config.text_cache, host.store)
        self.renderer = Renderer(name, config, self.said.get)
        #: links to the whole texts of long messages, by the text's digest: (link, made at)
        self._links: Bounded[bytes, tuple[str, float]] = Bounded(LINK_MEMORY)
        self.puppets: Puppets | None = (
            Puppets(name, config, self.network, log=self.log, mention=self.renderer.mention)
            if config.puppets else None)
        self.incoming = Incoming(name, self.network, nick=lambda: self.nick,
                                 source_for=self.source_for, own_id=self.own_id,
                                 puppet_user=self.puppet_user, mentions=config.mentions,
                                 log=self.log)
        self.conn: Connection | None = None
        self.connections = 0
        self._sources: dict[str, str] = {}
        self._wanted: dict[str, str] = {}
        self._pending_joins: set[str] = set()
        self._replies: list[str] = []
        self._last_ctcp = -CTCP_GAP
        self._last_nick: str | None = None
        self._kicks: dict[str, float] = {}
        self._list_lock: anyio.Lock | None = None
        self._listing: list[str] | None = None
        self._listed: anyio.Event | None = None
        self._restored = False
        self.kept_sent: anyio.Event | None = None

    # -- names -----------------------------------------------------------------------------------

    @property
    def nick(self) -> str:
        return self.conn.nick if self.conn is not None else self.config.nick

    def puppet_user(self, nick: str) -> User | None:
        """The remote user a puppet nick stands for (so a highlight of it is a mention)."""
        return self.puppets.user_for(nick) if self.puppets is not None else None

    def source_for(self, name: str) -> str:
        """The channel source as configured (the server may spell it in another case)."""
        return self._sources.get(self.network.fold(name), name)

    def own_id(self, msgid: str) -> str:
        """Our receipt id for a server msgid of one of our own lines, else the msgid."""
        return self.own_msgids.get(msgid) or msgid

    def _configured(self) -> list[str]:
        sources = [c.source for c in self.host.channels.values() if c.plug == self.name]
        return list(dict.fromkeys([*sources, *self.config.join]))

    def _index(self) -> None:
        """Map folded names to configured spellings and collect the channels to join."""
        fold = self.network.fold
        wanted = {fold(v): v for v in self._wanted.values()}
        for source in self._configured():
            self._sources[fold(source)] = source
            if self.network.info.is_channel(source):
                wanted[fold(source)] = source
        self._wanted = wanted

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, register, run the configured commands, join every channel (waiting up to
        `join_timeout` for the server to confirm) and return; queued lines go out in `run`."""
        self.network.reset()
        self.network.info = ServerInfo()
        settings, identity = connection_settings(self.config)
        conn = Connection(settings, identity, outbox=self.outbox, bucket=self.bucket,
                          handler=self._on_line, log=self.log, info=self.network.info,
                          mention=self.renderer.mention)
        self.conn = conn
        self.own_msgids.closing = False
        self.bucket.tokens = float(self.bucket.burst)
        if not self._restored:
            self._restored = True
            await self._restore_outbox()
        try:
            await conn.connect()
        except RegistrationFailed as exc:
            action = self._what_to_change(exc)
            if action is None:
                raise
            raise ActionRequired(action) from None
        self.connections += 1
        self.caps = conn.caps
        redact = REDACTION_CAP in conn.caps
        if self.config.deletions == "none" and not redact and self.connections == 1:
            self.log.info("the server cannot REDACT and deletions = none: messages deleted on "
                          "other networks stay on IRC as they are")
        self.capabilities = attrs.evolve(
            self.capabilities, delete=self.config.deletions == "notice" or redact)
        self._index()
        limit = conn.info.linelen - 2
        for index, command in enumerate(self.config.commands):
            line = sanitise(command.replace("{nick}", conn.nick))
            if len(line.encode(self.config.encoding, "replace")) > limit:
                self.log.warning("commands[%d] is longer than a line of the server (%d bytes); "
                                 "not sent", index, limit)
                continue
            await conn.send(line)
        await self._join(list(self._wanted.values()), wait=self.config.join_timeout)
        self.log.info("registered as %s on %s:%d%s; in %d channels, %d lines queued",
                      shorten(conn.nick, 60),
                      self.config.server, self.config.effective_port,
                      f" (logged in as {shorten(conn.account, 60)})" if conn.account else "",
                      len(self.network.channels), len(self.outbox))

    def _what_to_change(self, exc: RegistrationFailed) -> str | None:
        """What the operator must change after a refusal no retry fixes (one line), or None."""
        c, key = self.config, f"plugs.{self.name}"
        said = f" ({exc.said})" if exc.said else f" ({exc})"
        if exc.needs == "password":
            if c.password:
                return f"the server refused the password{said}: check {key}.password"
            return f"the server asks for a password{said}: set {key}.password"
        if exc.needs == "sasl":
            if c.sasl_mechanism == "EXTERNAL":
                return (f"the server refused the SASL EXTERNAL login{said}: check {key}.client_cert "
                        "(is its fingerprint registered with the account?)")
            return (f"the server refused the SASL {c.sasl_mechanism} login of "
                    f"{shorten(c.sasl_username or '', 60)}{said}: check {key}.sasl_username and "
                    f"{key}.sasl_password")
        if exc.needs == "sasl_mechanism":
            return f"{exc}: change {key}.sasl_mechanism"
        if exc.needs == "ban":
            return (f"the server has banned this bridge{said}: the ban must be lifted by the "
                    f"server's operators (or {key}.server changed)")
        return None

    async def _join(self, channels: list[str], wait: float = 0) -> None:
        conn = self.conn
        if conn is None or not channels:
            return
        lines, too_long = join_lines(channels, self.config.channel_keys, conn.info.linelen - 2,
                                     self.config.encoding)
        for chan in too_long:
            self.log.warning("cannot join %s: its name does not fit in a line", shorten(chan, 60))
        for join in lines:
            await conn.send(join)
        if wait:
            self._pending_joins = {self.network.fold(c) for c in channels}
            deadline = anyio.current_time() + wait
            while self._pending_joins:
                line = None
                with anyio.move_on_after(deadline - anyio.current_time()):
                    line = await conn.read_line()
                if line is None:
                    break
                await conn.dispatch(line)  # never cut short: a line is handled whole
            if self._pending_joins:
                self.log.warning("no answer to JOIN for %s within %ss",
                                 shorten(", ".join(sorted(self._pending_joins))), wait)

    async def run(self) -> None:
        """Live while connected: read, write (flood controlled), keep alive; puppets too.
        Raises ConnectionError saying why when the connection ends."""
        assert self.conn is not None, "run() before open()"
        extra = [self.puppets.run] if self.puppets is not None else []
        await self.conn.run(*extra)

    async def close(self) -> None:
        """Say goodbye when the host stops us (not after a failure) and release the socket.

        On a stop, the server is first asked to confirm the lines it was sent (a PING it
        answers after handling them), so lines it already got are not sent again after the
        next start; lines not confirmed go back to the front of the outbox (after a failure
        all unconfirmed lines do: at least once). On a stop the outbox and the msgids learned
        are then saved in the host database. The network gets `close_budget()` seconds at
        most (70% of the host's close timeout), so the rest is left for saving."""
        conn = self.conn
        quitting = self.state is State.stopping
        quit_message = self.config.quit_message if quitting else None
        if quitting:
            self.own_msgids.closing = True  # the host's batch writers have stopped
        network, confirm = self.close_budget()
        if not quitting:
            confirm = 0.0
        try:
            with anyio.move_on_after(network):
                async with anyio.create_task_group() as tg:  # puppets and main at once
                    if self.puppets is not None:
                        tg.start_soon(self.puppets.close, quit_message, confirm)
                    if conn is not None:
                        self._last_nick = conn.nick
                        await conn.close(quit_message, confirm=confirm)
        finally:
            self.conn = None
            if conn is not None:
                unconfirmed = conn.take_unacked()
                if quitting and unconfirmed:
                    self.log.info("%d lines sent were not confirmed by the server; they are "
                                  "kept to be sent again", len(unconfirmed))
                self.outbox.requeue(unconfirmed)
        if quitting:
            await self._save_outbox()
            await self._save_msgids()

    def close_budget(self) -> tuple[float, float]:
        """Seconds `close` spends on the network at most, and of them on confirming lines,
        derived from the host's `[host] close_timeout`."""
        return close_budget(self.host.settings.close_timeout)

    async def _save_msgids(self) -> None:
        try:
            await self.own_msgids.save()
        except Exception as exc:  # noqa: BLE001 - a database problem must not stop the shutdown
            self.log.error("could not keep the msgids of our last lines (%s)", describe(exc))

    def _author_head(self, user: Any) -> str:
        """How a puppet's line shows its author when the main connection sends it instead."""
        name = self.renderer.name(user)
        return self.config.author_format.format(name=name) if name else ""

    def _row(self, line: OutLine, author: str = "") -> dict[str, Any]:
        """A line as the database keeps it; a RELAYMSG line as said by us (with its author),
        since the next connection may not relay."""
        head = line.relay_head if line.relay else line.head
        row: dict[str, Any] = {
            "target": line.target, "command": line.command,
            "action": line.action and not line.relay, "receipt": line.receipt,
            "text": author + head + render_line(line.body, self.renderer.mention)}
        if line.tags:
            row["tags"] = dict(line.tags)
        if line.params:
            row["params"] = list(line.params)
        return row

    def _pending_lines(self) -> list[tuple[OutLine, str]]:
        """Every line not yet sent, with the author head it needs on the main connection: the
        main outbox, then puppets'."""
        lines = [(line, "") for line in self.outbox]
        for user, queued in self.puppets.queued() if self.puppets is not None else ():
            head = self._author_head(user)
            lines += [(line, head) for line in queued]
        return lines

    async def _save_outbox(self) -> None:
        """At a stop: every unsent line is in the journal of unsent lines (from its put on),
        to be sent after the next start; their messages are done with here."""
        pending = self._pending_lines()
        for line, author in pending:
            if line.forget is None:  # from an older version's kept list: journal it now
                line.forget = self.unsent.keep(line.receipt or unique_id(f"{self.name}:"),
                                               self._row(line, author))
            line.release()
        if pending:
            self.log.info("kept %d unsent lines for the next start", len(pending))

    async def _restore_outbox(self) -> None:
        """Queue the lines not confirmed by the server when the bridge last stopped or was
        killed (the journal of unsent lines), then those an older version kept at its stop.
        A line is forgotten once the server has confirmed it, not before: killed before that,
        the bridge sends it after the next start (at least once)."""
        try:
            kept = await self.unsent.load()
        except Exception as exc:  # noqa: BLE001 - the plug starts without them, saying so
            self.log.error("could not read the lines kept from the last run (%s)", describe(exc))
            kept = []
        restored = []
        for key, row in kept:
            try:
                line = self._kept_line(row)
            except (KeyError, TypeError, ValueError, AttributeError):
                row = None
            if row is None or not is_safe_target(line.target):
                self.log.warning("a line kept from the last run cannot be read; dropped")
                self.unsent.forget(key)
                continue
            line.forget = (lambda key=key: self.unsent.forget(key))
            restored.append(line)
        if restored:
            self.kept_sent = anyio.Event()  # set once they are all confirmed (tests, logs)
            tracker = Tracker(self._kept_sent, f"{self.name}: lines kept from the last run")
            for line in restored:
                line.hold = Hold(tracker)
            tracker.done()
            self.outbox.requeue(restored)
            self.log.info("%d lines not confirmed by the server before the last stop will be "
                          "sent", len(restored))
        try:
            rows = await self.host.store.get_state(self.name, OUTBOX_STATE, [])
        except Exception:
            self.log.exception("could not read lines kept from the last run")
            return
        lines = [OutLine(r["target"], r["command"], "", parse(r["text"]), r["action"], r["receipt"])
                 for r in rows or [] if is_safe_target(r.get("target", ""))]
        if not rows:
            return
        self.kept_sent = anyio.Event()  # set once the kept list is cleared (for tests, logs)
        tracker = self.host.forget_when_done(self.name, OUTBOX_STATE, then=self._kept_sent)
        for line in lines:
            line.hold = Hold(tracker)
        tracker.done()
        if lines:
            self.outbox.requeue(lines)
            self.log.info("%d lines kept from the last run will be sent", len(lines))

    @staticmethod
    def _kept_line(row: dict[str, Any]) -> OutLine:
        """A line kept in the database (ValueError, KeyError or TypeError if it is not one)."""
        tags, params = row.get("tags"), row.get("params") or []
        if row["command"] not in KEPT_COMMANDS:
            raise ValueError(f"not a command kept: {row['command']!r}")
        if tags is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in tags.items()):
            raise ValueError("tags that are not text")
        if not all(isinstance(p, str) for p in params):
            raise ValueError("parameters that are not text")
        return OutLine(row["target"], row["command"], "", parse(row["text"]), bool(row["action"]),
                       row.get("receipt"), tags=tags, params=tuple(params))

    def _kept_sent(self) -> None:
        self.log.info("the lines kept from the last run were all sent")
        if self.kept_sent is not None:
            self.kept_sent.set()

    # -- receiving -------------------------------------------------------------------------------

    async def _on_line(self, line: Line) -> None:
        if self._listing is not None:
            if line.command == "322" and len(line.params) >= 2:
                self._listing.append(line.params[1])
            elif line.command == "323" and self._listed is not None:
                self._listed.set()
        if line.command in JOIN_ERRORS and len(line.params) >= 2:
            folded = self.network.fold(line.params[1])
            if folded in self._wanted or folded in self._pending_joins:
                self._pending_joins.discard(folded)
                self.log.warning("cannot join %s: %s", shorten(line.params[1], 60),
                                 shorten(line.param(-1)))
        elif line.command in ("401", "404") and len(line.params) >= 2:
            self.log.warning("could not deliver to %s: %s", shorten(line.params[1], 60),
                             shorten(line.param(-1)))
        messages = []
        typing = []
        for effect in self.incoming.handle(line):
            if isinstance(effect, SentMessage):
                messages.append(effect)
            elif isinstance(effect, Typing):
                typing.append(effect)
            else:
                self._apply(effect)
        for sent in messages:
            await self._map_reply(sent)
        for typist in typing:
            try:
                await self.host.typing_received(self.channel(typist.source), typist.user,
                                                typist.active)
            except Exception as exc:  # noqa: BLE001 - typing is a courtesy, never a failure
                self.log.debug("typing in %s not passed on: %s", shorten(typist.source, 60),
                               describe(exc))
        if self._replies and self.conn is not None:
            replies, self._replies = self._replies, []
            for reply in replies:
                await self.conn.send(reply)
        for sent in messages:
            try:
                await self.host.receive(sent)
            except RuntimeError:
                self.log.debug("host not running; dropped %s", shorten(sent.id, 80))

    async def _map_reply(self, sent: Any) -> None:
        """A reply or reaction to one of our lines whose msgid memory no longer holds (said
        before a restart, or long ago): look the msgid up in the database."""
        reaction = sent.reaction
        parent = sent.reply_to if reaction is None else reaction.target
        if (not isinstance(parent, Receipt) or parent.id in self.said
                or parent.id in self.own_msgids):
            return  # mapped already, or a line someone else said
        try:
            found = await self.own_msgids.fetch(parent.id)
        except Exception:  # the reply goes on unmapped
            self.log.exception("could not look up the msgid %s", shorten(parent.id, 80))
            return
        if found is None:
            return
        mapped = Receipt(id=found, channel=parent.channel)
        if reaction is None:
            sent.reply_to = mapped
        else:
            sent.reaction = attrs.evolve(reaction, target=mapped)

    def _apply(self, effect: Effect) -> None:
        """Act on what a received line means for the plug (see `incoming.py`)."""
        if isinstance(effect, Remember):
            self.said[effect.id] = effect.said
        elif isinstance(effect, OwnEcho):
            self.own_msgids[effect.msgid] = effect.label
        elif isinstance(effect, Joined):
            self._sources.setdefault(self.network.fold(effect.channel), effect.channel)
        elif isinstance(effect, NamesDone):
            self._pending_joins.discard(self.network.fold(effect.channel))
        elif isinstance(effect, Kicked):
            self._kicked(effect.channel, effect.by, effect.reason)
        elif isinstance(effect, CtcpRequest):
            self.answer_ctcp(effect.nick, effect.command, effect.arg)
        elif isinstance(effect, PuppetRenamed):
            if self.puppets is not None:
                self.puppets.renamed(effect.old, effect.new)
        else:
            raise TypeError(f"unknown effect {effect!r}")

    def _kicked(self, name: str, by: str, reason: str) -> None:
        now, folded = anyio.current_time(), self.network.fold(name)
        if now - self._kicks.get(folded, -REJOIN_GAP) < REJOIN_GAP:
            self.log.warning("kicked from %s by %s (%s) again; rejoining after the next reconnect",
                             shorten(name, 60), shorten(by, 60), shorten(reason))
            return
        self._kicks[folded] = now
        self.log.warning("kicked from %s by %s (%s); joining again", shorten(name, 60),
                         shorten(by, 60), shorten(reason))
        if not is_safe_target(name):
            return
        key = self.config.channel_keys.get(self.source_for(name))
        self._replies.append(format_line("JOIN", name, key) if key else format_line("JOIN", name))

    def answer_ctcp(self, nick: str, command: str, arg: str) -> None:
        """Answer CTCP VERSION, PING and CLIENTINFO (at most one every CTCP_GAP seconds),
        cut to fit the line the server relays."""
        now = anyio.current_time()
        if now - self._last_ctcp < CTCP_GAP or not is_safe_target(nick):
            return
        answer = {"VERSION": self.config.ctcp_version, "PING": arg[:64] or None,
                  "CLIENTINFO": "ACTION CLIENTINFO PING VERSION"}.get(command)
        reply = ctcp_reply(command, answer or "", self.budget(nick, "NOTICE"), self.config.encoding)
        if reply:
            self._last_ctcp = now
            self._replies.append(format_line("NOTICE", nick, reply))

    # -- sending ---------------------------------------------------------------------------------

    def budget(self, target: str, command: str = "PRIVMSG", action: bool = False,
               relay: str | None = None) -> int:
        """Bytes of text a line to `target` can hold, by our real prefix on the server (or
        the worst case while we do not know it), or as `relay` with RELAYMSG."""
        if self.conn is not None:
            return self.conn.budget(target, command, action, relay)
        info = self.network.info
        nick = self._last_nick or self.config.nick
        nick = nick + "_" * max(0, min(info.nicklen, 30) - len(nick))
        user = "~" + (self.config.username or self.config.nick)[: info.userlen]
        prefix = relay_prefix(nick, user, "x" * info.hostlen, command, target)
        return text_budget(info.linelen, prefix, self.config.encoding, action)

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        """Queue `msg` for `channel` (joining it first if needed) and return a receipt for
        each line; lines go out in order at the flood-control pace, after a reconnect if the
        plug is down right now."""
        target = channel.source
        if not is_safe_target(target):
            raise ValueError(f"{shorten(target, 60)!r} is not a valid IRC channel or nick")
        if self.budget(target) < MIN_ROOM:
            raise ValueError(f"{shorten(target, 60)!r} is too long to send to on IRC")
        info = self.network.info
        folded = self.network.fold(target)
        if info.is_channel(target):
            if folded not in self._wanted:
                self._wanted[folded] = target
                self._sources.setdefault(folded, target)
                if self.conn is not None and self.conn.connected:
                    try:
                        await self._join([target])
                    except ConnectionError:
                        pass
        else:
            self.network.private[folded] = target
        if msg.reaction is not None:
            return self._queue(channel, await self._reaction_lines(target, msg), self.outbox)
        relay = self._relay_nick(target, msg)
        puppet = (self.puppets.route(target, msg)
                  if self.puppets is not None and relay is None else None)
        if puppet is not None:
            puppet.putting += 1  # not retired for being idle while the link is made
        try:
            if puppet is not None:
                rendering = self.renderer.render(msg, target, puppet.budget_for(target), puppet=True)
            elif relay is not None:
                rendering = self.renderer.render(
                    msg, target, lambda cmd, act: self.budget(target, cmd, act, relay), puppet=True)
            else:
                rendering = self.renderer.render(msg, target,
                                                 lambda cmd, act: self.budget(target, cmd, act))
            lines = self.renderer.fit(rendering, await self._whole_text_link(rendering))
        finally:
            if puppet is not None:
                puppet.putting -= 1
        if relay is not None:
            head = self.renderer.author_head(msg)
            for line in lines:
                line.relay, line.relay_head = relay, head
        said = Said(self.renderer.name(msg.user), msg.text)
        if msg.edited and isinstance(msg.edit_of, Receipt) and msg.edit_of.id in self.said:
            self.said[msg.edit_of.id] = said
        author = self._author_head(puppet.user) if puppet is not None else ""
        return self._queue(channel, lines, puppet.outbox if puppet is not None else self.outbox,
                           said, author)

    def _queue(self, channel: Channel, lines: list[OutLine], outbox: Outbox,
               said: Said | None = None, author: str = "") -> list[Receipt]:
        """Give `lines` receipts, keep them in the journal of unsent lines and queue them in
        `outbox` (the main one or a puppet's, whose lines need `author` when the main
        connection sends them after a restart); `said` is remembered for each."""
        if not lines:
            return []
        receipts = []
        for line in lines:
            line.receipt = unique_id(f"{self.name}:")
            receipts.append(Receipt(id=line.receipt, channel=channel))
            if said is not None:
                self.said[line.receipt] = said
        lines[-1].hold = self.host.hold()  # released once the server confirmed the last line
        for line in lines:  # killed before the server confirms it, it is sent after the start
            line.forget = self.unsent.keep(line.receipt or "", self._row(line, author))
        before = len(outbox)
        outbox.extend(lines)
        if len(outbox) // BACKLOG_WARNING > before // BACKLOG_WARNING:
            self.log.warning("%d lines waiting to be sent (%s)", len(outbox),
                             "disconnected" if self.conn is None else
                             "the traffic is faster than the server or flood control lets out")
        return receipts

    def _offers(self, cap: str) -> bool:
        """True if the server acknowledged `cap` (on the last connection, while between two)."""
        return cap in (self.conn.caps if self.conn is not None else self.caps)

    def _relay_nick(self, target: str, msg: Message) -> str | None:
        """The nick to say `msg` as with RELAYMSG (`alice/m`), or None: the server does not
        relay (or `relaymsg = false`), the target is no channel, or `msg` has no remote
        author or is a notice, an event or a reaction."""
        conn, user = self.conn, msg.user
        if (not self.config.relaymsg or conn is None or not conn.can_relay
                or not self.network.info.is_channel(target) or user is None or user.is_self
                or user.plug == self.name or msg.notice or msg.is_event
                or msg.reaction is not None):
            return None
        name = self.renderer.name(user)
        if not name:
            return None
        suffix = self.config.relaymsg_suffix
        if suffix is None:
            plug = self.host.plugs.get(user.plug) if user.plug else None
            network = plug.network_name if plug is not None else user.plug or ""
            suffix = next((ch.lower() for ch in network if ch.isascii() and ch.isalnum()), "r")
        info = self.network.info
        nicklen = min(info.nicklen, 30) if "NICKLEN" in info.tokens else 30
        return relay_nick(name, conn.relay_separator, suffix, nicklen)

    async def _msgid_of(self, id: str | None) -> str | None:
        """The server's msgid of the message `id` names in this plug: the id itself for a line
        received with a msgid, the msgid learnt for one of our lines, else None (a line
        received without one, or ours not echoed)."""
        if not id:
            return None
        if not id.startswith(f"{self.name}:"):
            return id
        try:
            return await self.own_msgids.msgid_of(id)
        except Exception as exc:  # noqa: BLE001 - without it, the text fallback is used
            self.log.warning("could not look up the msgid of %s (%s)", shorten(id, 80),
                             describe(exc))
            return None

    def _text_lines(self, target: str, text: RichText) -> list[OutLine]:
        """A short text of the bridge's own (a reaction or deletion shown as text) as lines."""
        budget = self.budget(target)
        return [OutLine(target, "PRIVMSG", "", chunk)
                for chunk in split(text, budget, self.config.encoding, self.renderer.mention)]

    async def _reaction_lines(self, target: str, msg: Message) -> list[OutLine]:
        """A reaction as IRC shows it by `reactions`: a TAGMSG with `+draft/react` (or
        `+draft/unreact`) and `+draft/reply` where the server takes client tags and the
        message reacted to has a msgid; else (`auto`, `text`) a line of text."""
        reaction = msg.reaction
        mode = self.config.reactions
        if reaction is None or mode == "none":
            self.log.debug("a reaction to %s is not shown (reactions = none)", shorten(target, 60))
            return []
        reacted_id = getattr(reaction.target, "id", None)
        reacted = self.said.get(reacted_id) if reacted_id else None
        text = self.renderer.reaction(msg, reacted) if mode in ("auto", "text") else None
        key = flat(reaction.key)[:MAX_KEY]
        msgid = None
        if mode in ("auto", "tags") and key and self._offers("message-tags"):
            msgid = await self._msgid_of(reacted_id)
        if msgid is not None:
            tag = "+draft/unreact" if reaction.removed else "+draft/react"
            return [OutLine(target, "TAGMSG", "", text or RichText(),
                            tags={tag: key, "+draft/reply": msgid})]
        if text is None:
            self.log.debug("a reaction to %s is not shown: %s", shorten(target, 60),
                           "no msgid to tag" if mode == "tags" else "no key")
            return []
        return self._text_lines(target, text)

    async def delete(self, sent: Receipt) -> bool:
        """Remove a line we said: `REDACT` where the server offers `draft/message-redaction`
        and told the line's msgid; else, by `deletions`, a notice that the message was
        deleted (once for a message of several lines) or nothing. True when it was redacted
        or the notice queued. Each case is logged."""
        target = sent.channel.source
        if not is_safe_target(target):
            return False
        said = self.said.get(sent.id)
        notice = None
        if said is not None and not said.gone and self.config.deletions == "notice":
            notice = self.renderer.deletion(said)
        msgid = await self._msgid_of(sent.id) if self._offers(REDACTION_CAP) else None
        if msgid is not None:
            if said is not None:
                said.gone = True
            self._queue(sent.channel, [OutLine(target, "REDACT", "", notice or RichText(),
                                               params=(msgid,))], self.outbox)
            self.log.debug("deleting %s in %s: REDACT %s", shorten(sent.id, 80),
                           shorten(target, 60), shorten(msgid, 80))
            return True
        why = ("the server cannot REDACT" if not self._offers(REDACTION_CAP)
               else "the server never told the line's msgid")
        if self.config.deletions == "none":
            self.log.info("a deleted message is left as it is in %s (%s; deletions = none)",
                          shorten(target, 60), why)
            return False
        if said is None:
            self.log.info("a deleted message is left as it is in %s (%s, and what it said is "
                          "no longer remembered)", shorten(target, 60), why)
            return False
        if said.gone:
            return True  # another line of the same message was shown deleted already
        said.gone = True
        self._queue(sent.channel, self._text_lines(target, self.renderer.deletion(said)),
                    self.outbox)
        self.log.debug("deleting %s in %s: a notice (%s)", shorten(sent.id, 80),
                       shorten(target, 60), why)
        return True

    async def typing(self, channel: Channel, user: User, active: bool) -> None:
        """Tell IRC clients that someone relayed types in `channel` (`+typing` on a TAGMSG
        from the bridge's nick, where the server takes client tags), throttled: `active` at
        most every 3 seconds, `done` when the last typist stopped; left out when flood
        control has no token to spare."""
        conn, target = self.conn, channel.source
        if (not self.config.typing or conn is None or "message-tags" not in conn.caps
                or not is_safe_target(target)):
            return
        folded = self.network.fold(target)
        who = f"{user.plug}\0{user.id or user.display}"
        state = self.typists.change(folded, who, active, anyio.current_time())
        if state is None:
            return
        try:
            sent = await conn.try_send(format_line("TAGMSG", target, tags={"+typing": state}))
        except ConnectionError:
            sent = False
        if not sent and state == "active":
            self.typists.unsent(folded)

    async def _whole_text_link(self, rendering: Rendering) -> str | None:
        """A link to the whole text of a message longer than `max_lines` lines, or None: the
        message fits, `long_messages = "truncate"`, the bridge gives out no links (no `[http]
        public_url`), or the text could not be kept (logged; the message is then cut with the
        notice, never lost). The same text gets the same link for a while, so a copy put again
        (a retry, another channel) does not keep it twice."""
        if self.config.long_messages != "link" or not self.renderer.too_long(rendering):
            return None
        digest = hashlib.sha256(rendering.whole.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        known = self._links.get(digest)
        if known is not None and now - known[1] < self._link_reuse():
            return known[0]
        try:
            link = await self.host.publish_text(self.name, rendering.whole)
        except Exception as exc:  # noqa: BLE001 - the message goes out cut rather than not at all
            why = describe(exc)  # one line: not a database error's statement, with the text
            self.log.warning("could not keep the whole text of a long message for a link (%s); "
                             "it is cut with a notice instead", shorten(why))
            return None
        if link is not None:
            self._links[digest] = (link, now)
        return link

    def _link_reuse(self) -> float:
        """Seconds a link is given again: LINK_REUSE, or a tenth of a link's life if shorter."""
        return min(LINK_REUSE, self.host.config.http.link_days * 86400 / 10)

    def queued(self) -> list[OutLine]:
        """Lines waiting to be sent (for tests and diagnostics)."""
        return list(self.outbox)

    # -- look-ups --------------------------------------------------------------------------------

    async def channel_title(self, channel: Channel) -> str | None:
        chan = self.network.channel(channel.source)
        return (chan.topic if chan is not None and chan.topic else None) or channel.source

    async def channel_members(self, channel: Channel) -> list[User] | None:
        me = User(id=self.nick, plug=self.name, username=self.nick, is_self=True)
        if not self.network.info.is_channel(channel.source):
            return [me, User(id=channel.source, plug=self.name, username=channel.source)]
        chan = self.network.channel(channel.source)
        if chan is None:
            return None
        members = [self.incoming.member_user(nick) for folded, nick in chan.members.items()
                   if folded != self.network.fold(self.nick)]
        return [me, *[m for m in members if m is not None]]

    async def channel_is_private(self, channel: Channel) -> bool | None:
        return not self.network.info.is_channel(channel.source)

    async def public_channels(self) -> list[Channel] | None:
        """Channels the server lists (LIST), with those joined or configured; only the latter
        when the server does not answer LIST in time or the plug is not connected."""
        names = [self.source_for(c.name) for c in self.network.channels.values()]
        names += [s for s in self._configured() if self.network.info.is_channel(s)]
        names += await self._list_channels()
        return [self.channel(s) for s in dict.fromkeys(names)]

    async def _list_channels(self, timeout: float = 15.0) -> list[str]:
        """Ask the server for its channel list (322 ... 323)."""
        if self.conn is None:
            return []
        if self._list_lock is None:
            self._list_lock = anyio.Lock()
        async with self._list_lock:
            self._listing, self._listed = [], anyio.Event()
            try:
                await self.conn.send("LIST")
                with anyio.move_on_after(timeout):
                    await self._listed.wait()
                return [self.source_for(name) for name in self._listing]
            except (ConnectionError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return []
            finally:
                self._listing = None

    async def private_channels(self) -> list[Channel] | None:
        return [self.channel(s) for s in self.network.private.values()]

    async def channel_link(self, channel: Channel) -> str | None:
        scheme = "ircs" if self.config.tls else "irc"
        where = f"{scheme}://{self.config.server}:{self.config.effective_port}/"
        if self.network.info.is_channel(channel.source):
            return where + quote(channel.source, safe="")
        return where + quote(channel.source, safe="") + ",isnick"

    # -- checks ----------------------------------------------------------------------------------

    def check_warnings(self) -> list[str]:
        """Warnings `chanmux check` prints; none of them needs the network."""
        c = self.config
        warnings = []
        local = c.server in ("localhost", "127.0.0.1", "::1")
        if not c.tls and not local and (c.password or c.sasl_mechanism == "PLAIN"):
            warnings.append(f"tls = false: the password for {c.server} travels unencrypted")
        if c.tls and not c.tls_verify:
            warnings.append("tls_verify = false: the server's certificate is not checked")
        if c.flood_rate == 0:
            warnings.append("flood_rate = 0: flood control is off; a busy bridge may be "
                            "disconnected for flooding")
        elif c.flood_rate > 2 or c.flood_burst > 10:
            warnings.append(f"flood_burst {c.flood_burst} / flood_rate {c.flood_rate} lines/s "
                            "exceed what large public networks allow")
        http = self.host.config.http
        # a bridge without a listener has chosen none; one with a listener but no public URL
        # likely wants links and does not get them
        if c.long_messages == "link" and http.listen and not http.public_url:
            warnings.append(f'long_messages = "link" but [http] public_url is not set: a message '
                            f"over max_lines ({c.max_lines}) lines ends with a truncation notice, "
                            "not a link to its whole text (set [http] public_url, or "
                            'long_messages = "truncate")')
        return warnings


__all__ = ["IRCPlug"]
