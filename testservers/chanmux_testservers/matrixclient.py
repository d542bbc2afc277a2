"""HumanMatrix: a small, real Matrix client that plays the human in tests.

Built on ``httpx.AsyncClient``, so it runs under anyio with asyncio or trio. It
speaks the client-server API (v3) directly, sends plaintext only (``encrypted=True``
on ``create_room`` just turns on the room's encryption state), and waits for
things by long-polling ``/sync``; it never sleeps to synchronise::

    async with HumanMatrix(hs.base_url, user_id, token) as alice:
        room = await alice.create_room(name="test", invite=[bot_id])
        await alice.send_text(room, "hello")
        reply = await alice.sync_until(lambda ev: ev["sender"] == bot_id, timeout=20)

``sync_until`` keeps a cursor: each call looks at the events after the one the
previous call returned (already-fetched ones first), so consecutive waits see
events in order and nothing fetched in between is lost. ``events`` holds every
timeline event seen, each with ``room_id`` added; ``typing`` who types in each room, as
the last ``m.typing`` said (``wait_for_typing`` waits for a change).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import anyio
import httpx

Event = dict[str, Any]

_CS = "/_matrix/client/v3"


class MatrixError(Exception):
    """A non-2xx answer from the homeserver."""

    def __init__(self, status: int, body: dict[str, Any], method: str, path: str) -> None:
        self.status = status
        self.body = body
        self.errcode: str | None = body.get("errcode")
        self.error: str | None = body.get("error")
        #: Milliseconds to wait before retrying, for ``M_LIMIT_EXCEEDED``.
        self.retry_after_ms: int | None = body.get("retry_after_ms")
        super().__init__(f"{method} {path}: HTTP {status} {self.errcode}: {self.error}")


def _q(part: str) -> str:
    """Percent-encode one path segment (room IDs, aliases, event IDs...)."""
    return quote(part, safe="")


def _text_content(body: str, html: str | None, msgtype: str) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    return content


class HumanMatrix:
    """A Matrix user driven by a test, authenticated with an access token.

    Args:
        base_url: homeserver base URL, e.g. ``Synapse.base_url``.
        user_id: full Matrix ID of the user.
        access_token: the user's access token.
        device_id: optional, for reference only.
        timeout: HTTP timeout for ordinary requests, in seconds.
        timeline_limit: how many timeline events per room one /sync may return.
    """

    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str,
        *,
        device_id: str | None = None,
        timeout: float = 30.0,
        timeline_limit: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=timeout,
        )
        self._txn_prefix = uuid.uuid4().hex[:12]
        self._txn_counter = itertools.count()
        self._filter = json.dumps({"room": {"timeline": {"limit": timeline_limit}}})
        #: The ``next_batch`` token of the last /sync (None before the first).
        self.since: str | None = None
        #: Every timeline event seen by /sync, in order, each with ``room_id`` added.
        self.events: list[Event] = []
        #: Pending invites seen by /sync: room_id -> stripped invite state events.
        self.invites: dict[str, list[Event]] = {}
        #: Who types in each joined room, by the last ``m.typing`` /sync gave: room_id -> user IDs.
        self.typing: dict[str, list[str]] = {}
        self._cursor = 0

    # -- plumbing -------------------------------------------------------------

    async def __aenter__(self) -> HumanMatrix:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    def _txn(self) -> str:
        return f"{self._txn_prefix}-{next(self._txn_counter)}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one API request; return the JSON body or raise ``MatrixError``."""
        r = await self._http.request(
            method,
            path,
            json=json,
            params=params,
            content=content,
            headers=headers,
            timeout=timeout if timeout is not None else self.timeout,
        )
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {"error": r.text}
            if not isinstance(body, dict):
                body = {"error": str(body)}
            raise MatrixError(r.status_code, body, method, path)
        return r.json() if r.content else {}

    # -- account and rooms ----------------------------------------------------

    async def whoami(self) -> str:
        """The user ID the access token belongs to (checks the token works)."""
        return (await self.request("GET", f"{_CS}/account/whoami"))["user_id"]

    async def set_displayname(self, name: str) -> None:
        """Set this user's display name."""
        await self.request(
            "PUT", f"{_CS}/profile/{_q(self.user_id)}/displayname", json={"displayname": name}
        )

    async def create_room(
        self,
        name: str | None = None,
        alias: str | None = None,
        invite: Iterable[str] = (),
        is_direct: bool = False,
        encrypted: bool = False,
        *,
        preset: str = "private_chat",
        topic: str | None = None,
        initial_state: Iterable[Event] = (),
    ) -> str:
        """Create a room; return its ID. ``alias`` is a localpart or ``#local:server``.

        ``preset`` is ``private_chat`` (invite only), ``public_chat`` or
        ``trusted_private_chat``.
        """
        body: dict[str, Any] = {"preset": preset, "is_direct": is_direct}
        if name is not None:
            body["name"] = name
        if topic is not None:
            body["topic"] = topic
        if alias is not None:
            body["room_alias_name"] = alias.lstrip("#").split(":", 1)[0]
        invitees = list(invite)
        if invitees:
            body["invite"] = invitees
        state = list(initial_state)
        if encrypted:
            state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        if state:
            body["initial_state"] = state
        return (await self.request("POST", f"{_CS}/createRoom", json=body))["room_id"]

    async def join(self, room_id_or_alias: str) -> str:
        """Join a room by ID or alias; return the room ID."""
        data = await self.request("POST", f"{_CS}/join/{_q(room_id_or_alias)}", json={})
        self.invites.pop(data["room_id"], None)
        return data["room_id"]

    async def leave(self, room_id: str) -> None:
        """Leave a room."""
        await self.request("POST", f"{_CS}/rooms/{_q(room_id)}/leave", json={})

    async def invite(self, room_id: str, user_id: str) -> None:
        """Invite ``user_id`` into the room."""
        await self.request(
            "POST", f"{_CS}/rooms/{_q(room_id)}/invite", json={"user_id": user_id}
        )

    async def resolve_alias(self, alias: str) -> str:
        """The room ID an alias points to."""
        return (await self.request("GET", f"{_CS}/directory/room/{_q(alias)}"))["room_id"]

    async def joined_members(self, room_id: str) -> list[str]:
        """User IDs currently joined to the room."""
        data = await self.request("GET", f"{_CS}/rooms/{_q(room_id)}/joined_members")
        return sorted(data["joined"])

    # -- sending --------------------------------------------------------------

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send any message event; return its event ID."""
        path = f"{_CS}/rooms/{_q(room_id)}/send/{_q(event_type)}/{self._txn()}"
        return (await self.request("PUT", path, json=content))["event_id"]

    async def send_text(
        self, room_id: str, body: str, html: str | None = None, msgtype: str = "m.text"
    ) -> str:
        """Send an ``m.room.message`` (plain, or with an HTML ``formatted_body``)."""
        return await self.send_event(room_id, "m.room.message", _text_content(body, html, msgtype))

    async def send_emote(self, room_id: str, body: str, html: str | None = None) -> str:
        """Send an ``m.emote`` (``/me``) message."""
        return await self.send_text(room_id, body, html, msgtype="m.emote")

    async def send_notice(self, room_id: str, body: str, html: str | None = None) -> str:
        """Send an ``m.notice`` message."""
        return await self.send_text(room_id, body, html, msgtype="m.notice")

    async def edit(
        self,
        room_id: str,
        event_id: str,
        new_body: str,
        new_html: str | None = None,
        msgtype: str = "m.text",
    ) -> str:
        """Replace the content of ``event_id`` (an ``m.replace`` edit); return the edit's ID."""
        content = _text_content(f"* {new_body}", f"* {new_html}" if new_html else None, msgtype)
        content["m.new_content"] = _text_content(new_body, new_html, msgtype)
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
        return await self.send_event(room_id, "m.room.message", content)

    async def reply(
        self, room_id: str, parent_event_id: str, body: str, html: str | None = None
    ) -> str:
        """Send a reply to ``parent_event_id`` (``m.relates_to.m.in_reply_to``)."""
        content = _text_content(body, html, "m.text")
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": parent_event_id}}
        return await self.send_event(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """Annotate ``event_id`` with a reaction ``key`` (e.g. an emoji)."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def set_typing(self, room_id: str, typing: bool = True, timeout: float = 30.0) -> None:
        """Say that this user is typing in the room (for ``timeout`` seconds), or no longer."""
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = int(timeout * 1000)
        await self.request(
            "PUT", f"{_CS}/rooms/{_q(room_id)}/typing/{_q(self.user_id)}", json=body
        )

    async def relations(self, room_id: str, event_id: str, rel_type: str = "m.annotation",
                        event_type: str = "m.reaction") -> list[Event]:
        """The events that relate to ``event_id`` (its reactions, by default), not redacted."""
        path = (f"/_matrix/client/v1/rooms/{_q(room_id)}/relations/{_q(event_id)}/"
                f"{_q(rel_type)}/{_q(event_type)}")
        return (await self.request("GET", path, params={"limit": 100}))["chunk"]

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        """Redact (delete) ``event_id``; return the redaction event's ID."""
        path = f"{_CS}/rooms/{_q(room_id)}/redact/{_q(event_id)}/{self._txn()}"
        body = {"reason": reason} if reason is not None else {}
        return (await self.request("PUT", path, json=body))["event_id"]

    async def send_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        """Set a state event; return its event ID."""
        path = f"{_CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return (await self.request("PUT", path, json=content))["event_id"]

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        """The content of one state event."""
        path = f"{_CS}/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return await self.request("GET", path)

    async def set_room_name(self, room_id: str, name: str) -> str:
        """Set ``m.room.name``; return the event ID."""
        return await self.send_state(room_id, "m.room.name", {"name": name})

    async def set_room_topic(self, room_id: str, topic: str) -> str:
        """Set ``m.room.topic``; return the event ID."""
        return await self.send_state(room_id, "m.room.topic", {"topic": topic})

    # -- media ----------------------------------------------------------------

    async def upload(
        self, data: bytes, content_type: str, filename: str | None = None
    ) -> str:
        """Upload bytes to the media repository; return the ``mxc://`` URI."""
        params = {"filename": filename} if filename else None
        r = await self.request(
            "POST",
            "/_matrix/media/v3/upload",
            content=data,
            params=params,
            headers={"Content-Type": content_type},
        )
        return r["content_uri"]

    async def download(self, mxc: str) -> bytes:
        """Fetch the bytes behind an ``mxc://server/id`` URI (authenticated media)."""
        if not mxc.startswith("mxc://"):
            raise ValueError(f"not an mxc URI: {mxc!r}")
        server, media_id = mxc[len("mxc://") :].split("/", 1)
        path = f"/_matrix/client/v1/media/download/{_q(server)}/{_q(media_id)}"
        r = await self._http.get(path)
        if r.status_code >= 400:
            raise MatrixError(r.status_code, {"error": r.text}, "GET", path)
        return r.content

    # -- receiving ------------------------------------------------------------

    async def sync_once(self, timeout: float = 0.0) -> list[Event]:
        """One /sync call (long-polling up to ``timeout`` s); return the new timeline events."""
        params: dict[str, Any] = {"timeout": int(timeout * 1000), "filter": self._filter}
        if self.since is not None:
            params["since"] = self.since
        data = await self.request("GET", f"{_CS}/sync", params=params, timeout=timeout + 30)
        self.since = data["next_batch"]
        rooms = data.get("rooms", {})
        new: list[Event] = []
        for room_id, room in rooms.get("join", {}).items():
            self.invites.pop(room_id, None)
            for ev in room.get("timeline", {}).get("events", []):
                new.append({**ev, "room_id": room_id})
            for ev in room.get("ephemeral", {}).get("events", []):
                if ev.get("type") == "m.typing":
                    self.typing[room_id] = list(ev.get("content", {}).get("user_ids", []))
        for room_id, room in rooms.get("invite", {}).items():
            self.invites[room_id] = room.get("invite_state", {}).get("events", [])
        for room_id in rooms.get("leave", {}):
            self.invites.pop(room_id, None)
        self.events.extend(new)
        return new

    async def catch_up(self) -> None:
        """Sync now and make later ``sync_until`` calls ignore everything seen so far."""
        await self.sync_once(0)
        self._cursor = len(self.events)

    async def sync_until(
        self, predicate: Callable[[Event], bool], timeout: float = 20.0
    ) -> Event:
        """Return the first timeline event after the cursor that matches ``predicate``.

        Looks at already-fetched events first, then long-polls /sync. Raises
        ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        scanned = self._cursor
        with anyio.move_on_after(timeout):
            while True:
                # Unmatched events stay after the cursor, for the next call to see.
                for i in range(scanned, len(self.events)):
                    if predicate(self.events[i]):
                        self._cursor = i + 1
                        return self.events[i]
                scanned = len(self.events)
                left = max(0.0, deadline - time.monotonic())
                await self.sync_once(min(left, 10.0))
        raise TimeoutError(self._timeout_message(timeout))

    async def wait_for_typing(
        self, room_id: str, predicate: Callable[[list[str]], bool], timeout: float = 20.0
    ) -> list[str]:
        """Wait until who types in the room (user IDs) matches ``predicate``; return them."""
        with anyio.move_on_after(timeout):
            while True:
                now = self.typing.get(room_id, [])
                if predicate(now):
                    return now
                await self.sync_once(10.0)
        raise TimeoutError(f"{self.user_id}: typing in {room_id} is still "
                           f"{self.typing.get(room_id, [])} after {timeout}s")

    async def wait_for_invite(self, room_id: str | None = None, timeout: float = 20.0) -> str:
        """Wait until an invite (to ``room_id``, or any room) shows up in /sync; return the room ID."""
        with anyio.move_on_after(timeout):
            while True:
                for rid in self.invites:
                    if room_id is None or rid == room_id:
                        return rid
                await self.sync_once(10.0)
        raise TimeoutError(f"{self.user_id}: no invite{' to ' + room_id if room_id else ''} "
                           f"within {timeout}s")

    def _timeout_message(self, timeout: float) -> str:
        tail = [
            f"  {ev['room_id']} {ev.get('sender')} {ev.get('type')} {json.dumps(ev.get('content'))[:200]}"
            for ev in self.events[-10:]
        ]
        return (
            f"{self.user_id}: no matching event within {timeout}s "
            f"({len(self.events)} seen; last ones:)\n" + "\n".join(tail)
        )
