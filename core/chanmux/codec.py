"""Messages as JSON-ready data, for what a plugin keeps in the database across a restart.

`dump(msg)` gives plain dicts, lists and strings; `load(data)` gives the Message back. What
cannot be kept is dropped: a file's `fetch` (only its url stays), the `raw` network data, and
a parent kept only by reference (`reply_to` / `edit_of` and a reaction's target come back as
Receipts). Formatting (colours too), mentions, names, membership and its reason, reactions,
attachments (files, locations, quoted messages) are kept.
"""

from __future__ import annotations

from typing import Any

import attrs

from .model import Channel, File, FileKind, Location, Message, Reaction, Receipt, User
from .richtext import RichText, Segment


def _dump_user(user: User) -> dict[str, Any]:
    return {f.name: getattr(user, f.name) for f in attrs.fields(User)
            if f.name != "raw" and getattr(user, f.name) != f.default}


def _load_user(data: Any) -> User:
    fields = {f.name for f in attrs.fields(User)} - {"raw"}
    return User(**{k: v for k, v in data.items() if k in fields})


def _dump_text(text: RichText) -> list[Any]:
    out: list[Any] = []
    for seg in text:
        if seg == Segment(seg.text):
            out.append(seg.text)
            continue
        item: dict[str, Any] = {"text": seg.text}
        item.update({flag: True for flag in sorted(seg.flags)})
        if seg.link is not None:
            item["link"] = seg.link
        if seg.mention is not None:
            item["mention"] = _dump_user(seg.mention)
        for colour in ("color", "background"):
            if getattr(seg, colour) is not None:
                item[colour] = getattr(seg, colour)
        out.append(item)
    return out


def _load_text(data: Any) -> RichText:
    segments = []
    for item in data:
        if isinstance(item, str):
            segments.append(Segment(item))
            continue
        mention = item.get("mention")
        segments.append(Segment(
            item["text"], bold=item.get("bold", False), italic=item.get("italic", False),
            underline=item.get("underline", False), strike=item.get("strike", False),
            code=item.get("code", False), pre=item.get("pre", False), link=item.get("link"),
            mention=_load_user(mention) if mention is not None else None,
            color=item.get("color"), background=item.get("background")))
    return RichText(segments)


def _dump_receipt(parent: Any) -> dict[str, Any] | None:
    channel, id_ = getattr(parent, "channel", None), getattr(parent, "id", None)
    if not isinstance(channel, Channel) or not isinstance(id_, str):
        return None
    return {"plug": channel.plug, "source": channel.source, "id": id_}


def _load_receipt(data: dict[str, Any] | None) -> Receipt | None:
    if data is None:
        return None
    return Receipt(id=data["id"], channel=Channel(data["plug"], data["source"]))


def _dump_attachment(item: File | Location | Message) -> dict[str, Any]:
    if isinstance(item, File):
        return {"file": {"title": item.title, "kind": item.kind.value, "url": item.url,
                         "mime": item.mime, "size": item.size}}
    if isinstance(item, Location):
        return {"location": attrs.asdict(item)}
    return {"message": dump(item)}


def _load_attachment(data: dict[str, Any]) -> File | Location | Message:
    if "file" in data:
        f = data["file"]
        return File(title=f.get("title"), kind=FileKind(f.get("kind", "unknown")), url=f.get("url"),
                    mime=f.get("mime"), size=f.get("size"))
    if "location" in data:
        return Location(**data["location"])
    return load(data["message"])


def dump(msg: Message) -> dict[str, Any]:
    """`msg` as JSON-ready data (see the module docstring for what is dropped)."""
    out: dict[str, Any] = {}
    if msg.text is not None:
        out["text"] = _dump_text(msg.text)
    if msg.user is not None:
        out["user"] = _dump_user(msg.user)
    for flag in ("action", "notice", "edited", "deleted"):
        if getattr(msg, flag):
            out[flag] = True
    for name in ("reply_to", "edit_of"):
        parent = _dump_receipt(getattr(msg, name))
        if parent is not None:
            out[name] = parent
    if msg.joined:
        out["joined"] = [_dump_user(u) for u in msg.joined]
    if msg.left:
        out["left"] = [_dump_user(u) for u in msg.left]
    if msg.renamed is not None:
        out["renamed"] = [_dump_user(u) for u in msg.renamed]
    if msg.title is not None:
        out["title"] = msg.title
    if msg.reason is not None:
        out["reason"] = msg.reason
    if msg.reaction is not None:
        out["reaction"] = {"key": msg.reaction.key, "target": _dump_receipt(msg.reaction.target),
                           "removed": msg.reaction.removed}
    if msg.attachments:
        out["attachments"] = [_dump_attachment(a) for a in msg.attachments]
    return out


def load(data: dict[str, Any]) -> Message:
    """The Message `data` (from `dump`) stands for; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"a kept message is {type(data).__name__}, not an object")
    try:
        renamed = data.get("renamed")
        reaction = data.get("reaction")
        return Message(
            text=_load_text(data["text"]) if "text" in data else None,
            user=_load_user(data["user"]) if "user" in data else None,
            action=bool(data.get("action")), notice=bool(data.get("notice")),
            edited=bool(data.get("edited")), deleted=bool(data.get("deleted")),
            reply_to=_load_receipt(data.get("reply_to")),
            edit_of=_load_receipt(data.get("edit_of")),
            joined=[_load_user(u) for u in data.get("joined", ())],
            left=[_load_user(u) for u in data.get("left", ())],
            renamed=(_load_user(renamed[0]), _load_user(renamed[1])) if renamed else None,
            title=data.get("title"), reason=data.get("reason"),
            reaction=Reaction(reaction["key"], _load_receipt(reaction["target"]),
                              bool(reaction.get("removed"))) if reaction else None,
            attachments=[_load_attachment(a) for a in data.get("attachments", ())])
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"a kept message cannot be read ({type(exc).__name__}: {exc})") from None


__all__ = ["dump", "load"]
