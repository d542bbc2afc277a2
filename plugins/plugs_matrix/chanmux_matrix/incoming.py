"""Matrix timeline events to chanmux messages.

``m.room.message`` becomes text, an action (``m.emote``), a notice or attachments; an
``m.replace`` becomes an edit of the original event (its id, ``edited=True``); a redaction a
``deleted`` message with the redacted event's id (a reaction's redaction too: that is how
Matrix takes a reaction back); ``m.reaction`` a message whose `reaction` names the event it
annotates and its key; ``m.room.name`` a title. Reply fallbacks
are stripped, HTML goes through the allow-list parser. A file's `File.url` is its public link
(the media proxy's, when the plug gives `link`) or else its ``mxc://`` URI; its `fetch` always
downloads the bytes.

An ``m.room.member`` event becomes a join, a leave (a kick or ban too, with its ``reason``) or,
when a joined member changes their display name, a rename: ``renamed=(before, after)``. Each names the person as the
event itself says (``content`` for the name after, ``prev_content`` for the name before), so a
leave shows the name the member had, whatever the room state says by the time it is read; an
avatar change says nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from chanmux import (
    Channel,
    File,
    FileKind,
    Location,
    Message,
    Reaction,
    Receipt,
    RichText,
    SentMessage,
    User,
)

from .html import parse_html, strip_reply_fallback_html, strip_reply_fallback_text
from .rooms import Room

_FILE_KINDS = {"m.image": FileKind.image, "m.video": FileKind.video, "m.audio": FileKind.audio,
               "m.file": FileKind.unknown}
_GEO = re.compile(r"^geo:(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)")


class BadEvent(ValueError):
    """An event whose content does not have the shape its type requires."""


def _str(content: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = content.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadEvent(f"{key} is {type(value).__name__}, not a string")
    return value


def _at(event: dict[str, Any]) -> datetime:
    ts = event.get("origin_server_ts")
    if isinstance(ts, (int, float)) and ts > 0:
        return datetime.fromtimestamp(ts / 1000, UTC)
    return datetime.now(UTC)


def age_seconds(event: dict[str, Any], now: float) -> float:
    """How old the event is by its origin_server_ts (0 if it has none)."""
    ts = event.get("origin_server_ts")
    return max(0.0, now - ts / 1000) if isinstance(ts, (int, float)) else 0.0


def sent_at(event: dict[str, Any]) -> float:
    """When the event was sent (Unix seconds) by its origin_server_ts; +inf if it has none,
    so an event without a time never counts as old."""
    ts = event.get("origin_server_ts")
    return ts / 1000 if isinstance(ts, (int, float)) and ts > 0 else float("inf")


def obj(value: Any) -> dict[str, Any]:
    """A JSON object read from an event, or an empty one when the server sent something else
    (absent, null, a string, a list): what every reader of a nested key goes through."""
    return value if isinstance(value, dict) else {}


def relation(content: dict[str, Any]) -> dict[str, Any]:
    return obj(content.get("m.relates_to"))


def prev_content(event: dict[str, Any]) -> dict[str, Any] | None:
    """The content the state event replaced (``unsigned.prev_content``, or the older top-level
    ``prev_content``), or None when the server did not say."""
    unsigned = obj(event.get("unsigned"))
    prev = unsigned.get("prev_content") or event.get("prev_content")
    return prev if isinstance(prev, dict) else None


def prev_membership(event: dict[str, Any]) -> str | None:
    prev = prev_content(event)
    membership = prev.get("membership") if prev is not None else None
    return membership if isinstance(membership, str) else None


def leave_reason(content: dict[str, Any]) -> str | None:
    """Why a member left, was kicked or banned (``reason``), on one line; None for none."""
    reason = content.get("reason")
    if not isinstance(reason, str):
        return None
    return " ".join(reason.split()) or None


def display_name(content: dict[str, Any] | None) -> str | None:
    """The display name a member event's content gives (None for none, or a blank one)."""
    name = content.get("displayname") if content is not None else None
    return name if isinstance(name, str) and name.strip() else None


