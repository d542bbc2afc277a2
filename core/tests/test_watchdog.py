"""The event-loop watchdog: one warning per block naming the code that held the loop."""

import logging
import re
import threading
import time
from pathlib import Path

import anyio
import pytest

from chanmux.watchdog import LoopWatchdog

import watchdog_helpers as helpers

THRESHOLD = 0.2
INTERVAL = 0.05
#: clearly longer than the threshold: the watchdog's thread has 0.45 s to look
BLOCK = 0.7
SLEEP_LINE = helpers.line_of(helpers.block, "time.sleep(")
HOLD_LINE = helpers.line_of(helpers.hold, "block(seconds)")
EVENT_LINE = helpers.line_of(helpers.hold_on_event, ".wait(seconds)")


class Records(logging.Handler):
    """The records of one watchdog's logger; events set by the thread that logs them."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.warned = threading.Event()
        self.resumed = threading.Event()
        self.failed = threading.Event()
        self.logger = logging.getLogger(f"chanmux.watchdog.test.{name}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if record.levelno == logging.WARNING:
            self.warned.set()
        elif record.levelno == logging.ERROR:
            self.failed.set()
        elif "ran again" in record.getMessage():
            self.resumed.set()

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


@pytest.fixture
def records(request):
    handler = Records(request.node.name)
    yield handler
    handler.close()


async def wait(event: threading.Event, timeout: float = 10.0) -> None:
    """Wait (without holding the loop) until the watchdog's thread has logged `event`."""
    assert await anyio.to_thread.run_sync(event.wait, timeout), "the watchdog did not log it"


def seconds_in(message: str) -> float:
    return float(re.search(r"blocked for (?:at least )?([0-9.]+) s", message).group(1))


@pytest.mark.anyio
async def test_a_block_gives_one_warning_naming_the_code_and_one_line_when_it_ends(records):
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    lags: list[float] = []
    watchdog.on_lag = lags.append
    async with anyio.create_task_group() as tg:
        await tg.start(watchdog.run)
        await helpers.hold(BLOCK)
        await wait(records.resumed)
        tg.cancel_scope.cancel()

    [warning] = records.messages(logging.WARNING)
    assert warning.startswith("event loop blocked for ")
    assert seconds_in(warning) >= THRESHOLD
    assert (f"running: watchdog_helpers.py:{SLEEP_LINE} in block"
            f" <- watchdog_helpers.py:{HOLD_LINE} in hold"
            " <- test_watchdog.py:") in warning
    assert "in test_a_block_gives_one_warning" in warning
    assert "hunter2" not in warning
    assert str(Path(helpers.__file__).parent) not in warning
    [ended] = [m for m in records.messages(logging.INFO) if "ran again" in m]
    # the tick was due at most INTERVAL after the block began, so it ran this late at least
    assert seconds_in(ended) >= round(BLOCK - INTERVAL, 1)
    assert watchdog.blocked == 1
    assert watchdog.max_lag >= BLOCK - INTERVAL
    assert max(lags) == watchdog.max_lag


@pytest.mark.anyio
async def test_each_episode_warns_again(records):
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    async with anyio.create_task_group() as tg:
        await tg.start(watchdog.run)
        await helpers.hold(BLOCK)
        await wait(records.resumed)
        records.resumed.clear()
        assert watchdog.blocked == 1
        await helpers.hold(BLOCK)
        await wait(records.resumed)
        tg.cancel_scope.cancel()

    warnings = records.messages(logging.WARNING)
    assert len(warnings) == 2 and watchdog.blocked == 2
    assert all(f"watchdog_helpers.py:{SLEEP_LINE} in block" in w for w in warnings)
    assert len([m for m in records.messages(logging.INFO) if "ran again" in m]) == 2


@pytest.mark.anyio
async def test_a_loop_that_never_blocks_or_keeps_yielding_gives_no_warning(records):
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    lags: list[float] = []
    watchdog.on_lag = lags.append
    steps = 0
    async with anyio.create_task_group() as tg:
        await tg.start(watchdog.run)
        await anyio.sleep(0.4)  # idle, watched for this long
        idle_ticks = len(lags)
        end = time.monotonic() + 0.4
        while time.monotonic() < end:  # busy, in many short steps that each yield
            sum(range(500))
            steps += 1
            await anyio.sleep(0)
        tg.cancel_scope.cancel()

    assert records.records == [] and watchdog.blocked == 0
    assert watchdog.max_lag < THRESHOLD
    assert idle_ticks >= 2 and len(lags) > idle_ticks and steps > 1


