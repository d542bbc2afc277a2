"""The host's HTTP listener: health, metrics, status, and the routes plugins add.

Off unless ``[http] listen`` is set. One small HTTP/1.1 server (h11, a sans-I/O protocol
library) runs in the host's own task group on anyio, so it works on asyncio and trio alike and
stops with the host. The host serves ``/health``, ``/metrics`` (Prometheus text format) and
``/status``; a plug or hook adds routes by implementing the ``http_routes`` hook specification
(the Matrix application service, a media proxy):

    async def http_routes(self) -> list[Route]:
        return [Route("PUT", "/_matrix/app/v1/transactions/{txn}", self._transaction,
                      secret=self.config.hs_token)]

A route with a ``secret`` answers 401 unless the request carries ``Authorization: Bearer
<secret>``. Bodies are limited (`MAX_BODY`), a request must arrive within `READ_TIMEOUT` and
at most `MAX_CONNECTIONS` are served at once, so a slow or hostile client cannot hold the
bridge up. A handler that raises answers 500 and is logged once with its route; it never
stops the listener.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc
import attrs
import h11

from .errors import describe

log = logging.getLogger("chanmux.http")

#: Largest request body accepted (an application-service transaction can be large).
MAX_BODY = 32 * 1024 * 1024
#: Largest request line plus headers.
MAX_HEAD = 64 * 1024
#: Seconds a client has to send a whole request, and to stay idle between two on one connection.
READ_TIMEOUT = 30.0
#: Connections served at once; more wait to be accepted.
MAX_CONNECTIONS = 64

_REASONS = {200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request",
            401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
            429: b"Too Many Requests", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


class HTTPError(Exception):
    """Raise in a handler to answer `status` with ``{"error": message}`` (and optional
    extra JSON fields, e.g. Matrix's ``errcode``)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def response(self) -> Response:
        return Response.json({**self.extra, "error": str(self)}, status=self.status)


@attrs.frozen
class Request:
    """A request as a handler sees it: `path` as sent (percent-encoded, without the query),
    `params` the route's ``{name}`` segments (decoded: ``%2F`` in a segment is a ``/`` in its
    value, never a separator), `headers` with lower-case names."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    params: dict[str, str] = attrs.field(factory=dict)

    def json(self) -> Any:
        """The body as JSON; HTTPError 400 naming the problem when it is not."""
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"the body is not JSON: {exc}") from None


@attrs.frozen
class Response:
    """What a handler answers. For a large body (a file streamed from a homeserver) give
    `stream`, an async iterator of byte chunks, instead of `body`, and its `length` when known
    (else it is sent chunked); a stream that fails midway cuts the connection, so the client
    sees an incomplete answer, never a short file taken for whole."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    stream: AsyncIterator[bytes] | None = attrs.field(default=None, repr=False, eq=False)
    length: int | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode(), content_type)


Handler = Callable[[Request], Awaitable[Response]]


@attrs.frozen
class Route:
    """`method` and `path` (``{name}`` matches one path segment) served by `handler`;
    with `secret`, only for requests bearing ``Authorization: Bearer <secret>``; with
    `signed`, only at a link the host gave out (`Host.public_link`) that has not expired."""

    method: str
    path: str
    handler: Handler
    secret: str | None = attrs.field(default=None, repr=False)
    #: only for requests to a link the host signed (`Host.public_link`): 403 otherwise
    signed: bool = False
    pattern: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"a route's path starts with /, got {self.path!r}")
        parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.path)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        object.__setattr__(self, "pattern", re.compile(regex + r"\Z"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}

    def allows(self, request: Request) -> bool:
        if self.secret is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.secret.encode())


