"""The delivery queue: how a relay hook gets each copy to its target channel, whatever fails.

A relay hook (sync, forward, a third party's) hands every copy it makes to the queue of the
target channel (`DeliveryQueue`, one per channel, grouped per hook in `DeliveryQueues`). A
queue delivers in order and

- waits while the target plug is not ready (connecting, logging in again, reconnecting after a
  failure: the host knows each plug's state), and delivers what waited once it is;
- retries what will pass (`chanmux.errors.RETRYABLE`: connection errors, timeouts,
  `TryLater` for 5xx, 429 or an expired login), with backoff while the plug stays up;
- falls back, when the network refuses one copy for good (`Refused`, or any other error), to a
  simpler rendering (plain text) and then to a short visible notice, never to silence;
- keeps its contents at a stop (the hook gives a `dump`/`load` pair) and delivers them after
  the next start;
- drops a copy only past an explicit limit: `limit` copies waiting for a plug that is not
  ready, or `max_age` seconds old, and says so with a count.

Each delivery holds its message (`chanmux.Hold`): the plug the message came from does not
move its resume point past it until the copy is delivered, given up on or kept for the next
start. A target whose puts have proven quick (a socket write, a buffer) is delivered to at
once, in the lane handling the message, while nothing is queued before it; any other target
gets its copies delivered by the queue's own task, so a slow or broken network holds up nobody
else.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from .delivery import Hold
from .errors import RETRYABLE, describe
from .membership import Fold, foldable
from .model import Channel, File, Location, Message
from .richtext import RichText

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("chanmux.delivery")

#: Copies waiting beyond which (or while the target is not ready) a join or leave folds
#: into the membership copy waiting last; below, each is shown.
FOLD_BACKLOG = 10

#: Seconds between two tries of a delivery that failed while its plug stayed up (doubling).
RETRY_MIN = 1.0
RETRY_MAX = 30.0


#: Most characters of text one merged put carries.
MERGE_BYTES = 16_000


def mergeable(msg: Any) -> bool:
    """Whether a copy can go out as part of another: plain lines of text (no reply, action,
    notice, edit, reaction, attachment or event)."""
    return (isinstance(msg, Message) and bool(msg.text) and not msg.attachments
            and msg.reply_to is None and not (msg.action or msg.notice or msg.edited or msg.deleted)
            and msg.reaction is None and not msg.is_membership and msg.title is None)


def _author(msg: Message) -> tuple[Any, ...]:
    user = msg.user
    return (None,) if user is None else (user.id, user.plug, user.username, user.real_name)



class Delivery:
    """One copy to deliver: `kind` (put, edit or delete, for the hook's `execute`), the message
    to send (`msg`), what the hook relates it to (`ref`) and anything else it needs (`extra`).

    `key`, if given, names this delivery stably across retries and restarts (the hook's message
    key, target and kind); a plug may use it as an idempotency key (`current_key()`), so a copy
    sent again after a crash is not shown twice where the network de-duplicates."""

    __slots__ = ("kind", "msg", "ref", "extra", "key", "hold", "started", "since", "level",
                 "fold", "folded", "merged")

    def __init__(self, kind: str, msg: Any = None, ref: Any = None, extra: Any = None, *,
                 key: str | None = None, hold: Hold | None = None, since: float | None = None) -> None:
        self.kind = kind
        self.msg = msg
        self.ref = ref
        self.extra = extra
        self.key = key
        self.hold = hold
        self.started = False
        self.since = time.time() if since is None else since
        #: 0 as made; 1 once simplified to plain text; 2 once replaced by a notice
        self.level = 0
        #: membership deliveries folded into this one while it waited (see `membership`)
        self.fold: Fold | None = None
        self.folded: list[Delivery] = []
        #: later lines of the same author sent as part of this one (see `DeliveryQueues(merge=)`):
        #: a hook records the copy this delivery made for their `ref`s too
        self.merged: list[Delivery] = []

    def finished(self) -> None:
        """Delivered, given up on or kept: its message no longer waits for it."""
        if self.hold is not None:
            self.hold.release()
        if self.folded or self.merged:
            for other in (*self.folded, *self.merged):
                other.finished()
            self.folded.clear()
            self.merged.clear()

    def merge(self, other: Delivery, limit: int = MERGE_BYTES) -> bool:
        """Send `other`, a later put of the same author's plain lines, as part of this waiting
        put; False if they do not merge (see `mergeable`)."""
        if (self.kind != "put" or other.kind != "put" or self.started or self.level
                or other.started or other.level or self.extra is not None
                or other.extra is not None or not mergeable(self.msg)
                or not mergeable(other.msg) or _author(self.msg) != _author(other.msg)
                or len(self.msg.text.plain) + len(other.msg.text.plain) > limit):
            return False
        # in place: the hook may know its copy by the object (sync's lineage)
        self.msg.text = RichText.join([self.msg.text, other.msg.text], "\n")
        self.merged.append(other)
        return True

    def absorb(self, other: Delivery) -> bool:
        """Fold a later membership put into this waiting one; False if they do not fold."""
        if (self.kind != "put" or other.kind != "put" or self.started or self.level
                or not foldable(other.msg) or (self.fold is None and not foldable(self.msg))):
            return False
        if self.fold is None:
            self.fold = Fold(self.msg)
        self.fold.add(other.msg)
        self.folded.append(other)
        return True

    def unfold(self) -> None:
        """Write what was folded in into `msg` (before it is sent or kept)."""
        if self.fold is not None:
            self.fold.apply(self.msg)

    def __repr__(self) -> str:
        return f"<Delivery {self.kind} {self.key or ''} level={self.level}>"


_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("chanmux_delivery_key",
                                                                      default=None)


def current_key() -> str | None:
    """The stable key of the delivery being made in the current task, if a queue makes one:
    a plug whose network de-duplicates by a client-chosen id (a Matrix transaction id) derives
    that id from it, so a copy sent again after a restart is shown once."""
    return _key_var.get()


def simpler(msg: Message, level: int, reason: str) -> Message | None:
    """A rendering of `msg` more likely to pass where the network refused it: at level 1 its
    plain text (formatting, reply and files as text), at level 2 a short notice that it could
    not be shown; None past that."""
    if level == 1:
        parts = [msg.text.plain] if msg.text else []
        for item in msg.attachments:
            if isinstance(item, File):
                parts.append(" ".join(p for p in (item.title, item.url) if p) or "(a file)")
            elif isinstance(item, Location):
                parts.append(f"(location {item.latitude}, {item.longitude})")
            elif isinstance(item, Message) and item.text:
                parts.append(f"> {item.text.plain}")
        text = "\n".join(p for p in parts if p)
        if not text and not msg.is_event:
            return None
        return Message(text=RichText.plain_text(text) if text else None, user=msg.user,
                       action=msg.action, notice=msg.notice, edited=msg.edited, edit_of=msg.edit_of,
                       joined=msg.joined, left=msg.left, renamed=msg.renamed, title=msg.title)
    if level == 2:
        what = "an edit" if msg.edited else "a message"
        short = reason if len(reason) <= 120 else reason[:119] + "…"
        return Message(text=RichText.plain_text(f"({what} could not be shown here: {short})"),
                       user=msg.user, notice=True)
    return None


Execute = Callable[[Channel, Delivery], Awaitable[None]]

#: Why a plug cannot take copies, by its state.
_NOT_READY = {"idle": "{} has not started", "starting": "{} is connecting",
              "failed": "{} is disconnected", "stopping": "{} is stopping",
              "stopped": "{} has stopped"}


def _copies(count: int) -> str:
    return "1 copy" if count == 1 else f"{count} copies"


class DeliveryQueue:
    """Delivers one hook's copies to one channel, in order, whatever the network does.

    `execute(channel, delivery)` does one delivery (the hook's put, edit or delete through the
    host) and raises what the plug raised. `limit` (0: none) is how many copies may wait for a
    plug that is not ready before the oldest are dropped; `max_age` (0: none) drops copies that
    waited longer than that many seconds; `high_water` is where a hook handing over copies to a
    plug that is ready but far behind waits for room (backpressure). A delivery whose failure
    will pass is tried again after `retry_min` seconds, doubling up to `retry_max`, or at once
    when the plug has reconnected meanwhile.
    """

    def __init__(self, host: Host, owner: str, channel: Channel, execute: Execute, *,
                 limit: int = 0, max_age: float = 0, high_water: int = 1_000,
                 slow: float = 0.005, retry_min: float = RETRY_MIN,
                 retry_max: float = RETRY_MAX, merge: bool = False) -> None:
        self.host = host
        #: the hook records copies for `Delivery.merged` too: lines may be merged (`_merge`)
        self.merge = merge
        self.owner = owner
        self.channel = channel
        self._execute = execute
        self.limit = max(0, limit)
        self.max_age = max(0.0, max_age)
        self.high_water = max(2, high_water)
        self.slow = slow
        self.retry_min = retry_min
        self.retry_max = max(retry_min, retry_max)
        self.queue: deque[Delivery] = deque()
        #: why the head is waiting (the plug is not ready, or its last try failed), or None
        self.waiting: str | None = None
        self.latency = 0.0
        self.samples = 0
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._dropped_since = 0
        self._waiting_since = 0.0
        self._wake = anyio.Event()
        self._room: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._running = False
        self._attempting = 0
        self._settled: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<DeliveryQueue {self.owner} -> {self.channel} {len(self.queue)} waiting>"

    def __len__(self) -> int:
        return len(self.queue)

    def __iter__(self) -> Iterator[Delivery]:
        return iter(self.queue)

    @property
    def idle(self) -> bool:
        """True when nothing waits."""
        return not self.queue

    @property
    def down(self) -> bool:
        """True while copies wait because the target plug is not ready or its last try failed."""
        return self.waiting is not None

    @property
    def ready(self) -> bool:
        return self.host.plug_ready(self.channel.plug)

    # -- handing over ----------------------------------------------------------------------------

    def push(self, item: Delivery) -> None:
        """Queue a delivery without waiting (past `limit` while the plug is not ready, the
        oldest waiting one is dropped)."""
        queue = self.queue
        if (queue and (len(queue) >= FOLD_BACKLOG or self.down or not self.ready)
                and queue[-1].absorb(item)):  # a membership flood (or an outage): one copy
            return
        if self.limit and len(queue) >= self.limit and (self.down or not self.ready):
            self._drop(queue.popleft(), f"more than {self.limit} copies wait (limit)")
        queue.append(item)
        self._wake.set()
        if not self._running and self.host.running:
            self.start()  # made while the host runs (a hook added then): deliver from now on

    def start(self) -> None:
        """Start delivering in a task owned by the host (once)."""
        if not self._running:
            self._running = True
            self.host.start_soon(self.run, name=f"{self.owner}:delivery:{self.channel}")

    async def send(self, item: Delivery) -> None:
        """Queue a delivery; while the plug is ready but far behind, wait for room."""
        self.push(item)
        if len(self.queue) >= self.high_water and not self.down and self.ready:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    @property
    def quick(self) -> bool:
        """True if a delivery may be made at once by the caller: nothing waits before it, the
        plug is ready and its puts have proven quick."""
        return (not self.queue and self.waiting is None and self.samples >= 4
                and self.latency <= self.slow and self.ready)

    async def deliver(self, item: Delivery) -> None:
        """Deliver `item` now if this channel is `quick`, else queue it."""
        if not self.quick:
            await self.send(item)
            return
        if not await self._attempt(item):
            self.push(item)  # not delivered now: the queue's own task takes it from here
            return
        item.finished()

    def replace(self, match: Callable[[Delivery], bool], msg: Any) -> bool:
        """Give the newest queued, unstarted delivery that `match`es a newer message (an edit
        of a copy not sent yet); False if there is none."""
        for item in reversed(self.queue):
            if not item.started and match(item):
                item.msg = msg
                item.level = 0
                return True
        return False

    def has(self, match: Callable[[Delivery], bool]) -> bool:
        """True if a waiting delivery `match`es (a copy of that message is on its way)."""
        return any(match(item) or any(match(f) for f in (*item.folded, *item.merged))
                   for item in self.queue)

    def discard(self, match: Callable[[Delivery], bool]) -> int:
        """Forget the unstarted deliveries that `match` (their message was deleted); how many."""
        kept: deque[Delivery] = deque()
        gone = 0
        for item in self.queue:
            if not item.started and match(item):
                item.finished()
                gone += 1
            else:
                kept.append(item)
        if gone:
            self.queue.clear()
            self.queue.extend(kept)
            self._check_room()
        return gone

    async def wait_idle(self) -> None:
        """Wait until nothing waits (delivered, given up on, or dropped)."""
        while self.queue:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    # -- delivering ------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait until no delivery is in the middle of being made (the host, stopping, lets
        what is on its way arrive before it cancels, so it is not kept and made again)."""
        while self._attempting:
            if self._settled is None:
                self._settled = anyio.Event()
            await self._settled.wait()

    async def _attempt(self, item: Delivery) -> bool:
        """Try `item` once; True when it is done with (delivered, or given up on for good),
        False when it must wait and be tried again (its failure will pass)."""
        start = time.monotonic()
        self._attempting += 1
        item.started = True
        token = None
        try:
            if item.fold is not None:
                item.unfold()
                if not (item.msg.joined or item.msg.left):
                    return True  # all who joined left again meanwhile: nothing to say
            # a simpler rendering is another event: a network must not take it for the refused
            # one
            token = _key_var.set(item.key if not item.level or item.key is None
                                 else f"{item.key}#{item.level}")
            if item.hold is not None and item.hold.held:
                with item.hold.active():
                    await self._execute(self.channel, item)
            else:
                await self._execute(self.channel, item)
        except RETRYABLE as exc:
            item.started = False
            self._measure(start)
            self._wait_reason(describe(exc))
            return False
        except anyio.get_cancelled_exc_class():
            item.started = False
            raise
        except Exception as exc:  # noqa: BLE001 - refused for good: fall back, never silence
            item.started = False
            self._measure(start)
            return self._fall_back(item, exc)
        finally:
            if token is not None:
                _key_var.reset(token)
            self._attempting -= 1
            if not self._attempting and self._settled is not None:
                self._settled.set()
                self._settled = None
        self._measure(start)
        self.delivered += 1
        return True

    def _fall_back(self, item: Delivery, exc: Exception) -> bool:
        reason = describe(exc)
        if item.kind in ("put", "edit") and isinstance(item.msg, Message):
            while item.level < 2:
                item.level += 1
                simple = simpler(item.msg, item.level, reason)
                if simple is not None:
                    log.warning("%s: %s refused a copy (%s); sending it %s", self.owner,
                                self.channel, reason,
                                "as plain text" if item.level == 1 else "as a short notice")
                    item.msg = simple
                    return False
        self.failed += 1
        log.error("%s: gave up delivering a copy (%s) to %s: %s", self.owner, item.kind,
                  self.channel, reason)
        return True

    def _measure(self, start: float) -> None:
        took = time.monotonic() - start
        self.latency = took if not self.samples else 0.8 * self.latency + 0.2 * took
        self.samples += 1

    def _wait_reason(self, reason: str) -> None:
        if self.waiting is None:
            self._waiting_since = time.monotonic()
            count = len(self.queue) or 1
            log.warning("%s: cannot deliver to %s now (%s); %s %s until %s is ready",
                        self.owner, self.channel, reason, _copies(count),
                        "waits" if count == 1 else "wait", self.channel.plug)
        self.waiting = reason
        self._check_room(force=True)

    def _drop(self, item: Delivery, why: str) -> None:
        item.finished()
        self.dropped += 1
        self._dropped_since += 1
        if self._dropped_since == 1:
            log.warning("%s: %s: dropping the oldest copies waiting for %s: %s", self.owner,
                        self.channel, self.channel.plug, why)

    def _expire(self) -> None:
        if not self.max_age:
            return
        horizon = time.time() - self.max_age
        queue = self.queue
        while queue and not queue[0].started and queue[0].since < horizon:
            self._drop(queue.popleft(), f"older than {self.max_age:g}s (max_age)")

    def _back(self) -> None:
        """The head was delivered: if copies waited, say that they go out now."""
        if self.waiting is not None:
            self.waiting = None
            log.info("%s: %s takes copies again after %.1fs; delivering the %s that waited",
                     self.owner, self.channel, time.monotonic() - self._waiting_since,
                     _copies(len(self.queue) + 1))
        if self._dropped_since:
            log.warning("%s: %s for %s were dropped while they waited", self.owner,
                        _copies(self._dropped_since), self.channel)
            self._dropped_since = 0

    def _merge(self) -> None:
        """A burst of plain lines of one author waiting behind (a paste, line by line) goes out
        as one message, where the target plug says it prefers that (`Capabilities.merge`) and
        the lines come from a network that cannot edit them (so no edit can aim at one line
        of the merged copy); replies and reactions to any of them reach the merged copy."""
        target = self.host.plugs.get(self.channel.plug)
        if target is None or not target.capabilities.merge:
            return
        queue, head = self.queue, self.queue[0]
        source = head.msg.user.plug if isinstance(head.msg, Message) and head.msg.user else None
        origin = self.host.plugs.get(source) if source else None
        if origin is None or origin.capabilities.edit:
            return
        while len(queue) > 1 and head.merge(queue[1]):
            del queue[1]
        self._check_room()

    def _check_room(self, force: bool = False) -> None:
        if self._room is not None and (force or len(self.queue) < self.high_water // 2):
            room, self._room = self._room, None
            room.set()

    async def run(self) -> None:
        """Deliver what is queued, for as long as the host runs."""
        queue = self.queue
        host, plug = self.host, self.channel.plug
        delay = self.retry_min
        while True:
            self._expire()
            if not queue:
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            if not host.plug_ready(plug):
                self._wait_reason(_NOT_READY.get(host.plug_state(plug), "{} is not ready").format(plug))
                await host.until_ready(plug)
                delay = self.retry_min
                continue
            item = queue[0]
            if self.merge and len(queue) > 1:
                self._merge()
            connection = host.plug_connection(plug)
            if not await self._attempt(item):
                if item.level and item is queue[0]:
                    continue  # a simpler rendering: try it at once
                with anyio.move_on_after(delay):
                    await host.until_ready(plug, newer_than=connection)  # or reconnected
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_min
            if queue and queue[0] is item:
                queue.popleft()
            item.finished()
            self._back()
            self._check_room()


Dump = Callable[[Channel, Delivery], Any]
Load = Callable[[Any], "Awaitable[tuple[Channel, Delivery] | None] | tuple[Channel, Delivery] | None"]


class DeliveryQueues:
    """One hook's delivery queues, one per target channel, and what they keep at a stop.

    `dump(channel, delivery)` turns a waiting delivery into JSON-ready data and `load(data)`
    (may be async) gives back (channel, delivery), or None for data that no longer applies; with
    them, `save()` keeps what still waits in the host's database (state `owner`/`key`) when the
    hook closes and `restore()` queues it again when it opens. Restored copies are forgotten
    from the database once all of them are delivered; killed before, they are delivered again
    after the next start (at least once).

    With `merge=True` (since 0.2.4) a burst of plain lines of one author waiting for a target
    whose plug prefers it (`Capabilities.merge`) goes out as one message, when the lines come
    from a network that cannot edit them: the hook's `execute` then records the copy it made
    for the `ref` of each `Delivery.merged` too.
    """

    def __init__(self, host: Host, owner: str, execute: Execute, *, limit: int = 0,
                 max_age: float = 0, dump: Dump | None = None, load: Load | None = None,
                 key: str = "queued", retry_min: float = RETRY_MIN,
                 retry_max: float = RETRY_MAX, merge: bool = False) -> None:
        self.host = host
        self.owner = owner
        self._execute = execute
        self.limit = limit
        self.max_age = max_age
        self._dump = dump
        self._load = load
        self.key = key
        self.retry = (retry_min, retry_max)
        self.merge = merge
        self.queues: dict[Channel, DeliveryQueue] = {}
        self._restored = False
        host.delivery_queues.append(self)  # for metrics and status

    def add(self, channel: Channel) -> DeliveryQueue:
        queue = self.queues.get(channel)
        if queue is None:
            queue = self.queues[channel] = DeliveryQueue(
                self.host, self.owner, channel, self._execute, limit=self.limit,
                max_age=self.max_age, retry_min=self.retry[0], retry_max=self.retry[1],
                merge=self.merge)
        return queue

    def __getitem__(self, channel: Channel) -> DeliveryQueue:
        return self.queues[channel]

    def get(self, channel: Channel) -> DeliveryQueue | None:
        return self.queues.get(channel)

    def __iter__(self) -> Iterator[DeliveryQueue]:
        return iter(self.queues.values())

    def values(self) -> Iterable[DeliveryQueue]:
        return self.queues.values()

    def items(self) -> Iterable[tuple[Channel, DeliveryQueue]]:
        return self.queues.items()

    @property
    def waiting(self) -> int:
        """Copies waiting in every queue."""
        return sum(len(q) for q in self.queues.values())

    def start(self) -> None:
        """Start each queue's delivering task (owned by the host)."""
        for queue in self.queues.values():
            queue.start()

    async def wait_idle(self, timeout: float = 30.0, *, ready_only: bool = True) -> None:
        """Wait until every queue is idle (by default skipping those whose plug is not ready)."""
        with anyio.fail_after(timeout):
            for queue in self.queues.values():
                if not ready_only or (not queue.down and queue.ready):
                    await queue.wait_idle()

    async def save(self) -> int:
        """Keep what still waits in the database; its holds are released (done here). The
        number kept."""
        if self._dump is None:
            return 0
        waiting = [(channel, item) for channel, queue in self.queues.items() for item in queue]
        if not waiting and not self._restored:
            return 0
        try:
            for _channel, item in waiting:
                item.unfold()
            rows = [self._dump(channel, item) for channel, item in waiting]
            await self.host.store.set_state(self.owner, self.key, rows)
        except Exception as exc:  # noqa: BLE001 - a database problem must not stop the shutdown
            log.error("%s: could not keep %s not yet delivered in the database (%s); they are "
                      "lost", self.owner, _copies(len(waiting)), describe(exc))
            return 0
        for _channel, item in waiting:
            item.finished()
        if rows:
            log.info("%s: kept %s not yet delivered, for the next start", self.owner,
                     _copies(len(rows)))
        return len(rows)

    async def restore(self) -> int:
        """Queue again what was kept at the last stop; the number queued."""
        if self._load is None:
            return 0
        try:
            rows = await self.host.store.get_state(self.owner, self.key, [])
        except Exception as exc:  # noqa: BLE001 - the bridge starts without them, saying so
            log.error("%s: could not read the copies kept from the last run (%s)", self.owner,
                      describe(exc))
            return 0
        if not rows:
            return 0
        self._restored = True
        tracker = self.host.forget_when_done(self.owner, self.key,
                                             then=lambda: setattr(self, "_restored", False))
        restored = 0
        for row in rows:
            try:
                found = self._load(row)
                if hasattr(found, "__await__"):
                    found = await found  # type: ignore[misc]
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                log.warning("%s: a copy kept from the last run cannot be read (%s); dropped",
                            self.owner, exc)
                continue
            if found is None:
                continue
            channel, item = found
            queue = self.queues.get(channel)
            if queue is None:
                log.warning("%s: %s is no longer a target; a copy kept for it is dropped",
                            self.owner, channel)
                continue
            item.hold = Hold(tracker)
            queue.push(item)
            restored += 1
        tracker.done()
        if restored:
            log.info("%s: %s kept from the last run will be delivered", self.owner,
                     _copies(restored))
        return restored


__all__ = ["Delivery", "DeliveryQueue", "DeliveryQueues", "current_key", "simpler"]
