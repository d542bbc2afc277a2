"""What the Matrix plug's tests share: accounts, clients, configs, and what the human sees."""

from __future__ import annotations

import logging
import types
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs

from chanmux import Channel, Hook, RichText, SentMessage, User, hookimpl
from chanmux.testing import Seen, run_host
from chanmux_matrix import parse_html
from chanmux_matrix.client import HomeserverUnavailable, MatrixClient
from chanmux_matrix.incoming import Incoming
from chanmux_matrix.positions import Positions
from chanmux_matrix.rooms import Rooms
from chanmux_matrix.timeline import Sink, Timeline
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse


@attrs.frozen
class Account:
    user_id: str
    token: str
    password: str
    localpart: str


def register(hs: Synapse, prefix: str) -> Account:
    localpart = f"{prefix}{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    user_id, token, _device = hs.register(localpart, password=password)
    return Account(user_id, token, password, localpart)


@asynccontextmanager
async def client(hs: Synapse, account: Account) -> AsyncIterator[HumanMatrix]:
    async with HumanMatrix(hs.base_url, account.user_id, account.token) as human:
        yield human


def plug_config(hs: Synapse, account: Account, rooms: list[str] = (), *, password: bool = False,
                **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"type": "matrix", "homeserver": hs.base_url, "user_id": account.user_id,
                              "rooms": list(rooms), "retry_max_delay": 1.0}
    if password:
        config["password"] = account.password
    else:
        config["access_token"] = account.token
    config.update(extra)
    return config


def host_config(hs: Synapse, account: Account, room: str | None, **extra: Any) -> dict[str, Any]:
    """A host with one matrix plug `mx`, a channel `room` (if given) and a recorder `rec`."""
    config: dict[str, Any] = {
        "plugs": {"mx": plug_config(hs, account, [room] if room else [], **extra)},
        "hooks": {"rec": {"type": "recorder"}},
    }
    if room:
        config["channels"] = {"room": {"plug": "mx", "source": room}}
    return config


@asynccontextmanager
async def bridged(hs: Synapse, account: Account, human: HumanMatrix, path: Any, *,
                  room: str | None = None, **extra: Any) -> AsyncIterator[tuple[Any, str]]:
    """A running host whose matrix plug `mx` is in a room the human made (or `room`)."""
    if room is None:
        room = await human.create_room(name="bridged", preset="public_chat")
    async with run_host(host_config(hs, account, room, **extra), path=path) as host:
        yield host, room


def seen_of(event: dict[str, Any]) -> Seen | None:
    """What a Matrix client shows for one timeline event, with the text parsed by our parser."""
    content = event.get("content") or {}
    if event.get("type") == "m.room.redaction":
        return Seen("delete", id=event["event_id"], target=event.get("redacts") or content.get("redacts"),
                    sender=event.get("sender"))
    if event.get("type") != "m.room.message" or not content:
        return None
    relates = content.get("m.relates_to") or {}
    kind, target = "message", None
    if relates.get("rel_type") == "m.replace":
        kind, target = "edit", relates.get("event_id")
        content = content.get("m.new_content") or {}
    html = content.get("formatted_body")
    text = parse_html(html) if html is not None else RichText.plain_text(content.get("body", ""))
    return Seen(kind, text=text, action=content.get("msgtype") == "m.emote", id=event["event_id"],
                target=target, sender=event.get("sender"))


async def human_sees(human: HumanMatrix, room: str, predicate: Callable[[Seen], Any],
                     timeout: float = 20.0) -> Seen:
    """The first event in `room` the human's client has (or gets) that matches `predicate`."""
    with anyio.fail_after(timeout):
        checked = 0
        while True:
            for event in human.events[checked:]:
                if event.get("room_id") != room:
                    continue
                seen = seen_of(event)
                if seen is not None and predicate(seen):
                    return seen
            checked = len(human.events)
            await human.sync_once(5.0)


