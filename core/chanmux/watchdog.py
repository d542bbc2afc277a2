"""An event-loop watchdog: one warning naming the code that held the loop, and the loop's lag.

Every plug and hook runs on one event loop; code that runs long without yielding stops all
of them (no PING is answered, no line read). `LoopWatchdog.run` ticks in the loop every
`interval` and stores when the next tick is due; a daemon thread watches that time. When
a tick is `threshold` seconds late the thread takes the loop thread's stack and logs one
warning naming the innermost project frames (`chanmux/...`, a plugin's, or any code outside
the standard library and installed libraries) as `file:line in function`; when the loop
ticks again, one INFO line gives how long it was held. Only code locations are logged,
never a variable's value.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable

import anyio
import anyio.abc

__all__ = ["LoopWatchdog"]

#: Top-level packages of the event loop's own machinery and of the test runner: never named
#: as what held the loop (asyncio and the rest of the standard library are left out too).
INFRASTRUCTURE = frozenset({"anyio", "trio", "sniffio", "outcome", "exceptiongroup", "uvloop",
                            "pluggy", "_pytest", "pytest", "pytest_asyncio", "pytest_trio"})
#: How many project frames a warning names: the innermost and its callers.
CHAIN = 4
_SELF = __name__
# (module name, file name, line, function) of one frame
Frame = tuple[str, str, int, str]


class LoopWatchdog:
    """Warns once per episode in which the event loop was held `threshold` seconds or more.

    `threshold` 0 turns the watchdog off (`run` returns at once). The loop counts as blocked
    when its tick is `threshold` late, whatever held it (code that did not yield, or a
    machine too busy to run the loop); a block of `threshold + interval` is always caught.
    """

    def __init__(self, threshold: float = 1.0, *, interval: float | None = None,
                 logger: logging.Logger | None = None, project: Iterable[str] = ()) -> None:
        if not (threshold >= 0 and math.isfinite(threshold)):
            raise ValueError(f"LoopWatchdog: threshold must be 0 (off) or a finite number of "
                             f"seconds, got {threshold!r}")
        if interval is None:
            interval = threshold / 4
        elif threshold and not 0 < interval <= threshold:
            raise ValueError(f"LoopWatchdog: interval must be more than 0 and at most the "
                             f"threshold ({threshold!r} s), got {interval!r}")
        self.threshold = float(threshold)
        self.interval = float(interval)
        self.logger = logger or logging.getLogger("chanmux.watchdog")
        #: seconds: how late the loop's last tick ran (0 when on time)
        self.lag = 0.0
        #: the largest `lag` since the watchdog started
        self.max_lag = 0.0
        #: warnings given so far (episodes in which the loop was held past `threshold`)
        self.blocked = 0
        #: called in the loop with each measured lag (seconds), e.g. a metrics histogram's
        #: observe; one that raises is logged and not called again
        self.on_lag: Callable[[float], None] | None = None
        self._due = 0.0
        # (due, ran) of the last tick that was `threshold` late: the thread reads it to say
        # how long an episode lasted, or that one passed while it could not look
        self._late: tuple[float, float] | None = None
        self._loop_thread: int | None = None
        #: top-level packages named as the code that ran, beside chanmux, the installed
        #: plugin packages and code outside site-packages
        self._extra = frozenset(project)
        self._project: frozenset[str] | None = None

    async def run(self, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch the loop this runs in until cancelled (both anyio backends)."""
        if not self.threshold:
            task_status.started()
            return
        if self._loop_thread is not None:
            raise RuntimeError("LoopWatchdog.run: this watchdog is already running")
        self._loop_thread = threading.get_ident()
        stop = threading.Event()
        self._due = time.monotonic() + self.interval
        thread = threading.Thread(target=self._watch, args=(stop,), name="chanmux-watchdog",
                                  daemon=True)
        thread.start()
        try:
            task_status.started()
            await self._tick()
        finally:
            stop.set()
            thread.join(timeout=1.0)
            self._loop_thread = None

    async def _tick(self) -> None:
        interval, threshold = self.interval, self.threshold
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            due = self._due
            late = now - due
            if late >= threshold:
                self._late = (due, now)
            self._due = now + interval
            lag = self.lag = late if late > 0 else 0.0
            if lag > self.max_lag:
                self.max_lag = lag
            if self.on_lag is not None:
                try:
                    self.on_lag(lag)
                except Exception:  # a metrics hook must not stop the watchdog
                    self.logger.exception("watchdog: on_lag failed; lag figures are no longer "
                                          "reported")
                    self.on_lag = None

    # -- the thread --------------------------------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        # The tick stores `_late` before `_due`: once `_due` moves, `_late` says whether
        # that tick was late. `seen` is the late tick already reported.
        seen = self._late
        while not stop.is_set():
            due = self._due
            if self._late is not seen:
                seen = self._late
                self._passed(seen)
            wait = due + self.threshold - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            elif self._due == due:
                seen = self._episode(due, seen, stop)

    def _episode(self, due: float, seen: tuple[float, float] | None,
                 stop: threading.Event) -> tuple[float, float] | None:
        """The tick due at `due` is `threshold` late: name the code that runs, wait for the
        loop to tick again and say how long it was held. Returns the late tick reported."""
        stack = self._stack()
        held = time.monotonic() - due
        if self._due != due:
            # the loop ran again while its stack was taken, so the stack may show what ran
            # next: the next look reports the episode (if that tick was late) without it
            return seen
        self.blocked += 1
        self.logger.warning("event loop blocked for %.1f s so far; running: %s", held,
                            self.describe(stack))
        while self._due == due and not stop.wait(self.interval):
            pass
        late = self._late
        if late is not seen and late is not None and late[0] == due:
            self.logger.info("event loop ran again after being blocked for %.1f s",
                             late[1] - late[0])
            return late
        if self._due != due:
            self.logger.info("event loop ran again after being blocked for at least %.1f s",
                             held)
        return seen

    def _passed(self, late: tuple[float, float] | None) -> None:
        """A late tick the thread did not see while the loop waited for it (the thread was
        not scheduled in time, or the loop ran again while its stack was being taken)."""
        if late is None:
            return
        self.blocked += 1
        self.logger.warning("event loop was blocked for %.1f s; it ran again before the "
                            "watchdog could see what ran", late[1] - late[0])

    def _stack(self) -> list[Frame]:
        """The loop thread's frames, innermost first (code locations only)."""
        loop_thread = self._loop_thread
        frame = sys._current_frames().get(loop_thread) if loop_thread is not None else None
        out: list[Frame] = []
        while frame is not None:
            code = frame.f_code
            out.append((frame.f_globals.get("__name__", ""), code.co_filename, frame.f_lineno,
                        code.co_qualname))
            frame = frame.f_back
        return out

    # -- naming the code ---------------------------------------------------------------------

    def describe(self, stack: Iterable[Frame]) -> str:
        """`file:line in function <- caller <- ...` for the innermost project frames of
        `stack` (innermost first), after the frame that runs if that is library code."""
        frames = [f for f in stack if f[0] != _SELF]
        if not frames:
            return "(the loop thread's stack could not be read)"
        ours = [f for f in frames if self._is_project(f[0], f[1])]
        if not ours:
            return " <- ".join(_collapse(frames)[:CHAIN]) + " (no project code on the stack)"
        chain = " <- ".join(_collapse(ours)[:CHAIN])
        if frames[0] is not ours[0]:
            return f"{_where(frames[0])}, called from {chain}"
        return chain

    def _is_project(self, module: str, filename: str) -> bool:
        top = module.partition(".")[0]
        if self._project is None:
            self._project = frozenset({"chanmux", *_plugin_packages(), *self._extra})
        if top in self._project:
            return True
        if top in sys.stdlib_module_names or top in INFRASTRUCTURE or filename.startswith("<"):
            return False
        parts = filename.replace("\\", "/").split("/")
        return "site-packages" not in parts and "dist-packages" not in parts


