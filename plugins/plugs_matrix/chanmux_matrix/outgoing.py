"""chanmux messages to Matrix event contents, and the transaction ids that make sends idempotent.

A message becomes one ``m.room.message`` for its text (split in several when it would not fit
one event) and one per attachment. The author is shown by ``name_format`` (the name in bold),
actions are ``m.emote``, mentions of users of this plug are pills listed in ``m.mentions``,
replies carry ``m.in_reply_to``. A join, leave, change of name or of title without text is a
notice that names each person once ("Bob joined", "Bob M left (gone fishing)", "Bob is now
known as Robert"), with no author in front.

A text that starts by addressing someone as IRC people do ("alice: thanks") can have that
name made a pill of the room's member of that name (`addressed`, `with_mention`), so they are
notified.
"""

from __future__ import annotations

import hashlib
import re
import string
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from chanmux import (
    Channel,
    File,
    FileKind,
    Location,
    Message,
    Receipt,
    RichText,
    Segment,
    SentMessage,
    User,
)

from .html import render_html, render_plain

HTML = "org.matrix.custom.html"
#: Bytes of body + formatted_body per event; Synapse refuses events over 65536 bytes in all.
MAX_TEXT_BYTES = 30_000
_FILE_TYPES = {FileKind.image: "m.image", FileKind.video: "m.video", FileKind.audio: "m.audio",
               FileKind.unknown: "m.file"}


@attrs.frozen
class Part:
    """One event to send: a text content ready to go, or an attachment to upload first."""

    content: dict[str, Any] | None = None
    file: File | None = None


def _template(template: str, name: str) -> RichText:
    """The name template as RichText with the name itself in bold."""
    segments: list[Segment] = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        if literal:
            segments.append(Segment(literal))
        if field is not None:
            segments.append(Segment(name, bold=True))
    return RichText(segments)


class Renderer:
    """Turns messages into event contents for one plug."""

    def __init__(self, plug: str, name_format: str, action_name_format: str,
                 ghost_of: Callable[[User], str | None] | None = None) -> None:
        self.plug = plug
        self.name_format = name_format
        self.action_name_format = action_name_format
        #: the Matrix user standing for a person of another network (application-service mode)
        self.ghost_of = ghost_of

    def mention_id(self, user: User) -> str | None:
        """The Matrix id a mention of `user` pills: a user on this plug's network, or the
        ghost of a person of another network."""
        if user.plug == self.plug and user.id and user.id.startswith("@") and ":" in user.id:
            return user.id
        if self.ghost_of is not None and user.plug != self.plug:
            return self.ghost_of(user)
        return None

    def author(self, msg: Message, named: bool = True) -> RichText:
        """The author in front of the text (nothing when `named` is False: the message is
        sent by its author's ghost)."""
        user = msg.user
        if user is None or user.is_self or not named:
            return RichText()
        template = self.action_name_format if msg.action else self.name_format
        return _template(template, user.display) if template else RichText()

    def event_text(self, msg: Message) -> RichText | None:
        """Words for a join, leave, change of name or title put as a message of its own; they
        name the people themselves, so they go without the author in front."""
        who = msg.user.display if msg.user is not None else None
        if msg.joined:
            return RichText.plain_text(", ".join(u.display for u in msg.joined) + " joined")
        if msg.left:
            reason = f" ({msg.reason})" if msg.reason else ""
            return RichText.plain_text(", ".join(u.display for u in msg.left) + " left" + reason)
        if msg.renamed is not None:
            before, after = msg.renamed
            return RichText.plain_text(f"{before.display} is now known as {after.display}")
        if msg.title is not None:
            return RichText.plain_text(f"{who or 'someone'} changed the title to {msg.title}")
        return None

    def text_content(self, text: RichText, msgtype: str,
                     rendered: tuple[str, str] | None = None) -> dict[str, Any]:
        """The content of one text event (`rendered`: its body and HTML, if already made)."""
        mentions = sorted({uid for seg in text if seg.mention is not None
                           for uid in [self.mention_id(seg.mention)] if uid})
        body, html = rendered if rendered is not None else self._render(text)
        return {"msgtype": msgtype, "body": body, "format": HTML,
                "formatted_body": html, "m.mentions": {"user_ids": mentions} if mentions else {}}

    def _render(self, text: RichText) -> tuple[str, str]:
        return render_plain(text), render_html(text, self.mention_id)

    def _size(self, text: RichText) -> int:
        body, html = self._render(text)
        return len(body.encode()) + len(html.encode())

    def _split(self, text: RichText, limit: int) -> list[tuple[RichText, tuple[str, str]]]:
        """`text` in chunks whose event contents (body and formatted_body) measure at most
        `limit` bytes, each with its rendering; in time linear in the text for any formatting.

        Measuring a candidate chunk means rendering it, so searching each chunk's end by
        measure costs a render per probe (seconds for a 64 KiB text of many formats). Instead
        the text is cut by plain bytes at a budget scaled by how much its rendering weighs
        per plain byte, and each piece is rendered once; a piece still too large (its
        formatting denser than the average) is cut again at its own scale. Only a piece that
        cannot be cut by plain bytes at all is searched by measure."""
        rendered = self._render(text)
        size = len(rendered[0].encode()) + len(rendered[1].encode())
        if size <= limit:
            return [(text, rendered)]
        plain = len(text.plain.encode()) or 1
        pieces = text.split_bytes(max(1, int(limit * plain / size * 0.95)))
        if len(pieces) < 2:
            return [(chunk, self._render(chunk))
                    for chunk in text.split_bytes(limit, measure=self._size)]
        return [done for piece in pieces for done in self._split(piece, limit)]

    def parts(self, msg: Message, reply_id: str | None, named: bool = True) -> list[Part]:
        """The events that represent `msg`, in order (text first, then attachments); without
        the author in front when not `named`."""
        parts: list[Part] = []
        msgtype = "m.emote" if msg.action else "m.notice" if msg.notice else "m.text"
        text, author = msg.text, self.author(msg, named)
        if not text and not msg.attachments:
            text, author = self.event_text(msg), RichText()
            msgtype = "m.notice"
        if text:
            for chunk, rendered in self._split(author + text, MAX_TEXT_BYTES):
                parts.append(Part(content=self.text_content(chunk, msgtype, rendered)))
        for attachment in msg.attachments:
            if isinstance(attachment, File):
                parts.append(Part(file=attachment))
            elif isinstance(attachment, Location):
                parts.append(Part(content=self.location_content(msg, attachment, named)))
            elif isinstance(attachment, Message):
                quoted = attachment.text or RichText()
                name = attachment.user.display if attachment.user is not None else None
                quote = RichText.plain_text(f"> {name}: " if name else "> ") + quoted
                parts.append(Part(content=self.text_content(author + quote, "m.text")))
        if reply_id is not None and parts and parts[0].content is not None:
            parts[0].content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_id}}
        return parts

    def location_content(self, msg: Message, place: Location, named: bool = True) -> dict[str, Any]:
        label = place.name or place.address or f"{place.latitude}, {place.longitude}"
        author = self.author(msg, named).plain
        return {"msgtype": "m.location", "body": f"{author}{label}",
                "geo_uri": f"geo:{place.latitude},{place.longitude}"}

    def file_content(self, msg: Message, file: File, mxc: str, size: int) -> dict[str, Any]:
        title = file.title or "file"
        info: dict[str, Any] = {"size": size}
        if file.mime:
            info["mimetype"] = file.mime
        return {"msgtype": _FILE_TYPES.get(file.kind, "m.file"), "body": title, "filename": title,
                "url": mxc, "info": info}

    def edit_content(self, msg: Message, target: str, named: bool = True) -> dict[str, Any]:
        """An ``m.replace`` of `target` with the text of `msg` (its first part)."""
        parts = self.parts(msg.clone(attachments=[], reply_to=None), None, named)
        new = parts[0].content if parts and parts[0].content else self.text_content(
            RichText.plain_text(" "), "m.text")
        new = {k: v for k, v in new.items() if k != "m.relates_to"}
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {new['body']}",
            "format": HTML,
            "formatted_body": f"* {new.get('formatted_body', '')}",
            "m.new_content": new,
            "m.mentions": new.get("m.mentions", {}),
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        }
        return content


