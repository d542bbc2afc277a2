"""An in-memory plug: a network that lives in the process, for tests and demos.

Tests play the human with `inject` and read what the bridge sent from `sent`, `edits` and
`deletes`. Like a real network it echoes every message the plug sends back as a received
message with the same id (switch off with `echo = false`), and its capabilities are set in
its config so hooks can be tested against networks that cannot edit or delete.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import attrs

from .. import queue
from ..errors import Refused
from ..model import Channel, Message, Receipt, SentMessage, User
from ..plug import Capabilities, Plug, State


def _reaction(msg: Message) -> str | None:
    reaction = msg.reaction
    if reaction is None:
        return None
    target = getattr(reaction.target, "id", None)
    return f"{'took back ' if reaction.removed else ''}reaction {reaction.key} to {target}"


@attrs.frozen
class ScriptLine:
    """A line the memory network says by itself: `user` says `text` in `channel` after
    `after` seconds (counted from the previous line)."""

    channel: str
    user: str
    text: str
    after: float = 1.0
    action: bool = False


@attrs.frozen
class MemoryConfig:
    """Keys of a `type = "memory"` plug."""

    edit: bool = True
    delete: bool = True
    reply: bool = True
    echo: bool = True
    network: str = "memory"
    titles: dict[str, str] = attrs.field(factory=dict)
    private: list[str] = attrs.field(factory=list)
    bot_name: str = "bridge"
    script: list[ScriptLine] = attrs.field(factory=list)
    stdin_channel: str | None = None
    stdin_user: str = "you"
    journal: bool = False
    reactions: bool = True
    typing: bool = True
    #: names said in text notify people, as on IRC (relays break them: `no_highlight`)
    highlights: bool = True
    #: a burst of one person's lines is better shown as one message (`Capabilities.merge`)
    merge: bool = False


@attrs.define
class Event:
    """Something the bridge did on the memory network: `kind` is put, edit or delete."""

    kind: str
    channel: Channel
    msg: Message | None
    receipt: Receipt
    #: the delivery queue's key for this copy (`chanmux.queue.current_key()`), if any
    key: str | None = None


class MemoryPlug(Plug):
    """A plug whose network is a list in memory."""

    Config = MemoryConfig
    network_name: ClassVar[str] = "memory"
    _ids = itertools.count(1)

    def __init__(self, name: str, config: MemoryConfig, host: Any) -> None:
        super().__init__(name, config, host)
        self.capabilities = Capabilities(edit=config.edit, delete=config.delete, reply=config.reply,
                                         reactions=config.reactions, typing=config.typing,
                                         highlights=config.highlights, merge=config.merge)
        #: (user display name, active) for each `typing` the host asked for, per channel source
        self.typings: dict[str, list[tuple[str, bool]]] = {}
        self.network_name = config.network
        self.journal = config.journal  # a network without history: the host keeps what came
        self.events: list[Event] = []
        self.messages: dict[tuple[str, str], SentMessage] = {}
        self.members: dict[str, dict[str, User]] = {}
        #: each channel's title (what `channel_title` answers): the configured one, or with
        #: `follow_titles` the last one injected (`title=`), as on a real network
        self.titles: dict[str, str] = dict(config.titles)
        self.follow_titles = False
        self.bot = User(id=f"{name}:{config.bot_name}", plug=name, username=config.bot_name,
                        is_self=True)
        self._changed = anyio.Event()
        self._incoming: Any = None
        self._failure: BaseException | None = None
        self._fail_opens = 0
        self._open_error: BaseException | None = None
        self._broken = anyio.Event()
        self._open_gate: anyio.Event | None = None
        self._put_errors: list[BaseException] = []
        self._queued: set[anyio.Event] = set()  # injected messages the host has not queued yet
        #: a test's rule for content the network refuses: returns the reason, or None
        self.refuse: Callable[[Message], str | None] | None = None
        self.opens = 0
        #: puts, edits and deletes the host asked for while the plug was not active
        self.calls_while_down = 0

    # -- the network side: what tests use ----------------------------------------------------

    @property
    def sent(self) -> list[Event]:
        return [e for e in self.events if e.kind == "put"]

    @property
    def edits(self) -> list[Event]:
        return [e for e in self.events if e.kind == "edit"]

    @property
    def deletes(self) -> list[Event]:
        return [e for e in self.events if e.kind == "delete"]

    def texts(self, source: str | None = None) -> list[str]:
        """Plain text of every message put, in order (optionally in one channel)."""
        return [e.msg.text.plain if e.msg and e.msg.text else "" for e in self.sent
                if source is None or e.channel.source == source]

    def user(self, username: str, real_name: str | None = None) -> User:
        return User(id=f"{self.name}:{username}", plug=self.name, username=username,
                    real_name=real_name)

    async def inject(self, source: str, text: Any = None, *, user: User | str | None = "human",
                     id: str | None = None, on_handled: Callable[[], Any] | None = None,
                     **fields: Any) -> SentMessage:
        """A human says something in `source`; returns the message as the plug received it,
        once the host has queued it (so `host.wait_idle()` afterwards waits for its handling).
        `on_handled` is passed to `Host.receive` (called once the message is done). An edit
        is `inject(source, text, id=<the original's id>, edited=True, revision=...)`, a delete
        `inject(source, id=..., deleted=True)`, a rename `renamed=(before, after)` and a new
        channel title `title=...` (which `channel_title` answers from then on if
        `follow_titles` is set)."""
        if isinstance(user, str):
            user = self.user(user)
        sent = SentMessage(id=id or self._next_id(), channel=self.channel(source), text=text,
                           user=user, **fields)
        for u in sent.joined:
            self.members.setdefault(source, {})[u.id or ""] = u
        for u in sent.left:
            self.members.get(source, {}).pop(u.id or "", None)
        if sent.title is not None and self.follow_titles:
            self.titles[source] = sent.title
        if self.state is not State.active or self._incoming is None:
            raise ConnectionError(f"{self.name} is not connected")
        queued = anyio.Event()
        self._queued.add(queued)
        try:
            await self._incoming.send((sent, on_handled, queued))
            await queued.wait()
        finally:
            self._queued.discard(queued)
        return sent

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `condition()` is true (re-checked whenever the network changes)."""
        with anyio.fail_after(timeout):
            while not (result := condition()):
                await self._changed.wait()
            return result

    def fail(self, reason: str = "connection reset by test") -> None:
        """Drop the connection now, as a network failure would; the host reconnects it."""
        self._failure = ConnectionResetError(reason)
        self._broken.set()

    def fail_next_opens(self, count: int, error: BaseException | None = None) -> None:
        """Make the next `count` connection attempts fail (with `error`, by default a refused
        connection)."""
        self._fail_opens = count
        self._open_error = error

    def hold_opens(self) -> anyio.Event:
        """Make connection attempts wait (the plug stays `starting`, as a network that is
        slow to log in) until the returned event is set."""
        gate = self._open_gate = anyio.Event()
        return gate

    def fail_next_puts(self, *errors: BaseException) -> None:
        """Make the next puts and edits raise these, one each, in order (e.g. `TryLater`, a
        `ConnectionError`, `Refused`): a network answering 429, 5xx or refusing content."""
        self._put_errors.extend(errors)

    def _next_id(self) -> str:
        return f"{self.name}-{next(self._ids)}"

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the plug side -----------------------------------------------------------------------

    async def open(self) -> None:
        self.opens += 1
        self._touch()
        if self._open_gate is not None:
            await self._open_gate.wait()
            self._open_gate = None
        if self._fail_opens:
            self._fail_opens -= 1
            raise self._open_error or ConnectionRefusedError(f"{self.name}: refused (test)")
        self._failure = None
        self._broken = anyio.Event()
        self._incoming, self._outgoing = anyio.create_memory_object_stream[
            tuple[SentMessage, Any, anyio.Event | None]](10_000)
        self._touch()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            async def forward() -> None:
                async with self._outgoing:
                    async for sent, on_handled, queued in self._outgoing:
                        await self.host.receive(sent, on_handled=on_handled)
                        if queued is not None:
                            queued.set()

            tg.start_soon(forward)
            if self.config.script:
                tg.start_soon(self._play)
            if self.config.stdin_channel:
                tg.start_soon(self._read_stdin)
            await self._broken.wait()
            tg.cancel_scope.cancel()
        if self._failure:
            raise self._failure

    async def _play(self) -> None:
        """Say the configured script, as people on this network would."""
        for line in self.config.script:
            await anyio.sleep(line.after)
            self.log.info("%s <%s> %s", line.channel, line.user, line.text)
            await self.inject(line.channel, line.text, user=line.user, action=line.action)

    async def _read_stdin(self) -> None:
        """Say each line typed on standard input in `stdin_channel`."""
        import sys

        async with anyio.wrap_file(sys.stdin) as lines:
            async for line in lines:
                if line.strip():
                    await self.inject(self.config.stdin_channel, line.rstrip("\n"),
                                      user=self.config.stdin_user)

    async def close(self) -> None:
        if self._incoming is not None:
            await self._incoming.aclose()
            self._incoming = None
        for queued in self._queued:  # lost with the connection, as on a real network
            queued.set()
        self._touch()

    @staticmethod
    def _author(msg: Message) -> str:
        name = msg.user.display if msg.user else None
        if not name:
            return ""
        return f"* {name} " if msg.action else f"<{name}> "

    def _check(self, msg: Message | None = None) -> None:
        if self.state is not State.active or self._incoming is None:
            self.calls_while_down += 1
            raise ConnectionError(f"{self.name} is not connected")
        if msg is not None and self._put_errors:
            raise self._put_errors.pop(0)
        if msg is not None and self.refuse is not None:
            reason = self.refuse(msg)
            if reason:
                raise Refused(reason)

    async def _echo(self, sent: SentMessage) -> None:
        if self.config.echo and self._incoming is not None:
            await self._incoming.send((sent, None, None))

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        self._check(msg)
        sent = SentMessage.of(msg, id=self._next_id(), channel=channel, user=self.bot)
        self.messages[(channel.source, sent.id)] = sent
        receipt = sent.receipt()
        self.events.append(Event("put", channel, msg, receipt, queue.current_key()))
        self.log.info("%s <- %s%s", channel.source, self._author(msg), msg.text.plain if msg.text else
                      (msg.title or _reaction(msg) or "(no text)"))
        self._touch()
        await self._echo(sent)
        return [receipt]

    async def edit(self, sent: Receipt, msg: Message) -> list[Receipt]:
        self._check(msg)
        edited = SentMessage.of(msg, id=sent.id, channel=sent.channel, user=self.bot, edited=True,
                                revision=self._next_id())
        self.messages[(sent.channel.source, sent.id)] = edited
        receipt = edited.receipt()
        self.events.append(Event("edit", sent.channel, msg, receipt, queue.current_key()))
        self.log.info("%s <- edit of %s: %s%s", sent.channel.source, sent.id, self._author(msg),
                      msg.text.plain if msg.text else "")
        self._touch()
        await self._echo(edited)
        return [receipt]

    async def delete(self, sent: Receipt) -> bool:
        self._check()
        self.messages.pop((sent.channel.source, sent.id), None)
        self.events.append(Event("delete", sent.channel, None, sent, queue.current_key()))
        self.log.info("%s <- delete of %s", sent.channel.source, sent.id)
        self._touch()
        await self._echo(SentMessage(id=sent.id, channel=sent.channel, user=self.bot, deleted=True))
        return True

    async def typing(self, channel: Channel, user: User, active: bool) -> None:
        self.typings.setdefault(channel.source, []).append((user.display, active))
        self._touch()

    async def type(self, source: str, user: User | str = "human", active: bool = True) -> None:
        """A human starts (or stops) typing in `source`."""
        if isinstance(user, str):
            user = self.user(user)
        await self.host.typing_received(self.channel(source), user, active)

    async def channel_title(self, channel: Channel) -> str | None:
        return self.titles.get(channel.source, channel.source)

    async def channel_members(self, channel: Channel) -> list[User] | None:
        return [self.bot, *self.members.get(channel.source, {}).values()]

    async def channel_is_private(self, channel: Channel) -> bool | None:
        return channel.source in self.config.private

    async def public_channels(self) -> list[Channel] | None:
        sources = {c.source for c in self.host.channels.values() if c.plug == self.name}
        sources |= set(self.members)
        return [self.channel(s) for s in sorted(sources) if s not in self.config.private]

    async def private_channels(self) -> list[Channel] | None:
        return [self.channel(s) for s in self.config.private]
