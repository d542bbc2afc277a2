"""Lanes: the workers that hand received messages to hooks, in order, with a watchdog.

A channel always maps to the same lane, so its messages are handled in the order they came;
different channels run concurrently. Handing a message to a lane and taking it there cost no
task switch of their own (an anyio stream's `send` and `receive` each yield to the event loop:
two of the four per relayed message); a lane working through a backlog yields at least every
`YIELD_EVERY` seconds, so a burst never holds the loop. Each lane runs the steps of a message one after the
other (``resolve``, then the ``before_receive`` implementations, then the ``on_receive`` ones)
and a watchdog cancels a step that runs longer than its budget, logs it naming the plugin, and
lets the lane go on with the next step. A per-step cancel scope would cost more than the rest
of the dispatch put together, so the lane keeps one scope and the watchdog cancels it only
when needed.

The contract between the three parties that touch a `Lane` (all of it is here):

* The **worker** (`Lanes._worker`, in the lane's own task) owns the lane's state: the message
  (`item`), its `steps` and the index of the one running (`step`), and the `tracker` of the
  message's delivery holds. Only the worker writes them, and only through `Lane.next_message`,
  `Lane.step_done`, `Lane.drop_rest` and, after a cancelled step, `Lane.after_timeout`.
* Each step runs under a **budget**: `Lane.budget(doing, seconds)` says what runs and sets the
  deadline. The `HookCaller` (caller.py) opens a nested budget when a hook, inside its step,
  makes a put (any call of an owner spec in the lane's task): the put gets the hook timeout
  of its own, the step's deadline moves to the put's if that is later, and what the lane is
  doing is restored when the put returns. Nothing else changes the deadline.
* The **watchdog** (`Lanes._watchdog`) only reads each lane's `deadline` and cancels its
  `scope` once it has passed. The worker then logs the step that ran out (`doing`, `limit`)
  and calls `after_timeout`, which moves to the next step; when the step cancelled was
  ``resolve`` (waiting for the put that made this message to finish), the hooks get the
  message as it is, as its own source.
"""

from __future__ import annotations

import contextvars
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pluggy

from . import delivery
from .membership import Fold
from .model import Channel, Message, SentMessage

log = logging.getLogger("chanmux.host")

#: What a lane is doing: a text, or (who, what) said as "who: what" (see `Lane.budget`).
Doing = str | tuple[Any, str]

#: Messages waiting in a lane beyond which membership messages fold (below, hooks see each).
FOLD_BACKLOG = 100

#: Seconds a lane works through waiting messages before it lets the other tasks run (a lane
#: takes what waits without a task switch per message).
YIELD_EVERY = 0.005

#: The lane running in the current task, if any (puts made by hooks run under its watchdog).
current_lane: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("chanmux_lane", default=None)


class Lane:
    """One worker and its queue, and the state of the message it handles (see the module's
    docstring for who may change what)."""

    def __init__(self, index: int, buffer: int) -> None:
        self.index = index
        self.send, self.recv = anyio.create_memory_object_stream[Any](buffer)
        self.scope: anyio.CancelScope | None = None
        self.deadline: float | None = None
        self.limit = 0.0  # the budget behind `deadline`, for the log line
        self.doing: Doing = ""
        self.item: tuple[SentMessage, Message | None, bool] | None = None
        self.tracker: delivery.Tracker | None = None
        self.steps: list[tuple[str, pluggy.HookImpl | None]] = []
        self.step = 0
        #: per channel, the membership message waiting in this lane that later ones fold into
        self.folds: dict[Channel, _Folded] = {}

    def budget(self, doing: Doing, timeout: float) -> Doing:
        """Start a step (or a put within one) that may take `timeout` seconds from now: the
        deadline moves there if that is later. Returns what the lane was doing, for the caller
        of a nested budget to restore when it is done. `doing` is a text, or (who, what) to
        be said as "who: what" only if the step runs out (no text made per message)."""
        before, self.doing = self.doing, doing
        self.limit = timeout
        deadline = time.monotonic() + timeout
        if self.deadline is None or deadline > self.deadline:
            self.deadline = deadline
        return before

    def next_message(self, item: tuple[SentMessage, Message | None, bool],
                     steps: list[tuple[str, pluggy.HookImpl | None]],
                     tracker: delivery.Tracker | None) -> None:
        self.item, self.steps, self.step, self.tracker = item, steps, 0, tracker
        self.deadline = None

    def step_done(self, item: tuple[SentMessage, Message | None, bool] | None = None) -> None:
        """The running step finished; `item` is the message as it changed it (if it did)."""
        if item is not None:
            self.item = item
        self.deadline = None
        self.step += 1

    def drop_rest(self) -> None:
        """A `before_receive` dropped the message: no further step runs."""
        self.deadline = None
        self.step = len(self.steps)

    def after_timeout(self) -> None:
        """The watchdog cancelled the running step: go on with the next one. When that step
        was waiting for the message's source to resolve, the hooks get it as it is."""
        if self.steps[self.step][1] is None and self.item is not None:
            sent, source, primary = self.item
            self.item = (sent, source if source is not None else sent, primary)
        self.step_done()

    @property
    def what(self) -> str:
        """What the lane is doing, as the log says it."""
        doing = self.doing
        return doing if isinstance(doing, str) else f"{doing[0]}: {doing[1]}"

    @property
    def finished(self) -> bool:
        return self.step >= len(self.steps)


