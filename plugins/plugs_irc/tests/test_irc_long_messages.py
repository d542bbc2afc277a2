"""A message longer than `max_lines` reaches IRC as its first lines and a link to its whole
text, served by the bridge's own HTTP listener (real ngircd, a real host with `[http]`, the
link fetched over HTTP); without links it ends with the truncation notice as before."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from chanmux import Channel, Delivery, DeliveryQueues, Message, User, current_key
from chanmux.testing import run_host

from irc_helpers import host_config, human, lines_from, sees, unique

pytestmark = pytest.mark.anyio

PUBLIC = "https://bridge.example.org"
LINK = re.compile(r"^<Alice> \(full message at <(https://bridge\.example\.org/text/[\w-]+"
                  r"\?e=\d+&s=[0-9a-f]+)>\)$")
ALICE = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="Alice")
FORTY = "\n".join(f"line {i}: the quick brown fox" for i in range(1, 41))


def config(server: Any, chan: str, http: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    cfg = host_config(server, unique("b"), {"room": chan}, max_lines=5, **keys)
    if http is not None:
        cfg["http"] = http
    return cfg


def with_links() -> dict[str, Any]:
    """The listener on a free loopback port; people reach it at PUBLIC (a reverse proxy)."""
    return {"listen": "127.0.0.1:0", "public_url": PUBLIC + "/"}


async def fetch(host: Any, link: str) -> httpx.Response:
    """GET `link` from the listener, as the proxy at PUBLIC would pass it on."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(host.http.url + link.removeprefix(PUBLIC))


async def published(host: Any) -> int:
    """Texts the bridge keeps for links (core's table `chanmux_published`)."""
    return await host.store.transaction(
        lambda conn: conn.execute(sa.text("SELECT count(*) FROM chanmux_published")).scalar_one())


async def said(a: Any, host: Any, chan: str, msg: Message, *, nick: str | None = None) -> list[str]:
    """Put `msg`, then a marker; the texts of the lines the human saw for `msg`."""
    nick = nick or host.plugs["irc"].nick
    mark = a.mark()
    room = host.channels["room"]
    await host.put(room, msg)
    await host.put(room, Message(text="(end)", user=msg.user))
    await sees(a, nick, lambda s: s.plain.endswith("(end)"), target=chan, since=mark)
    return [l.text for l in lines_from(a, nick, chan, since=mark)][:-1]


