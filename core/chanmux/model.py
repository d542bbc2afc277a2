"""The message model every plug and hook speaks: channels, users, messages and receipts."""

from __future__ import annotations

import enum
import itertools
import os
from datetime import UTC, datetime
from typing import Any

import attrs

from .richtext import RichText, as_richtext


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen(cache_hash=True)
class Channel:
    """A room or channel: `plug` is the configured plug's name, `source` the network's own id."""

    plug: str
    source: str

    def __str__(self) -> str:
        return f"{self.plug}:{self.source}"


@attrs.frozen
class User:
    """An author on a plug. `id` is the network's stable id; names are for display."""

    id: str | None = None
    plug: str | None = None
    username: str | None = None
    real_name: str | None = None
    avatar: str | None = None
    link: str | None = None
    is_self: bool = False
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def display(self) -> str:
        """The best name to show: real name, else username, else id."""
        return self.real_name or self.username or self.id or "unknown"


class FileKind(enum.Enum):
    unknown = "unknown"
    image = "image"
    video = "video"
    audio = "audio"


@attrs.frozen
class File:
    """An attachment. `fetch` (if set) is an async callable returning the bytes."""

    title: str | None = None
    kind: FileKind = FileKind.unknown
    url: str | None = None
    mime: str | None = None
    size: int | None = None
    fetch: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


def _text_converter(value: Any) -> RichText | None:
    return as_richtext(value)


@attrs.frozen
class Reaction:
    """A reaction (since 0.2.4): `key` (an emoji, or a short text) to the message `target`;
    `removed` when the person takes it back (where the network says so as an event of its
    own; where it says so by deleting the reaction, the reaction message is deleted instead).

    Incoming, `target` is the network's message (a Receipt of the same channel); a relay
    hands a plug the reaction with `target` the copy in the plug's channel."""

    key: str
    target: Message | Receipt | None
    removed: bool = False


# on_setattr=NO_OP: the text is converted when a message is made, not on every later assignment
# (`text` is typed RichText | None, which is what may be assigned), so that attrs stores each
# field directly instead of through a setattr hook: a message is made in a third of the time
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class Message:
    """What was said: text, author and everything a network can carry with it.

    `reply_to` is the parent (a Message, SentMessage or Receipt); `edit_of` names the earlier
    copy an outgoing edit replaces, for plugs that cannot edit in place and render it their own
    way; `joined`/`left` list users for membership events, `renamed` is (before, after) for a
    person's change of name (an IRC nick, a Matrix display name) and `title` a new channel
    title. Joins, leaves and renames are membership events: relays show them only where
    membership is wanted. `reason` (since 0.2.4) says why people left (a part or quit
    message, a kick's reason). `reaction` (since 0.2.4) makes the message a reaction to
    another (see `Reaction`); it has no text of its own.
    """

    text: RichText | None = attrs.field(default=None, converter=_text_converter)
    user: User | None = None
    action: bool = False
    notice: bool = False
    edited: bool = False
    deleted: bool = False
    reply_to: Message | Receipt | None = None
    edit_of: Message | Receipt | None = None
    joined: list[User] = attrs.field(factory=list)
    left: list[User] = attrs.field(factory=list)
    renamed: tuple[User, User] | None = None
    title: str | None = None
    reason: str | None = None
    reaction: Reaction | None = None
    attachments: list[File | Location | Message] = attrs.field(factory=list)
    raw: Any = attrs.field(default=None, repr=False)

    @property
    def is_event(self) -> bool:
        """True for joins, leaves, renames and titles rather than something said."""
        return bool(self.joined or self.left or self.renamed or self.title is not None) and not self.text

    @property
    def is_membership(self) -> bool:
        """True if the message says someone joined, left or changed their name."""
        return bool(self.joined or self.left or self.renamed)

    def clone(self, **changes: Any) -> Message:
        """A copy as a plain Message (dropping where it was sent), with `changes` applied."""
        fields = {f.name: getattr(self, f.name) for f in attrs.fields(Message)}
        fields.update(changes)
        return Message(**fields)


@attrs.define(kw_only=True, eq=False)
class Receipt:
    """Where a message landed: its id in `channel`, when, and which revision."""

    id: str
    channel: Channel
    at: datetime = attrs.field(factory=_now)
    revision: str | None = None
    edited: bool = False
    deleted: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """(plug, channel source, message id): unique for one copy of a message."""
        return (self.channel.plug, self.channel.source, self.id)

    def receipt(self) -> Receipt:
        return Receipt(id=self.id, channel=self.channel, at=self.at, revision=self.revision,
                       edited=self.edited, deleted=self.deleted)


@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class SentMessage(Message):
    """A message as it exists on a network: a Message plus its Receipt fields.

    `replayed` is True for a message received again after a restart, which may have been
    relayed (in part) before: a relay sends it only where no copy of it is known yet. The host
    sets it for what it kept in its inbox (`chanmux.inbox`); a plug that fetches again what it
    may have handed over before (a Matrix backlog) sets it too.
    """

    id: str
    channel: Channel
    at: datetime = attrs.field(factory=_now)
    revision: str | None = None
    replayed: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """(plug, channel source, message id), as `Receipt.key`."""
        return (self.channel.plug, self.channel.source, self.id)

    def receipt(self) -> Receipt:
        """Where this message landed, as a Receipt."""
        return Receipt(id=self.id, channel=self.channel, at=self.at, revision=self.revision,
                       edited=self.edited, deleted=self.deleted)

    @classmethod
    def of(cls, msg: Message, *, id: str, channel: Channel, **extra: Any) -> SentMessage:
        """Wrap `msg` as sent in `channel` under `id`."""
        fields = {f.name: getattr(msg, f.name) for f in attrs.fields(Message)}
        fields.update(extra)
        return cls(id=id, channel=channel, **fields)


_counter = itertools.count()
_boot = f"{int(_now().timestamp() * 1000):x}{os.getpid():x}"


def unique_id(prefix: str = "") -> str:
    """An id unique across runs of the process (time of start, pid, counter)."""
    return f"{prefix}{_boot}.{next(_counter):x}"
