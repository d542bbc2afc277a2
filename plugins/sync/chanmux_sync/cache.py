"""Synced messages in memory (SyncRef), and the bounded cache in front of the database (SyncCache)."""

from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chanmux import BatchWriter, Channel, Host, Message, Receipt, SentMessage

from . import store as store_mod
from .store import SyncBackRef

if TYPE_CHECKING:
    from .hook import SyncHook

CopyKey = tuple[str, str, str]

_run = uuid.uuid4().hex
_serial = itertools.count(1)


def new_key() -> str:
    """A message key unique across runs and hosts: a random id of this run and a counter."""
    return f"{_run}.{next(_serial):x}"


class SyncRef:
    """Representation of a single synced message.

    `ids` maps each channel to the ids of the message's copies there, oldest first (a plug
    that cannot edit in place gets one more copy per edit). `origin` is the copy the message
    was first said as, if it came from a network rather than the sync's virtual plug.
    """

    __slots__ = ("key", "ids", "source", "origin", "deleted", "author", "excerpt", "_stored",
                 "__weakref__")

    def __init__(self, ids: Mapping[Channel, list[str]], *, key: str | None = None,
                 source: Message | None = None, origin: Receipt | None = None) -> None:
        self.key = key or new_key()
        self.ids: dict[Channel, list[str]] = (
            {channel: list(found) for channel, found in ids.items()} if ids else {})
        #: Original copy of the source message, if we have it.
        self.source = source
        self.origin = origin
        self.deleted = False
        self.author: str | None = None
        self.excerpt: str | None = None
        self._stored: set[CopyKey] = set()
        if origin is not None:
            found = self.ids.setdefault(origin.channel, [])
            if origin.id not in found:
                found.insert(0, origin.id)

    @classmethod
    def from_backref_map(cls, key: str, mapped: Mapping[tuple[str, str], list[SyncBackRef]],
                         host: Host) -> SyncRef:
        """Take a mapping generated in `SyncBackRef.map_from_key` and produce a local reference
        suitable for the memory cache."""
        ids: dict[Channel, list[str]] = {}
        origin: Receipt | None = None
        author = excerpt = None
        for (plug, source), rows in mapped.items():
            channel = Channel(plug, source)
            ids[channel] = [row.message for row in rows]
            for row in rows:
                if row.origin:
                    origin = Receipt(id=row.message, channel=channel)
                    author, excerpt = row.author, row.excerpt
        ref = cls(ids, key=key, origin=origin)
        ref.author, ref.excerpt = author, excerpt
        ref._stored = {(c.plug, c.source, i) for c, found in ref.ids.items() for i in found}
        return ref

    def copies(self) -> Iterator[tuple[Channel, str]]:
        for channel, found in self.ids.items():
            for id_ in found:
                yield channel, id_

    def is_origin(self, key: CopyKey) -> bool:
        """True if the copy at `key` is in the channel the message was first said in (the
        original or a revision of it: the sync never puts copies there)."""
        origin = self.origin
        return (origin is not None and origin.channel.source == key[1]
                and origin.channel.plug == key[0])

    def quote(self, length: int) -> tuple[str | None, str | None]:
        """(author, text excerpt) of the message, from its source or from the database."""
        source = self.source
        if source is not None:
            text = source.text.plain if source.text else None
            author = source.user.display if source.user else None
            return author, _excerpt(text, length)
        return self.author, self.excerpt

    def __repr__(self) -> str:
        return f"<SyncRef {self.key} x{sum(len(v) for v in self.ids.values())}>"


def _excerpt(text: str | None, length: int) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= length else text[: max(1, length - 1)].rstrip() + "…"