@pytest.mark.anyio
async def test_cancelling_run_ends_its_thread(records):
    before = set(threading.enumerate())
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(watchdog.run)
            assert [t for t in threading.enumerate() if t.name == "chanmux-watchdog"]
            scope.cancel()
    assert not [t for t in threading.enumerate() if t.name == "chanmux-watchdog"]
    assert set(threading.enumerate()) <= before
    # and it can watch again
    async with anyio.create_task_group() as tg:
        await tg.start(watchdog.run)
        tg.cancel_scope.cancel()
    assert set(threading.enumerate()) <= before


@pytest.mark.anyio
async def test_threshold_zero_is_no_watchdog():
    before = set(threading.enumerate())
    watchdog = LoopWatchdog(0)
    assert watchdog.logger.name == "chanmux.watchdog"
    with anyio.fail_after(5):
        await watchdog.run()
        async with anyio.create_task_group() as tg:
            await tg.start(watchdog.run)
    assert set(threading.enumerate()) <= before and watchdog.blocked == 0


@pytest.mark.parametrize("threshold, interval", [(-1, None), (1.0, 0), (1.0, 2.0),
                                                 (float("nan"), None), (float("inf"), None)])
def test_bad_settings_are_refused_saying_which(threshold, interval):
    with pytest.raises(ValueError, match=r"^LoopWatchdog: (threshold|interval) must be"):
        LoopWatchdog(threshold, interval=interval)


def test_a_loop_in_another_thread_is_watched_there(records, anyio_backend):
    """The loop runs in a worker thread while the main thread waits in join(): the warning
    names what the loop's thread runs (here inside the standard library, called from ours),
    not the main thread nor the watchdog's own."""
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    failures: list[BaseException] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(watchdog.run)
            await helpers.hold_on_event(BLOCK)
            await wait(records.resumed)
            tg.cancel_scope.cancel()

    def loop_thread() -> None:
        try:
            anyio.run(main, backend=anyio_backend)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)

    thread = threading.Thread(target=loop_thread, name="loop")
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and not failures
    [warning] = records.messages(logging.WARNING)
    assert re.search(r"running: threading\.py:\d+ in (Event\.wait|Condition\.wait), called from "
                     rf"watchdog_helpers\.py:{EVENT_LINE} in hold_on_event <- ", warning)
    assert "in loop_thread" not in warning and "join" not in warning
    assert watchdog.blocked == 1


@pytest.mark.anyio
async def test_an_on_lag_hook_that_fails_is_logged_once_and_watching_goes_on(records):
    watchdog = LoopWatchdog(THRESHOLD, interval=INTERVAL, logger=records.logger)
    calls = 0

    def broken(lag: float) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("metrics are broken")

    watchdog.on_lag = broken
    async with anyio.create_task_group() as tg:
        await tg.start(watchdog.run)
        await wait(records.failed)
        await helpers.hold(BLOCK)
        await wait(records.resumed)
        tg.cancel_scope.cancel()
    [error] = [r for r in records.records if r.levelno == logging.ERROR]
    assert "on_lag failed" in error.getMessage() and "metrics are broken" in str(error.exc_info[1])
    assert calls == 1 and watchdog.on_lag is None
    assert watchdog.blocked == 1


def test_recursion_and_library_frames_are_named_briefly():
    """A deep recursion is one entry; library frames above our code are named once, as what
    runs, then our callers; paths start at the package, never at the machine's root."""
    site = "/opt/venv/lib/python3.11/site-packages"
    stack = [("markdown_it.parser_inline", f"{site}/markdown_it/parser_inline.py", 90, "tokenize"),
             ("markdown_it.main", f"{site}/markdown_it/main.py", 40, "parse"),
             *[("chanmux_matrix.html", f"{site}/chanmux_matrix/html.py", 412, "_parse")] * 30,
             ("chanmux_matrix.html", f"{site}/chanmux_matrix/html.py", 769, "parse_html"),
             ("chanmux_matrix.incoming", f"{site}/chanmux_matrix/incoming.py", 160, "_message"),
             ("chanmux.host", "/srv/chanmux/core/chanmux/host.py", 600, "Host.receive"),
             ("chanmux.lanes", "/srv/chanmux/core/chanmux/lanes.py", 80, "Lanes._run"),
             ("anyio._backends._asyncio", f"{site}/anyio/_backends/_asyncio.py", 1, "run"),
             ("asyncio.events", "/usr/lib/python3.11/asyncio/events.py", 80, "Handle._run")]
    # chanmux_matrix is project code where it is installed; core's tests also run without it
    assert LoopWatchdog(project=["chanmux_matrix"]).describe(stack) == (
        "markdown_it/parser_inline.py:90 in tokenize, called from "
        "chanmux_matrix/html.py:412 in _parse (x30) <- chanmux_matrix/html.py:769 in parse_html"
        " <- chanmux_matrix/incoming.py:160 in _message <- chanmux/host.py:600 in Host.receive")
