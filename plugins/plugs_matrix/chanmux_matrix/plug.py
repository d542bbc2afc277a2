"""MatrixPlug: one Matrix account on one homeserver, as a chanmux plug."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import anyio
import attrs

from chanmux import (
    ActionRequired,
    Capabilities,
    Channel,
    ConfigError,
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

from .appservice import AppService, Registration
from .client import CS, HomeserverUnavailable, MatrixClient, MatrixError, Outage, q
from .config import MatrixConfig
from .ghosts import Ghosts
from .incoming import Incoming, obj, sent_at
from .media import MediaProxy
from .outgoing import Renderer, Transactions, addressed, reaction_target, reply_target, with_mention
from .positions import Positions
from .reactions import Reactions
from .reactions import content as reaction_content
from .rooms import Bounded, Rooms
from .timeline import MAX_GAP_EVENTS, Sink, Timeline

#: How many of its own transaction ids and message senders the plug remembers.
MEMORY = 10_000
#: Seconds after which an event the homeserver has not pushed is late (said in the log).
LATE = 10.0
#: Seconds after the service is up again (a start, the end of an outage) during which each
#: pushed transaction is first checked against the history of its rooms: that is when Synapse
#: leaves a transaction unsent and pushes the ones after it (so the gap is filled in order).
VERIFY_FOR = 20.0
#: Seconds that check waits for the homeserver to answer before taking the transaction as is.
VERIFY_RETRY = 2.0
#: Pings at a start when the homeserver fails them after they reached the bridge (1 s apart).
PING_TRIES = 5
#: How long a ghost shows as typing unless told again (ms): a little longer than IRC's
#: "typing=active" lasts (6 s), which a relay passes on every few seconds while it holds.
TYPING_TIMEOUT_MS = 10_000
#: How long one "is typing" is retried (a dropped connection), not through an outage:
#: typing is a courtesy, and stale once late.
TYPING_RETRY_FOR = 2.0


def _events(count: int) -> tuple[str, str]:
    """`N events` and the pronoun for them, for a log line."""
    return ("1 event", "it") if count == 1 else (f"{count} events", "them")


class MatrixPlug(Plug):
    """`type = "matrix"`: relays the rooms a Matrix account is in.

    `open` waits for the homeserver, logs in (reusing the device kept in the host database),
    joins the configured rooms and, on the very first start, learns room state without
    relaying history. `run` long-polls /sync and hands events to the host; it returns
    (so the host reconnects) only when the homeserver stayed unreachable for
    ``send_retry_for`` seconds or the login stopped working. The position saved for the next
    start moves only past events whose messages are done (see `positions`). What each /sync
    response says is read by a `timeline.Timeline` the plug builds with what it may use.

    With `registration` set it runs as an application service instead: the homeserver
    pushes the rooms' events to the host's HTTP listener (`appservice.AppService`), which
    hands them to the same `Timeline`; people of other networks speak as Matrix users of
    their own (`ghosts.Ghosts`); and what it receives is kept in the host's inbox until it
    is done (``journal``), since the homeserver does not send it again once answered.
    """

    Config = MatrixConfig
    network_name: ClassVar[str] = "Matrix"
    #: typing is shown as an application service only (see `typing`); `merge` follows the
    #: `merge_lines` key
    capabilities = Capabilities(
        edit=True, delete=True, reply=True, upload=True, rich_text=True, actions=True,
        joins=True, titles=True, message_ids=True, reactions=True)

    def __init__(self, name: str, config: MatrixConfig, host: Any) -> None:
        super().__init__(name, config, host)
        self.config: MatrixConfig = config
        self.capabilities = attrs.evolve(self.capabilities, merge=config.merge_lines)
        self.user_id = config.user_id
        self.device_id: str | None = None
        self.client: MatrixClient | None = None
        self.outage = Outage(self.log, config.homeserver.rstrip("/"))
        self.outage.on_end = self._outage_ended
        self.rooms = Rooms()
        self.senders: Bounded = Bounded(MEMORY)
        #: set in `on_load` when the plug runs as an application service
        self.registration: Registration | None = None
        self.ghosts: Ghosts | None = None
        self.appservice: AppService | None = None
        self.renderer = Renderer(name, config.name_format, config.action_name_format,
                                 ghost_of=self._ghost_of)
        self.transactions = Transactions()
        self.reactions = Reactions(client=self._connected, retry_for=config.send_retry_for,
                                   size=MEMORY)
        self.media = MediaProxy(name, client=self._connected, public_link=host.public_link,
                                log=self.log)
        self.incoming = Incoming(name, self.user_id, self._mention, self.download,
                                 link=self.media.link, is_own=self._is_own)
        self.since: str | None = None  # where the next /sync fetches from
        self.positions = Positions(None, (), self._note_position)  # where the next start resumes
        self.timeline = Timeline(
            self.user_id, client=self._connected, rooms=self.rooms, positions=self.positions,
            incoming=self.incoming, channel=self.channel_of, is_echo=self.is_own_echo,
            senders=self.senders, log=self.log, timeline_limit=config.timeline_limit,
            max_catchup_age=config.max_catchup_age, retry_for=config.send_retry_for,
            sink=Sink(receive=self._hand_over, invited=self.on_invite, left=self.on_left,
                      encrypted=self.report_encryption, typing=self._typing_received),
            is_own=self._is_own)
        self._position_changed: anyio.Event | None = None
        self._position_saved: tuple[str | None, list[str]] | None = None
        self._position_unsaved: str | None = None  # why the last save failed, said once
        self._token: str | None = config.access_token
        self._own_txns: Bounded = Bounded(MEMORY)
        self._own_events: Bounded = Bounded(MEMORY)  # event ids the plug sent in this run
        self._taken: Bounded = Bounded(MEMORY)  # event ids the homeserver pushed, handed over
        #: room id -> Unix time back to which its history has been read and taken (catch-up)
        self._checked: dict[str, float] = {}
        #: room id -> {event id: Unix time} of the events taken since that time: with
        #: `_checked`, kept in the database, so that a start reads back what was said while
        #: the bridge was down, in order, and hands over none of what the last run took
        self._recent: dict[str, dict[str, float]] = {}
        self._history_loaded = False
        self._history_saved: Any = None  # as the database holds it
        self._history_unsaved: str | None = None  # why the last save failed, said once
        self._verify_until = 0.0  # (monotonic) see VERIFY_FOR
        self._opened = time.time()  # when the plug last connected
        self._bridged: set[str] = set()  # the rooms of the config (watched by the catch-up)
        self._recovered: anyio.Event | None = None
        self._started = time.time()  # pushed events older than this may be a last run's
        self._ping_said: str | None = None
        self._locks: dict[str, anyio.Lock] = {}
        self._aliases: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._invites_seen: set[str] = set()
        #: set when the homeserver stops accepting our login while running (run() then ends,
        #: so the host connects again and the plug logs in anew)
        self._logged_out: anyio.Event | None = None

    # -- checks that need no connection -------------------------------------------------------

    def registration_path(self) -> Path | None:
        """The registration file, relative to the config file's folder."""
        if self.config.registration is None:
            return None
        path = Path(self.config.registration).expanduser()
        folder = self.host.config.path.parent if self.host.config.path else Path.cwd()
        return path if path.is_absolute() else folder / path

    def on_load(self) -> None:
        """In application-service mode: the registration file must exist and agree with the
        config, and the host must listen for the homeserver's calls."""
        path = self.registration_path()
        if path is None:
            return
        where = f"plugs.{self.name}.registration"
        config_file = self.host.config.path or "bridge.toml"
        issues = []
        try:
            registration = Registration.read(path)
        except ValueError as exc:
            issues.append((where, f"{exc}: write it with `chanmux matrix-registration "
                                  f"{config_file}` and list it in the homeserver's "
                                  f"app_service_config_files"))
        else:
            for problem in registration.problems(user_id=self.user_id, prefix=self.config.ghost_prefix):
                issues.append((where, f"{path} does not match the config: {problem}; write it "
                                      f"again with `chanmux matrix-registration --force "
                                      f"{config_file}`, then restart the homeserver"))
        if not self.host.config.http.listen:
            issues.append(("http.listen", f"plugs.{self.name} runs as an application service, "
                                          f"so the homeserver must reach the bridge: set "
                                          f'[http] listen (e.g. "127.0.0.1:9180")'))
        if issues:
            raise ConfigError(issues)
        self._as_appservice(registration)

    def _as_appservice(self, registration: Registration) -> None:
        self.registration = registration
        self.journal = True
        self.ghosts = Ghosts(
            plug=self.name, client=self._connected, bot=self.user_id,
            prefix=self.config.ghost_prefix, log=self.log, retry_for=self.config.send_retry_for,
            load=lambda: self.host.store.get_state(self.name, "ghost_moves"),
            save=lambda moves: self.host.store.set_state(self.name, "ghost_moves", moves))
        self.appservice = AppService(registration, intake=self._intake, ready=self._can_take,
                                     is_ghost=self.ghosts.is_ghost, log=self.log,
                                     ephemeral=self._ephemeral)
        # each person's ghost can be shown typing (the bridge account typing would mislead)
        self.capabilities = attrs.evolve(self.capabilities, typing=True)

    def _is_own(self, user_id: str) -> bool:
        """The bridge account, or (application service) one of its ghosts."""
        return user_id == self.user_id or (self.ghosts is not None and self.ghosts.is_ghost(user_id))

    def _ghost_of(self, user: User) -> str | None:
        return self.ghosts.ghost_id(user) if self.ghosts is not None else None

    def check_warnings(self) -> list[str]:
        """Warnings `chanmux check` prints; none of them needs the homeserver."""
        warnings = []
        registration = self.registration
        if registration is not None:
            url = urlsplit(registration.url)
            listen = self.host.config.http.listen or ""
            if url.hostname in ("localhost", "127.0.0.1", "::1") and not listen.endswith(f":{url.port}"):
                warnings.append(f"the registration's url {registration.url} is not where the "
                                f"bridge listens ([http] listen = {listen!r}): the homeserver "
                                f"cannot reach it")
            if self.config.access_token or self.config.password:
                warnings.append("access_token and password are not used by an application "
                                "service (it acts with the registration's as_token)")
            if not registration.ephemeral:
                warnings.append(f"the registration {self.registration_path()} does not ask for "
                                f"ephemeral events (receive_ephemeral: true), so who types on "
                                f"Matrix is not shown elsewhere: add it (or write the file again "
                                f"with `chanmux matrix-registration --force`) and restart the "
                                f"homeserver")
            return warnings
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
        if self.registration is not None:
            await self._open_appservice(self.registration)
            return
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
        if self.registration is not None:
            await self._run_appservice(self.registration, logged_out)
            return
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

    async def _typing_received(self, channel: Channel, user: User, active: bool) -> None:
        """Someone on Matrix started or stopped typing: the host tells the hooks."""
        await self.host.typing_received(channel, user, active)

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
        kept (and so finished with) deliveries of our messages while closing. (As an
        application service: how far the rooms were read back, and what was taken since.)"""
        waiting = self.positions.waiting
        if self.registration is not None:
            await self._save_history()
            return
        await self._save_position()
        if waiting:
            self.log.info("%d received messages were not delivered yet; they are fetched "
                          "again at the next start", waiting)

    # -- the application-service mode ------------------------------------------------------

    async def _open_appservice(self, registration: Registration) -> None:
        """Check the homeserver knows the service, join the rooms and learn their state (the
        homeserver pushes only what happens from now on)."""
        client = self._connected()
        retry = self.config.send_retry_for
        client.token = registration.as_token
        try:
            who = await client.whoami(retry_for=retry)
        except MatrixError as exc:
            if exc.status not in (401, 403):
                raise
            raise ActionRequired(
                f"the homeserver does not know this application service ({exc.errcode}: "
                f"{exc.error}): list {self.registration_path()} in its app_service_config_files "
                f"and restart it; messages for Matrix are kept meanwhile") from None
        self._check_user(who.get("user_id"))
        assert self.ghosts is not None
        await self.ghosts.start()
        await self._load_direct()
        await self._join_rooms()
        self._opened = time.time()
        kept = await self._load_history()
        for room_id in await client.joined_rooms(retry_for=retry):
            for event in await client.request("GET", f"{CS}/rooms/{q(room_id)}/state", retry_for=retry):
                if isinstance(event, dict):
                    self.rooms[room_id].apply(event)
            self.rooms[room_id].complete = True  # the whole state: every member
            if room_id in self._bridged and room_id not in self._checked:
                # watched by the catch-up: from where the last run had read it back (what was
                # said while the bridge was down is taken in order, before the homeserver
                # sends it), or from now on in a room new to the bridge
                self._checked[room_id] = kept.get(room_id, self._opened)
        if self.config.display_name:
            current = await client.displayname(self.user_id, retry_for=retry)
            if current != self.config.display_name:
                await client.set_displayname(self.user_id, self.config.display_name, retry_for=retry)
        self._logged_out = anyio.Event()

    async def _run_appservice(self, registration: Registration, logged_out: anyio.Event) -> None:
        """Have the homeserver call us (which also sends at once what it kept for us while we
        were away), then watch that it still answers: past ``send_retry_for`` without an
        answer this ends, and the host connects again."""
        client = self._connected()
        self._verify_until = time.monotonic() + VERIFY_FOR
        await self._catch_up()  # connected again after a failure: what was lost meanwhile
        await self._ping(client, registration)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._catch_up_after_outages, name=f"{self.name}:catch-up")
            while not logged_out.is_set():
                with anyio.move_on_after(self.config.sync_timeout):
                    await logged_out.wait()
                if not logged_out.is_set():
                    await client.versions(retry_for=self.config.send_retry_for)
                    # and what it should have pushed by now (Synapse can leave a transaction
                    # unsent when an event comes as it marks the service up again)
                    await self._catch_up()
            tg.cancel_scope.cancel()
        raise TryLater(self._logout_reason)

    async def _ping(self, client: MatrixClient, registration: Registration) -> None:
        for attempt in range(PING_TRIES):
            if await self._ping_once(client, registration) or attempt == PING_TRIES - 1:
                return
            # it reached us and the homeserver failed after: it did not start sending what it
            # kept (its own retry, backing off, may wait minutes), so it is asked again
            await anyio.sleep(1.0)

    async def _ping_once(self, client: MatrixClient, registration: Registration) -> bool:
        """One ping; False when it reached the bridge but the homeserver then failed it."""
        txn = f"chanmux-ping-{time.time():.3f}"
        try:
            await client.ping(registration.id, txn, retry_for=self.config.send_retry_for)
        except MatrixError as exc:
            if exc.errcode == "M_UNRECOGNIZED":  # a homeserver without the ping API
                return True
            said = f"{exc.errcode}: {exc.error}"
            if self.appservice is None or txn not in self.appservice.pinged:
                if said != self._ping_said:
                    self._ping_said = said
                    self.log.error("the homeserver cannot reach the bridge at %s (%s): check url "
                                   "in %s and [http] listen; messages from Matrix do not arrive "
                                   "until it can", registration.url, said,
                                   self.registration_path())
                return True
            # the ping did reach the bridge: the error is the homeserver's own, after it
            # (Synapse fails so when its retry of what it kept for us is running already)
            self.log.debug("the homeserver reached the bridge, then answered its ping with %s",
                           said)
            failed = True
        else:
            failed = False
        if self._ping_said is not None:
            self.log.info("the homeserver reaches the bridge at %s again", registration.url)
        self._ping_said = None
        return not failed

    def _outage_ended(self) -> None:
        self._verify_until = time.monotonic() + VERIFY_FOR
        if self._recovered is not None:
            self._recovered.set()

    def _can_take(self) -> bool:
        """Whether pushed events can be taken now (logged in and in the rooms)."""
        return (self.state is State.active and self._logged_out is not None
                and not self._logged_out.is_set())

    async def _intake(self, events: list[dict[str, Any]]) -> None:
        """The events of one transaction: each handed to the host once, then kept (the
        inbox is written) before the homeserver is answered. Shortly after the service is up
        again (`VERIFY_FOR`) the rooms' history is read back first, so that an event the
        homeserver left unsent is taken before the later ones it pushes."""
        if time.monotonic() < self._verify_until:
            # (not for the bridge's own events: one of those left unsent is nothing to relay)
            pushed = {event.get("room_id") for event in events
                      if not self._is_own(str(event.get("sender")))}
            rooms = [room for room in self._checked if room in pushed]
            if rooms:
                ids = frozenset(event.get("event_id") for event in events)
                try:
                    await self._read_back(rooms, retry_for=VERIFY_RETRY, before=ids)
                except Exception as exc:  # noqa: BLE001 - the transaction is taken all the same
                    # (the homeserver went away again): the next catch-up fills any gap
                    self.log.debug("history not read before a transaction (%s); taking it as "
                                   "pushed", describe(exc))
        # said while the bridge was away, longer ago than max_catchup_age: not relayed (as
        # with a bot account), only taken into the rooms' state
        too_old, skipped = min(self._started, time.time() - self.config.max_catchup_age), 0
        for event in events:
            event_id, room_id = event.get("event_id"), event.get("room_id")
            if not isinstance(event_id, str) or not isinstance(room_id, str):
                self.log.warning("skipped a pushed event without event_id or room_id")
                continue
            if (sent_at(event) < too_old and event_id not in self._taken
                    and event.get("state_key") != self.user_id):
                self.timeline.pass_over(room_id, event)
                self._taken[event_id] = True
                skipped += 1
                continue
            # sent before this run started, it may have been handed over by a run that was
            # killed before answering: a relay then sends it only where it is not yet
            await self._take(room_id, event_id, event, sent_at(event) < self._started)
        if skipped:
            self.log.info("skipped %d pushed events older than max_catchup_age (%ss), said "
                          "while the bridge was away", skipped,
                          f"{self.config.max_catchup_age:g}")
        for writer in list(self.host.store.writers):
            await writer.flush()
        await self._save_history()

    async def _take(self, room_id: str, event_id: str, event: dict[str, Any], replayed: bool) -> None:
        """Hand one event of a room to the host, once."""
        if event_id in self._taken:
            return
        if not await self._own_membership(room_id, event):
            sender = event.get("sender")
            if isinstance(sender, str) and self._is_own(sender) and event_id not in self._own_events:
                async with self._lock(room_id):  # our send may not have returned yet
                    pass
            await self.timeline.handle(room_id, event, relay=True, replayed=replayed)
        self._taken[event_id] = True
        checked = self._checked.get(room_id)
        if checked is not None:
            at = min(sent_at(event), time.time())
            if at >= checked:
                self._recent.setdefault(room_id, {})[event_id] = at

    async def _catch_up_after_outages(self) -> None:
        """After every outage of the homeserver, relay what it should have pushed and did
        not: a homeserver killed with events persisted but not yet sent to the service loses
        them from its queue (seen with Synapse), so each room's history since the last event
        taken is read back, and what was not taken is handed over (`replayed`: a relay sends
        it only where it is not yet)."""
        while True:
            recovered = self._recovered = anyio.Event()
            await recovered.wait()
            await self._catch_up()

    async def _catch_up(self) -> None:
        """Hand over what each watched room has that the homeserver has not pushed: after an
        outage, and every `sync_timeout` seconds (one /messages request a room when nothing
        was missed). An event about to be pushed may be taken here first; it is taken once."""
        assert self.appservice is not None
        async with self.appservice.lock():
            await self._read_back(list(self._checked))
            await self._save_history()

    async def _read_back(self, rooms: list[str], retry_for: float | None = None,
                         before: frozenset[Any] = frozenset()) -> None:
        """`_catch_up` of `rooms`, with the transaction lock held: each room's events since
        it was last checked (where the last run left it, at a start) that were not taken are
        taken, oldest first; those from the first of the events `before` on (a transaction
        about to be taken) are left to come after it."""
        for room_id in rooms:
            checked = self._checked[room_id]
            missed, newest = await self._missed(room_id, checked, retry_for)
            cut = next((n for n, e in enumerate(missed) if e["event_id"] in before), None)
            if cut is not None:
                newest, missed = sent_at(missed[cut]), missed[:cut]
            away = sum(1 for e in missed if sent_at(e) < self._started)
            if away:
                self.log.info("%s: %s said while the bridge was stopped (or not yet taken "
                              "when it stopped); relaying %s now", room_id, *_events(away))
            late = sum(1 for e in missed if self._started <= sent_at(e) < time.time() - LATE)
            if late:
                self.log.info("%s: %s the homeserver had not pushed (it restarted, failed, "
                              "or left a transaction unsent); relaying %s now", room_id,
                              *_events(late))
            # said before this run started: a relay sends them only where no copy is known
            for event in missed:
                await self._take(room_id, event["event_id"], event,
                                 sent_at(event) < self._started)
            if newest is not None:
                # read back again next time from a little before the newest event seen now,
                # whatever was pushed since: an event the homeserver left unsent lies before
                # events it pushed after it (reading back only to the last event taken never
                # found it)
                horizon = self._checked[room_id] = max(checked, newest - LATE)
                recent = self._recent.get(room_id)
                if recent and horizon > checked:
                    self._recent[room_id] = {e: at for e, at in recent.items() if at >= horizon}
        for writer in list(self.host.store.writers):
            await writer.flush()

    async def _load_history(self) -> dict[str, float]:
        """At the first start of this run: how far the last run had read back each room, and
        the events it took since (which are then not handed over again)."""
        if self._history_loaded:
            return {}
        self._history_loaded = True
        try:
            kept = await self.host.store.get_state(self.name, "history", {})
        except Exception as exc:  # noqa: BLE001 - then the rooms are read back from now on
            self.log.warning("could not read how far the rooms were read back (%s); what was "
                             "said while the bridge was down comes as the homeserver sends it",
                             describe(exc))
            return {}
        self._history_saved = kept
        checked: dict[str, float] = {}
        rooms = kept.get("rooms") if isinstance(kept, dict) else None
        for room_id, room in (rooms.items() if isinstance(rooms, dict) else ()):
            at, taken = obj(room).get("checked"), obj(room).get("taken")
            if not isinstance(at, (int, float)) or not isinstance(taken, dict):
                continue
            checked[room_id] = float(at)
            self._recent[room_id] = {e: float(t) for e, t in taken.items()
                                     if isinstance(t, (int, float))}
            for event_id in self._recent[room_id]:
                self._taken[event_id] = True
        return checked

    async def _save_history(self) -> None:
        """Keep `_checked` and `_recent` in the database (when they changed)."""
        state = {"rooms": {room: {"checked": at, "taken": dict(self._recent.get(room, {}))}
                           for room, at in self._checked.items()}}
        if state == self._history_saved:
            return
        try:
            await self.host.store.set_state(self.name, "history", state)
        except Exception as exc:  # noqa: BLE001 - kept in memory; a start then hands over more
            said = describe(exc)
            if said != self._history_unsaved:
                self._history_unsaved = said
                self.log.warning("could not keep how far the rooms were read back (%s); a "
                                 "restart now may hand the hooks recent events again "
                                 "(marked replayed)", said)
            return
        self._history_unsaved = None
        self._history_saved = state

    async def _missed(self, room_id: str, checked: float, retry_for: float | None = None,
                      ) -> tuple[list[dict[str, Any]], float | None]:
        """A room's events since `checked` (Unix time; none said before this run started
        and older than `max_catchup_age`)
        that were not taken, oldest first (at most `MAX_GAP_EVENTS` read), and the time of
        the newest event read (None if none was)."""
        client, token = self._connected(), None
        found: list[dict[str, Any]] = []
        # max_catchup_age is for what was said while the bridge was away, not since it started
        oldest = max(min(self._started, time.time() - self.config.max_catchup_age), checked)
        newest: float | None = None
        while len(found) < MAX_GAP_EVENTS:
            params: dict[str, Any] = {"dir": "b", "limit": 100, "filter": self.timeline.gap_filter}
            if token:
                params["from"] = token
            page = await client.request(
                "GET", f"{CS}/rooms/{q(room_id)}/messages", params=params,
                retry_for=self.config.send_retry_for if retry_for is None else retry_for)
            chunk = [e for e in page.get("chunk", ()) if isinstance(e, dict)]
            done = False
            for event in chunk:
                at = sent_at(event)
                if at != float("inf"):
                    newest = at if newest is None else max(newest, at)
                if at < oldest:
                    done = True
                    break
                found.append({**event, "room_id": room_id})
            end = page.get("end")
            if done or not chunk or not isinstance(end, str) or end == token:
                break
            token = end
        return [e for e in reversed(found) if isinstance(e.get("event_id"), str)
                and e["event_id"] not in self._taken], newest

    async def _ephemeral(self, events: list[dict[str, Any]]) -> None:
        """The ephemeral events of a transaction (the registration's ``receive_ephemeral``):
        who types in each room. Not kept: typing is a courtesy, and stale once missed."""
        for event in events:
            room_id = event.get("room_id")
            if event.get("type") != "m.typing" or not isinstance(room_id, str) or room_id not in self.rooms:
                continue
            try:
                await self.timeline.typing(room_id, event)
            except Exception as exc:  # noqa: BLE001 - typing is a courtesy: never a failed transaction
                self.log.debug("%s: typing not passed on: %s", room_id, describe(exc))

    async def _own_membership(self, room_id: str, event: dict[str, Any]) -> bool:
        """An invite of the bridge account, or its leaving a room: handled here."""
        if event.get("type") != "m.room.member" or event.get("state_key") != self.user_id:
            return False
        membership = obj(event.get("content")).get("membership")
        if membership == "invite":
            await self.on_invite(room_id, {"invite_state": {"events": [event]}})
            return True
        if membership in ("leave", "ban"):
            self.on_left(room_id)
            return True
        return False

    async def http_routes(self) -> list[Route]:
        """The media proxy's route (files as links for IRC) and, as an application service,
        the API the homeserver calls, on the host's HTTP listener."""
        routes = self.media.routes()
        if self.appservice is not None:
            routes += self.appservice.routes()
        return routes

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
                self._bridged.add(room_id)
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
        return (isinstance(txn, str) and txn in self._own_txns) or event.get("event_id") in self._own_events

    def _mention(self, room_id: str, user_id: str) -> User:
        room = self.rooms[room_id] if room_id in self.rooms else None
        name = room.names.get(user_id) if room is not None else None
        return User(id=user_id, plug=self.name, username=user_id, real_name=name,
                    link=f"https://matrix.to/#/{user_id}", is_self=user_id == self.user_id)

    async def download(self, mxc: str) -> bytes:
        """The bytes of a file on the homeserver (authenticated media)."""
        return await self._connected().download(mxc, retry_for=self.config.send_retry_for)

    # -- sending -----------------------------------------------------------------------------

    def _lock(self, room_id: str) -> anyio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = anyio.Lock()
        return lock

    async def _send(self, room_id: str, event_type: str, txn: str, content: dict[str, Any],
                    as_user: str | None = None) -> str:
        self._own_txns[txn] = True
        try:
            event_id = await self._ready().send(room_id, event_type, txn, content,
                                                retry_for=self.config.send_retry_for,
                                                as_user=as_user)
        except MatrixError as exc:
            if exc.status == 401:
                raise self._lost_login(exc) from None
            raise
        self.senders[event_id] = as_user or self.user_id
        self._own_events[event_id] = True
        return event_id

    async def _ghost(self, msg: Message, room_id: str) -> str | None:
        """As an application service: the ghost that sends `msg` (its author's, when the
        author is a person of another network and can be in the room), else None."""
        user = msg.user
        if self.ghosts is None or user is None or user.is_self or user.plug == self.name:
            return None
        try:
            return await self.ghosts.ready(user, room_id)
        except MatrixError as exc:
            if exc.status == 401:
                raise self._lost_login(exc) from None
            raise

    async def _membership(self, msg: Message, room_id: str) -> bool:
        """As an application service, people of other networks joining, leaving or changing
        their name are their ghosts doing so; True when done so (no notice to send)."""
        ghosts = self.ghosts
        if ghosts is None or msg.text or msg.attachments:
            return False
        people = [*msg.joined, *msg.left, *(msg.renamed or ())]
        if not people or any(u.is_self or u.plug == self.name for u in people):
            return False
        try:
            for user in msg.joined:
                if await ghosts.ready(user, room_id) is None:
                    return False
            for user in msg.left:
                await ghosts.leave(user, room_id, msg.reason)
            if msg.renamed is not None and await ghosts.move(*msg.renamed, room_id) is None:
                return False
        except MatrixError as exc:
            if exc.status == 401:
                raise self._lost_login(exc) from None
            raise
        return True

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
        if msg.reaction is not None:
            return await self._react(channel, room_id, msg)
        if await self._membership(msg, room_id):
            return []
        ghost = await self._ghost(msg, room_id)
        shown = await self._addressing(msg, room_id)
        parts = self.renderer.parts(shown, reply_target(msg, channel, room_id), named=ghost is None)
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
                                            self.transactions.txn(base, index), content, ghost)
                receipts.append(Receipt(id=event_id, channel=channel))
        return receipts

    async def edit(self, sent: Receipt, msg: Message) -> list[Receipt]:
        room_id = await self.room_id(sent.channel.source)
        ghost = await self._ghost(msg, room_id)
        content = self.renderer.edit_content(await self._addressing(msg, room_id), sent.id,
                                             named=ghost is None)
        key = current_key()
        txn = self.transactions.txn(f"{key}|edit|{room_id}|{sent.id}" if key else
                                    self.transactions.base(msg, "edit", room_id, sent.id))
        async with self._lock(room_id):
            event_id = await self._send(room_id, "m.room.message", txn, content, ghost)
        return [Receipt(id=sent.id, channel=sent.channel, revision=event_id, edited=True)]

    async def delete(self, sent: Receipt) -> bool:
        room_id = await self.room_id(sent.channel.source)
        sender = await self._sender(room_id, sent.id)
        as_user = sender if sender != self.user_id and self._is_own(sender or "") else None
        return await self._redact(room_id, sent.id, as_user, sent.channel.source)

    async def _redact(self, room_id: str, event_id: str, as_user: str | None, where: str) -> bool:
        txn = self.transactions.txn(f"redact|{room_id}|{event_id}")
        async with self._lock(room_id):
            self._own_txns[txn] = True
            try:
                redaction = await self._ready().redact(room_id, event_id, txn, as_user=as_user,
                                                       retry_for=self.config.send_retry_for)
                self._own_events[redaction] = True
            except MatrixError as exc:
                if exc.status == 401:
                    raise self._lost_login(exc) from None
                self.log.warning("%s: cannot redact %s (%s)", where, event_id, exc)
                return False
        return True

    # -- reactions, typing, addressing ------------------------------------------------------

    async def _react(self, channel: Channel, room_id: str, msg: Message) -> list[Receipt]:
        """A reaction as an ``m.reaction`` on the copy it is to, and its removal as the
        redaction of that ``m.reaction``. As an application service each person reacts as
        their ghost; the bridge account (the bot mode) reacts once per key for everyone of
        the other networks and takes it back when the last of them did (see `reactions`).
        Receipts: the reaction's event (none for a removal)."""
        reaction = msg.reaction
        assert reaction is not None
        target = reaction_target(msg, channel, room_id)
        if target is None:
            self.log.debug("%s: a reaction to %r, not an event of this room: not shown",
                           channel.source, getattr(reaction.target, "id", None))
            return []
        ghost = await self._ghost(msg, room_id)
        sender = ghost or self.user_id
        where = (room_id, target, reaction.key, sender)
        user = msg.user
        person = f"{user.plug}|{user.id or user.username}" if user is not None else ""
        shared = ghost is None  # one account for every person of the other networks
        if reaction.removed:
            if shared and not self.reactions.leave(where, person):
                return []  # others still react with this key
            event_id = await self.reactions.find(where)
            if event_id is None:
                self.log.debug("%s: no reaction %s of %s on %s to take back", channel.source,
                               reaction.key, sender, target)
                return []
            await self._redact(room_id, event_id, ghost, channel.source)
            self.reactions.forget(where)
            return []
        if shared:
            self.reactions.join(where, person)
        event_id = self.reactions.events.get(where)
        if event_id is None:
            key = current_key()
            base = f"{key}|react|{room_id}" if key else self.transactions.base(msg, "react", room_id)
            try:
                async with self._lock(room_id):
                    event_id = await self._send(room_id, "m.reaction", self.transactions.txn(base),
                                                reaction_content(target, reaction.key), ghost)
            except MatrixError as exc:
                if exc.errcode != "M_DUPLICATE_ANNOTATION":
                    raise
                event_id = await self.reactions.find(where)  # sent before a restart
                if event_id is None:
                    return []
            self.reactions.remember(where, event_id)
        return [Receipt(id=event_id, channel=channel)]

    async def typing(self, channel: Channel, user: User, active: bool) -> None:
        """As an application service: the person's ghost types in the room, or no longer
        (only a ghost already in the room: typing alone never makes one join). The bot mode
        shows nothing (its `capabilities` say so): the bridge account typing would say that
        the bridge, not a person, is writing, and several people typing at once would show
        as one."""
        ghosts = self.ghosts
        if ghosts is None or user.is_self or user.plug == self.name:
            return
        room_id = await self.room_id(channel.source)
        ghost = ghosts.ghost_id(user)
        room = self.rooms.rooms.get(room_id)
        if ghost is None or not (ghosts.in_room(ghost, room_id)
                                 or (room is not None and ghost in room.members)):
            return
        body = {"typing": True, "timeout": TYPING_TIMEOUT_MS} if active else {"typing": False}
        await self._ready().request("PUT", f"{CS}/rooms/{q(room_id)}/typing/{q(ghost)}",
                                    json=body, params={"user_id": ghost},
                                    retry_for=TYPING_RETRY_FOR)

    async def _addressing(self, msg: Message, room_id: str) -> Message:
        """`msg`, or, when its text starts by addressing a member of the room ("alice:
        thanks", by display name or user id localpart, case aside), `msg` with that name a
        pill of them, which notifies them. Never the bridge's own users; not in actions."""
        text = msg.text
        name = addressed(text) if text and not msg.action else None
        if text is None or name is None:
            return msg
        user_id = self._member_named(room_id, name)
        room = self.rooms[room_id]
        if user_id is None and not room.complete:
            try:
                await self._load_members(room_id)
            except (MatrixError, HomeserverUnavailable) as exc:
                self.log.debug("%s: members not loaded (%s)", room_id, exc)
            user_id = self._member_named(room_id, name)
        if user_id is None:
            return msg
        return msg.clone(text=with_mention(text, len(name), self._mention(room_id, user_id)))

    def _member_named(self, room_id: str, name: str) -> str | None:
        """The one joined member (not the bridge's own) whose display name or localpart is
        `name`, case aside; None for none, or for more than one."""
        room = self.rooms.rooms.get(room_id)
        if room is None:
            return None
        wanted = name.casefold()
        found = {user_id for user_id in room.members
                 if not self._is_own(user_id)
                 and ((room.names.get(user_id) or "").casefold() == wanted
                      or user_id[1:].split(":", 1)[0].casefold() == wanted)}
        return found.pop() if len(found) == 1 else None

    async def _load_members(self, room_id: str) -> None:
        """Every joined member of a room, once per run: /sync names only those it needs
        (members are loaded lazily); later joins and leaves come in the timeline."""
        joined = await self._connected().joined_members(room_id, retry_for=self.config.send_retry_for)
        room = self.rooms[room_id]
        room.members = set(joined)
        for user_id, info in joined.items():
            name = info.get("display_name") if isinstance(info, dict) else None
            room.names[user_id] = name if isinstance(name, str) and name.strip() else None
        room.complete = True

    async def _sender(self, room_id: str, event_id: str) -> str | None:
        """Who sent an event (an application service redacts its ghosts' events as them)."""
        sender = self.senders.get(event_id)
        if sender is None and self.ghosts is not None:
            try:
                sender = (await self._connected().event(
                    room_id, event_id, retry_for=self.config.send_retry_for)).get("sender")
            except MatrixError:
                return None
        return sender if isinstance(sender, str) else None

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