class SyncCache:
    """Synced message cache manager, using both in-memory and database-based caches.

    This class has `dict`-like access, using either `Receipt` objects or `SyncPlug` message
    IDs that map to `SyncRef` keys. The memory part holds at most `cache_size` refs (least
    recently used go first); a ref not in memory is read back from the database on demand
    (`fetch`), in a worker thread.
    """

    def __init__(self, hook: SyncHook) -> None:
        self._hook = hook
        self.size = max(1, hook.config.cache_size)
        self._refs: OrderedDict[str, SyncRef] = OrderedDict()
        self._index: dict[CopyKey, SyncRef] = {}
        self.writer: BatchWriter[tuple[Any, ...]] | None = None
        self.evicted = 0
        self.stored_before = False
        self.reads = 0
        #: rows handed to the writer, rows it confirmed written, and those not yet confirmed
        self.added = 0
        self.confirmed = 0
        self._unconfirmed: deque[tuple[Any, ...]] = deque()

    # -- dict-like access (memory only) ------------------------------------------------------

    def __len__(self) -> int:
        return len(self._refs)

    @property
    def indexed(self) -> int:
        """How many copies (one per channel of each message in memory) can be looked up
        without the database: bounded with the cache."""
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __getitem__(self, key: Receipt | str) -> SyncRef:
        ref = self.get(key)
        if ref is None:
            raise KeyError(key)
        return ref

    def get(self, key: Receipt | SentMessage | str, default: SyncRef | None = None) -> SyncRef | None:
        """The ref for a copy's Receipt or a SyncPlug message id (a ref key), if in memory."""
        if isinstance(key, str):
            ref = self._refs.get(key)
        elif self._hook.plug is not None and key.channel.plug == self._hook.plug.name:
            ref = self._refs.get(key.id)
        else:
            ref = self._index.get(key.key)
        if ref is None:
            return default
        self._refs.move_to_end(ref.key)
        return ref

    def lookup(self, key: CopyKey) -> SyncRef | None:
        """The ref holding the copy at (plug, channel, id), if in memory (the hot path)."""
        ref = self._index.get(key)
        if ref is not None:
            self._refs.move_to_end(ref.key)
        return ref

    @property
    def may_miss(self) -> bool:
        """True when the database may hold refs the memory does not (evicted, or from before
        this run)."""
        return self.writer is not None and (self.evicted > 0 or self.stored_before)

    # -- adding ------------------------------------------------------------------------------

    async def add(self, ref: SyncRef, back: bool = False) -> SyncRef:
        """Add a `SyncRef` to the cache. This will also commit a new `SyncBackRef` to the
        database if configured.

        `back` is True if the ref was sourced from a `SyncBackRef`, and therefore doesn't need
        committing back to the database. Returns the same ref, for add-then-return.
        """
        return self.remember(ref, back)

    def remember(self, ref: SyncRef, back: bool = False) -> SyncRef:
        """`add` without awaiting (it never waits: database rows are batched)."""
        refs = self._refs
        if ref.key in refs:
            refs.move_to_end(ref.key)
        else:
            refs[ref.key] = ref
        index = self._index
        origin = ref.origin
        for channel, found in ref.ids.items():
            for id_ in found:
                copy = (channel.plug, channel.source, id_)
                index[copy] = ref
                if not back and copy not in ref._stored:
                    self._store(ref, copy, origin is not None and ref.is_origin(copy))
        if back:
            ref._stored.update((c.plug, c.source, i) for c, i in ref.copies())
        if len(refs) > self.size:
            self._evict()
        return ref

    def record(self, ref: SyncRef, channel: Channel, receipts: list[Receipt]) -> None:
        """Note new copies of `ref` in `channel` (indexed at once, stored in the next batch)."""
        found = ref.ids.get(channel)
        if found is None:
            found = ref.ids[channel] = []
        index = self._index
        cached = ref.key in self._refs
        for receipt in receipts:
            id_ = receipt.id
            if id_ in found:
                continue
            found.append(id_)
            copy = (channel.plug, channel.source, id_)
            if cached:
                index[copy] = ref
            self._store(ref, copy, False)
        if not cached:
            self.remember(ref)

    def edited(self, ref: SyncRef) -> None:
        """The original of `ref` was edited: the excerpt kept in the database for replies
        after a restart becomes the new text's (in the next batch)."""
        origin, writer = ref.origin, self.writer
        if origin is None or writer is None:
            return
        author, excerpt = ref.quote(self._hook.config.quote_length)
        writer.add((self._hook.name, origin.channel.plug, origin.channel.source, origin.id,
                    author, excerpt))

    def _store(self, ref: SyncRef, copy: CopyKey, origin: bool) -> None:
        ref._stored.add(copy)
        writer = self.writer
        if writer is None:
            return
        author = excerpt = None
        if origin:
            author, excerpt = ref.quote(self._hook.config.quote_length)
        row = (self._hook.name, ref.key, copy[0], copy[1], copy[2], origin, author, excerpt)
        writer.add(row)
        self.added += 1
        unconfirmed = self._unconfirmed
        unconfirmed.append(row)
        excess = len(unconfirmed) - (self.added - self.confirmed)
        while excess > 0:
            unconfirmed.popleft()
            excess -= 1

    def write(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        """The writer's batch function (in a worker thread): store rows, count them confirmed."""
        store_mod.write_rows(conn, rows)
        self.confirmed += sum(1 for row in rows if len(row) == len(store_mod.ROW_COLUMNS))

    async def rescue(self) -> int:
        """Write rows the writer took but never wrote (its batch was cancelled at shutdown
        before reaching the database); how many. Rows already stored are left alone."""
        lost = len(self._unconfirmed) - (self.added - self.confirmed)
        while lost > 0:
            self._unconfirmed.popleft()
            lost -= 1
        rows = list(self._unconfirmed)
        if not rows:
            return 0
        await self._hook.host.store.transaction(lambda conn: self.write(conn, rows))
        self._unconfirmed.clear()
        return len(rows)

    def _evict(self) -> None:
        refs, index = self._refs, self._index
        while len(refs) > self.size:
            _, old = refs.popitem(last=False)
            self.evicted += 1
            for channel, found in old.ids.items():
                for id_ in found:
                    copy = (channel.plug, channel.source, id_)
                    if index.get(copy) is old:
                        del index[copy]

    # -- reading back ------------------------------------------------------------------------

    async def fetch(self, key: Receipt | SentMessage | str) -> SyncRef | None:
        """The ref for a copy or a key, from memory or else (in a worker thread) the database."""
        ref = self.get(key)
        if ref is not None or not self.may_miss:
            return ref
        writer = self.writer
        assert writer is not None
        if writer.pending:
            await writer.flush()
        self.reads += 1
        try:
            if isinstance(key, str):
                found_key, mapped = await SyncBackRef.map_from_key(key, hook=self._hook)
            elif self._hook.plug is not None and key.channel.plug == self._hook.plug.name:
                found_key, mapped = await SyncBackRef.map_from_key(key.id, hook=self._hook)
            else:
                found_key, mapped = await SyncBackRef.map_from_sent(key, hook=self._hook)
        except KeyError:
            return None
        ref = self._refs.get(found_key)
        if ref is not None:
            return ref
        return self.remember(SyncRef.from_backref_map(found_key, mapped, self._hook.host), back=True)

    def __repr__(self) -> str:
        return f"<SyncCache {len(self._refs)}/{self.size} refs>"