def _plugin_packages() -> set[str]:
    """Top-level packages of the installed chanmux plugins (entry points `chanmux.plugins`)."""
    try:
        found = importlib.metadata.entry_points(group="chanmux.plugins")
    except Exception:  # noqa: BLE001 - a broken distribution must not stop a warning
        return set()
    return {ep.value.partition(":")[0].partition(".")[0] for ep in found}


def _collapse(frames: list[Frame]) -> list[str]:
    """Each frame as `_where`, a run of frames of one function (recursion) as one."""
    out: list[str] = []
    run = 0
    for i, frame in enumerate(frames):
        run += 1
        after = frames[i + 1] if i + 1 < len(frames) else None
        if after is not None and after[1] == frame[1] and after[3] == frame[3]:
            continue
        first = frames[i - run + 1]
        out.append(_where(first) + (f" (x{run})" if run > 1 else ""))
        run = 0
    return out


def _where(frame: Frame) -> str:
    """`package/module.py:line in function`: the file's path below its sys.path entry,
    found from the module's name (never the absolute path, which names the machine)."""
    module, filename, line, function = frame
    parts = filename.replace("\\", "/").split("/")
    keep = module.count(".") + 1 if module and module != "__main__" else 1
    if parts[-1] == "__init__.py":
        keep += 1
    return f"{'/'.join(parts[-keep:])}:{line} in {function}"