async def human_events(human: HumanMatrix, room: str, predicate: Callable[[dict], Any],
                       count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the human's client has `count` events in `room` matching `predicate`."""
    with anyio.fail_after(timeout):
        while True:
            found = [e for e in human.events if e.get("room_id") == room and predicate(e)]
            if len(found) >= count:
                return found
            await human.sync_once(5.0)


@attrs.define
class Handed:
    """What a `Timeline` handed to its sink, in order: a sink that records."""

    received: list[SentMessage] = attrs.field(factory=list)
    on_handled: list[Callable[[], None] | None] = attrs.field(factory=list)
    invited: list[str] = attrs.field(factory=list)
    left: list[str] = attrs.field(factory=list)
    encrypted: list[str] = attrs.field(factory=list)
    typing: list[tuple[str, str | None, bool]] = attrs.field(factory=list)  # (room, user, active)

    def sink(self) -> Sink:
        async def receive(sent: SentMessage, on_handled: Callable[[], None] | None) -> None:
            self.received.append(sent)
            self.on_handled.append(on_handled)

        async def invited(room_id: str, invite: dict[str, Any]) -> None:
            self.invited.append(room_id)

        async def typing(channel: Channel, user: User, active: bool) -> None:
            self.typing.append((channel.source, user.id, active))

        return Sink(receive=receive, invited=invited, left=self.left.append,
                    encrypted=self.encrypted.append, typing=typing)


def no_homeserver() -> MatrixClient:
    """The client of a plug that is not connected (what `MatrixPlug._connected` raises)."""
    raise HomeserverUnavailable("no homeserver in this test")


def offline_timeline(own_id: str, *, positions: Positions | None = None,
                     echoes: Callable[[dict[str, Any]], bool] = lambda event: False,
                     max_catchup_age: float = 3600.0, plug: str = "mx",
                     ) -> tuple[Timeline, Handed]:
    """A Timeline of account `own_id` with no homeserver behind it, and what it hands over."""
    async def fetch(url: str) -> bytes:
        raise AssertionError("nothing is downloaded here")

    handed = Handed()
    timeline = Timeline(
        own_id, client=no_homeserver, rooms=Rooms(),
        positions=positions if positions is not None else Positions(None),
        incoming=Incoming(plug, own_id, lambda room, user: None, fetch),
        channel=lambda room_id: Channel(plug, room_id), is_echo=echoes, senders={},
        sink=handed.sink(), log=logging.getLogger(f"chanmux.plug.{plug}"), timeline_limit=50,
        max_catchup_age=max_catchup_age, retry_for=None)
    return timeline, handed


def sync_response(room: str, state: list[dict[str, Any]], timeline: list[dict[str, Any]], *,
                  limited: bool = False, next_batch: str | None = None,
                  invite: dict[str, Any] | None = None, leave: dict[str, Any] | None = None,
                  account_data: list[dict[str, Any]] | None = None,
                  ephemeral: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A /sync response with one joined room, shaped as Synapse gives it."""
    joined: dict[str, Any] = {"state": {"events": state},
                              "timeline": {"events": timeline, "limited": limited}}
    if ephemeral is not None:
        joined["ephemeral"] = {"events": ephemeral}
    if limited:
        joined["timeline"]["prev_batch"] = "p1"
    rooms: dict[str, Any] = {"join": {room: joined}}
    if invite is not None:
        rooms["invite"] = invite
    if leave is not None:
        rooms["leave"] = leave
    data: dict[str, Any] = {"rooms": rooms}
    if account_data is not None:
        data["account_data"] = {"events": account_data}
    if next_batch is not None:
        data["next_batch"] = next_batch
    return data


class TypingWatch(Hook):
    """`type = "typing-watch"`: keeps every `on_typing` the host fans out, in order, as
    (channel, user, active)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[Channel, User, bool]] = []
        self._changed = anyio.Event()

    async def on_typing(self, channel: Channel, user: User, active: bool) -> None:
        self.seen.append((channel, user, active))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[Channel, User, bool], Any],
                       timeout: float = 20.0) -> tuple[Channel, User, bool]:
        """The first typing heard that matches `predicate`, waiting for it if need be."""
        checked = 0
        with anyio.fail_after(timeout):
            while True:
                for item in self.seen[checked:]:
                    if predicate(*item):
                        return item
                checked = len(self.seen)
                await self._changed.wait()


def typing_watch_module() -> tuple[str, types.ModuleType]:
    """The (name, module) pair `run_host(modules=...)` takes to offer `type = "typing-watch"`."""
    module = types.ModuleType("chanmux_test_typing_watch")
    module.chanmux_hook_types = hookimpl(lambda: {"typing-watch": TypingWatch})  # type: ignore[attr-defined]
    return "typing-watch", module


class LogWatch(logging.Handler):
    """Collects log records of the `chanmux` loggers; tests wait for a line to appear."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed: anyio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self._changed is not None:
            self._changed.set()

    def lines(self, text: str) -> list[str]:
        return [r.getMessage() for r in self.records if text in r.getMessage()]

    async def wait_for(self, text: str, timeout: float = 20.0, count: int = 1) -> list[str]:
        return await self.wait_until(text, lambda found: len(found) >= count, timeout)

    async def wait_until(self, text: str, done: Callable[[list[str]], Any],
                         timeout: float = 20.0) -> list[str]:
        """Wait until `done` holds for the lines containing `text`; return those lines."""
        with anyio.fail_after(timeout):
            while not done(found := self.lines(text)):
                self._changed = anyio.Event()
                await self._changed.wait()
            return found
