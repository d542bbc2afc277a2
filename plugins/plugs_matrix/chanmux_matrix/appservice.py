"""The Matrix application-service mode: the registration file and the API the homeserver calls.

In this mode the homeserver knows the bridge as an application service (its registration
file, listed in the homeserver's ``app_service_config_files``): it pushes every event of the
bridge's rooms to the bridge over HTTP, in numbered transactions it sends again until they
are answered 200, and lets the bridge act as any user of its namespace, so that each person
of another network is a Matrix user of their own (a "ghost", see `ghosts`).

- `Registration`: what the file says, how `chanmux matrix-registration` writes it, and the
  check that the plug's config and the file agree (`problems`).
- `AppService`: the routes the homeserver calls on the host's listener: transactions, user
  and room queries, ping. Each request must carry the ``hs_token``. A transaction is answered
  200 once its events are handed to the host and kept in its inbox (the database), so a
  bridge killed before the answer is sent the transaction again, and one killed after it
  relays what it kept at the next start; an event handed over before (a transaction sent
  again, or an event in two transactions) is not relayed twice. A registration with
  ``receive_ephemeral`` also gets the rooms' ephemeral events (who types) in each
  transaction, which go to the plug without being kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
import yaml

from chanmux import HTTPError, Request, Response, Route

#: Where the application-service API lives under the registration's url.
PREFIX = "/_matrix/app/v1"
#: Characters a user id's localpart keeps as they are (`localpart` escapes the rest).
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-./")
#: Longest user id Matrix allows, in bytes.
MAX_USER_ID = 255


def localpart(text: str) -> str:
    """`text` as a user id localpart, the way the Matrix spec suggests for names from other
    networks: lower-case letters, digits and ``-./`` as they are, an upper-case letter as
    ``_`` and the letter, ``_`` as ``__``, anything else as ``=`` and the hex of each UTF-8
    byte. Distinct texts give distinct localparts."""
    out = []
    for char in text:
        if char in _KEEP:
            out.append(char)
        elif "A" <= char <= "Z":
            out.append("_" + char.lower())
        elif char == "_":
            out.append("__")
        else:
            out.append("".join(f"={byte:02x}" for byte in char.encode()))
    return "".join(out)


def fit_localpart(local: str, server: str) -> str:
    """`local`, cut where the whole user id would be longer than Matrix allows, with a hash
    of the whole so two long names do not meet."""
    room = MAX_USER_ID - len(f"@:{server}".encode()) - 9
    if len(local) <= room + 9:
        return local
    return f"{local[:room]}-{hashlib.sha256(local.encode()).hexdigest()[:8]}"


def users_regex(prefix: str, server: str) -> str:
    """The registration's regular expression for the ghosts' user ids."""
    return f"@{re.escape(prefix)}.*:{re.escape(server)}"


def aliases_regex(prefix: str, server: str) -> str:
    return f"#{re.escape(prefix)}.*:{re.escape(server)}"


@attrs.frozen
class Registration:
    """An application service's registration, as the homeserver reads it (YAML)."""

    id: str
    url: str
    as_token: str
    hs_token: str
    sender_localpart: str
    users: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    #: the homeserver pushes ephemeral events too (``receive_ephemeral``: who types)
    ephemeral: bool = False

    @property
    def path(self) -> str:
        """Where the application-service API is served on the bridge's listener."""
        return urlsplit(self.url).path.rstrip("/") + PREFIX

    @classmethod
    def new(cls, *, plug: str, url: str, user_id: str, prefix: str) -> Registration:
        """A registration with fresh tokens for the plug `plug` (bridge account `user_id`,
        ghosts named with `prefix`)."""
        local, server = user_id[1:].split(":", 1)
        return cls(id=f"chanmux-{plug}", url=url, as_token=secrets.token_urlsafe(32),
                   hs_token=secrets.token_urlsafe(32), sender_localpart=local,
                   users=(users_regex(prefix, server),), aliases=(aliases_regex(prefix, server),),
                   ephemeral=True)

    def dump(self) -> str:
        """The YAML the homeserver reads."""
        data = {
            "id": self.id,
            "url": self.url,
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": self.sender_localpart,
            "rate_limited": False,
            **({"receive_ephemeral": True, "de.sorunome.msc2409.push_ephemeral": True}
               if self.ephemeral else {}),
            "namespaces": {
                "users": [{"exclusive": True, "regex": r} for r in self.users],
                "aliases": [{"exclusive": True, "regex": r} for r in self.aliases],
                "rooms": [],
            },
        }
        head = ("# A Matrix application service: chanmux-matrix (written by `chanmux "
                "matrix-registration`).\n# List this file in the homeserver's "
                "app_service_config_files and restart it. The tokens are secrets.\n")
        return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    @classmethod
    def read(cls, path: Path) -> Registration:
        """The registration in the file at `path`; ValueError saying what is wrong."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ValueError(f"{path} is not YAML{line}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a registration (a YAML mapping)")
        strings = {}
        for key in ("id", "url", "as_token", "hs_token", "sender_localpart"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{path}: {key} is missing or not a string")
            strings[key] = value
        found = data.get("namespaces")
        spaces: dict[str, Any] = found if isinstance(found, dict) else {}

        def regexes(kind: str) -> tuple[str, ...]:
            listed = spaces.get(kind)
            entries: list[Any] = listed if isinstance(listed, list) else []
            return tuple(e["regex"] for e in entries if isinstance(e, dict)
                         and isinstance(e.get("regex"), str) and e.get("exclusive") is True)

        ephemeral = (data.get("receive_ephemeral") is True
                     or data.get("de.sorunome.msc2409.push_ephemeral") is True)
        return cls(**strings, users=regexes("users"), aliases=regexes("aliases"),
                   ephemeral=ephemeral)

    def problems(self, *, user_id: str, prefix: str) -> list[str]:
        """Where this registration disagrees with the plug's config (each a sentence)."""
        local, server = user_id[1:].split(":", 1)
        found = []
        if self.sender_localpart != local:
            found.append(f'its sender_localpart is "{self.sender_localpart}", but user_id is '
                         f'{user_id} (localpart "{local}")')
        expected = users_regex(prefix, server)
        if expected not in self.users:
            found.append(f"its exclusive user namespace is not {expected} (ghost_prefix "
                         f'"{prefix}" on {server}): it has {", ".join(self.users) or "none"}')
        if urlsplit(self.url).scheme not in ("http", "https") or not urlsplit(self.url).hostname:
            found.append(f'its url "{self.url}" is not an http(s) URL')
        return found