async def test_a_long_message_is_its_first_lines_and_a_link_to_the_whole_text(ngircd, tmp_path):
    chan = "#" + unique("long")
    async with run_host(config(ngircd, chan, with_links()), path=tmp_path / "b.toml",
                        wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        five = "\n".join(f"short {i}" for i in range(1, 6))
        assert await said(a, host, chan, Message(text=five, user=ALICE)) == [
            f"<Alice> short {i}" for i in range(1, 6)]           # within max_lines: as before
        assert await published(host) == 0

        got = await said(a, host, chan, Message(text=FORTY, user=ALICE))
        assert len(got) == 5
        assert got[:4] == [f"<Alice> line {i}: the quick brown fox" for i in range(1, 5)]
        match = LINK.match(got[4])
        assert match, got[4]
        page = await fetch(host, match[1])
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/plain; charset=utf-8"
        assert page.text == "<Alice> " + FORTY + "\n"            # who wrote it, and all of it
        assert await published(host) == 1

        action = await said(a, host, chan, Message(text=FORTY, user=ALICE, action=True))
        assert action[0] == "* Alice line 1: the quick brown fox" and len(action) == 5
        link = action[4].removeprefix("* Alice (full message at <").removesuffix(">)")
        assert (await fetch(host, link)).text == "* Alice " + FORTY + "\n"


async def test_a_puppet_ends_a_long_message_with_the_link_too(ngircd, tmp_path):
    chan = "#" + unique("plong")
    async with run_host(config(ngircd, chan, with_links(), puppets=True),
                        path=tmp_path / "b.toml", wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        got = await said(a, host, chan, Message(text=FORTY, user=ALICE), nick="Alice[b]")
        assert got[:4] == [f"line {i}: the quick brown fox" for i in range(1, 5)]
        assert len(got) == 5 and got[4].startswith(f"(full message at <{PUBLIC}/text/")
        page = await fetch(host, got[4].removeprefix("(full message at <").removesuffix(">)"))
        assert page.text == "<Alice> " + FORTY + "\n"            # the page still names her


@pytest.mark.parametrize("http, keys", [
    (None, {}),                                                  # no listener, no public_url
    ({"listen": "127.0.0.1:0"}, {}),                             # a listener, no public_url
    (with_links(), {"long_messages": "truncate"}),               # links there, but not wanted
], ids=["no-http", "no-public-url", "truncate"])
async def test_without_links_a_long_message_ends_with_the_truncation_notice(
        ngircd, tmp_path, http, keys):
    chan = "#" + unique("trunc")
    async with run_host(config(ngircd, chan, http, **keys), path=tmp_path / "b.toml",
                        wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        got = await said(a, host, chan, Message(text=FORTY, user=ALICE))
        assert got == [f"<Alice> line {i}: the quick brown fox" for i in range(1, 5)] + [
            "<Alice> (message truncated: 36 more lines not shown)"]
        assert await published(host) == 0


async def test_a_delivery_tried_again_gives_the_same_link_and_keeps_the_text_once(ngircd, tmp_path):
    """The delivery queue tries a copy again when its put failed in a way that passes (here
    the answer was lost after the plug had taken the copy): the text is kept once, and both
    copies on IRC carry the same link."""
    chan = "#" + unique("retry")
    async with run_host(config(ngircd, chan, with_links()), path=tmp_path / "b.toml",
                        wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        keys: list[str | None] = []

        async def execute(channel: Channel, delivery: Delivery) -> None:
            keys.append(current_key())
            await host.put(channel, delivery.msg)
            if len(keys) == 1:
                raise TimeoutError("the answer was lost")

        room = host.channels["room"]
        queues = DeliveryQueues(host, "test-relay", execute, retry_min=0.05)
        queues.add(room).push(Delivery("put", Message(text=FORTY, user=ALICE), key="msg-1"))
        await queues.wait_idle()
        nick = host.plugs["irc"].nick
        await host.put(room, Message(text="(end)"))
        await sees(a, nick, lambda s: s.plain == "(end)", target=chan)
        links = [t for t in (l.text for l in lines_from(a, nick, chan)) if LINK.match(t)]
        assert keys == ["msg-1", "msg-1"]
        assert len(links) == 2 and links[0] == links[1]
        assert await published(host) == 1
        page = await fetch(host, LINK.match(links[0])[1])
        assert page.text == "<Alice> " + FORTY + "\n"


async def test_a_text_that_cannot_be_kept_is_cut_with_the_notice_and_one_warning(
        ngircd, tmp_path, caplog):
    chan = "#" + unique("dberr")
    async with run_host(config(ngircd, chan, with_links()), path=tmp_path / "b.toml",
                        wait_ready=None) as host, human(ngircd) as a:
        await a.join(chan)
        await host.wait_ready()
        await host.store.transaction(lambda conn: conn.execute(sa.text("DROP TABLE chanmux_published")))
        with caplog.at_level(logging.WARNING):
            got = await said(a, host, chan, Message(text=FORTY, user=ALICE))
        assert got[-1] == "<Alice> (message truncated: 36 more lines not shown)" and len(got) == 5
        warnings = [r.getMessage() for r in caplog.records if "whole text" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "could not keep the whole text of a long message" in warnings[0]
        assert "chanmux_published" in warnings[0]               # the database's own reason
        assert not any("quick brown fox" in r.getMessage() for r in caplog.records)  # not the text
