"""The media proxy: a file said on Matrix reaches other networks as a link anyone can open.

A host runs the Matrix plug against the real Synapse with its HTTP listener on and
``[http] public_url`` pointing at that listener, so the links in `File.url` are opened as
given, with a plain HTTP client, as a person on IRC would open them in a browser.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from chanmux import File
from chanmux.testing import run_host
from chanmux_testservers.synapse import free_port

from matrix_helpers import host_config

pytestmark = pytest.mark.anyio

#: httpx's default limit of connections to one homeserver: had the bridge kept open the
#: download of every link a person abandoned, this many would leave it no connection.
POOL = 100


def known_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@asynccontextmanager
async def media_bridge(synapse, bot, human, tmp_path, *, public: bool = True,
                       **plug: Any) -> AsyncIterator[tuple[Any, str, str]]:
    """A running host whose plug `mx` is in a new room of the human's, with its HTTP
    listener on a free port and (if `public`) its public_url pointing there: (host, room,
    the listener's URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    room = await human.create_room(name="media", preset="public_chat")
    config = host_config(synapse, bot, room, **plug)
    config["http"] = {"listen": f"127.0.0.1:{port}", **({"public_url": url} if public else {})}
    config["host"] = {"reconnect_min": 0.2, "reconnect_max": 1.0}
    async with run_host(config, path=tmp_path / "c.toml") as host:
        yield host, room, url


async def send_file(human, room: str, data: bytes, mime: str, name: str,
                    msgtype: str = "m.file") -> str:
    """The human uploads `data` and sends it to `room`; returns its mxc URI."""
    mxc = await human.upload(data, mime, name)
    await human.send_event(room, "m.room.message", {
        "msgtype": msgtype, "body": name, "filename": name, "url": mxc,
        "info": {"mimetype": mime, "size": len(data)}})
    return mxc


async def received_file(host, name: str) -> File:
    """The file called `name` once the host has received it from the plug's room."""
    here = host.channels["room"]
    got = await host.hooks["rec"].wait_for(
        lambda r: r.sent.channel == here and r.sent.attachments
        and r.sent.attachments[0].title == name, timeout=20)
    (file,) = got.sent.attachments
    return file


def assert_served_safely(response: httpx.Response, disposition: str) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["content-disposition"].startswith(disposition + ";")


async def test_a_file_from_matrix_is_a_link_that_serves_its_bytes(synapse, bot, human, tmp_path):
    data = known_bytes(300_000)
    image = b"\x89PNG\r\n\x1a\n" + known_bytes(20_000, seed=2)
    async with media_bridge(synapse, bot, human, tmp_path) as (host, room, url), \
            httpx.AsyncClient(timeout=30) as web:
        mxc = await send_file(human, room, data, "application/pdf", "rapport été.pdf")
        file = await received_file(host, "rapport été.pdf")
        assert re.match(r"https?://", file.url) and file.url.startswith(url + "/")
        assert mxc.split("/")[-1] in file.url and "mxc:" not in file.url
        got = await web.get(file.url)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-type"] == "application/pdf"
        assert got.headers["content-length"] == str(len(data))
        assert_served_safely(got, "attachment")
        assert got.headers["content-disposition"] == (
            "attachment; filename=\"rapport _t_.pdf\"; filename*=UTF-8''rapport%20%C3%A9t%C3%A9.pdf")
        assert await file.fetch() == data  # a plug that uploads files still gets the bytes

        await send_file(human, room, image, "image/png", "cat.png", msgtype="m.image")
        picture = await received_file(host, "cat.png")
        got = await web.get(picture.url)
        assert got.status_code == 200 and got.content == image
        assert got.headers["content-type"] == "image/png"
        assert_served_safely(got, "inline")  # a browser shows it
        head = await web.head(picture.url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(image))

        # what a browser would run or render as a page is only ever downloaded
        for mime, name in (("text/html", "page.html"), ("image/svg+xml", "drawing.svg")):
            await send_file(human, room, b"<svg onload=alert(1)><script>alert(1)</script>",
                            mime, name)
            got = await web.get((await received_file(host, name)).url)
            assert got.status_code == 200 and got.headers["content-type"] == mime
            assert_served_safely(got, "attachment")


async def test_a_changed_expired_or_empty_link_serves_nothing(synapse, bot, human, tmp_path):
    data = known_bytes(5_000)
    async with media_bridge(synapse, bot, human, tmp_path) as (host, room, url), \
            httpx.AsyncClient(timeout=30) as web:
        mxc = await send_file(human, room, data, "text/plain", "notes.txt")
        link = httpx.URL((await received_file(host, "notes.txt")).url)
        assert (await web.get(link)).content == data
        path = link.raw_path.decode().split("?")[0]
        signature = link.params["s"]

        changed = link.copy_set_param("s", signature[:-1] + ("0" if signature[-1] != "0" else "1"))
        got = await web.get(changed)
        assert (got.status_code, got.text) == (403, "this link is not valid\n")
        other = link.copy_with(raw_path=link.raw_path.replace(mxc.split("/")[-1].encode(), b"AAAA"))
        got = await web.get(other)
        assert (got.status_code, got.text) == (403, "this link is not valid\n")
        got = await web.get(f"{url}{path}")
        assert got.status_code == 403 and "signature" in got.text
        got = await web.get(host.public_link(path, ttl=-1))
        assert (got.status_code, got.text) == (403, "this link has expired\n")

        missing = host.public_link(path.replace(mxc.split("/")[-1], "NoSuchMediaHere"))
        got = await web.get(missing)
        assert got.status_code == 404 and "does not have this file" in got.text
        assert "Traceback" not in got.text and len(got.text) < 200
        assert (await web.get(link)).content == data


async def test_while_the_homeserver_is_down_a_link_says_so_and_works_once_it_is_back(
        synapse, bot, human, tmp_path):
    data = known_bytes(50_000)
    async with media_bridge(synapse, bot, human, tmp_path, send_retry_for=1.0) as (host, room, _), \
            httpx.AsyncClient(timeout=60) as web:
        await send_file(human, room, data, "application/octet-stream", "data.bin")
        link = (await received_file(host, "data.bin")).url
        await synapse.async_stop()
        try:
            with anyio.fail_after(20):  # not the plug's send_retry_for, nor a request timeout
                got = await web.get(link)
                assert got.status_code == 503 and "cannot be reached" in got.text
                rec = host.hooks["rec"]
                await rec.wait_until(lambda: any(s[:2] == ("mx", "failed") for s in rec.states))
                got = await web.get(link)  # while the plug is reconnecting
                assert got.status_code == 503 and "cannot be reached" in got.text
        finally:
            await synapse.async_start()
        await human.send_text(room, "back again")
        here = host.channels["room"]
        await host.hooks["rec"].wait_for(lambda r: r.sent.channel == here and r.sent.text
                                         and r.sent.text.plain == "back again", timeout=60)
        got = await web.get(link)
        assert got.status_code == 200 and got.content == data


async def test_downloads_people_abandon_do_not_use_up_the_bridge(synapse, bot, human, tmp_path):
    """Someone closes the tab while the file is still coming, again and again: the bridge
    closes each download from the homeserver, so it keeps relaying and serving files."""
    data = known_bytes(2_000_000)
    async with media_bridge(synapse, bot, human, tmp_path) as (host, room, url), \
            httpx.AsyncClient(timeout=30) as web:
        await send_file(human, room, data, "video/mp4", "film.mp4", msgtype="m.video")
        target = (await received_file(host, "film.mp4")).url.removeprefix(url).encode()
        request = b"GET " + target + b" HTTP/1.1\r\nHost: bridge\r\n\r\n"
        for _ in range(POOL + 5):
            async with await anyio.connect_tcp("127.0.0.1", host.http.port) as stream:
                await stream.send(request)
                first = await stream.receive()
                assert first.startswith(b"HTTP/1.1 200 ")
        for _ in range(POOL + 5):  # HEAD: the download is closed before its first byte
            assert (await web.head(url + target.decode())).status_code == 200
        await human.send_text(room, "still relaying")
        here = host.channels["room"]
        await host.hooks["rec"].wait_for(lambda r: r.sent.channel == here and r.sent.text
                                         and r.sent.text.plain == "still relaying", timeout=30)
        got = await web.get(url + target.decode())
        assert got.status_code == 200 and got.content == data


async def test_without_public_url_a_file_keeps_its_mxc_uri(synapse, bot, human, tmp_path):
    async with media_bridge(synapse, bot, human, tmp_path, public=False) as (host, room, url), \
            httpx.AsyncClient(timeout=30) as web:
        mxc = await send_file(human, room, b"plain", "text/plain", "plain.txt")
        file = await received_file(host, "plain.txt")
        assert file.url == mxc and await file.fetch() == b"plain"
        server, media_id = mxc.removeprefix("mxc://").split("/")
        got = await web.get(f"{url}/_chanmux/matrix/mx/media/{server}/{media_id}/plain.txt")
        assert (got.status_code, got.text) == (403, "this bridge gives out no links\n")
