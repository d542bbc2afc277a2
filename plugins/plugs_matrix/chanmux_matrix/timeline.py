"""/sync responses read into room state and messages for the host (the plug runs the loop).

The ``since`` token lives in the host database, so after the bridge was down the first /sync
returns what happened meanwhile; a room whose gap is longer than one /sync carries is filled
page by page from ``/messages``. Events sent while the bridge was away (before it connected,
or while the homeserver did not answer) and older than ``max_catchup_age`` are skipped, in
whichever /sync response they come (one log line says how many). The very first start relays
nothing old: its initial /sync only learns room state. Events from the bridge's own account are
dropped, except the echoes of its own sends (recognised by transaction id), which go to the host
marked ``is_self`` so it can match them to what it put.

Each timeline event is converted against the room state as it was before that event and taken
into the state afterwards, so a message carries the name its author had when it was sent.

A room's ephemeral ``m.typing`` event lists who types there now; each person who started or
stopped since the last one goes to the sink (the bridge's own users left out).

`Timeline` reads only what it is given when built (the plug's way to its connected client, the
room map, the resume positions, the event converter and a few look-ups) and hands what it reads
to a `Sink`; it knows nothing else of the plug.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import attrs

from .client import HomeserverUnavailable, MatrixClient, MatrixError
from .incoming import BadEvent, Incoming, age_seconds, obj, prev_membership, relation, sent_at
from .positions import Batch, Positions
from .rooms import Room, Rooms

if TYPE_CHECKING:
    from chanmux import Channel, SentMessage, User

TIMELINE_TYPES = ["m.room.message", "m.reaction", "m.room.redaction", "m.room.member",
                  "m.room.name", "m.room.canonical_alias", "m.room.encryption", "m.room.encrypted"]
#: Events that speak for their sender (whose display name they carry).
_SAID = {"m.room.message", "m.reaction"}
STATE_TYPES = ["m.room.member", "m.room.name", "m.room.canonical_alias", "m.room.encryption"]
_STATEFUL = {"m.room.member", "m.room.name", "m.room.canonical_alias", "m.room.encryption"}
#: Most events fetched to fill one room's gap after downtime.
MAX_GAP_EVENTS = 5000


def sync_filter(timeline_limit: int, nonce: str | None = None) -> str:
    """The /sync filter: only the event types the bridge uses, members loaded lazily.

    A `nonce` (an extra field servers ignore) makes the request unlike any earlier one, so a
    homeserver's short-lived cache of /sync answers cannot give a new initial sync the answer
    an earlier run got (whose token would then replay everything since).
    """
    extra = {"org.chanmux.nonce": nonce} if nonce else {}
    return json.dumps({
        **extra,
        "presence": {"not_types": ["*"]},
        "account_data": {"types": ["m.direct"]},
        "room": {
            "timeline": {"types": TIMELINE_TYPES, "limit": timeline_limit},
            "state": {"types": STATE_TYPES, "lazy_load_members": True,
                      "include_redundant_members": True},
            "ephemeral": {"types": ["m.typing"]},
            "account_data": {"not_types": ["*"]},
        },
    }, separators=(",", ":"))


def room_filter() -> str:
    """The /messages filter used to fill gaps (the same event types)."""
    return json.dumps({"types": TIMELINE_TYPES, "lazy_load_members": True,
                       "include_redundant_members": True}, separators=(",", ":"))


async def _not_shown(channel: Channel, user: User, active: bool) -> None:
    """Where typing goes when nobody listens."""


@attrs.frozen
class Sink:
    """Where a `Timeline` hands what it reads; each is awaited or called in the order of the
    events, from the task that processes the /sync response."""

    #: A message for the host, with the `on_handled` callback that moves the resume point once
    #: it is done (None when the response is not tracked: the initial /sync).
    receive: Callable[[SentMessage, Callable[[], None] | None], Awaitable[None]]
    #: An invite for the account: (room id, the room's ``invite`` block of /sync).
    invited: Callable[[str, dict[str, Any]], Awaitable[None]]
    #: The account left or was removed from a room (room id).
    left: Callable[[str], None]
    #: A room whose timeline was read turned out to be end-to-end encrypted (room id).
    encrypted: Callable[[str], None]
    #: Someone started (True) or stopped (False) typing in a channel.
    typing: Callable[[Channel, User, bool], Awaitable[None]] = _not_shown


class Timeline:
    """Reads the /sync responses of one Matrix account into room state and messages.

    `client` is the owner's one way to its homeserver connection: it returns the connected
    client or raises (`HomeserverUnavailable`) when there is none. `senders` maps event ids
    to their senders (the owner adds what it sends; edits are checked against it). `channel`
    gives the channel of a room id, `is_echo` tells the homeserver's copy of something the
    owner sent in this run. An application service hands it the events the homeserver pushes,
    one by one (`handle`), instead of /sync responses; `is_own` then tells the events of its
    ghosts (and its account) from other people's.
    """

    def __init__(self, own_id: str, *, client: Callable[[], MatrixClient], rooms: Rooms,
                 positions: Positions, incoming: Incoming, channel: Callable[[str], Channel],
                 is_echo: Callable[[dict[str, Any]], bool], senders: MutableMapping[str, str],
                 sink: Sink, log: logging.Logger, timeline_limit: int, max_catchup_age: float,
                 retry_for: float | None, is_own: Callable[[str], bool] | None = None) -> None:
        self.own_id = own_id
        #: whether a sender is the owner's (its account, or a ghost of an application service)
        self.is_own = is_own if is_own is not None else own_id.__eq__
        self.client = client
        self.rooms = rooms
        self.positions = positions
        self.incoming = incoming
        self.channel = channel
        self.is_echo = is_echo
        self.senders = senders
        self.sink = sink
        self.log = log
        self.max_catchup_age = max_catchup_age
        self.retry_for = retry_for
        self.filter = sync_filter(timeline_limit)
        self.gap_filter = room_filter()
        self.bad_events = 0

    def initial_filter(self) -> str:
        """The filter of a first-ever /sync: one event per room, unlike any earlier request."""
        return sync_filter(1, uuid.uuid4().hex)

    async def take(self, data: dict[str, Any], since: str | None, *,
                   backlog_before: float | None) -> str | None:
        """Relay one /sync response as a batch of the resume positions; its ``next_batch``.

        Cut short (cancelled, or the homeserver failed while a gap was filled), the batch is
        fetched again from `since`; what it handed over already is skipped then, and still holds
        the resume point until it is done."""
        batch = self.positions.begin()
        token = None
        try:
            await self.process(data, since, relay=True, backlog_before=backlog_before, batch=batch)
            token = data.get("next_batch")
        finally:
            self.positions.end(batch, token)
        return token if isinstance(token, str) else None

    async def process(self, data: dict[str, Any], since: str | None, *, relay: bool,
                      backlog_before: float | None, batch: Batch | None = None) -> None:
        """Take in one /sync response; relay its timeline events to the host when `relay`
        (tracked in `batch` when one is given)."""
        for event in _events(data.get("account_data")):
            if event.get("type") == "m.direct" and isinstance(event.get("content"), dict):
                self.rooms.set_direct(event["content"])
        rooms = obj(data.get("rooms"))
        for room_id, invite in _items(rooms.get("invite")):
            await self.sink.invited(room_id, invite)
        for room_id, _left in _items(rooms.get("leave")):
            self.sink.left(room_id)
        skipped = 0
        cutoff = self.max_catchup_age
        now = time.time()
        # an event is skipped if it is backlog (sent before `backlog_before`) and too old
        too_old = None if backlog_before is None else min(backlog_before, now - cutoff)
        for room_id, joined in _items(rooms.get("join")):
            room = self.rooms[room_id]
            timeline = obj(joined.get("timeline"))
            events = _events(timeline)
            in_timeline = {ev.get("event_id") for ev in events}
            for event in _events(joined.get("state")):
                # the state block is the state before the timeline, but a server that loads
                # members lazily repeats the timeline's own member events in it: those are
                # taken in when the timeline reaches them, not before
                if event.get("event_id") not in in_timeline:
                    room.apply(event)
            joined_now = self.after_own_join(room, events)
            if joined_now is not events:
                events = joined_now
            elif relay and since and timeline.get("limited") and timeline.get("prev_batch"):
                events = await self.fill_gap(room_id, timeline["prev_batch"], since, events,
                                             cutoff if too_old is not None else None)
                events = self.after_own_join(room, events)
            for event in events:
                if relay and too_old is not None and sent_at(event) < too_old:
                    self.pass_over(room_id, event)
                    skipped += 1
                    continue
                # sent before this run could hear it: it may have been handed over (and relayed,
                # in part) by a run that was killed; a relay then sends it only where it is not
                backlog = backlog_before is not None and sent_at(event) < backlog_before
                await self.handle(room_id, event, relay, replayed=backlog, batch=batch)
            for event in _events(joined.get("ephemeral")):
                if event.get("type") == "m.typing":
                    await self.typing(room_id, event, relay)
            if room.encrypted:
                self.sink.encrypted(room_id)
        if skipped:
            self.log.info("catching up: skipped %d events older than max_catchup_age (%ss)",
                          skipped, f"{cutoff:g}")

    def pass_over(self, room_id: str, event: dict[str, Any]) -> None:
        """An event not relayed (too old): what it says of the room's state (a member's join,
        their name) is taken in all the same."""
        if event.get("type") in _STATEFUL and "state_key" in event:
            self.rooms[room_id].apply(event)

    def after_own_join(self, room: Room, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop the history before the bridge's own join (a room it just joined), keeping
        what it says about the room's state."""
        own = self.own_id
        for index in range(len(events) - 1, -1, -1):
            ev = events[index]
            if (ev.get("type") == "m.room.member" and ev.get("state_key") == own
                    and isinstance(ev.get("content"), dict)
                    and ev["content"].get("membership") == "join" and prev_membership(ev) != "join"):
                for earlier in events[:index + 1]:
                    if earlier.get("type") in _STATEFUL and "state_key" in earlier:
                        room.apply(earlier)
                return events[index + 1:]
        return events

    async def fill_gap(self, room_id: str, prev_batch: str, since: str,
                       timeline: list[dict[str, Any]], cutoff: float | None) -> list[dict[str, Any]]:
        """The events between `since` and the start of `timeline`, fetched with /messages."""
        room = self.rooms[room_id]
        gap: list[dict[str, Any]] = []
        token: str | None = prev_batch
        now = time.time()
        while token and len(gap) < MAX_GAP_EVENTS:
            page = await self.client().messages(room_id, token, since, "b", self.gap_filter,
                                                retry_for=self.retry_for)
            for event in _events(page.get("state")):
                if event.get("state_key") not in room.names:
                    room.apply(event)
            chunk = _events(page.get("chunk"))
            older = False
            for event in chunk:
                if cutoff is not None and age_seconds(event, now) > cutoff:
                    older = True
                    break
                gap.append(event)
            end = page.get("end")
            if older or not chunk or not isinstance(end, str) or end == token:
                break
            token = end
        seen = {ev.get("event_id") for ev in timeline}
        gap = [ev for ev in reversed(gap) if ev.get("event_id") not in seen]
        if gap:
            self.log.info("%s: fetched %d events missed while away", room_id, len(gap))
        return gap + timeline

    async def handle(self, room_id: str, event: dict[str, Any], relay: bool,
                     replayed: bool = False, batch: Batch | None = None) -> None:
        """Relay one timeline event when it means a message, then take it into the room state,
        so the conversion sees the room as it was before the event."""
        room = self.rooms[room_id]
        kind = event.get("type")
        try:
            sent = await self.convert(room_id, room, event, relay)
        except BadEvent as exc:
            sent = None
            self.bad_events += 1
            self.log.warning("%s: skipped malformed %s event %s (%s)", room_id, kind,
                             event.get("event_id"), exc)
        except Exception as exc:  # noqa: BLE001 - one bad event never stops the sync loop
            sent = None
            self.bad_events += 1
            self.log.warning("%s: skipped %s event %s that could not be read (%s: %s)", room_id,
                             kind, event.get("event_id"), type(exc).__name__, exc)
        if kind in _STATEFUL and "state_key" in event:
            room.apply(event)
        if sent is not None:
            sent.replayed = replayed
            await self.hand_over(sent, event, batch)

    async def hand_over(self, sent: SentMessage, event: dict[str, Any], batch: Batch | None) -> None:
        """Hand one converted event to the sink, once: the resume point waits until it is
        done, and an event handed over before (fetched again) is skipped."""
        event_id = event.get("event_id")
        if batch is None or not isinstance(event_id, str):
            await self.sink.receive(sent, None)
            return
        if self.positions.known(event_id):
            self.log.debug("%s: skipped %s, handed over before", sent.channel.source, event_id)
            return
        await self.sink.receive(sent, self.positions.track(batch, event_id))

    async def convert(self, room_id: str, room: Room, event: dict[str, Any],
                      relay: bool) -> SentMessage | None:
        """The message one timeline event means for the host, or None (raises BadEvent)."""
        kind = event.get("type")
        if kind == "m.room.encrypted" or kind == "m.room.encryption":
            room.encrypted = True
            return None
        sender = event.get("sender")
        own = isinstance(sender, str) and self.is_own(sender)
        if (own and not self.is_echo(event)) or not relay:
            return None
        if kind in _SAID and not own and isinstance(sender, str) and sender not in room.names:
            await self.load_member(room_id, sender)
        if kind in _SAID and isinstance(event.get("event_id"), str) and isinstance(sender, str):
            self.senders[event["event_id"]] = sender
        content = obj(event.get("content"))
        rel = relation(content)
        if kind == "m.room.message" and rel.get("rel_type") == "m.replace":
            if not isinstance(rel.get("event_id"), str):
                raise BadEvent("m.replace without event_id")
            if not await self.same_sender(room_id, rel["event_id"], sender):
                self.log.info("%s: ignored edit %s of %s by someone other than its author",
                              room_id, event.get("event_id"), rel.get("event_id"))
                return None
        return self.incoming.convert(self.channel(room_id), room, event)

    async def typing(self, room_id: str, event: dict[str, Any], relay: bool = True) -> None:
        """An ``m.typing`` event of a room: who types there now. Each person who started or
        stopped since the last one goes to the sink (when `relay`); the bridge's own users
        (its account, its ghosts) are left out. A malformed one is skipped with a warning."""
        user_ids = obj(event.get("content")).get("user_ids")
        if not isinstance(user_ids, list):
            self.bad_events += 1
            self.log.warning("%s: skipped malformed m.typing event (user_ids is %s, not a list)",
                             room_id, type(user_ids).__name__)
            return
        room = self.rooms[room_id]
        now = {u for u in user_ids if isinstance(u, str) and u.startswith("@") and not self.is_own(u)}
        before, room.typing = room.typing, now
        if not relay or now == before:
            return
        channel = self.channel(room_id)
        for user_id in sorted(now - before):
            if user_id not in room.names:
                try:
                    await self.load_member(room_id, user_id)
                except HomeserverUnavailable:
                    pass  # typing is a courtesy: shown by user id then
            await self.sink.typing(channel, self.incoming.user(room, user_id), True)
        for user_id in sorted(before - now):
            await self.sink.typing(channel, self.incoming.user(room, user_id), False)

    async def load_member(self, room_id: str, user_id: str) -> None:
        """Fetch a member's state when /sync did not carry it (for their display name)."""
        try:
            content = await self.client().state(room_id, "m.room.member", user_id,
                                                retry_for=self.retry_for)
        except MatrixError:
            content = None
        self.rooms[room_id].apply({"type": "m.room.member", "state_key": user_id,
                                   "content": content or {"membership": "leave"}})

    async def same_sender(self, room_id: str, event_id: Any, sender: Any) -> bool:
        """Whether `event_id` was sent by `sender` (edits are only valid from the author)."""
        if not isinstance(event_id, str):
            return False
        original = self.senders.get(event_id)
        if original is None:
            try:
                event = await self.client().event(room_id, event_id, retry_for=self.retry_for)
            except MatrixError:
                return False
            original = event.get("sender")
            if isinstance(original, str):
                self.senders[event_id] = original
        return original == sender


def _items(value: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, dict):
        return []
    return [(k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, dict)]


def _events(value: Any) -> list[dict[str, Any]]:
    """The events of a block ({"events": [...]}) or of a plain list, ignoring non-objects."""
    if isinstance(value, dict):
        value = value.get("events")
    if not isinstance(value, list):
        return []
    return [ev for ev in value if isinstance(ev, dict)]


__all__ = ["Sink", "Timeline", "room_filter", "sync_filter"]
