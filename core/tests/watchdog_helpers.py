"""Project code that holds the event loop, for the watchdog tests to find on the stack."""

import threading
import time


def block(seconds: float, password: str = "hunter2-do-not-log") -> None:
    """Holds the loop thread without yielding, as code that forgot to await would (with a
    secret among its locals: a warning names code, never values)."""
    time.sleep(seconds)


async def hold(seconds: float) -> None:
    """A coroutine that blocks the loop it runs in (through `block`)."""
    block(seconds)


async def hold_on_event(seconds: float) -> None:
    """Blocks the loop in the standard library (`threading.Event.wait`) for `seconds`."""
    threading.Event().wait(seconds)


def line_of(function, text: str) -> int:
    """The line number of the first line of `function` that contains `text`."""
    import inspect

    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)
