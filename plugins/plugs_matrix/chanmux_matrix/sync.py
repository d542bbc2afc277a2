"""The /sync side of the plug: filters, catching up after downtime, and handing events on.

The ``since`` token lives in the host database, so after the bridge was down the first /sync
returns what happened meanwhile; a room whose gap is longer than one /sync carries is filled
page by page from ``/messages``. Events sent while the bridge was away (before it connected,
or while the homeserver did not answer) and older than ``max_catchup_age`` are skipped, in
whichever /sync response they come (one log line says how many). The very first start relays nothing old: its
initial /sync only learns room state. Events from the bridge's own account are dropped,
except the echoes of its own sends (recognised by transaction id), which go to the host
marked ``is_self`` so it can match them to what it put.

Each timeline event is converted against the room state as it was before that event and taken
into the state afterwards, so a message carries the name its author had when it was sent.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .incoming import BadEvent, age_seconds, prev_membership, relation, sent_at
from .rooms import Room

if TYPE_CHECKING:
    from chanmux import SentMessage

    from .plug import MatrixPlug

TIMELINE_TYPES = ["m.room.message", "m.room.redaction", "m.room.member", "m.room.name",
                  "m.room.canonical_alias", "m.room.encryption", "m.room.encrypted"]
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
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    }, separators=(",", ":"))


def room_filter() -> str:
    """The /messages filter used to fill gaps (the same event types)."""
    return json.dumps({"types": TIMELINE_TYPES, "lazy_load_members": True,
                       "include_redundant_members": True}, separators=(",", ":"))


class Syncer:
    """Processes /sync responses for one plug."""

    def __init__(self, plug: MatrixPlug) -> None:
        self.plug = plug
        self.log: logging.Logger = plug.log
        self.filter = sync_filter(plug.config.timeline_limit)
        self.gap_filter = room_filter()
        self.bad_events = 0

    def initial_filter(self) -> str:
        """The filter of a first-ever /sync: one event per room, unlike any earlier request."""
        return sync_filter(1, uuid.uuid4().hex)

    async def process(self, data: dict[str, Any], since: str | None, *, relay: bool,
                      backlog_before: float | None) -> None:
        """Take in one /sync response; relay its timeline events to the host when `relay`."""
        plug = self.plug
        for event in _events(data.get("account_data")):
            if event.get("type") == "m.direct" and isinstance(event.get("content"), dict):
                plug.rooms.set_direct(event["content"])
        rooms = data.get("rooms") if isinstance(data.get("rooms"), dict) else {}
        for room_id, invite in _items(rooms.get("invite")):
            await plug.on_invite(room_id, invite)
        for room_id, _left in _items(rooms.get("leave")):
            plug.on_left(room_id)
        skipped = 0
        cutoff = plug.config.max_catchup_age
        now = time.time()
        # an event is skipped if it is backlog (sent before `backlog_before`) and too old
        too_old = None if backlog_before is None else min(backlog_before, now - cutoff)
        for room_id, joined in _items(rooms.get("join")):
            room = plug.rooms[room_id]
            timeline = joined.get("timeline") if isinstance(joined.get("timeline"), dict) else {}
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
                    if event.get("type") in _STATEFUL and "state_key" in event:
                        room.apply(event)
                    skipped += 1
                    continue
                # sent before this run could hear it: it may have been handed over (and relayed,
                # in part) by a run that was killed; a relay then sends it only where it is not
                backlog = backlog_before is not None and sent_at(event) < backlog_before
                await self.handle(room_id, event, relay, replayed=backlog)
            plug.report_encryption(room_id)
        if skipped:
            self.log.info("catching up: skipped %d events older than max_catchup_age (%ss)",
                          skipped, f"{cutoff:g}")

    def after_own_join(self, room: Room, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop the history before the bridge's own join (a room it just joined), keeping
        what it says about the room's state."""
        own = self.plug.user_id
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
        plug = self.plug
        room = plug.rooms[room_id]
        gap: list[dict[str, Any]] = []
        token: str | None = prev_batch
        now = time.time()
        while token and len(gap) < MAX_GAP_EVENTS:
            page = await plug.client.messages(room_id, token, since, "b", self.gap_filter,
                                              retry_for=plug.config.send_retry_for)
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
                     replayed: bool = False) -> None:
        """Relay one timeline event when it means a message, then take it into the room state,
        so the conversion sees the room as it was before the event."""
        plug = self.plug
        room = plug.rooms[room_id]
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
            await plug.receive(sent, event)

    async def convert(self, room_id: str, room: Room, event: dict[str, Any],
                      relay: bool) -> SentMessage | None:
        """The message one timeline event means for the host, or None (raises BadEvent)."""
        plug = self.plug
        kind = event.get("type")
        if kind == "m.room.encrypted" or kind == "m.room.encryption":
            room.encrypted = True
            return None
        sender = event.get("sender")
        own = sender == plug.user_id
        if (own and not plug.is_own_echo(event)) or not relay:
            return None
        if kind == "m.room.message" and not own and isinstance(sender, str) and sender not in room.names:
            await plug.load_member(room_id, sender)
        if (kind == "m.room.message" and isinstance(event.get("event_id"), str)
                and isinstance(sender, str)):
            plug.senders[event["event_id"]] = sender
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        rel = relation(content)
        if kind == "m.room.message" and rel.get("rel_type") == "m.replace":
            if not isinstance(rel.get("event_id"), str):
                raise BadEvent("m.replace without event_id")
            if not await plug.same_sender(room_id, rel["event_id"], sender):
                self.log.info("%s: ignored edit %s of %s by someone other than its author",
                              room_id, event.get("event_id"), rel.get("event_id"))
                return None
        return plug.incoming.convert(plug.channel_of(room_id), room, event)


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


__all__ = ["Syncer", "room_filter", "sync_filter"]
