"""What every relay benchmark measures, and how: the same clock and fields for chanmux, IMMP
and the bare-asyncio floor, so their figures compare.

Standard library only: the IMMP driver runs in a virtual environment of its own and imports
this module too (it sits beside the scripts). The clock runs over the measured part alone (from
the first message injected to the last copy handled, and with a database to the last row
written); CPU time is `time.process_time`, every thread of the process (a database writer
thread included), which other work on the machine does not inflate the way it does wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import time
from collections.abc import Callable
from typing import Any

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

#: The comparison's workload: messages said in one channel, synced to the other two.
WORKLOAD = 20_000


def rss_kb() -> int:
    """The process's resident memory now, in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KB


def marks(messages: int) -> list[int]:
    """Message counts at which the resident memory is read: the workload's 20,000 and every
    tenth of the run (so one run of 200,000 shows whether memory stays flat)."""
    wanted = {WORKLOAD, *(messages * k // 10 for k in range(1, 11))}
    return sorted(m for m in wanted if 0 < m <= messages)


class GCTime:
    """Time spent in the garbage collector's collections, per generation (a part of the CPU
    time that a profiler charges to whatever function happened to allocate)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._since = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._since = time.process_time()
        else:
            self.seconds[info["generation"]] += time.process_time() - self._since
            self.collections[info["generation"]] += 1


class Clock:
    """Wall and CPU time of the measured part, and the resident memory at the marks."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.marks = set(marks(messages))
        self.rss: dict[int, int] = {}
        self.seconds = self.cpu = 0.0
        self._wall = self._cpu = 0.0
        self.gc = GCTime()

    def start(self) -> None:
        gc.collect()  # the set-up's garbage is not the run's
        gc.callbacks.append(self.gc)
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def injected(self, count: int) -> None:
        """`count` messages have been injected: read the memory if that is a mark."""
        if count in self.marks:
            self.rss[count] = rss_kb()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        if self.gc in gc.callbacks:
            gc.callbacks.remove(self.gc)
        self.rss["end"] = rss_kb()  # type: ignore[index]

    def result(self, system: str, **extra: Any) -> dict[str, Any]:
        n = self.messages
        return {"system": system, "messages": n, **extra,
                "seconds": round(self.seconds, 3),
                "msgs_per_s": round(n / self.seconds) if self.seconds else None,
                "cpu_s": round(self.cpu, 3),
                "cpu_us_per_msg": round(self.cpu / n * 1e6, 1) if n else None,
                "gc_us_per_msg": round(sum(self.gc.seconds) / n * 1e6, 1) if n else None,
                "gc_collections": self.gc.collections,
                "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "rss_kb": {str(k): v for k, v in self.rss.items()}}


class Watch:
    """A count and the one waiter that wants it to reach a number. `event` makes the Event
    it waits on: asyncio's by default, anyio's for a driver on anyio (it runs on trio too)."""

    __slots__ = ("count", "_want", "_event", "_make")

    def __init__(self, event: Callable[[], Any] = asyncio.Event) -> None:
        self.count = 0
        self._want = 0
        self._event: Any = None
        self._make = event

    def add(self, n: int = 1) -> None:
        self.count += n
        if self._event is not None and self.count >= self._want:
            self._event.set()
            self._event = None

    async def reach(self, n: int) -> None:
        if self.count < n:
            self._want, self._event = n, self._make()
            await self._event.wait()


def workload_arguments(parser: argparse.ArgumentParser, db_help: str) -> None:
    """The workload's options, the same in every driver that --compare runs."""
    parser.add_argument("--messages", type=int, default=WORKLOAD)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--window", type=int, default=2_000)
    parser.add_argument("--chunk", type=int, default=0,
                        help="messages injected at a time (default: a quarter of the "
                             "window; 1: the driver refills one at a time, woken per message)")
    parser.add_argument("--db", default=None, help=db_help)