class Transactions:
    """Transaction ids for outgoing events, the same every time one copy is (re)sent.

    A copy of a message the host knows by a receipt (a SentMessage) gets an id derived from
    that receipt's key and revision and the target room; any other message gets a random id
    kept with the message object, so a hook retrying the same put reuses it. The homeserver
    answers a repeated transaction id with the first event instead of sending a second.
    """

    def __init__(self) -> None:
        self._random: weakref.WeakKeyDictionary[Message, str] = weakref.WeakKeyDictionary()

    def base(self, msg: Message | None, *extra: str) -> str:
        if msg is not None and hasattr(msg, "channel") and hasattr(msg, "id"):
            channel: Channel = msg.channel
            identity = f"{channel.plug}|{channel.source}|{msg.id}|{getattr(msg, 'revision', '')}"
        elif msg is not None:
            identity = self._random.get(msg) or ""
            if not identity:
                identity = self._random[msg] = uuid.uuid4().hex
        else:
            identity = ""
        return "|".join((identity, *extra))

    @staticmethod
    def txn(base: str, index: int = 0) -> str:
        digest = hashlib.sha256(f"{base}|{index}".encode()).hexdigest()[:32]
        return f"chanmux-{digest}"


#: A leading "name:" or "name," followed by a space (or nothing), as IRC people address
#: someone; the name holds no colon, comma or line break.
_ADDRESS = re.compile(r"([^:,\n]{1,100})[:,](?=\s|$)")


def addressed(text: RichText) -> str | None:
    """The name `text` starts by addressing ("alice: thanks", "Bob M, look"), or None; only
    when that name is plain text (not already a link, a mention or code)."""
    match = _ADDRESS.match(text.plain[:102])
    if match is None:
        return None
    name = match.group(1)
    if name != name.strip() or any(seg.link or seg.mention or seg.code or seg.pre
                                   for seg in text[:len(name)]):
        return None
    return name


def with_mention(text: RichText, length: int, user: User) -> RichText:
    """`text` with its first `length` characters a mention (a pill) of `user`."""
    head = [attrs.evolve(seg, mention=user) for seg in text[:length]]
    return RichText(head) + text[length:]


def reply_target(msg: Message, channel: Channel, room_id: str) -> str | None:
    """The event id to reply to, when `msg.reply_to` is a copy in this very room."""
    return _in_room(msg.reply_to, channel, room_id)


def reaction_target(msg: Message, channel: Channel, room_id: str) -> str | None:
    """The event id a reaction is on, when its target is a copy in this very room."""
    return _in_room(msg.reaction.target if msg.reaction is not None else None, channel, room_id)


def _in_room(parent: object, channel: Channel, room_id: str) -> str | None:
    if isinstance(parent, (Receipt, SentMessage)):
        chan, pid = parent.channel, parent.id
        if chan.plug == channel.plug and chan.source in (channel.source, room_id) and pid.startswith("$"):
            return pid
    return None


__all__ = ["MAX_TEXT_BYTES", "Part", "Renderer", "Transactions", "addressed", "reaction_target",
           "reply_target", "with_mention"]
