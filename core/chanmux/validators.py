"""Small checks for the keys of a plug's or hook's config class, shared by every plugin.

Each is an attrs validator (``attrs.field(validator=port)``); the host runs them after the
file is structured and reports a failure as one line naming the key's path::

    plugs.libera.port: must be a port number from 1 to 65535, got 70000

Wrap one in ``attrs.validators.optional`` for a key that may be left out (``None``). A check
that spans several keys goes in the class's ``__attrs_post_init__`` and raises ValueError; the
host reports it with the table's path, also when other keys of the table have problems, as
long as the keys it reads are right. Validators never see a half-built instance: they must not
rely on their first argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sized
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["at_least", "hostname", "non_empty", "non_negative", "port", "positive", "url"]

Validator = Callable[[Any, Any, Any], None]

#: a sized value: non_empty is typed as the field it checks (str, list, ...), so that
#: attrs.field(validator=non_empty) keeps the field's own type for type checkers
_Sized = TypeVar("_Sized", bound=Sized)

_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def _shown(value: Any) -> str:
    """A value as the config file would show it, control characters escaped."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def port(_inst: Any, _attr: Any, value: int) -> None:
    """A TCP port: an integer from 1 to 65535."""
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, got {value}")


def positive(_inst: Any, _attr: Any, value: float) -> None:
    """A number greater than 0 (a timeout, an interval, a size that cannot be nothing)."""
    if not value > 0:  # also refuses nan
        raise ValueError(f"must be greater than 0, got {value}")


def non_negative(_inst: Any, _attr: Any, value: float) -> None:
    """A number of 0 or more (a limit where 0 means none, a delay that may be nothing)."""
    if not value >= 0:
        raise ValueError(f"must not be negative, got {value}")


def at_least(minimum: float) -> Validator:
    """A number of `minimum` or more."""

    def check(_inst: Any, _attr: Any, value: float) -> None:
        if not value >= minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")

    return check


def non_empty(_inst: Any, _attr: Any, value: _Sized) -> None:
    """A string that is not empty or only spaces; a list or table with at least one item."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"must not be empty, got {_shown(value)}")
    if not isinstance(value, str) and len(value) == 0:
        raise ValueError("must not be empty")


def hostname(_inst: Any, _attr: Any, value: str) -> None:
    """A host name or address to connect to (`irc.libera.chat`, `127.0.0.1`, `::1`): not
    empty, no spaces or control characters, and not a URL."""
    if not value.strip():
        raise ValueError(f'must be a host name like "irc.example.org", got {_shown(value)}')
    if _SPACE_OR_CONTROL.search(value) or "/" in value or "@" in value:
        raise ValueError(f'must be a host name like "irc.example.org" (no scheme, path, '
                         f"spaces or control characters), got {_shown(value)}")


def url(*schemes: str, example: str | None = None) -> Validator:
    """A URL with one of `schemes` and a host: ``url("http", "https")``."""
    allowed = tuple(s.lower() for s in schemes) or ("https",)
    example = example or f"{allowed[-1]}://example.org"
    kinds = "http(s)" if set(allowed) == {"http", "https"} else " or ".join(allowed)
    article = "an" if kinds[0] in "aeiouh" else "a"

    def check(_inst: Any, _attr: Any, value: str) -> None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if (parts is None or parts.scheme.lower() not in allowed or not parts.hostname
                or _SPACE_OR_CONTROL.search(value)):
            raise ValueError(f'expected {article} {kinds} URL like "{example}", '
                             f"got {_shown(value)}")

    return check