class _Folded:
    """A waiting membership message and the `on_handled` callbacks of those folded into it;
    called (as the message's `on_handled`) once the folded message is done."""

    __slots__ = ("fold", "callbacks", "started")

    def __init__(self, sent: SentMessage, on_handled: Callable[[], Any] | None) -> None:
        self.fold = Fold(sent)
        self.callbacks = [on_handled] if on_handled is not None else []
        self.started = False

    def __call__(self) -> None:
        for callback in self.callbacks:
            callback()


class Lanes:
    """The host's lanes, their watchdog, and the count of messages still being handled."""

    def __init__(self, count: int, timeout: float, impls: Callable[[str], list[pluggy.HookImpl]],
                 resolve: Callable[[SentMessage, Message | None], Awaitable[Message]],
                 buffer: int = 10_000, resolve_timeout: float = 120.0,
                 resolve_now: Callable[[SentMessage, Message | None], Message | None] | None = None,
                 ) -> None:
        self.lanes = [Lane(i, buffer) for i in range(max(1, count))]
        self.timeout = timeout
        self._impls = impls
        self._resolve = resolve
        #: `resolve` where it need not wait (None: it must): no await for most messages
        self._resolve_now = resolve_now or (lambda sent, source: None)
        #: the steps of every message while the hooks stay the same (see `_plan`)
        self._steps: tuple[list[Any], list[Any], list[tuple[str, pluggy.HookImpl | None]]] | None = None
        self.resolve_timeout = resolve_timeout
        self.submitted = 0
        self.handled = 0
        self._progress = anyio.Event()
        self.running = False
        self._lane_index: dict[Channel, int] = {}

    def _lane_of(self, channel: Channel) -> int:
        """The lane of a channel: the same in every run (a str's hash() changes with each
        process, so which channels shared a lane did too, and so did the figures)."""
        index = self._lane_index.get(channel)
        if index is None:
            key = f"{channel.plug}\0{channel.source}".encode("utf-8", "surrogatepass")
            index = self._lane_index[channel] = zlib.crc32(key) % len(self.lanes)
            if len(self._lane_index) > 100_000:  # channels met once (private messages)
                self._lane_index.clear()
        return index

    async def submit(self, sent: SentMessage, source: Message | None, primary: bool,
                     on_handled: Callable[[], Any] | None = None, fold: bool = False) -> None:
        """Queue a received message for its channel's lane; with `fold`, a membership message
        is folded into one of its channel still waiting there (membership.py) once the lane is
        behind (`FOLD_BACKLOG` messages waiting): hooks see every join and leave while they
        keep up, and a flood costs one message when they do not."""
        lane = self.lanes[self._lane_of(sent.channel)]
        if fold and primary and (sent.channel in lane.folds
                                 or lane.send.statistics().current_buffer_used >= FOLD_BACKLOG):
            waiting = lane.folds.get(sent.channel)
            if waiting is not None and not waiting.started:
                waiting.fold.add(sent)  # a membership flood costs one message (membership.py)
                if on_handled is not None:
                    waiting.callbacks.append(on_handled)
                return
            waiting = lane.folds[sent.channel] = _Folded(sent, on_handled)
            on_handled = waiting
        self.submitted += 1
        item = (sent, source, primary, on_handled)
        try:
            # no task switch per message: the lane takes it when the plug's task next waits
            # (at its next read of the network, which is where a cancel reaches it too; a
            # checkpoint here cost 3% of a relayed message's CPU)
            lane.send.send_nowait(item)
        except anyio.WouldBlock:
            await lane.send.send(item)  # the lane is full: wait for room

    async def wait_idle(self) -> None:
        """Wait until every message submitted so far has been handled."""
        while self.handled != self.submitted:
            await self._progress.wait()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for lane in self.lanes:
                tg.start_soon(self._worker, lane, name=f"lane:{lane.index}")
            tg.start_soon(self._watchdog, name="lanes:watchdog")
            self.running = True
            task_status.started()
        self.running = False

    async def _watchdog(self) -> None:
        interval = max(0.02, min(1.0, self.timeout / 10))
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            for lane in self.lanes:
                if lane.deadline is not None and now > lane.deadline and lane.scope:
                    lane.scope.cancel()

    async def _worker(self, lane: Lane) -> None:
        current_lane.set(lane)
        resume = False
        recv = lane.recv
        while True:
            with anyio.CancelScope() as scope:
                lane.scope = scope
                if resume:
                    await self._run_steps(lane)
                yielded = time.monotonic()
                while True:
                    # what waits is taken without a task switch each, yielding to the other
                    # tasks at least every `YIELD_EVERY` seconds of a backlog
                    try:
                        item = recv.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            item = await recv.receive()
                        except anyio.EndOfStream:
                            return
                        yielded = time.monotonic()
                    except anyio.EndOfStream:
                        return
                    else:
                        now = time.monotonic()
                        if now - yielded >= YIELD_EVERY:
                            await anyio.lowlevel.checkpoint()
                            yielded = now
                    self._plan(lane, item)
                    await self._run_steps(lane)
            log.error("%s timed out after %ss and was cancelled", lane.what, lane.limit)
            lane.after_timeout()
            resume = True

    def _plan(self, lane: Lane, item: tuple[SentMessage, Message | None, bool, Any]) -> None:
        on_handled = item[3]
        if isinstance(on_handled, _Folded):
            on_handled.started = True
            on_handled.fold.apply(item[0])
            if lane.folds.get(item[0].channel) is on_handled:
                del lane.folds[item[0].channel]
            if not on_handled.callbacks:
                on_handled = None
        tracker = delivery.Tracker(on_handled, str(item[0].channel)) if on_handled else None
        delivery.current.set(tracker)  # holds taken by the hooks count for this message
        before, on = self._impls("before_receive"), self._impls("on_receive")
        cached = self._steps
        if cached is None or cached[0] is not before or cached[1] is not on:
            # the caller hands out the same lists until a plugin comes or goes
            steps: list[tuple[str, pluggy.HookImpl | None]] = [("resolve", None)]
            steps += [("before_receive", impl) for impl in before]
            steps += [("on_receive", impl) for impl in on]
            cached = self._steps = (before, on, steps)
        lane.next_message(item[:3], cached[2], tracker)

    async def _run_steps(self, lane: Lane) -> None:
        try:
            while not lane.finished:
                spec, impl = lane.steps[lane.step]
                sent, source, primary = lane.item
                if impl is None:
                    resolved = self._resolve_now(sent, source)
                    if resolved is None:
                        # not a hook: bounded by the put timeout (in `resolve`), not the hook's
                        lane.budget((sent.channel, "waiting for a put to finish"),
                                    self.resolve_timeout + self.timeout)
                        resolved = await self._resolve(sent, source)
                    lane.step_done((sent, resolved, primary))
                    continue
                lane.budget((impl.plugin_name, spec), self.timeout)
                try:
                    if len(impl.argnames) == 3:  # takes all three (most do): no filtering
                        result = await impl.function(sent=sent, source=source, primary=primary)
                    else:
                        result = await impl.function(**{
                            n: v for n, v in (("sent", sent), ("source", source), ("primary", primary))
                            if n in impl.argnames})
                except Exception:
                    log.exception("%s: %s failed", impl.plugin_name, spec)
                    lane.step_done()
                    continue
                if spec == "before_receive":
                    if result is None:
                        log.debug("%s: before_receive dropped %s", impl.plugin_name, sent.id)
                        lane.drop_rest()
                        break
                    lane.step_done((result, source, primary))
                else:
                    lane.step_done()
        finally:
            if lane.finished:
                lane.deadline = None
                self.handled += 1
                if lane.tracker is not None:
                    tracker, lane.tracker = lane.tracker, None
                    delivery.current.set(None)
                    tracker.done()
                if self.handled == self.submitted:
                    progress, self._progress = self._progress, anyio.Event()
                    progress.set()
