"""What the plug knows about the network: channels it is in, their members and topics, people
it has seen, and a bounded memory of message texts (for edits and replies)."""

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


@attrs.define
class Said:
    """A remembered message: who said it (as shown on IRC) and its text."""

    name: str | None
    text: RichText | None


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


class NetworkState:
    """Channels joined, people seen, private conversations: everything keyed by folded name."""

    def __init__(self) -> None:
        self.info = ServerInfo()
        self.channels: dict[str, ChannelState] = {}
        self.people: dict[str, Person] = {}
        self.private: dict[str, str] = {}  # folded nick -> nick

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

    def seen(self, nick: str, user: str | None, host: str | None) -> Person:
        person = self.person(nick)
        person.nick = nick
        if user:
            person.user = user
        if host:
            person.host = host
        return person

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