class Incoming:
    """Converts one room's timeline events into SentMessages for the host."""

    def __init__(self, plug: str, own_id: str, mention: Callable[[str, str], User | None],
                 fetch: Callable[[str], Awaitable[bytes]],
                 link: Callable[[str, str | None], str | None] | None = None,
                 is_own: Callable[[str], bool] | None = None) -> None:
        self.plug = plug
        self.own_id = own_id
        #: whether a user id is the owner's (its account, or an application service's ghost)
        self.is_own = is_own if is_own is not None else own_id.__eq__
        self.mention = mention
        self.fetch = fetch
        #: a file's public link from its mxc URI and name (None: the file keeps its mxc URI)
        self.link = link

    def user(self, room: Room, user_id: str) -> User:
        return self.named(user_id, room.names.get(user_id))

    def named(self, user_id: str, name: str | None) -> User:
        """The user `user_id` under the display name `name`."""
        return User(id=user_id, plug=self.plug, username=user_id, real_name=name,
                    link=f"https://matrix.to/#/{user_id}", is_self=self.is_own(user_id))

    def convert(self, channel: Channel, room: Room, event: dict[str, Any]) -> SentMessage | None:
        """The message an event means, or None for events that carry none (raises BadEvent)."""
        kind = event.get("type")
        event_id = event.get("event_id")
        sender = event.get("sender")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            raise BadEvent("event without event_id or sender")
        content = event.get("content")
        if not isinstance(content, dict):
            raise BadEvent("content is not an object")
        user = self.user(room, sender)
        base: dict[str, Any] = {"id": event_id, "channel": channel, "at": _at(event), "user": user, "raw": event}
        if kind == "m.room.message":
            return self._message(channel, room, content, base)
        if kind == "m.room.redaction":
            redacts = event.get("redacts") or content.get("redacts")
            if not isinstance(redacts, str):
                raise BadEvent("redaction without redacts")
            return SentMessage(**{**base, "id": redacts}, deleted=True, revision=event_id)
        if kind == "m.room.member":
            return self._member(room, event, content, base)
        if kind == "m.reaction":
            return self._reaction(channel, content, base)
        if kind == "m.room.name":
            name = content.get("name")
            return SentMessage(**base, title=name if isinstance(name, str) else "")
        return None

    def _member(self, room: Room, event: dict[str, Any], content: dict[str, Any],
                base: dict[str, Any]) -> SentMessage | None:
        """A join, leave or rename, naming the person as the event says (what the room knew
        only when the server sent no ``prev_content``)."""
        target = event.get("state_key")
        if not isinstance(target, str):
            raise BadEvent("membership event without state_key")
        membership = content.get("membership")
        prev = prev_content(event)
        if prev is not None:
            before = prev.get("membership")
            old_name = display_name(prev)
        else:
            before = "join" if target in room.members else None
            old_name = room.names.get(target)
        if membership == "join":
            new = self.named(target, display_name(content))
            user = {"user": new} if base["user"].id == target else {}
            if before != "join":
                return SentMessage(**{**base, **user}, joined=[new])
            if new.real_name == old_name:
                return None  # an avatar change, or the same name set again
            return SentMessage(**{**base, **user}, renamed=(self.named(target, old_name), new))
        if membership in ("leave", "ban") and before == "join":
            old = self.named(target, old_name)
            user = {"user": old} if base["user"].id == target else {}
            return SentMessage(**{**base, **user}, left=[old], reason=leave_reason(content))
        return None

    @staticmethod
    def _reaction(channel: Channel, content: dict[str, Any], base: dict[str, Any]) -> SentMessage | None:
        """An annotation: the reaction's key to the event it is on."""
        if not content:
            return None  # redacted before we saw it
        rel = relation(content)
        target, key = rel.get("event_id"), rel.get("key")
        if rel.get("rel_type") != "m.annotation" or not isinstance(target, str) \
                or not isinstance(key, str) or not key:
            raise BadEvent("m.reaction without an m.annotation of an event_id with a key")
        return SentMessage(**base, reaction=Reaction(key, Receipt(id=target, channel=channel)))

    def _message(self, channel: Channel, room: Room, content: dict[str, Any],
                 base: dict[str, Any]) -> SentMessage | None:
        if not content:
            return None  # redacted before we saw it
        rel = relation(content)
        if rel.get("rel_type") == "m.replace":
            target = rel.get("event_id")
            new = content.get("m.new_content")
            if not isinstance(target, str) or not isinstance(new, dict):
                raise BadEvent("m.replace without event_id or m.new_content")
            msg = self._body(channel, room, new, reply=False, event_id=base["id"])
            return SentMessage.of(msg, id=target, channel=channel, at=base["at"], user=base["user"],
                                  edited=True, revision=base["id"], raw=base["raw"])
        msg = self._body(channel, room, content, reply=True, event_id=base["id"])
        return SentMessage.of(msg, **base)

    def _body(self, channel: Channel, room: Room, content: dict[str, Any], reply: bool,
              event_id: str = "") -> Message:
        msgtype = _str(content, "msgtype", required=True)
        body = _str(content, "body") or ""
        reply_to = None
        parent = relation(content).get("m.in_reply_to") if reply else None
        if isinstance(parent, dict) and isinstance(parent.get("event_id"), str):
            reply_to = Receipt(id=parent["event_id"], channel=channel)
        if msgtype in _FILE_KINDS:
            return Message(attachments=[self._file(content, msgtype, body)], reply_to=reply_to)
        if msgtype == "m.location":
            return Message(attachments=[self._location(content, body)], reply_to=reply_to)
        text = self._text(room, content, body, reply_to is not None, event_id)
        return Message(text=text, action=msgtype == "m.emote", notice=msgtype == "m.notice",
                       reply_to=reply_to)

    def _text(self, room: Room, content: dict[str, Any], body: str, is_reply: bool,
              event_id: str = "") -> RichText:
        html = content.get("formatted_body") if content.get("format") == "org.matrix.custom.html" else None
        if isinstance(html, str):
            if is_reply:
                html = strip_reply_fallback_html(html)
            try:
                return parse_html(html, lambda user_id: self.mention(room.id, user_id))
            except Exception as exc:  # noqa: BLE001 - the plain body still says what was said
                cause = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                logging.getLogger(f"chanmux.plug.{self.plug}").warning(
                    "%s: the formatted_body of %s cannot be read (%s); relaying its plain body",
                    room.id, event_id, cause)
        if is_reply:
            body = strip_reply_fallback_text(body)
        return RichText.plain_text(body.strip())

    def _file(self, content: dict[str, Any], msgtype: str, body: str) -> File:
        url = _str(content, "url")
        if url is None:
            raise BadEvent(f"{msgtype} without url (encrypted attachments are not supported)")
        info = obj(content.get("info"))
        size = info.get("size")
        mime = info.get("mimetype")
        fetch = self.fetch
        title = _str(content, "filename") or body or None

        async def download() -> bytes:
            return await fetch(url)

        public = self.link(url, title) if self.link is not None else None
        return File(title=title, kind=_FILE_KINDS[msgtype],
                    url=public or url, mime=mime if isinstance(mime, str) else None,
                    size=size if isinstance(size, int) else None, fetch=download)

    @staticmethod
    def _location(content: dict[str, Any], body: str) -> Location:
        geo = _str(content, "geo_uri", required=True) or ""
        match = _GEO.match(geo)
        if not match:
            raise BadEvent(f"m.location with geo_uri {geo[:60]!r}")
        return Location(latitude=float(match.group(1)), longitude=float(match.group(2)),
                        name=body or None)


__all__ = ["BadEvent", "Incoming", "age_seconds", "display_name", "leave_reason", "prev_content",
           "prev_membership", "relation", "sent_at"]
