"""MatrixPlug: one Matrix account on one homeserver, as a chanmux plug."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import anyio

from chanmux import (
    ActionRequired,
    Capabilities,
    Channel,
    File,
    Message,
    Plug,
    Receipt,
    Route,
    SentMessage,
    State,
    TryLater,
    User,
    current_key,
    describe,
)

from .client import CS, HomeserverUnavailable, MatrixClient, MatrixError, Outage, q
from .config import MatrixConfig
from .incoming import Incoming, obj
from .media import MediaProxy
from .outgoing import Renderer, Transactions, reply_target
from .positions import Positions
from .rooms import Bounded, Rooms
from .timeline import Sink, Timeline

#: How many of its own transaction ids and message senders the plug remembers.
MEMORY = 10_000


class MatrixPlug(Plug):
    """`type = "matrix"`: relays the rooms a Matrix account is in.

    `open` waits for the homeserver, logs in (reusing the device kept in the host database),
    joins the configured rooms and, on the very first start, learns room state without
    relaying history. `run` long-polls /sync and hands events to the host; it returns
    (so the host reconnects) only when the homeserver stayed unreachable for
    ``send_retry_for`` seconds or the login stopped working. The position saved for the next
    start moves only past events whose messages are done (see `positions`). What each /sync
    response says is read by a `timeline.Timeline` the plug builds with what it may use.
    """

    Config = MatrixConfig
    network_name: ClassVar[str] = "Matrix"
    capabilities = Capabilities(
        edit=True, delete=True, reply=True, upload=True, rich_text=True, actions=True,
        joins=True, titles=True, message_ids=True)

    def __init__(self, name: str, config: MatrixConfig, host: Any) -> None:
        super().__init__(name, config, host)
        self.config: MatrixConfig = config
        self.user_id = config.user_id
        self.device_id: str | None = None
        self.client: MatrixClient | None = None
        self.outage = Outage(self.log, config.homeserver.rstrip("/"))
        self.rooms = Rooms()
        self.senders: Bounded = Bounded(MEMORY)
        self.renderer = Renderer(name, config.name_format, config.action_name_format)
        self.transactions = Transactions()
        self.media = MediaProxy(name, client=self._connected, public_link=host.public_link,
                                log=self.log)
        self.incoming = Incoming(name, self.user_id, self._mention, self.download,
                                 link=self.media.link)
        self.since: str | None = None  # where the next /sync fetches from
        self.positions = Positions(None, (), self._note_position)  # where the next start resumes
        self.timeline = Timeline(
            self.user_id, client=self._connected, rooms=self.rooms, positions=self.positions,
            incoming=self.incoming, channel=self.channel_of, is_echo=self.is_own_echo,
            senders=self.senders, log=self.log, timeline_limit=config.timeline_limit,
            max_catchup_age=config.max_catchup_age, retry_for=config.send_retry_for,
            sink=Sink(receive=self._hand_over, invited=self.on_invite, left=self.on_left,
                      encrypted=self.report_encryption))
        self._position_changed: anyio.Event | None = None
        self._position_saved: tuple[str | None, list[str]] | None = None
        self._position_unsaved: str | None = None  # why the last save failed, said once
        self._token: str | None = config.access_token
        self._own_txns: Bounded = Bounded(MEMORY)
        self._locks: dict[str, anyio.Lock] = {}
        self._aliases: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._invites_seen: set[str] = set()
        #: set when the homeserver stops accepting our login while running (run() then ends,
        #: so the host connects again and the plug logs in anew)
        self._logged_out: anyio.Event | None = None

    # -- checks that need no connection -------------------------------------------------------

    def check_warnings(self) -> list[str]:
        """Warnings `chanmux check` prints; none of them needs the homeserver."""
        warnings = []
        parts = urlsplit(self.config.homeserver)
        if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            warnings.append(f"homeserver {self.config.homeserver} is plain http: the access token "
                            "and every message travel unencrypted")
        if self.config.access_token and self.config.password:
            warnings.append("both access_token and password are set; access_token is used and "
                            "password only if the token stops working")
        warnings.append("end-to-end encrypted rooms are not supported; whether a room is "
                        "encrypted can't be checked offline (it is logged once when connected)")
        return warnings

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self.client = MatrixClient(self.config.homeserver, log=self.log,
                                   timeout=self.config.request_timeout,
                                   retry_max_delay=self.config.retry_max_delay, outage=self.outage)
        await self.client.versions(retry_for=None)
        await self._login()
        await self._load_direct()
        if self._position_saved is None:  # the first start of this run, not a reconnect
            stored = await self.host.store.get_state(self.name, "since")
            if isinstance(stored, dict) and stored.get("user_id") == self.user_id:
                token, done = stored.get("token"), stored.get("done")
                self.since = token if isinstance(token, str) else None
                self.positions.reset(self.since, done if isinstance(done, list) else ())
            else:
                self.positions.reset(None)
            self._position_saved = self.positions.state()
        await self._join_rooms()
        if self.since is None:
            await self._initial_sync()
            self.log.info("first start: learnt %d rooms; their earlier history is not relayed",
                          len(self.rooms.rooms))
        if self.config.display_name:
            current = await self.client.displayname(self.user_id, retry_for=self.config.send_retry_for)
            if current != self.config.display_name:
                await self.client.set_displayname(self.user_id, self.config.display_name,
                                                  retry_for=self.config.send_retry_for)
        self._logged_out = anyio.Event()  # logged in: sends may go (see _ready)

    async def _initial_sync(self) -> None:
        """Learn the rooms' state without relaying their history; keep the position."""
        data = await self._connected().sync(None, self.timeline.initial_filter(), 0,
                                            retry_for=self.config.send_retry_for)
        await self.timeline.process(data, None, relay=False, backlog_before=None)
        token = data.get("next_batch")
        if isinstance(token, str):
            self.since = token
            self.positions.reset(token)
            await self._save_position()

    async def run(self) -> None:
        logged_out = self._logged_out
        assert logged_out is not None, "run() before open()"
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_position, name=f"{self.name}:position")

            async def sync() -> None:
                try:
                    await self._sync_loop()
                except MatrixError as exc:
                    if exc.status != 401:
                        raise
                    self._lost_login(exc)
                    return
                tg.cancel_scope.cancel()

            tg.start_soon(sync, name=f"{self.name}:sync")
            await logged_out.wait()
            tg.cancel_scope.cancel()
        raise TryLater(self._logout_reason)

    async def _sync_loop(self) -> None:
        # events sent before this moment are backlog: missed while the bridge was away, they
        # are skipped when older than max_catchup_age, whichever /sync response brings them
        backlog_before = time.time()
        client = self._connected()
        while True:
            outage = False

            def retrying() -> None:
                nonlocal outage
                outage = True

            since = self.since
            try:
                data = await client.sync(since, self.timeline.filter, self.config.sync_timeout,
                                         on_retry=retrying, retry_for=self.config.send_retry_for)
            except MatrixError as exc:
                if exc.status not in (400, 404) or since is None:
                    raise
                self.log.warning("the homeserver refused the saved sync position (%s); starting "
                                 "afresh: what happened meanwhile is not relayed", exc)
                await self._initial_sync()
                continue
            if outage:  # what was sent while the homeserver did not answer is backlog too
                backlog_before = time.time()
            token = await self.timeline.take(data, since, backlog_before=backlog_before)
            if token is not None:
                self.since = token

    async def close(self) -> None:
        self._logged_out = None
        client, self.client = self.client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def _connected(self) -> MatrixClient:
        client = self.client
        if client is None or client.closed:
            raise HomeserverUnavailable(f"{self.name} is not connected")
        return client

    def _ready(self) -> MatrixClient:
        """The client, for sending: only once logged in (raises TryLater before)."""
        if self.state is not State.active or self._logged_out is None or self._logged_out.is_set():
            raise TryLater(f"{self.name} is not logged in yet")
        return self._connected()

    _logout_reason = "the homeserver no longer accepts the login; logging in again"

    def _lost_login(self, exc: MatrixError) -> TryLater:
        """The homeserver answered 401 while running (the access token was revoked or expired):
        end `run`, so the host connects again and `open` logs in anew. What failed is kept and
        tried again once logged in."""
        self._logout_reason = (f"the homeserver no longer accepts the access token "
                               f"({exc.errcode}: {exc.error}); logging in again")
        if self._logged_out is not None:
            self._logged_out.set()
        return TryLater(self._logout_reason)

    async def _hand_over(self, sent: SentMessage, on_handled: Callable[[], None] | None) -> None:
        """What the timeline relays goes to the host (`on_handled` moves the resume point)."""
        await self.host.receive(sent, on_handled=on_handled)

    def _note_position(self) -> None:
        if self._position_changed is not None:
            self._position_changed.set()

    async def _keep_position(self) -> None:
        """Save the resume point whenever it (or what is done beyond it) changes, once what
        the done messages wrote in batches is written (an IRC line forgotten in its journal
        once the server confirmed it): killed just after, that line is not sent again."""
        while True:
            self._position_changed = anyio.Event()
            for writer in list(self.host.store.writers):
                with anyio.move_on_after(5):  # a database that refuses writes: save anyway
                    await writer.flush()
            try:
                await self._save_position()
            except Exception as exc:  # noqa: BLE001 - the database refuses writes: kept in memory
                if self._position_unsaved is None:
                    self._position_unsaved = describe(exc)
                    self.log.error("cannot save the resume point (%s); relaying goes on and it "
                                   "is saved once the database takes writes again",
                                   self._position_unsaved)
            else:
                if self._position_unsaved is not None:
                    self._position_unsaved = None
                    self.log.info("the resume point is saved again")
            # unsaved, it is tried again after a while even if nothing else happens
            with anyio.move_on_after(math.inf if self._position_unsaved is None else 10.0):
                await self._position_changed.wait()

    async def _save_position(self) -> None:
        state = self.positions.state()
        if state == self._position_saved or state[0] is None:
            return
        token, done = state
        await self.host.store.set_state(self.name, "since",
                                        {"user_id": self.user_id, "token": token, "done": done})
        self._position_saved = state
        self.log.debug("resume point saved (%d events done beyond it; last done %s)", len(done),
                       self.positions.last_done)

    async def stopped(self) -> None:
        """Save the resume point as it is once everything is closed: other plugs may have
        kept (and so finished with) deliveries of our messages while closing."""
        waiting = self.positions.waiting
        await self._save_position()
        if waiting:
            self.log.info("%d received messages were not delivered yet; they are fetched "
                          "again at the next start", waiting)

    # -- login -------------------------------------------------------------------------------

    async def _login(self) -> None:
        client = self._connected()
        retry = self.config.send_retry_for
        where = f"plugs.{self.name}"
        if self._token:
            client.token = self._token
            try:
                who = await client.whoami(retry_for=retry)
            except MatrixError as exc:
                if exc.status != 401:
                    raise
                if not self.config.password:
                    raise ActionRequired(
                        f"the homeserver refuses the access token ({exc.errcode}: {exc.error}): "
                        f"set a new {where}.access_token, or {where}.password so the bridge can "
                        f"log in by itself; messages for Matrix are kept meanwhile") from None
                self.log.info("the access token stopped working; logging in with the password")
            else:
                self._check_user(who.get("user_id"))
                self.device_id = who.get("device_id")
                if self.config.password and isinstance(self.device_id, str):
                    # a later login with the password takes this device again, so the
                    # homeserver still knows the transaction ids of what was sent on it
                    kept = await self.host.store.get_state(self.name, "device")
                    if kept != {"user_id": self.user_id, "device_id": self.device_id}:
                        await self.host.store.set_state(
                            self.name, "device", {"user_id": self.user_id,
                                                  "device_id": self.device_id})
                return
        if not self.config.password:
            raise ActionRequired(f"no usable credentials: set {where}.access_token or "
                                 f"{where}.password")
        client.token = None
        kept = await self.host.store.get_state(self.name, "device")
        same = isinstance(kept, dict) and kept.get("user_id") == self.user_id
        device = kept.get("device_id") if same else None
        try:
            data = await client.login(self.user_id, self.config.password, device,
                                      self.config.device_name, retry_for=retry)
        except MatrixError as exc:
            if exc.status in (401, 403):
                raise ActionRequired(
                    f"the homeserver refuses the password of {self.user_id} ({exc.errcode}: "
                    f"{exc.error}): check {where}.password and {where}.user_id") from None
            raise
        self._check_user(data.get("user_id"))
        self._token = client.token = data["access_token"]
        self.device_id = data.get("device_id")
        if self.device_id != device:
            await self.host.store.set_state(self.name, "device",
                                            {"user_id": self.user_id, "device_id": self.device_id})
            self.log.info("logged in as %s on new device %s", self.user_id, self.device_id)
        else:
            self.log.info("logged in as %s on device %s", self.user_id, self.device_id)

    def _check_user(self, user_id: Any) -> None:
        if user_id != self.user_id:
            raise ActionRequired(f"the credentials belong to {user_id}, not to the configured "
                                 f"plugs.{self.name}.user_id {self.user_id}")

    async def _load_direct(self) -> None:
        client = self._connected()
        try:
            data = await client.request("GET", f"{CS}/user/{q(self.user_id)}/account_data/m.direct",
                                        retry_for=self.config.send_retry_for)
        except MatrixError as exc:
            if exc.status != 404:
                raise
            data = {}
        self.rooms.set_direct(data)

    # -- rooms -------------------------------------------------------------------------------

    async def _join_rooms(self) -> None:
        """Join the configured rooms (and rooms of configured channels), check encryption."""
        client = self._connected()
        configured = [c.source for c in self.host.channels.values() if c.plug == self.name]
        wanted = list(dict.fromkeys([*self.config.rooms, *configured]))
        joined = set(await client.joined_rooms(retry_for=self.config.send_retry_for))
        for source in wanted:
            try:
                room_id = await self.room_id(source)
                if source in configured:
                    self._sources.setdefault(room_id, source)
                if room_id not in joined:
                    room_id = await client.join(source, retry_for=self.config.send_retry_for)
                    self.log.info("joined %s", source)
                    joined.add(room_id)
                encryption = await client.state(room_id, "m.room.encryption",
                                                retry_for=self.config.send_retry_for)
                if encryption is not None:
                    self.rooms[room_id].encrypted = True
                    self.report_encryption(room_id)
            except MatrixError as exc:
                self.log.warning("cannot join %s (%s); its messages are not relayed", source, exc)

    async def room_id(self, source: str) -> str:
        """The room id of a channel source (a room id, or an alias resolved once)."""
        if source.startswith("!"):
            return source
        room_id = self._aliases.get(source)
        if room_id is None:
            room_id = await self._connected().resolve_alias(source, retry_for=self.config.send_retry_for)
            self._aliases[source] = room_id
        return room_id

    def channel_of(self, room_id: str) -> Channel:
        """The channel for a room: under the configured alias when the config names it so."""
        return self.channel(self._sources.get(room_id, room_id))

    def report_encryption(self, room_id: str) -> None:
        room = self.rooms[room_id]
        if room.encrypted and not room.encryption_reported:
            room.encryption_reported = True
            self.log.warning("room %s is end-to-end encrypted, which chanmux-matrix does not "
                             "support: its messages cannot be read and are skipped, and what the "
                             "bridge sends there is not encrypted", self._sources.get(room_id, room_id))

    async def on_invite(self, room_id: str, invite: dict[str, Any]) -> None:
        if room_id in self._invites_seen:
            return
        self._invites_seen.add(room_id)
        inviter, direct = None, False
        state = obj(invite.get("invite_state"))
        for event in state.get("events", []) if isinstance(state.get("events"), list) else []:
            if (isinstance(event, dict) and event.get("type") == "m.room.member"
                    and event.get("state_key") == self.user_id and isinstance(event.get("content"), dict)):
                inviter = event.get("sender")
                direct = bool(event["content"].get("is_direct"))
        if not self.config.accept_invites:
            self.log.info("invited to %s by %s; not joining (accept_invites is off)", room_id, inviter)
            return
        try:
            await self._connected().join(room_id, retry_for=self.config.send_retry_for)
        except MatrixError as exc:
            self.log.warning("invited to %s by %s but cannot join (%s)", room_id, inviter, exc)
            return
        self.log.info("joined %s on an invite from %s", room_id, inviter)
        if direct and isinstance(inviter, str):
            self.rooms[room_id].direct = True
            await self._mark_direct(inviter, room_id)

    async def _mark_direct(self, user_id: str, room_id: str) -> None:
        """Record a direct chat in the account's m.direct, so it is known after a restart."""
        client = self._connected()
        path = f"{CS}/user/{q(self.user_id)}/account_data/m.direct"
        try:
            data = await client.request("GET", path, retry_for=self.config.send_retry_for)
        except MatrixError:
            data = {}
        rooms = data.get(user_id) if isinstance(data.get(user_id), list) else []
        if room_id not in rooms:
            data[user_id] = [*rooms, room_id]
            await client.request("PUT", path, json=data, retry_for=self.config.send_retry_for)
        self.rooms.set_direct(data)

    def on_left(self, room_id: str) -> None:
        if room_id in self.rooms:
            self.log.warning("the bridge account left or was removed from %s",
                             self._sources.get(room_id, room_id))
            self.rooms.forget(room_id)
        self._invites_seen.discard(room_id)

    def is_own_echo(self, event: dict[str, Any]) -> bool:
        """True for the homeserver's copy of something this plug sent in this run."""
        unsigned = obj(event.get("unsigned"))
        txn = unsigned.get("transaction_id")
        return isinstance(txn, str) and txn in self._own_txns

    def _mention(self, room_id: str, user_id: str) -> User:
        room = self.rooms[room_id] if room_id in self.rooms else None
        name = room.names.get(user_id) if room is not None else None
        return User(id=user_id, plug=self.name, username=user_id, real_name=name,
                    link=f"https://matrix.to/#/{user_id}", is_self=user_id == self.user_id)

    async def download(self, mxc: str) -> bytes:
        """The bytes of a file on the homeserver (authenticated media)."""
        return await self._connected().download(mxc, retry_for=self.config.send_retry_for)

    async def http_routes(self) -> list[Route]:
        """The media proxy's route on the host's HTTP listener (files as links for IRC)."""
        return self.media.routes()

    # -- sending -----------------------------------------------------------------------------

    def _lock(self, room_id: str) -> anyio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = anyio.Lock()
        return lock

    async def _send(self, room_id: str, event_type: str, txn: str, content: dict[str, Any]) -> str:
        self._own_txns[txn] = True
        try:
            event_id = await self._ready().send(room_id, event_type, txn, content,
                                                retry_for=self.config.send_retry_for)
        except MatrixError as exc:
            if exc.status == 401:
                raise self._lost_login(exc) from None
            raise
        self.senders[event_id] = self.user_id
        return event_id

    async def _file_content(self, msg: Message, file: File) -> dict[str, Any] | None:
        data = None
        if file.fetch is not None:
            try:
                data = await file.fetch()
            except Exception as exc:  # noqa: BLE001 - a file that cannot be fetched is linked instead
                self.log.warning("cannot fetch %s (%s: %s); sending %s", file.title or "a file",
                                 type(exc).__name__, exc, "its link" if file.url else "nothing")
        if data is None:
            if not file.url:
                return None
            text = Message(text=f"{file.title or 'file'}: {file.url}", user=msg.user)
            return self.renderer.parts(text, None)[0].content
        try:
            mxc = await self._ready().upload(data, file.mime or "application/octet-stream",
                                             file.title, retry_for=self.config.send_retry_for)
        except MatrixError as exc:
            if exc.status == 401:
                raise self._lost_login(exc) from None
            raise
        return self.renderer.file_content(msg, file, mxc, len(data))

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        room_id = await self.room_id(channel.source)
        parts = self.renderer.parts(msg, reply_target(msg, channel, room_id))
        contents = []
        for part in parts:
            content = part.content if part.content is not None else await self._file_content(msg, part.file)  # type: ignore[arg-type]
            if content is not None:
                contents.append(content)
        key = current_key()  # stable across retries and restarts when a delivery queue sends
        base = f"{key}|put|{room_id}" if key else self.transactions.base(msg, "put", room_id)
        receipts = []
        async with self._lock(room_id):
            for index, content in enumerate(contents):
                event_id = await self._send(room_id, "m.room.message",
                                            self.transactions.txn(base, index), content)
                receipts.append(Receipt(id=event_id, channel=channel))
        return receipts

    async def edit(self, sent: Receipt, msg: Message) -> list[Receipt]:
        room_id = await self.room_id(sent.channel.source)
        content = self.renderer.edit_content(msg, sent.id)
        key = current_key()
        txn = self.transactions.txn(f"{key}|edit|{room_id}|{sent.id}" if key else
                                    self.transactions.base(msg, "edit", room_id, sent.id))
        async with self._lock(room_id):
            event_id = await self._send(room_id, "m.room.message", txn, content)
        return [Receipt(id=sent.id, channel=sent.channel, revision=event_id, edited=True)]

    async def delete(self, sent: Receipt) -> bool:
        room_id = await self.room_id(sent.channel.source)
        txn = self.transactions.txn(f"redact|{room_id}|{sent.id}")
        async with self._lock(room_id):
            self._own_txns[txn] = True
            try:
                await self._ready().redact(room_id, sent.id, txn,
                                           retry_for=self.config.send_retry_for)
            except MatrixError as exc:
                if exc.status == 401:
                    raise self._lost_login(exc) from None
                self.log.warning("%s: cannot redact %s (%s)", sent.channel.source, sent.id, exc)
                return False
        return True

    # -- look-ups ----------------------------------------------------------------------------

    async def channel_title(self, channel: Channel) -> str | None:
        room_id = await self.room_id(channel.source)
        client = self._connected()
        name = await client.state(room_id, "m.room.name", retry_for=self.config.send_retry_for)
        if name and isinstance(name.get("name"), str) and name["name"]:
            return name["name"]
        alias = await client.state(room_id, "m.room.canonical_alias",
                                   retry_for=self.config.send_retry_for)
        if alias and isinstance(alias.get("alias"), str) and alias["alias"]:
            return alias["alias"]
        return None

    async def channel_members(self, channel: Channel) -> list[User] | None:
        room_id = await self.room_id(channel.source)
        joined = await self._connected().joined_members(room_id, retry_for=self.config.send_retry_for)
        users = []
        for user_id, info in sorted(joined.items()):
            name = info.get("display_name") if isinstance(info, dict) else None
            self.rooms[room_id].names[user_id] = name
            users.append(User(id=user_id, plug=self.name, username=user_id, real_name=name,
                              link=f"https://matrix.to/#/{user_id}", is_self=user_id == self.user_id))
        return users

    async def channel_is_private(self, channel: Channel) -> bool | None:
        return self.rooms.is_direct(await self.room_id(channel.source))

    async def public_channels(self) -> list[Channel] | None:
        joined = await self._connected().joined_rooms(retry_for=self.config.send_retry_for)
        return [self.channel_of(r) for r in sorted(joined) if not self.rooms.is_direct(r)]

    async def private_channels(self) -> list[Channel] | None:
        joined = await self._connected().joined_rooms(retry_for=self.config.send_retry_for)
        return [self.channel_of(r) for r in sorted(joined) if self.rooms.is_direct(r)]

    async def channel_link(self, channel: Channel) -> str | None:
        source = channel.source
        if source.startswith("!"):
            room = self.rooms.rooms.get(source)
            if room is not None and room.alias:
                return f"https://matrix.to/#/{quote(room.alias, safe='#:')}"
            server = source.split(":", 1)[1] if ":" in source else self.user_id.split(":", 1)[1]
            return f"https://matrix.to/#/{quote(source, safe='!:')}?via={quote(server, safe='')}"
        return f"https://matrix.to/#/{quote(source, safe='#:')}"


__all__ = ["MatrixPlug"]
