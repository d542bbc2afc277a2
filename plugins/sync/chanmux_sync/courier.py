"""Couriers: one per target channel, delivering a sync's copies there in order.

The lane that handles a received message renders its copies and hands one job to the courier
of each target channel. A target whose puts have proven quick (a plug writing to a socket or a buffer: the
last deliveries took under `slow` seconds on average) is delivered to at once, in the lane,
after the other targets' jobs were queued; any other target (new, slow like an HTTP round
trip, or down) gets its jobs queued and delivered by the courier's own task, so it holds up
nobody else. Either way each channel gets its copies in the order the messages
came: a job goes inline only while the courier has nothing queued. A courier whose plug is down
keeps its jobs (up to a limit, oldest dropped first) and delivers them when the plug is back.

Each job holds its message's delivery (`chanmux.Hold`): the plug the message came from is not
told it is done, and does not move its resume point past it, until the job is delivered (or
given up on); the put runs on the hold's behalf, so holds the target plug takes count too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from chanmux import Channel, Hold

log = logging.getLogger("chanmux.hook.sync")

#: Failures that mean "the plug is not connected now": kept and retried once it is back.
RETRYABLE = (ConnectionError, TimeoutError, OSError)


class Job:
    """One delivery: `kind` is put, edit or delete of `ref`'s copy in the courier's channel."""

    __slots__ = ("kind", "ref", "msg", "parent", "started", "hold")

    def __init__(self, kind: str, ref: Any, msg: Any = None, parent: Any = None,
                 hold: Hold | None = None) -> None:
        self.kind = kind
        self.ref = ref
        self.msg = msg
        self.parent = parent
        self.started = False
        self.hold = hold

    def finished(self) -> None:
        """Delivered or given up on: the message's delivery no longer waits for this job."""
        if self.hold is not None:
            self.hold.release()


class Courier:
    """Delivers jobs to one channel, in order; waits for its plug when the plug is down."""

    def __init__(self, owner: str, channel: Channel, execute: Callable[[Channel, Job], Awaitable[None]],
                 limit: int, high_water: int = 1_000, retry_every: float = 30.0,
                 slow: float = 0.005) -> None:
        self.owner = owner
        self.channel = channel
        self._execute = execute
        self.limit = limit
        self.high_water = high_water
        self.retry_every = retry_every
        self.queue: deque[Job] = deque()
        self.down = False
        self.slow = slow
        self.latency = 0.0
        self.samples = 0
        self.dropped = 0
        self.delivered = 0
        self._wake = anyio.Event()
        self._back = anyio.Event()
        self._room: anyio.Event | None = None
        self._idle: anyio.Event | None = None  # made by wait_idle, set when the queue empties

    @property
    def idle(self) -> bool:
        return not self.queue

    def push(self, job: Job) -> None:
        """Queue a job without waiting."""
        queue = self.queue
        if self.down and self.limit and len(queue) >= self.limit:
            queue.popleft().finished()
            self.dropped += 1
            log.warning("%s: %s is down and %d deliveries wait; dropped the oldest", self.owner,
                        self.channel, self.limit)
        queue.append(job)
        self._wake.set()

    async def send(self, job: Job) -> None:
        """Queue a job; while the plug is up but far behind, wait for room (backpressure)."""
        self.push(job)
        if len(self.queue) >= self.high_water and not self.down:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    @property
    def quick(self) -> bool:
        """True if a job may be delivered inline: nothing queued and puts proven quick."""
        return not self.queue and not self.down and self.samples >= 4 and self.latency <= self.slow

    async def deliver(self, job: Job) -> None:
        """Deliver `job` now if this channel is `quick`, else queue it."""
        if not self.quick:
            await self.send(job)
            return
        start = time.monotonic()
        job.started = True
        try:
            await self._execute(self.channel, job)
        except RETRYABLE:
            job.started = False
            self.push(job)
            self._measure(start)
            return
        except Exception as exc:  # noqa: BLE001 - one bad delivery never blocks the others
            log.error("%s: delivery to %s failed: %s: %s", self.owner, self.channel,
                      type(exc).__name__, exc)
        else:
            self.delivered += 1
        job.finished()
        self._measure(start)

    def _measure(self, start: float) -> None:
        took = time.monotonic() - start
        self.latency = took if not self.samples else 0.8 * self.latency + 0.2 * took
        self.samples += 1

    def replace(self, ref: Any, msg: Any) -> bool:
        """Give a queued, unstarted put of `ref` a newer revision instead; False if none."""
        for job in reversed(self.queue):
            if job.ref is ref and job.kind == "put" and not job.started:
                job.msg = msg
                return True
        return False

    def plug_back(self) -> None:
        self._back.set()

    async def wait_idle(self) -> None:
        while self.queue:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def run(self) -> None:
        queue = self.queue
        while True:
            if not queue:
                if self._idle is not None:
                    self._idle.set()
                    self._idle = None
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            job = queue[0]
            job.started = True
            start = time.monotonic()
            try:
                if job.hold is not None and job.hold.held:
                    with job.hold.active():
                        await self._execute(self.channel, job)
                else:
                    await self._execute(self.channel, job)
            except RETRYABLE as exc:
                job.started = False
                if not self.down:
                    self.down = True
                    log.warning("%s: could not deliver to %s (%s: %s); %d deliveries wait until "
                                "%s is back", self.owner, self.channel, type(exc).__name__, exc,
                                len(queue), self.channel.plug)
                    self._release()
                self._back = anyio.Event()
                with anyio.move_on_after(self.retry_every):
                    await self._back.wait()
                continue
            except Exception as exc:  # noqa: BLE001 - one bad delivery never blocks the others
                log.error("%s: delivery to %s failed: %s: %s", self.owner, self.channel,
                          type(exc).__name__, exc)
            self._measure(start)
            if queue and queue[0] is job:
                queue.popleft()
            job.finished()
            if self.down:
                self.down = False
                log.info("%s: %s is back; delivering %d waiting messages", self.owner,
                         self.channel, len(queue) + 1)
            self.delivered += 1
            if self._room is not None and len(queue) < self.high_water // 2:
                self._release()

    def _release(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()
