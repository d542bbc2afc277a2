"""The virtual plug of a sync: one channel per label, standing for the whole conversation."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from chanmux import Capabilities, Channel, Host, Message, Plug, Receipt, SentMessage, User

if TYPE_CHECKING:
    from .hook import SyncHook


class SyncPlug(Plug):
    """Virtual plug that allows sending external messages to a synced conversation.

    Its channels are `Channel(plug name, label)`. A message put there reaches every member
    channel; every message synced between the members is also received here (with the sync
    key as its id), so other hooks can treat the conversation as one channel.
    """

    network_name: ClassVar[str] = "sync"
    capabilities = Capabilities(edit=True, delete=True, reply=True)

    def __init__(self, name: str, hook: SyncHook, host: Host) -> None:
        super().__init__(name, None, host)
        self.log = logging.getLogger(f"chanmux.plug.{name}")
        self._hook = hook
        self._send, self._recv = anyio.create_memory_object_stream[Any](math.inf)

    @classmethod
    def any_sync(cls, host: Host, channel: Channel) -> Channel | None:
        """Produce a synced channel for the given source, searching across all `SyncPlug`
        instances running on the host; None if not synced."""
        for plug in host.plugs.values():
            if isinstance(plug, cls):
                found = plug.sync_for(channel)
                if found is not None:
                    return found
        return None

    def sync_for(self, channel: Channel) -> Channel | None:
        """Produce a synced channel for the given source; None if not synced."""
        label = self._hook.label_for(channel)
        return None if label is None else Channel(self.name, label)

    def in_sync(self, channel: Channel) -> list[Channel]:
        """Retrieve the list of member channels for a given sync channel (empty if the channel
        is not one of this sync's)."""
        if channel.plug != self.name:
            return []
        return list(self._hook.members.get(channel.source, []))

    # -- receiving: mirror of the synced conversation ----------------------------------------

    def queue(self, sent: SentMessage, source: Message | None = None) -> None:
        """Receive `sent` in a virtual channel (without waiting: the host takes it in order)."""
        if self.state.value == "active":
            self._send.send_nowait((sent, source))

    async def run(self) -> None:
        async for sent, source in self._recv:
            await self.host.receive(sent, source)

    # -- look-ups ----------------------------------------------------------------------------

    async def public_channels(self) -> list[Channel] | None:
        """Retrieve all shared channels known to this plug: one per label."""
        return [Channel(self.name, label) for label in self._hook.members]

    async def private_channels(self) -> list[Channel] | None:
        """Retrieve all private (one-to-one) channels known to this plug: none."""
        return []

    async def channel_is_private(self, channel: Channel) -> bool | None:
        """True if every member channel is private, False if any is shared, None if unknown."""
        members = self.in_sync(channel)
        if not members:
            return None
        answers = [await self.host.channel_is_private(member) for member in members]
        if any(answer is False for answer in answers):
            return False
        if answers and all(answer is True for answer in answers):
            return True
        return None

    async def channel_title(self, channel: Channel) -> str | None:
        """The configured title of the label, else the member channels' titles joined."""
        if channel.plug != self.name or channel.source not in self._hook.members:
            return None
        title = self._hook.config.titles.get(channel.source)
        if title:
            return title
        titles: list[str] = []
        for member in self.in_sync(channel):
            found = await self.host.channel_title(member)
            if found and found not in titles:
                titles.append(found)
        return " / ".join(titles) if titles else channel.source

    async def channel_members(self, channel: Channel) -> list[User] | None:
        """Every member of every member channel (None if no member channel could tell)."""
        members = self.in_sync(channel)
        if not members:
            return None
        seen: dict[tuple[str | None, str | None], User] = {}
        answered = False
        for member in members:
            found = await self.host.channel_members(member)
            if found is None:
                continue
            answered = True
            for user in found:
                seen.setdefault((user.plug or member.plug, user.id or user.username), user)
        return list(seen.values()) if answered else None

    # -- sending -----------------------------------------------------------------------------

    def _label(self, channel: Channel) -> str:
        if channel.plug != self.name or channel.source not in self._hook.members:
            raise LookupError(f"{self.name}: no sync channel {channel.source!r}")
        return channel.source

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        """Take a `Message` and send it to every channel of the sync. Returns one Receipt
        whose id is the sync key of the message."""
        label = self._label(channel)
        if msg.edited and msg.edit_of is not None and getattr(msg.edit_of, "channel", None) == channel:
            return await self.edit(msg.edit_of, msg)  # type: ignore[arg-type]
        ref = await self._hook.send(label, msg, virtual_source=msg)
        return [Receipt(id=ref.key, channel=channel)]

    async def edit(self, sent: Receipt, msg: Message) -> list[Receipt]:
        """Edit every copy of the message at `sent` (a Receipt of this plug)."""
        label = self._label(sent.channel)
        ref = await self._hook.cache.fetch(sent.id)
        if ref is None:
            raise LookupError(f"{self.name}: unknown message {sent.id!r}")
        await self._hook.send(label, msg.clone(edited=True), ref=ref, update=True,
                              virtual_source=msg)
        return [Receipt(id=ref.key, channel=sent.channel, edited=True)]

    async def delete(self, sent: Receipt) -> bool:
        """Request deletion of every copy of this message."""
        label = self._label(sent.channel)
        ref = await self._hook.cache.fetch(sent.id)
        if ref is None:
            return False
        await self._hook.remove(label, ref)
        return True
