"""What a plug's failure means, so the host and the delivery queue know what to do with it.

A plug raises these from `open`, `run`, `put`, `edit` or `delete`:

- `TryLater`: this cannot be done now, but will pass without anyone changing anything (the
  plug is reconnecting or logging in again, the server answers 5xx or 429, a timeout). The
  delivery queue keeps the copy and tries again once the plug is ready. Plain
  `ConnectionError`, `TimeoutError` and `OSError` mean the same.
- `Refused`: the network refuses this one message for good (its content, its size). The
  delivery queue tries a simpler rendering of it, then a short visible notice, never silence.
- `ActionRequired`: retrying will not help until the person running the bridge changes
  something (a wrong password, a revoked token, a ban). The host logs the message once, as
  an error saying what to change, and keeps retrying slowly; copies for the plug are kept.
"""

from __future__ import annotations


class TryLater(ConnectionError):
    """Not now, but later without anyone's help: keep the work and retry when ready."""


class Refused(Exception):
    """The network refuses this message for good; a simpler rendering may pass."""


class ActionRequired(Exception):
    """Retrying will not help until the bridge's operator changes something; the message
    says what (e.g. "the server refused the password: set plugs.libera.password")."""


#: Failures after which the same delivery will pass later (the plug is down or busy).
RETRYABLE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError, TryLater)


def cause(exc: BaseException) -> BaseException:
    """The real failure: exception groups (what a task group raises) opened to their first
    leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    """`Type: message` of the real cause (`cause`), so a log says `ConnectionResetError: ...`,
    not `ExceptionGroup: unhandled errors in a TaskGroup`; one line: only the message's first
    (a database error goes on with the statement and its parameters, which may hold what
    people said)."""
    exc = cause(exc)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


__all__ = ["ActionRequired", "RETRYABLE", "Refused", "TryLater", "cause", "describe"]
