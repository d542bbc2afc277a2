"""FaultProxy: an HTTP/1.1 proxy in front of a real server that fails when a test says so.

The proxy listens on a free 127.0.0.1 port and forwards each request to the upstream (one
upstream connection per request; client connections are kept alive, as httpx reuses them).
A test programs faults, each for requests of one method whose path (without the query)
matches a regular expression, applied to the next `times` matching requests (``None``: until
cleared); where several match, the one programmed first applies::

    async with FaultProxy(synapse.base_url) as proxy:
        proxy.answer("PUT", r"/send/", 502, times=3)         # not forwarded
        proxy.answer("POST", r"/ping$", 502, forward=True)   # forwarded, then 502
        proxy.cut("PUT", r"/send/", keep=10)                 # forwarded, reply cut short
        proxy.drop("PUT", r"/send/")                         # forwarded, then no answer
        held = proxy.hold("POST", r"/login$")                # waits for held.release()
        ... point the client at proxy.base_url ...
        await held.wait()                                    # the request is being held

Every request is recorded in `exchanges` (method, path, the status the client got, the
upstream's status and the fault applied), so a test can assert what went through. The
upstream's replies are read whole (chunked or not) and passed on with a Content-Length, so a
long-poll is answered when the upstream answers it. An upstream that cannot be reached is
passed on as a connection closed without an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

#: Headers about one connection, not about the message: never passed on.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length"})
MAX_HEAD = 64 * 1024
MAX_LINE = 1024

#: What the proxy ends a connection on: the peer went away or sent something unreadable.
_GONE = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
         anyio.ClosedResourceError, anyio.DelimiterNotFound, ConnectionError, ValueError)


@dataclass
class Message:
    """One HTTP request or response: its first line's parts, headers and whole body."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def path(self) -> str:
        return self.start[1].split("?", 1)[0]


@dataclass
class Exchange:
    """One request through the proxy: `status` is what the client got (None: no answer),
    `upstream` what the upstream answered (None: not forwarded, or unreachable)."""

    method: str
    path: str
    status: int | None
    upstream: int | None
    fault: str | None
    upstream_chunked: bool = False


class Fault:
    """One programmed failure; `hits` counts the requests it was applied to."""

    def __init__(self, proxy: FaultProxy, kind: str, method: str, path: str, times: int | None,
                 **how: Any) -> None:
        self.proxy = proxy
        self.kind = kind
        self.method = method.upper()
        self.pattern = re.compile(path)
        self.times = times
        self.how = how
        self.hits = 0
        self.cleared = False
        self._released = anyio.Event()

    def __repr__(self) -> str:
        left = "until cleared" if self.times is None else f"{self.hits}/{self.times}"
        return f"<Fault {self.kind} {self.method} {self.pattern.pattern} {left}>"

    def applies(self, method: str, path: str) -> bool:
        return (not self.cleared and (self.times is None or self.hits < self.times)
                and method == self.method and self.pattern.search(path) is not None)

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def release(self) -> None:
        """Let the requests this (hold) fault holds, and those it would hold, go on."""
        self._released.set()

    async def wait(self, count: int | None = None, timeout: float = 20.0) -> None:
        """Wait until this fault was applied to `count` requests (default: all its `times`,
        or 1 for one until cleared)."""
        count = count if count is not None else (self.times or 1)
        await self.proxy.wait_for(lambda: self.hits >= count,
                                  f"{count} request(s) hit by {self!r}", timeout)


