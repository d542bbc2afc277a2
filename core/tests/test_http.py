"""The HTTP listener (`[http] listen`): health, Prometheus metrics, status, plugin routes.

Every request goes over a real socket to a host running memory plugs, on both backends.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import types

import anyio
import h11
import pytest

import chanmux.http
from chanmux import Hook, HTTPError, Response, Route, hookimpl
from chanmux.host import ListenError
from chanmux.testing import make_host, run_host

import core_helpers as helpers

pytestmark = pytest.mark.anyio


class RoutesHook(Hook):
    """Serves /echo/{word}, /boom (raises) and /teapot (an HTTPError), and claims /health."""

    async def http_routes(self):
        return [Route("GET", "/echo/{word}", self.echo), Route("GET", "/boom", self.boom),
                Route("PUT", "/put/{txn}", self.take, secret="hs-secret"),
                Route("GET", "/teapot", self.teapot), Route("GET", "/health", self.echo),
                Route("GET", "/stream/{mode}", self.stream)]

    async def stream(self, request):
        mode = request.params["mode"]

        async def chunks():
            for i in range(100):
                if mode == "fail" and i == 50:
                    raise RuntimeError("homeserver went away")
                yield bytes([65 + i % 26]) * 10_000

        return Response(stream=chunks(), length=1_000_000 if mode != "chunked" else None,
                        content_type="image/png")

    async def echo(self, request):
        return Response.json({"word": request.params.get("word"), "q": request.query})

    async def take(self, request):
        return Response.json({"txn": request.params["txn"], "body": request.json()})

    async def boom(self, request):
        raise RuntimeError("handler bug")

    async def teapot(self, request):
        raise HTTPError(418, "short and stout", errcode="M_TEAPOT")


class BlockingHook(Hook):
    """Holds the event loop for 0.7 s on a message saying "block" (a bug the watchdog finds)."""

    async def on_receive(self, sent, source, primary):
        if sent.channel.plug == "a" and sent.text is not None and sent.text.plain == "block":
            time.sleep(0.7)


def _module() -> types.ModuleType:
    module = types.ModuleType("routes_plugin")

    @hookimpl
    def chanmux_hook_types():
        return {"routes": RoutesHook, "blocking": BlockingHook}

    module.chanmux_hook_types = chanmux_hook_types
    return module


MODULES = [("test-hooks", helpers.module()), ("routes", _module())]


def config(**http):
    return {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"relay": {"type": "queued-relay"}, "rec": {"type": "recorder"},
                  "routes": {"type": "routes"}},
        "host": {"reconnect_min": 0.001, "reconnect_max": 0.002, "hook_timeout": 10.0},
        "http": {"listen": "127.0.0.1:0", **http},
    }


async def request(host, method, path, *, headers=(), body=b"", raw: bytes | None = None):
    """(status, headers, body) of one request to the host's listener."""
    client = h11.Connection(h11.CLIENT)
    async with await anyio.connect_tcp("127.0.0.1", host.http.port) as stream:
        if raw is not None:
            await stream.send(raw)
        else:
            hdrs = [("Host", "test"), ("Content-Length", str(len(body))), *headers]
            await stream.send(client.send(h11.Request(method=method, target=path, headers=hdrs))
                              + client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage()))
        if raw is not None:
            client = h11.Connection(h11.CLIENT)
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
        status, got, data = None, {}, b""
        with anyio.fail_after(10):
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    try:
                        client.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        client.receive_data(b"")
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    got = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return status, got, data


