"""What the plug knows of each room from /sync: member names, title, alias, encryption, DMs."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs


class Bounded(OrderedDict):
    """A dict that forgets its oldest entries beyond `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


#: Replaced member events each room remembers (see Room.apply).
SUPERSEDED = 1000


@attrs.define
class Room:
    """State of one room, kept current from the state and timeline events /sync delivers."""

    id: str
    names: dict[str, str | None] = attrs.field(factory=dict)
    members: set[str] = attrs.field(factory=set)
    name: str | None = None
    alias: str | None = None
    encrypted: bool = False
    encryption_reported: bool = False
    direct: bool = False
    #: who types in the room now, by the last m.typing (the bridge's own users left out)
    typing: set[str] = attrs.field(factory=set)
    #: `members` holds every joined member (loaded in full, not only those /sync named)
    complete: bool = False
    superseded: Bounded = attrs.field(factory=lambda: Bounded(SUPERSEDED))

    def apply(self, event: dict[str, Any]) -> None:
        """Take in a state event (from the state block or the timeline).

        A member event that one already taken in replaced is ignored: a /sync state block can
        hold a member's older event (the state before a message sent while their change of
        name was on its way), which must not undo the newer one.
        """
        kind = event.get("type")
        content = event.get("content")
        if not isinstance(content, dict):
            return
        if kind == "m.room.member":
            user = event.get("state_key")
            if not isinstance(user, str) or event.get("event_id") in self.superseded:
                return
            unsigned = event.get("unsigned")
            replaced = unsigned.get("replaces_state") if isinstance(unsigned, dict) else None
            if isinstance(replaced, str):
                self.superseded[replaced] = True
            membership = content.get("membership")
            name = content.get("displayname")
            self.names[user] = name if isinstance(name, str) and name.strip() else None
            if membership == "join":
                self.members.add(user)
            else:
                self.members.discard(user)
        elif kind == "m.room.name":
            name = content.get("name")
            self.name = name if isinstance(name, str) and name else None
        elif kind == "m.room.canonical_alias":
            alias = content.get("alias")
            self.alias = alias if isinstance(alias, str) and alias else None
        elif kind == "m.room.encryption":
            self.encrypted = True


class Rooms:
    """Every room the plug has seen, by room id."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.direct: set[str] = set()

    def __getitem__(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id)
        return room

    def __contains__(self, room_id: object) -> bool:
        return room_id in self.rooms

    def forget(self, room_id: str) -> None:
        self.rooms.pop(room_id, None)

    def set_direct(self, content: dict[str, Any]) -> None:
        """Take in the account's ``m.direct`` account data: {user id: [room ids]}."""
        rooms: set[str] = set()
        for ids in content.values():
            if isinstance(ids, list):
                rooms.update(i for i in ids if isinstance(i, str))
        self.direct = rooms

    def is_direct(self, room_id: str) -> bool:
        return room_id in self.direct or (room_id in self.rooms and self.rooms[room_id].direct)


__all__ = ["Bounded", "Room", "Rooms"]