#: Handles the events of one transaction (the plug's intake); returns once they are kept.
Intake = Callable[[list[dict[str, Any]]], Awaitable[None]]
#: Keys a transaction's ephemeral events come under (the second before Matrix 1.x named it).
EPHEMERAL_KEYS = ("ephemeral", "de.sorunome.msc2409.ephemeral")


class AppService:
    """The application-service API on the host's listener (see the module's docstring).

    `intake` takes a transaction's events; `ready` says whether the plug can take them now
    (a transaction that comes while it cannot is answered 503, and the homeserver sends it
    again); `is_ghost` says whether a user id is one the bridge stands for; `ephemeral`
    takes the transaction's ephemeral events, after its events.
    """

    def __init__(self, registration: Registration, *, intake: Intake, ready: Callable[[], bool],
                 is_ghost: Callable[[str], bool], log: logging.Logger,
                 ephemeral: Intake | None = None) -> None:
        self.registration = registration
        self.intake = intake
        self.ephemeral = ephemeral
        self.ready = ready
        self.is_ghost = is_ghost
        self.log = log
        self.transactions = 0
        self.refused = 0
        #: the transaction ids of the last pings that reached the bridge
        self.pinged: deque[str] = deque(maxlen=16)
        self._lock: anyio.Lock | None = None  # made in the event loop, at first use

    def lock(self) -> anyio.Lock:
        """Held while a transaction is taken in; the owner holds it too while it takes in
        events another way (a catch-up), so the two never hand over the same event twice."""
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    def routes(self) -> list[Route]:
        base = self.registration.path
        return [
            Route("PUT", f"{base}/transactions/{{txn}}", self._transaction),
            Route("GET", f"{base}/users/{{user}}", self._user),
            Route("GET", f"{base}/rooms/{{alias}}", self._room),
            Route("POST", f"{base}/ping", self._ping),
        ]

    def _authorise(self, request: Request) -> None:
        """The homeserver's token, from the Authorization header (or the older query
        parameter): 401 without one, 403 with another."""
        header = request.headers.get("authorization", "")
        given = header[7:] if header[:7].lower() == "bearer " else None
        if given is None:
            given = (request.query.get("access_token") or [""])[0]
        if not given:
            self.refused += 1
            raise HTTPError(401, "no hs_token given", errcode="M_UNAUTHORIZED")
        if not hmac.compare_digest(given.encode(), self.registration.hs_token.encode()):
            self.refused += 1
            self.log.warning("refused a request to %s with a wrong hs_token (is another "
                             "homeserver or an old registration calling?)", request.path)
            raise HTTPError(403, "wrong hs_token", errcode="M_FORBIDDEN")

    async def _transaction(self, request: Request) -> Response:
        self._authorise(request)
        if not self.ready():
            raise HTTPError(503, "the bridge is not connected to the homeserver yet; send it "
                                 "again later", errcode="M_UNKNOWN")
        body = request.json()
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            raise HTTPError(400, "a transaction needs an events list", errcode="M_BAD_JSON")
        ephemeral: list[Any] = next(
            (body[key] for key in EPHEMERAL_KEYS if isinstance(body.get(key), list)), [])
        async with self.lock():  # in the homeserver's order, one at a time
            await self.intake([event for event in events if isinstance(event, dict)])
            if ephemeral and self.ephemeral is not None:
                await self.ephemeral([event for event in ephemeral if isinstance(event, dict)])
        self.transactions += 1
        return Response.json({})

    async def _user(self, request: Request) -> Response:
        self._authorise(request)
        if self.is_ghost(request.params["user"]):
            return Response.json({})
        raise HTTPError(404, "not a user of this bridge", errcode="M_NOT_FOUND")

    async def _room(self, request: Request) -> Response:
        self._authorise(request)
        raise HTTPError(404, "this bridge makes no rooms on demand", errcode="M_NOT_FOUND")

    async def _ping(self, request: Request) -> Response:
        self._authorise(request)
        try:
            body = request.json()
        except HTTPError:  # a ping is answered whatever its body
            body = None
        txn = body.get("transaction_id") if isinstance(body, dict) else None
        if isinstance(txn, str):
            self.pinged.append(txn)
        return Response.json({})


__all__ = ["AppService", "Registration", "aliases_regex", "fit_localpart", "localpart",
           "users_regex"]
