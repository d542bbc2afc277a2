"""Joins and leaves folded together while they wait, so a flood of them costs one message.

A netsplit, a mass join or a bot flooding JOIN/QUIT sends thousands of membership events in
moments. Handled one by one they fill the lanes and every target's delivery queue, and the
next thing someone says waits behind all of them (100k JOIN + QUIT held a real message back
for minutes). So wherever membership events wait (a lane's queue, a delivery queue), one that
arrives while another of the same channel still waits is folded into it: a person who joined
and left meanwhile is not shown at all, and past a few names the rest are counted
("alice, bob and 1,204 others joined"). Memory stays bounded whatever the flood.
"""

from __future__ import annotations

import itertools
from typing import Any

from .model import Message, User

#: Names shown in one folded message; the rest are counted.
SHOWN = 20
#: People remembered by name per side (to cancel a join by a later leave); beyond, counted.
TRACKED = 2_000


def foldable(msg: Any) -> bool:
    """True for a message that only says who joined or left (no text, no rename, no title)."""
    return (isinstance(msg, Message) and bool(msg.joined or msg.left) and not msg.text
            and not msg.attachments and msg.renamed is None and msg.title is None
            and not msg.edited and not msg.deleted)


def _key(user: User) -> tuple[str | None, str]:
    return (user.plug, user.id or user.username or user.display)


class _Side:
    """The people of one side (joined or left): by name up to TRACKED, then a count."""

    __slots__ = ("people", "extra")

    def __init__(self) -> None:
        self.people: dict[tuple[str | None, str], User] = {}
        self.extra = 0

    def add(self, user: User) -> None:
        key = _key(user)
        if key in self.people:
            return
        if len(self.people) < TRACKED:
            self.people[key] = user
        else:
            self.extra += 1

    def cancel(self, user: User) -> bool:
        """Take `user` out if listed (a join undone by a leave); True if they were."""
        return self.people.pop(_key(user), None) is not None

    def users(self) -> list[User]:
        shown = list(itertools.islice(self.people.values(), SHOWN))
        others = len(self.people) - len(shown) + self.extra
        if others:
            shown.append(User(real_name=f"{others:,} others"))
        return shown


class Fold:
    """The joins and leaves of one waiting message, with those folded into it since."""

    __slots__ = ("joined", "left", "folded")

    def __init__(self, msg: Message) -> None:
        self.joined = _Side()
        self.left = _Side()
        self.folded = 0
        self._take(msg)

    def _take(self, msg: Message) -> None:
        for user in msg.left:
            if not self.joined.cancel(user):
                self.left.add(user)
        for user in msg.joined:
            if not self.left.cancel(user):
                self.joined.add(user)

    def add(self, msg: Message) -> None:
        """Fold a later membership message of the same channel in."""
        self._take(msg)
        self.folded += 1

    def apply(self, msg: Message) -> Message:
        """Write the folded joins and leaves into `msg` (the message that waited); it may end
        up with none (everyone who joined left again): then it has nothing to say."""
        msg.joined = self.joined.users()
        msg.left = self.left.users()
        return msg


__all__ = ["Fold", "SHOWN", "TRACKED", "foldable"]