def metric(text: bytes, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None if absent."""
    for line in text.decode().splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


async def test_metrics_move_as_messages_flow_and_show_a_plug_going_down(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        for i in range(3):
            await a.inject("#in", f"m{i}")
        await b.wait_for(lambda: len(b.sent) == 3)
        status, headers, text = await request(host, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert metric(text, "chanmux_messages_received_total", plug="a", channel="in") == 3
        assert metric(text, "chanmux_messages_relayed_total", plug="b", channel="out", kind="put") == 3
        assert metric(text, "chanmux_plug_up", plug="b") == 1
        assert metric(text, "chanmux_plug_state", plug="b", state="active") == 1
        assert metric(text, "chanmux_delivery_queue_depth", hook="relay", target="out") == 0
        assert metric(text, "chanmux_up") == 1
        assert metric(text, "chanmux_event_loop_lag_seconds_count") is not None

        b.fail_next_opens(10_000)
        b.fail("network gone")
        await host.hooks["rec"].wait_until(lambda: any(s[:2] == ("b", "failed")
                                                       for s in host.hooks["rec"].states))
        await a.inject("#in", "while down")
        await host.wait_idle()
        _, _, text = await request(host, "GET", "/metrics")
        assert metric(text, "chanmux_plug_up", plug="b") == 0
        assert metric(text, "chanmux_plug_state", plug="b", state="active") is None
        assert metric(text, "chanmux_delivery_queue_depth", hook="relay", target="out") == 1
        assert metric(text, "chanmux_messages_received_total", plug="a", channel="in") == 4
        assert metric(text, "chanmux_plug_connections_total", plug="b") == 1

        status, _, body = await request(host, "GET", "/health")
        health = json.loads(body)
        assert status == 200 and health["status"] == "degraded" and health["down"] == ["b"]

        status, _, body = await request(host, "GET", "/status")
        queued = json.loads(body)["queues"]
        assert status == 200 and len(queued) == 1
        assert queued[0]["hook"] == "relay" and queued[0]["target"] == "out"
        assert queued[0]["queued"] == 1 and queued[0]["waiting_for"]

        b.fail_next_opens(0)
        await host.until_ready("b", newer_than=1)
        await b.wait_for(lambda: b.texts()[-1:] == ["while down"])
        _, _, body = await request(host, "GET", "/health")
        assert json.loads(body)["status"] == "ok"
        _, _, text = await request(host, "GET", "/metrics")
        assert metric(text, "chanmux_plug_connections_total", plug="b") == 2
        assert metric(text, "chanmux_messages_relayed_total", plug="b", channel="out", kind="put") == 4


async def test_status_names_plugs_hooks_and_channels(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        await host.plugs["a"].inject("#in", "hello")
        await host.plugs["b"].wait_for(lambda: len(host.plugs["b"].sent) == 1)
        _, _, body = await request(host, "GET", "/status")
        status = json.loads(body)
        assert status["status"] == "ok" and status["running"] is True
        assert status["plugs"]["a"]["state"] == "active"
        assert status["plugs"]["b"]["connections"] == 1
        assert status["hooks"]["relay"]["state"] == "active"
        assert status["channels"]["in"]["last_received"] is not None
        assert status["channels"]["out"]["last_relayed"] is not None
        assert status["queues"] == []


async def test_a_token_guards_metrics_and_status_but_not_health(tmp_path):
    async with run_host(config(token="s3cret"), path=tmp_path / "x.toml", modules=MODULES) as host:
        for path in ("/metrics", "/status"):
            status, headers, _ = await request(host, "GET", path)
            assert status == 401 and headers["www-authenticate"] == "Bearer"
            status, _, _ = await request(host, "GET", path, headers=[("Authorization", "Bearer nope")])
            assert status == 401
            status, _, _ = await request(host, "GET", path, headers=[("Authorization", "Bearer s3cret")])
            assert status == 200
        status, _, _ = await request(host, "GET", "/health")
        assert status == 200


async def test_plugin_routes_are_served_and_a_failing_one_answers_500(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        status, _, body = await request(host, "GET", "/echo/h%C3%A9llo?x=1&x=2")
        assert status == 200 and json.loads(body) == {"word": "héllo", "q": {"x": ["1", "2"]}}
        status, _, body = await request(host, "GET", "/boom")
        assert status == 500 and b"handler bug" not in body
        status, _, body = await request(host, "GET", "/teapot")
        assert status == 418 and json.loads(body) == {"errcode": "M_TEAPOT", "error": "short and stout"}
        status, _, _ = await request(host, "PUT", "/put/1", body=b"{}")
        assert status == 401
        status, _, body = await request(host, "PUT", "/put/t%2F1", body=b'{"a": [1]}',
                                        headers=[("Authorization", "Bearer hs-secret")])
        assert status == 200 and json.loads(body) == {"txn": "t/1", "body": {"a": [1]}}
        status, _, body = await request(host, "PUT", "/put/2", body=b"{not json",
                                        headers=[("Authorization", "Bearer hs-secret")])
        assert status == 400 and "not JSON" in json.loads(body)["error"]
        status, headers, _ = await request(host, "POST", "/echo/x")
        assert status == 405 and headers["allow"] == "GET"
        status, _, _ = await request(host, "GET", "/nothing/here")
        assert status == 404
        status, _, body = await request(host, "GET", "/health")   # the host's, not the plugin's
        assert status == 200 and "status" in json.loads(body)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("GET /boom failed: RuntimeError: handler bug" in e for e in errors)
    assert any(e.startswith("routes: route not served: two handlers for GET /health") for e in errors)


async def test_hostile_requests_get_an_answer_and_hold_nothing_up(tmp_path, monkeypatch):
    monkeypatch.setattr(chanmux.http, "MAX_BODY", 1024)
    monkeypatch.setattr(chanmux.http, "READ_TIMEOUT", 0.5)
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        status, _, _ = await request(host, "PUT", "/put/1", body=b"x" * 5000,
                                     headers=[("Authorization", "Bearer hs-secret")])
        assert status == 413
        status, _, _ = await request(host, "GET", "/", raw=b"NONSENSE\r\n\r\n")
        assert status == 400
        status, _, _ = await request(host, "GET", "/", raw=b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert status == 408   # the rest of the request never came
        # an idle connection is closed without an answer; meanwhile others are served
        async with await anyio.connect_tcp("127.0.0.1", host.http.port) as idle:
            status, _, _ = await request(host, "GET", "/health")
            assert status == 200
            with anyio.fail_after(5):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await idle.receive()


async def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = make_host(config(listen=f"127.0.0.1:{port}"), path=tmp_path / "x.toml", modules=MODULES)
        with pytest.raises(ListenError) as err:
            await host.run()
        assert str(err.value) == f"http.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
        assert host.plugs["a"].opens == 0


class _Watched(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.warnings: list[str] = []
        self.resumed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())
        elif "ran again" in record.getMessage():
            self.resumed.set()


async def test_a_hook_holding_the_event_loop_is_named_and_counted(tmp_path):
    cfg = config()
    cfg["hooks"]["blocker"] = {"type": "blocking"}
    cfg["host"]["loop_block_warning"] = 0.2
    watched = _Watched()
    logger = logging.getLogger("chanmux.watchdog")
    logger.addHandler(watched)
    try:
        async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
            await host.plugs["a"].inject("#in", "block")
            await host.wait_idle()
            await anyio.to_thread.run_sync(watched.resumed.wait, 10)
            _, _, text = await request(host, "GET", "/metrics")
    finally:
        logger.removeHandler(watched)
    assert len(watched.warnings) == 1, watched.warnings
    assert "event loop blocked for" in watched.warnings[0]
    assert "test_http.py" in watched.warnings[0] and "BlockingHook.on_receive" in watched.warnings[0]
    assert metric(text, "chanmux_event_loop_blocked_total") == 1
    assert metric(text, "chanmux_event_loop_lag_seconds_count") >= 1


async def test_published_texts_are_served_at_signed_expiring_links(tmp_path):
    cfg = config(public_url="https://bridge.example.org/")
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        link = await host.publish_text("irc", "line 1\nline 2 <b>not html</b>\n")
        assert link.startswith("https://bridge.example.org/text/")
        target = link.removeprefix("https://bridge.example.org")
        status, headers, body = await request(host, "GET", target)
        assert status == 200 and body == b"line 1\nline 2 <b>not html</b>\n"
        assert headers["content-type"] == "text/plain; charset=utf-8"
        status, _, body = await request(host, "GET", target[:-1] + ("0" if target[-1] != "0" else "1"))
        assert status == 403 and body == b"this link is not valid\n"
        status, _, body = await request(host, "GET", target.split("?")[0])
        assert status == 403 and b"lacks its signature" in body
        old = await host.publish_text("irc", "gone soon", ttl=-1)
        status, _, body = await request(host, "GET", old.removeprefix("https://bridge.example.org"))
        assert status == 403 and body == b"this link has expired\n"
        signed = host.public_link("/text/nothing-here")
        status, _, _ = await request(host, "GET", signed.removeprefix("https://bridge.example.org"))
        assert status == 404
        assert await host.links.prune() == 1      # the expired text is deleted
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        status, _, body = await request(host, "GET", target)   # the key is kept: links live on
        assert status == 200 and body.startswith(b"line 1")


async def test_without_public_url_no_link_is_made(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        assert await host.publish_text("irc", "text") is None
        assert host.public_link("/text/x") is None
        status, _, _ = await request(host, "GET", "/text/x")
        assert status == 404


async def test_a_streamed_answer_arrives_whole_and_a_failing_stream_is_cut_not_shortened(tmp_path, caplog):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        for mode in ("sized", "chunked"):
            status, headers, body = await request(host, "GET", f"/stream/{mode}")
            assert status == 200 and len(body) == 1_000_000 and body[:3] == b"AAA"
            assert headers["content-type"] == "image/png"
            assert ("content-length" in headers) == (mode == "sized")
        with pytest.raises(h11.RemoteProtocolError):   # the client sees it is incomplete
            await request(host, "GET", "/stream/fail")
        status, _, _ = await request(host, "GET", "/health")
        assert status == 200
    assert any("answer was cut short: RuntimeError: homeserver went away" in r.getMessage()
               for r in caplog.records)