class Router:
    """Routes by path, then method: 404 for an unknown path, 405 for a known path with
    another method, 401 for a missing or wrong secret."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = []
        #: why a request may not have a signed route's answer (None: it may)
        self.refusal: Callable[[Request], str | None] = lambda request: "this bridge gives out no links"
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        for known in self.routes:
            if known.method == route.method and known.path == route.path:
                raise ValueError(f"two handlers for {route.method} {route.path}")
        self.routes.append(route)

    async def dispatch(self, request: Request) -> Response:
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(request.path)
            if params is None:
                continue
            if route.method != request.method and not (route.method == "GET" and request.method == "HEAD"):
                allowed.append(route.method)
                continue
            if not route.allows(request):
                return Response(401, b'{"error": "a valid Authorization: Bearer token is needed"}',
                                "application/json", (("WWW-Authenticate", "Bearer"),))
            if route.signed:
                refused = self.refusal(request)
                if refused is not None:
                    return Response.text(f"{refused}\n", 403)
            try:
                return await route.handler(attrs.evolve(request, params=params))
            except HTTPError as exc:
                return exc.response()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # one handler failing never stops the listener
                log.error("http: %s %s failed: %s", request.method, route.path, describe(exc),
                          exc_info=log.isEnabledFor(logging.DEBUG))
                return Response.json({"error": "internal error; the bridge's log says more"}, 500)
        if allowed:
            return Response(405, b'{"error": "method not allowed"}', "application/json",
                            (("Allow", ", ".join(sorted(set(allowed)))),))
        return Response.json({"error": f"nothing at {request.path}"}, 404)


class Listener:
    """Serves a Router on `address`:`port` until cancelled (`run` in a task group)."""

    def __init__(self, router: Router, address: str, port: int) -> None:
        self.router = router
        self.address = address
        self.port = port
        self._limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    async def bind(self) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        """Open the socket (OSError names why it cannot be: in use, not permitted)."""
        listener = await anyio.create_tcp_listener(local_host=self.address, local_port=self.port)
        if self.port == 0:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        return listener

    async def serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        async with listener, anyio.create_task_group() as tg:
            await listener.serve(self._connection, tg)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        try:
            async with self._limiter, stream:
                await self._serve_connection(stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass  # the client went away
        except Exception as exc:  # noqa: BLE001 - a streamed body that failed midway
            log.warning("http: an answer was cut short: %s", describe(exc))

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            try:
                with anyio.fail_after(READ_TIMEOUT):
                    request = await self._read(conn, stream)
            except TimeoutError:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return  # an idle keep-alive connection: just close it
                await self._send(conn, stream, Response.json({"error": "the request took too long"}, 408))
                return
            except _TooLarge:
                await self._send(conn, stream, Response.json(
                    {"error": f"the body is larger than {MAX_BODY} bytes"}, 413))
                return
            except h11.RemoteProtocolError as exc:
                await self._send(conn, stream, Response.json({"error": f"bad request: {exc}"}, 400))
                return
            if request is None:
                return
            response = await self.router.dispatch(request)
            await self._send(conn, stream, response, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive(65536)
                except anyio.EndOfStream:
                    data = b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                target = urlsplit(head.target.decode("latin-1"))
                headers: dict[str, str] = {}
                for name, value in head.headers:
                    key = name.decode("latin-1").lower()
                    text = value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
                return Request(head.method.decode("ascii", "replace").upper(), target.path or "/",
                               parse_qs(target.query), headers, bytes(body))

    async def _send(self, conn: h11.Connection, stream: anyio.abc.SocketStream, response: Response,
                    head: bool = False) -> None:
        headers = [("Content-Type", response.content_type), ("Cache-Control", "no-store"),
                   *response.headers]
        if response.stream is None:
            headers.insert(1, ("Content-Length", str(len(response.body))))
        elif response.length is not None:
            headers.insert(1, ("Content-Length", str(response.length)))
        try:
            data = conn.send(h11.Response(status_code=response.status, headers=headers,
                                          reason=_REASONS.get(response.status, b""))) or b""
            if response.stream is not None and not head:
                await stream.send(data)
                async for chunk in response.stream:
                    if chunk:
                        await stream.send(conn.send(h11.Data(data=chunk)) or b"")
                data = b""
            elif not head and response.body:
                data += conn.send(h11.Data(data=response.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            if response.stream is not None and conn.our_state is h11.SEND_BODY:
                raise anyio.BrokenResourceError from None  # a stream that ran long or short
            # no request was read (a broken or unfinished head): h11 cannot answer, so say
            # it ourselves, once, and close
            reason = _REASONS.get(response.status, b"")
            data = b"".join([b"HTTP/1.1 %d %s\r\n" % (response.status, reason),
                             *(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers),
                             b"Content-Length: %d\r\n" % len(response.body),
                             b"Connection: close\r\n\r\n", response.body])
        await stream.send(data)


class _TooLarge(Exception):
    pass
