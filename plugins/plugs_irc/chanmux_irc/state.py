"""What the plug knows about the network: channels it is in, their members and topics, the
people in them, and bounded memories of private conversations and message texts.

Nothing here grows with the number of lines a server sends: a person is remembered only while
they share a channel with us, and what is kept of the rest is bounded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

import attrs

from chanmux import RichText

from .protocol import ServerInfo

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A mapping that forgets its least recently used entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def __setitem__(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._data.get(key, default)
        if key in self._data:
            self._data.move_to_end(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def values(self) -> list[V]:
        return list(self._data.values())


@attrs.define
class Said:
    """A remembered message: who said it (as shown on IRC) and its text."""

    name: str | None
    text: RichText | None
    #: its deletion was shown already (a message of several lines is deleted line by line)
    gone: bool = False


@attrs.define
class Person:
    """Someone seen on the network, by their current nick."""

    nick: str
    user: str | None = None
    host: str | None = None
    account: str | None = None
    realname: str | None = None

    @property
    def id(self) -> str:
        """Their account where the server tells it, else nick!user@host, else the nick."""
        if self.account:
            return self.account
        if self.user and self.host:
            return f"{self.nick}!{self.user}@{self.host}"
        return self.nick


@attrs.define
class ChannelState:
    """A channel the plug is in: its name as the server spells it, topic and members."""

    name: str
    topic: str | None = None
    members: dict[str, str] = attrs.field(factory=dict)  # folded nick -> nick
    names_pending: dict[str, str] | None = None
    version: int = 0

    def add(self, folded: str, nick: str) -> None:
        self.members[folded] = nick
        self.version += 1

    def remove(self, folded: str) -> bool:
        found = self.members.pop(folded, None) is not None
        if found:
            self.version += 1
        return found


#: Private conversations remembered (the most recent), for `private_channels`.
PRIVATE_MEMORY = 1000


class NetworkState:
    """Channels joined, people in them, private conversations: keyed by folded name."""

    def __init__(self) -> None:
        self.info = ServerInfo()
        self.channels: dict[str, ChannelState] = {}
        self.people: dict[str, Person] = {}
        self.private: Bounded[str, str] = Bounded(PRIVATE_MEMORY)  # folded nick -> nick

    def fold(self, name: str) -> str:
        return name.translate(self.info.table)

    def reset(self) -> None:
        """Forget membership (after a disconnect); private conversations are kept."""
        self.channels.clear()
        self.people.clear()

    def channel(self, name: str) -> ChannelState | None:
        return self.channels.get(self.fold(name))

    def person(self, nick: str) -> Person:
        folded = self.fold(nick)
        person = self.people.get(folded)
        if person is None:
            person = self.people[folded] = Person(nick)
        return person

    def known(self, nick: str) -> Person | None:
        """The person of that nick if they share a channel with us (else None)."""
        return self.people.get(self.fold(nick))

    def seen(self, nick: str, user: str | None, host: str | None) -> Person:
        """Remember (or update) a member of one of our channels."""
        return self._update(self.person(nick), nick, user, host)

    def sender(self, nick: str, user: str | None, host: str | None) -> Person:
        """The person behind a line: updated if known; else made for the line, not kept."""
        person = self.known(nick) or Person(nick)
        return self._update(person, nick, user, host)

    @staticmethod
    def _update(person: Person, nick: str, user: str | None, host: str | None) -> Person:
        person.nick = nick
        if user:
            person.user = user
        if host:
            person.host = host
        return person

    def drop_channel(self, folded: str) -> None:
        """We left a channel: forget it, and its members who share no other channel."""
        chan = self.channels.pop(folded, None)
        if chan is not None:
            self.forget_all_alone(chan.members)

    def forget_all_alone(self, folded_nicks: object) -> None:
        """Forget each of these (folded) nicks that is in none of our channels."""
        for folded in list(folded_nicks):  # type: ignore[call-overload]
            if not any(folded in c.members for c in self.channels.values()):
                self.people.pop(folded, None)

    def shared(self, nick: str) -> Iterator[ChannelState]:
        """Channels `nick` is in with us."""
        folded = self.fold(nick)
        for chan in list(self.channels.values()):
            if folded in chan.members:
                yield chan

    def forget_if_alone(self, nick: str) -> None:
        folded = self.fold(nick)
        if not any(folded in c.members for c in self.channels.values()):
            self.people.pop(folded, None)


__all__ = ["Bounded", "ChannelState", "NetworkState", "Person", "Said"]