class FaultProxy:
    """The proxy; use as ``async with FaultProxy(upstream) as proxy`` (see the module doc)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FaultProxy forwards to http://host:port only, not {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._target = (parts.hostname, parts.port or 80)
        self.faults: list[Fault] = []
        self.exchanges: list[Exchange] = []
        #: client connections accepted so far (kept-alive ones count once)
        self.connections = 0
        self.port: int | None = None
        self._changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[SocketStream] | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the FaultProxy is not running (use it as an async context manager)")
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<FaultProxy {self.port} -> {self.upstream}, {len(self.exchanges)} exchanges>"

    async def __aenter__(self) -> Self:
        self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = self._listener.extra(SocketAttribute.local_port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._listener.serve, self._serve, self._tg)
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc)  # type: ignore[arg-type]
        finally:
            with anyio.CancelScope(shield=True):
                await self._listener.aclose()
            self.port = None

    # -- programming faults ------------------------------------------------------------------

    def answer(self, method: str, path: str, status: int, body: Any = None, *,
               times: int | None = 1, forward: bool = False) -> Fault:
        """Answer `status` with JSON `body` (default: a Matrix-style error) without forwarding;
        with `forward`, once the upstream has answered the forwarded request (a server that
        did the work and then failed)."""
        if body is None:
            body = {"errcode": "M_UNKNOWN", "error": f"HTTP {status} from the fault proxy"}
        return self._add(Fault(self, "answer", method, path, times, status=status, body=body,
                               forward=forward))

    def cut(self, method: str, path: str, keep: int, *, times: int | None = 1) -> Fault:
        """Forward; pass on the upstream's status and headers with the body cut after `keep`
        bytes (and a Content-Length saying so: a complete reply, truncated)."""
        return self._add(Fault(self, "cut", method, path, times, keep=keep))

    def drop(self, method: str, path: str, *, times: int | None = 1) -> Fault:
        """Forward, wait for the upstream's answer, then close the client's connection
        without answering."""
        return self._add(Fault(self, "drop", method, path, times))

    def hold(self, method: str, path: str, *, times: int | None = 1) -> Fault:
        """Keep matching requests until the fault's `release()` (or `clear`), then forward."""
        return self._add(Fault(self, "hold", method, path, times))

    def clear(self, *faults: Fault) -> None:
        """Stop these faults (default: all of them); held requests go on."""
        for fault in faults or list(self.faults):
            fault.cleared = True
            fault.release()
            if fault in self.faults:
                self.faults.remove(fault)

    def _add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _take(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.applies(method, path):
                fault.hits += 1
                self._notify()
                return fault
        return None

    # -- what went through -------------------------------------------------------------------

    def seen(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        """The exchanges so far, optionally of one method and a path regex."""
        pattern = re.compile(path) if path is not None else None
        return [e for e in self.exchanges if (method is None or e.method == method.upper())
                and (pattern is None or pattern.search(e.path))]

    async def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        """Wait until `condition()` holds (checked at each request); TimeoutError names `what`."""
        try:
            with anyio.fail_after(timeout):
                while not (result := condition()):
                    await self._changed.wait()
                return result
        except TimeoutError:
            last = "\n  ".join(map(repr, self.exchanges[-8:]))
            raise TimeoutError(f"waited {timeout:g}s for {what}; the last exchanges:\n  {last}") from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        self._notify()

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, stream: SocketStream) -> None:
        self.connections += 1
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                while True:
                    request = await _read_message(reader, request=True)
                    if not await self._handle(request, stream):
                        return
                    if (request.header("connection") or "").lower() == "close":
                        return
            except _GONE:
                return

    async def _handle(self, request: Message, client: SocketStream) -> bool:
        """Answer one request; False when the client's connection must be closed."""
        method, path = request.start[0].upper(), request.path
        fault = self._take(method, path)
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "answer":
            upstream = None
            if fault.how["forward"]:
                try:
                    upstream = int((await self._forward(request)).start[1])
                except (OSError, *_GONE):
                    pass
            status = fault.how["status"]
            body = json.dumps(fault.how["body"]).encode()
            self._record(Exchange(method, path, status, upstream, kind))
            await client.send(_response_head(status, [("Content-Type", "application/json")],
                                             len(body)) + body)
            return True
        if fault is not None and kind == "hold":
            await fault._released.wait()
        try:
            response = await self._forward(request)
        except (OSError, *_GONE):
            self._record(Exchange(method, path, None, None, kind))
            return False
        status = int(response.start[1])
        if kind == "drop":
            self._record(Exchange(method, path, None, status, kind, response.chunked))
            return False
        body = response.body[:fault.how["keep"]] if kind == "cut" else response.body
        self._record(Exchange(method, path, status, status, kind, response.chunked))
        await client.send(_response_head(status, response.headers, len(body), response.start[2])
                          + body)
        return True

    async def _forward(self, request: Message) -> Message:
        method, target, _version = request.start
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        if request.body or method.upper() in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(request.body))))
        headers.append(("Connection", "close"))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        async with await anyio.connect_tcp(*self._target) as upstream:
            await upstream.send(head.encode("latin-1") + b"\r\n" + request.body)
            reader = BufferedByteReceiveStream(upstream)
            while True:
                response = await _read_message(reader, request=False, method=method)
                if not response.start[1].startswith("1"):  # skip 100 Continue and the like
                    return response


def _response_head(status: int, headers: list[tuple[str, str]], length: int,
                   reason: str = "") -> bytes:
    kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
    kept.append(("Content-Length", str(length)))
    lines = [f"HTTP/1.1 {status} {reason or 'Fault Proxy'}"] + [f"{k}: {v}" for k, v in kept]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_message(reader: BufferedByteReceiveStream, *, request: bool,
                        method: str = "GET") -> Message:
    """Read one request (or response to `method`) with its whole body."""
    head = (await reader.receive_until(b"\r\n\r\n", MAX_HEAD)).decode("latin-1")
    first, *lines = head.split("\r\n")
    parts = first.split(" ", 2)
    if len(parts) < 2:
        raise ValueError(f"not an HTTP message: {first[:80]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not an HTTP header: {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    message = Message(start, headers)
    if not request and (method.upper() == "HEAD" or start[1] in ("204", "304")
                        or start[1].startswith("1")):
        return message
    if "chunked" in (message.header("transfer-encoding") or "").lower():
        message.chunked = True
        message.body = await _read_chunks(reader)
    elif (length := message.header("content-length")) is not None:
        message.body = await reader.receive_exactly(int(length)) if int(length) else b""
    elif not request:  # a response without a length ends with the connection
        chunks = []
        try:
            while True:
                chunks.append(await reader.receive())
        except anyio.EndOfStream:
            pass
        message.body = b"".join(chunks)
    return message


async def _read_chunks(reader: BufferedByteReceiveStream) -> bytes:
    chunks = []
    while True:
        size = int((await reader.receive_until(b"\r\n", MAX_LINE)).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.receive_until(b"\r\n", MAX_HEAD):  # trailers, up to a blank line
                pass
            return b"".join(chunks)
        chunks.append(await reader.receive_exactly(size))
        await reader.receive_exactly(2)


__all__ = ["Exchange", "Fault", "FaultProxy"]
