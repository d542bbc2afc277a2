"""Ghosts: the Matrix users that stand for people of other networks (application-service mode).

Each person of another network gets a Matrix user of their own in the bridge's namespace:
``@<ghost_prefix><network>_<nick>:<server>`` (the network is the plug's name; `localpart`
escapes what a user id cannot hold), registered on first use, with the person's name as it
is shown (the relay's name template) as display name, joined to a room when they first need
to be there and leaving it when they leave. A change of nick moves the person's ghost with
them (the ghost keeps its user id and takes the new name), so Matrix shows one person whose
name changed; the moves are kept in the database, and a nick someone left is given to its
next owner under a new user id.

`Ghosts` reaches the homeserver only through the callable it is given (the plug's connected
client); it keeps the moves through `load`/`save`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from chanmux import User

from .appservice import fit_localpart, localpart, users_regex
from .client import CS, MatrixClient, MatrixError, q

#: Renames kept in the database (the oldest are forgotten beyond it).
MAX_MOVES = 5000
#: Longest display name Matrix allows.
MAX_NAME = 256


class CannotJoin(Exception):
    """A ghost cannot be brought into a room (the bridge account may not invite)."""


class Ghosts:
    """The ghosts of one application-service plug (see the module's docstring)."""

    def __init__(self, *, plug: str, client: Callable[[], MatrixClient], bot: str, prefix: str,
                 load: Callable[[], Awaitable[Any]], save: Callable[[Any], Awaitable[None]],
                 log: logging.Logger, retry_for: float | None) -> None:
        self.plug = plug
        self.client = client
        self.bot = bot
        self.server = bot.split(":", 1)[1]
        self.prefix = prefix
        self.load = load
        self.save = save
        self.log = log
        self.retry_for = retry_for
        self.pattern = re.compile(users_regex(prefix, self.server))
        self.moves: dict[str, str] = {}  # person key -> ghost id, for people who changed nick
        self.owners: dict[str, str] = {}  # ghost id -> person key, the inverse of moves
        self.registered: set[str] = set()
        self.names: dict[str, str | None] = {}  # ghost id -> display name, as set in this run
        self.joined: set[tuple[str, str]] = set()  # (ghost id, room id) in this run
        self.refused_rooms: set[str] = set()  # rooms the bridge account may not invite to

    def is_ghost(self, user_id: str) -> bool:
        return bool(self.pattern.fullmatch(user_id))

    def in_room(self, ghost: str, room_id: str) -> bool:
        """Whether `ghost` was brought into the room in this run."""
        return (ghost, room_id) in self.joined

    def is_own(self, user_id: str) -> bool:
        """The bridge account or one of its ghosts."""
        return user_id == self.bot or self.is_ghost(user_id)

    async def start(self) -> None:
        """Read the moves kept by earlier runs."""
        kept = await self.load()
        if isinstance(kept, dict):
            self.moves = {k: v for k, v in kept.items() if isinstance(k, str) and isinstance(v, str)}
            self.owners = {v: k for k, v in self.moves.items()}

    @staticmethod
    def key(user: User) -> str | None:
        """Who a user is, for their ghost: their network (plug) and nick, case folded."""
        nick = user.username or user.id
        if user.plug is None or not nick:
            return None
        return f"{user.plug}|{nick.casefold()}"

    def ghost_id(self, user: User) -> str | None:
        """The user id of `user`'s ghost (None for a user of no network)."""
        key = self.key(user)
        if key is None:
            return None
        moved = self.moves.get(key)
        if moved is not None:
            return moved
        plug, nick = key.split("|", 1)
        base = fit_localpart(f"{self.prefix}{localpart(plug)}_{localpart(nick)}", self.server)
        candidate, n = f"@{base}:{self.server}", 1
        while self.owners.get(candidate, key) != key:  # someone who changed nick keeps it
            n += 1
            candidate = f"@{base}-{n}:{self.server}"
        return candidate

    # -- the homeserver ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, as_user: str | None = None,
                    json: Any = None) -> Any:
        params = {"user_id": as_user} if as_user else None
        return await self.client().request(method, path, json=json, params=params,
                                           retry_for=self.retry_for)

    async def _register(self, ghost: str) -> None:
        if ghost in self.registered:
            return
        local = ghost[1:].split(":", 1)[0]
        try:
            await self._call("POST", f"{CS}/register", json={
                "type": "m.login.application_service", "username": local, "inhibit_login": True})
            self.log.info("registered %s", ghost)
        except MatrixError as exc:
            if exc.errcode != "M_USER_IN_USE":
                raise
        self.registered.add(ghost)

    async def _name(self, ghost: str, name: str) -> None:
        name = name[:MAX_NAME]
        if ghost not in self.names:
            try:
                data = await self._call("GET", f"{CS}/profile/{q(ghost)}/displayname", ghost)
                self.names[ghost] = data.get("displayname") if isinstance(data, dict) else None
            except MatrixError as exc:
                if exc.status != 404:
                    raise
                self.names[ghost] = None
        if self.names[ghost] != name:
            await self._call("PUT", f"{CS}/profile/{q(ghost)}/displayname", ghost,
                             json={"displayname": name})
            self.names[ghost] = name

    async def _join(self, ghost: str, room_id: str) -> None:
        if (ghost, room_id) in self.joined:
            return
        try:
            await self._call("POST", f"{CS}/join/{q(room_id)}", ghost, json={})
        except MatrixError as exc:
            if exc.status != 403:
                raise
            await self._invite(ghost, room_id, exc)
            await self._call("POST", f"{CS}/join/{q(room_id)}", ghost, json={})
        self.joined.add((ghost, room_id))

    async def _invite(self, ghost: str, room_id: str, refused: MatrixError) -> None:
        """Have the bridge account invite `ghost` into a room it may not join by itself."""
        try:
            await self._call("POST", f"{CS}/rooms/{q(room_id)}/invite", json={"user_id": ghost})
        except MatrixError as exc:
            if exc.status != 403:
                raise
            if room_id not in self.refused_rooms:
                self.refused_rooms.add(room_id)
                self.log.error(
                    "%s: people of other networks cannot join as Matrix users of their own: the "
                    "room refuses them (%s) and the bridge account %s may not invite them (%s); "
                    "give %s the power to invite, or make the room public. Meanwhile their "
                    "messages are sent by %s with their name in front", room_id, refused.error,
                    self.bot, exc.error, self.bot, self.bot)
            raise CannotJoin(room_id) from None

    # -- what the plug asks -----------------------------------------------------------------

    async def ready(self, user: User, room_id: str) -> str | None:
        """The ghost of `user`, registered, named and in the room, to send as; None when the
        message must go from the bridge account (a user of no network, or a room the ghost
        cannot join)."""
        ghost = self.ghost_id(user)
        if ghost is None:
            return None
        await self._register(ghost)
        await self._name(ghost, user.display)
        try:
            await self._join(ghost, room_id)
        except CannotJoin:
            return None
        return ghost

    async def leave(self, user: User, room_id: str, reason: str | None = None) -> None:
        """`user`'s ghost leaves the room, saying `reason` (a part or quit message)."""
        ghost = self.ghost_id(user)
        if ghost is None:
            return
        self.joined.discard((ghost, room_id))
        try:
            await self._call("POST", f"{CS}/rooms/{q(room_id)}/leave", ghost,
                             json={"reason": reason} if reason else {})
        except MatrixError as exc:  # not in the room (never joined it): nothing to leave
            self.log.debug("%s did not leave %s: %s", ghost, room_id, exc)

    async def move(self, before: User, after: User, room_id: str) -> str | None:
        """`before` is now known as `after`: the ghost goes with them and takes the new name."""
        old, new = self.key(before), self.key(after)
        ghost = self.ghost_id(before)
        if ghost is None or old is None or new is None:
            return None
        if old != new:
            self.moves.pop(old, None)
            self.moves[new] = ghost
            while len(self.moves) > MAX_MOVES:
                self.moves.pop(next(iter(self.moves)))
            self.owners = {v: k for k, v in self.moves.items()}
            await self.save(dict(self.moves))
        return await self.ready(after, room_id)


__all__ = ["CannotJoin", "Ghosts"]
