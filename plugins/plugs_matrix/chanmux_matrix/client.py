"""HTTP to the homeserver: the client-server API calls the plug uses, with retries.

Every request retries what is worth retrying: ``M_LIMIT_EXCEEDED`` after the server's
``retry_after_ms``, 5xx answers, timeouts and refused or dropped connections with exponential
backoff and jitter. An outage is logged once when it starts and once when it ends, however
many requests fail meanwhile.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import anyio
import httpx

CS = "/_matrix/client/v3"
#: What an application service's ping is answered with (502/504) when the homeserver reached
#: no service or a refusing one: an answer, not an outage of the homeserver.
PING_ANSWERS = frozenset({"M_CONNECTION_FAILED", "M_CONNECTION_TIMEOUT", "M_BAD_STATUS"})
MEDIA_DOWNLOAD = "/_matrix/client/v1/media/download"
MEDIA_UPLOAD = "/_matrix/media/v3/upload"


def q(part: str) -> str:
    """Percent-encode one path segment (room ids, aliases, event ids)."""
    return quote(part, safe="")


class MatrixError(Exception):
    """The homeserver answered with an error that retrying will not fix."""

    def __init__(self, status: int, body: dict[str, Any], method: str, path: str) -> None:
        self.status = status
        self.errcode: str | None = body.get("errcode")
        self.error: str | None = body.get("error")
        self.retry_after_ms: int | None = body.get("retry_after_ms")
        super().__init__(f"{method} {path.split('?')[0]}: HTTP {status} {self.errcode}: {self.error}")


class HomeserverUnavailable(ConnectionError):
    """The homeserver did not answer (or only with 5xx) for longer than the retry window."""


class Outage:
    """Tracks one outage of the homeserver so it is logged once when it starts and ends."""

    def __init__(self, log: logging.Logger, where: str) -> None:
        self.log = log
        self.where = where
        self.since: float | None = None
        self.count = 0
        #: called when an outage ends (the homeserver may have lost what it was about to push)
        self.on_end: Callable[[], None] | None = None

    def failed(self, reason: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.count += 1
            self.log.warning("homeserver %s unreachable (%s); retrying with backoff until it answers",
                             self.where, reason)

    def answered(self) -> None:
        if self.since is not None:
            self.log.info("homeserver %s answers again after %.1fs", self.where,
                          time.monotonic() - self.since)
            self.since = None
            if self.on_end is not None:
                self.on_end()

    @property
    def duration(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class MatrixClient:
    """An authenticated client-server API session over one `httpx.AsyncClient`."""

    def __init__(self, base_url: str, *, log: logging.Logger, timeout: float = 30.0,
                 retry_max_delay: float = 10.0, outage: Outage | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.log = log
        self.timeout = timeout
        self.retry_max_delay = retry_max_delay
        self.token: str | None = None
        self.outage = outage or Outage(log, self.base_url)
        self.rate_limited = 0
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       follow_redirects=True)

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None, content: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout: float | None = None,
                      retry_for: float | None = None, raw: bool = False, stream: bool = False,
                      on_retry: Callable[[], None] | None = None) -> Any:
        """Send a request and return its JSON body (or the response when `raw`; with `stream`,
        the response with its body not read yet, which the caller must close).

        Transient failures are retried with backoff for `retry_for` seconds (None: until it
        works or the caller is cancelled), then HomeserverUnavailable is raised: no answer, 5xx,
        429, and a success whose body was cut short (asked again: a send keeps its path, so
        its transaction id, and the homeserver answers with the event it made the first
        time). Errors the server means (4xx other than 429) raise MatrixError at once.
        """
        deadline = None if retry_for is None else time.monotonic() + retry_for
        delay = 0.25
        while True:
            wait: float | None = None
            try:
                response = await self._send(
                    method, path, stream, json=json, params=params, content=content,
                    headers=self._headers(headers),
                    timeout=self.timeout if timeout is None else timeout)
            except httpx.TransportError as exc:
                if self._http.is_closed:
                    raise HomeserverUnavailable("the plug is closed") from exc
                self.outage.failed(_describe(exc))
                reason = _describe(exc)
            except RuntimeError as exc:  # httpx: "Cannot send a request, as the client has been closed"
                if self._http.is_closed:
                    raise HomeserverUnavailable("the plug is closed") from exc
                raise
            else:
                status = response.status_code
                if status < 500:
                    self.outage.answered()
                if status < 400:
                    if raw or stream:
                        return response
                    if not response.content:
                        return {}
                    try:
                        return response.json()
                    except ValueError:  # cut short: ask again (a send keeps its txn id)
                        reason = (f"HTTP {status} with a reply cut short "
                                  f"({len(response.content)} bytes)")
                        self.log.debug("%s %s: %s", method, path.split("?")[0], reason)
                else:
                    body = _json_body(response)
                    if status == 429 or body.get("errcode") == "M_LIMIT_EXCEEDED":
                        self.rate_limited += 1
                        wait = _retry_after(response, body)
                        reason = f"rate limited; waiting {wait:.2f}s"
                        self.log.debug("%s %s: %s", method, path.split("?")[0], reason)
                    elif status >= 500 and body.get("errcode") in PING_ANSWERS:
                        raise MatrixError(status, body, method, path)  # the service's fault
                    elif status >= 500:
                        reason = f"HTTP {status} {body.get('errcode') or ''}".strip()
                        self.outage.failed(reason)
                    else:
                        raise MatrixError(status, body, method, path)
            if on_retry is not None:
                on_retry()
            if wait is None:
                wait = delay * random.uniform(0.5, 1.0)
                delay = min(delay * 2, self.retry_max_delay)
                if deadline is not None and time.monotonic() + wait > deadline:
                    raise HomeserverUnavailable(
                        f"{method} {path.split('?')[0]}: no answer from {self.base_url} "
                        f"within {retry_for:.0f}s ({reason})")
            await anyio.sleep(wait)

    async def _send(self, method: str, path: str, stream: bool, **options: Any) -> httpx.Response:
        """One request; with `stream`, a success comes back with its body unread (an error's
        body is read, as it is small and says what went wrong)."""
        if not stream:
            return await self._http.request(method, path, **options)
        response = await self._http.send(self._http.build_request(method, path, **options),
                                         stream=True)
        if response.status_code >= 400:
            try:
                await response.aread()
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
        return response

    # -- the API calls the plug uses ---------------------------------------------------------

    async def versions(self, retry_for: float | None = None) -> dict[str, Any]:
        return await self.request("GET", "/_matrix/client/versions", retry_for=retry_for)

    async def whoami(self, retry_for: float | None = None) -> dict[str, Any]:
        return await self.request("GET", f"{CS}/account/whoami", retry_for=retry_for)

    async def login(self, user_id: str, password: str, device_id: str | None,
                    device_name: str, retry_for: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "initial_device_display_name": device_name,
        }
        if device_id:
            body["device_id"] = device_id
        return await self.request("POST", f"{CS}/login", json=body, retry_for=retry_for)

    async def sync(self, since: str | None, filter_json: str, timeout: float,
                   on_retry: Callable[[], None] | None = None,
                   retry_for: float | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"filter": filter_json, "timeout": int(timeout * 1000),
                                  "set_presence": "offline"}
        if since:
            params["since"] = since
        return await self.request("GET", f"{CS}/sync", params=params,
                                  timeout=timeout + self.timeout, on_retry=on_retry,
                                  retry_for=retry_for)

    async def messages(self, room_id: str, start: str, end: str | None, direction: str,
                       filter_json: str, limit: int = 100, retry_for: float | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"from": start, "dir": direction, "limit": limit, "filter": filter_json}
        if end:
            params["to"] = end
        return await self.request("GET", f"{CS}/rooms/{q(room_id)}/messages", params=params,
                                  retry_for=retry_for)

    async def send(self, room_id: str, event_type: str, txn: str, content: dict[str, Any],
                   retry_for: float | None = None, as_user: str | None = None) -> str:
        """Send an event; `as_user` (an application service's user) sends it as that user."""
        path = f"{CS}/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn)}"
        return (await self.request("PUT", path, json=content, params=_as(as_user),
                                   retry_for=retry_for))["event_id"]

    async def redact(self, room_id: str, event_id: str, txn: str,
                     retry_for: float | None = None, as_user: str | None = None) -> str:
        path = f"{CS}/rooms/{q(room_id)}/redact/{q(event_id)}/{q(txn)}"
        return (await self.request("PUT", path, json={}, params=_as(as_user),
                                   retry_for=retry_for))["event_id"]

    async def ping(self, appservice_id: str, transaction_id: str,
                   retry_for: float | None = None) -> dict[str, Any]:
        """Ask the homeserver to call the application service's ping route with
        `transaction_id` (it also sends the transactions it kept for the service at once)."""
        return await self.request("POST", f"/_matrix/client/v1/appservice/{q(appservice_id)}/ping",
                                  json={"transaction_id": transaction_id}, retry_for=retry_for)

    async def join(self, room: str, retry_for: float | None = None) -> str:
        return (await self.request("POST", f"{CS}/join/{q(room)}", json={},
                                   retry_for=retry_for))["room_id"]

    async def resolve_alias(self, alias: str, retry_for: float | None = None) -> str:
        return (await self.request("GET", f"{CS}/directory/room/{q(alias)}",
                                   retry_for=retry_for))["room_id"]

    async def state(self, room_id: str, event_type: str, state_key: str = "",
                    retry_for: float | None = None) -> dict[str, Any] | None:
        """The content of one state event, or None if the room has none."""
        path = f"{CS}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        try:
            return await self.request("GET", path, retry_for=retry_for)
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise

    async def event(self, room_id: str, event_id: str, retry_for: float | None = None) -> dict[str, Any]:
        return await self.request("GET", f"{CS}/rooms/{q(room_id)}/event/{q(event_id)}",
                                  retry_for=retry_for)

    async def joined_members(self, room_id: str, retry_for: float | None = None) -> dict[str, Any]:
        return (await self.request("GET", f"{CS}/rooms/{q(room_id)}/joined_members",
                                   retry_for=retry_for)).get("joined", {})

    async def joined_rooms(self, retry_for: float | None = None) -> list[str]:
        return (await self.request("GET", f"{CS}/joined_rooms", retry_for=retry_for)).get("joined_rooms", [])

    async def set_displayname(self, user_id: str, name: str, retry_for: float | None = None) -> None:
        await self.request("PUT", f"{CS}/profile/{q(user_id)}/displayname",
                           json={"displayname": name}, retry_for=retry_for)

    async def displayname(self, user_id: str, retry_for: float | None = None) -> str | None:
        try:
            data = await self.request("GET", f"{CS}/profile/{q(user_id)}/displayname",
                                      retry_for=retry_for)
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise
        return data.get("displayname")

    async def upload(self, data: bytes, mime: str, filename: str | None,
                     retry_for: float | None = None) -> str:
        params = {"filename": filename} if filename else None
        return (await self.request("POST", MEDIA_UPLOAD, content=data, params=params,
                                   headers={"Content-Type": mime or "application/octet-stream"},
                                   retry_for=retry_for))["content_uri"]

    async def download(self, mxc: str, retry_for: float | None = None) -> bytes:
        """The bytes behind an ``mxc://server/id`` URI, through the authenticated media API."""
        if not mxc.startswith("mxc://") or "/" not in mxc[6:]:
            raise ValueError(f"not an mxc URI: {mxc!r}")
        server, media_id = mxc[6:].split("/", 1)
        response = await self.request("GET", f"{MEDIA_DOWNLOAD}/{q(server)}/{q(media_id)}",
                                      raw=True, retry_for=retry_for)
        return response.content

    async def open_download(self, server: str, media_id: str,
                            retry_for: float | None = None) -> Download:
        """Start downloading ``mxc://server/media_id`` through the authenticated media API:
        its type and length are known when this returns, its bytes come from
        `Download.chunks` as they arrive (never held whole in memory). MatrixError when the
        homeserver refuses it (404: it has no such file), HomeserverUnavailable when it does
        not answer within `retry_for`."""
        response = await self.request("GET", f"{MEDIA_DOWNLOAD}/{q(server)}/{q(media_id)}",
                                      headers={"Accept-Encoding": "identity"}, stream=True,
                                      retry_for=retry_for)
        return await Download.start(response)


class Download:
    """A file being read from the homeserver: `content_type` and `length` (None when not
    given) as the homeserver said, and `chunks`, its bytes as they arrive.

    The response is closed however the reading ends: all bytes read, a failure (the
    exception goes on to the reader), `aclose()`, or `chunks` dropped unfinished (the event
    loop finalizes an async generator it no longer reaches, on asyncio and trio alike). That
    is why `start` steps into the generator at once: from then on its ``finally`` is armed,
    even if nobody ever asks for a byte.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.content_type: str | None = response.headers.get("content-type")
        length = response.headers.get("content-length", "")
        self.length: int | None = int(length) if length.isdigit() else None
        self._reader = self._read(response)
        self.chunks: AsyncIterator[bytes] = self._reader

    @classmethod
    async def start(cls, response: httpx.Response) -> Download:
        download = cls(response)
        await anext(download.chunks)
        return download

    @staticmethod
    async def _read(response: httpx.Response) -> AsyncGenerator[bytes, None]:
        try:
            yield b""  # the step `start` takes
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def aclose(self) -> None:
        """Stop reading and close the response (nothing happens if it is closed already)."""
        await self._reader.aclose()


def _as(user_id: str | None) -> dict[str, str] | None:
    """The query parameter with which an application service acts as one of its users."""
    return {"user_id": user_id} if user_id else None


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": response.text[:200]}
    return body if isinstance(body, dict) else {"error": str(body)[:200]}


def _retry_after(response: httpx.Response, body: dict[str, Any]) -> float:
    """Seconds to wait after a 429: the body's retry_after_ms, else Retry-After, else 1s."""
    ms = body.get("retry_after_ms")
    if isinstance(ms, (int, float)) and ms >= 0:
        return min(ms / 1000, 300.0)
    header = response.headers.get("Retry-After")
    if header:
        try:
            return min(float(header), 300.0)
        except ValueError:
            pass
    return 1.0


__all__ = ["Download", "HomeserverUnavailable", "MatrixClient", "MatrixError", "Outage", "q"]
