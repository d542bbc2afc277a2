"""The bridge with chanmux-matrix as an application service (`chanmux run` between ngircd and a
Synapse that loaded the registration `chanmux matrix-registration` wrote).

IRC people appear on Matrix as Matrix users of their own; a file said on Matrix reaches IRC as
a link that opens it; a long Matrix message reaches IRC as a few lines and a link to the whole;
a bridge killed before it answered the homeserver's transaction loses and doubles nothing, and
one killed during a burst both ways keeps what it did in the bot mode.

asyncio only, as test_failures.py says why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from contextlib import AsyncExitStack

import anyio
import httpx
import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Bridge,
    Tally,
    body,
    create_room,
    irc_plug,
    irc_until,
    privmsgs,
    register,
    sync_hook,
    uid,
    write_config,
)
from streams import Stream, kill_during_a_burst, report

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class Setup:
    """A bridge between an IRC channel and a Matrix room on the application service's
    homeserver, with a person on each side once `people` is entered."""

    def __init__(self, appservice, ngircd, tmp_path, **irc_keys) -> None:
        hs = appservice.synapse
        self.tag = tag = f"as{uid()}"
        self.appservice, self.ngircd = appservice, ngircd
        self.you = register(hs, f"{tag}you", "You M")
        self.room = create_room(hs, self.you, tag)
        self.channel = f"#{tag}"
        self.nick = f"p{uid(7)}"
        self.ghost = f"@chanmux_irc_{self.nick}:chanmux.as"
        config = {
            "logging": {"level": "INFO"},
            "host": FAST_HOST,
            "http": appservice.http(),
            "plugs": {"irc": irc_plug(ngircd, tag, **irc_keys), "matrix": appservice.plug([self.room])},
            "channels": {"i": {"plug": "irc", "source": self.channel},
                         "m": {"plug": "matrix", "source": self.room}},
            "hooks": {"sync": sync_hook({"chat": ["i", "m"]})},
        }
        self.path = write_config(tmp_path / "bridge.toml", config)
        self.bridge = Bridge(self.path, plugs=["irc", "matrix"], secrets=[appservice.hs_token])

    async def __aenter__(self) -> Setup:
        self.bridge.start()
        self.stack = AsyncExitStack()
        try:
            await self.bridge.ready()
            hs = self.appservice.synapse
            self.mx = await self.stack.enter_async_context(
                HumanMatrix(hs.base_url, self.you.user_id, self.you.token, timeline_limit=1000))
            self.irc = await self.stack.enter_async_context(
                HumanIRC.connect(self.ngircd.host, self.ngircd.port, self.nick))
            await self.irc.join(self.channel)
            await self.mx.catch_up()
        except BaseException:
            await self.stack.aclose()
            self.bridge.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stack.__aexit__(*exc)
        finally:
            self.bridge.stop()

    def stream(self) -> Stream:
        s = Stream(self.mx, self.room, self.channel, self.tag, self.ghost)
        s.irc = self.irc
        return s


async def test_irc_people_are_matrix_users_and_files_and_long_texts_reach_irc_as_links(
        appservice, ngircd, tmp_path):
    async with Setup(appservice, ngircd, tmp_path, max_lines=5) as run:
        mx, irc, room = run.mx, run.irc, run.room
        await irc.privmsg(run.channel, "hello from \x02IRC\x02")
        event = await mx.sync_until(lambda e: e.get("room_id") == room and "hello from" in body(e),
                                    timeout=30)
        assert event["sender"] == run.ghost and body(event) == "hello from IRC"
        assert (await mx.get_state(room, "m.room.member", run.ghost))["displayname"] == run.nick

        lines = [f"line {n:02d} of forty {run.tag}" for n in range(40)]
        mark = irc.mark()
        await mx.send_text(room, "\n".join(lines))
        await irc_until(irc, lambda: any("full message at" in (l.text or "")
                                         for l in privmsgs(irc, run.channel, mark)), timeout=30,
                        what="the link to the whole text")
        said = [l.text or "" for l in privmsgs(irc, run.channel, mark)]
        assert len(said) == 5 and said[0].endswith(lines[0])
        link = re.search(r"<(https?://[^>]+)>", said[-1]).group(1)
        async with httpx.AsyncClient() as http:
            page = await http.get(link)
        assert page.status_code == 200 and all(line in page.text for line in lines)

        picture = bytes(range(256)) * 400
        mxc = await mx.upload(picture, "image/png", "cat.png")
        mark = irc.mark()
        await mx.send_event(room, "m.room.message", {"msgtype": "m.image", "body": "cat.png",
                                                     "url": mxc, "info": {"mimetype": "image/png"}})
        await irc_until(irc, lambda: any("cat.png" in (l.text or "")
                                         for l in privmsgs(irc, run.channel, mark)), timeout=30,
                        what="the file's link")
        line = next(l.text for l in privmsgs(irc, run.channel, mark) if "cat.png" in (l.text or ""))
        link = re.search(r"<(https?://[^>]+)>", line).group(1)
        async with httpx.AsyncClient() as http:
            got = await http.get(link)
        assert got.status_code == 200 and got.content == picture
        assert got.headers["content-type"] == "image/png"
    run.bridge.check_clean()


def backlog(port: int) -> bool:
    """Whether a request waits, unread, on the bridge's listening port: the homeserver has
    sent the transaction to the stopped bridge."""
    out = subprocess.run(["ss", "-tnH", f"( sport = :{port} )"], capture_output=True, text=True,
                         check=True).stdout
    return any(int(line.split()[1]) > 0 for line in out.splitlines() if line.split())


async def test_a_bridge_killed_before_answering_a_transaction_loses_and_doubles_nothing(
        appservice, ngircd, tmp_path):
    """The bridge is stopped (SIGSTOP) while Matrix messages are said, so the homeserver's
    transaction waits unanswered on its socket; it is killed (SIGKILL) and started again. The
    homeserver sends the transaction again: every message reaches IRC once, in order."""
    port = int(appservice.listen.rsplit(":", 1)[1])
    async with Setup(appservice, ngircd, tmp_path) as run:
        s = run.stream()
        await s.batch()
        bridge = run.bridge
        os.kill(bridge.pid, signal.SIGSTOP)
        try:
            before = s.m
            await s.say_matrix(5)
            with anyio.fail_after(30):
                while not backlog(port):
                    await anyio.sleep(0.05)  # polling the kernel's view of the socket
        finally:
            bridge.kill()
        bridge.start()
        await bridge.ready()
        await s.batch(timeout=60)
        to_irc = Tally(list(range(s.m)), s.on_irc(s.irc))
        to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("appservice: killed before answering a transaction", to_irc=to_irc,
               to_matrix=to_matrix)
        assert not to_irc.missing and not to_irc.duplicates and to_irc.in_order, to_irc.summary()
        assert set(range(before, before + 5)) <= set(to_irc.received)
        assert not to_matrix.missing and not to_matrix.duplicates and to_matrix.in_order


async def test_a_bridge_killed_during_a_burst_keeps_what_it_promises(appservice, ngircd, tmp_path):
    """200 Matrix messages and 200 IRC lines; the bridge is killed (SIGKILL) once IRC has seen
    half of the Matrix side, and started again: every Matrix message reaches IRC, in order (a
    line the IRC server got in the very moment of the kill may be said twice); IRC lines read
    by the bridge are relayed after the restart; lost are only lines on their way to it at the
    kill."""
    async with Setup(appservice, ngircd, tmp_path) as run:
        s = run.stream()
        await s.batch()
        await kill_during_a_burst(s, run.bridge, 0.5, "appservice: bridge killed at 50% of a burst")


async def test_a_homeserver_down_past_every_retry_loses_nothing(appservice, ngircd, tmp_path):
    """Synapse is killed and stays down for 25 s (past the Matrix plug's `send_retry_for` of
    20 s) while 100 lines are said on IRC and the Matrix side had a batch on its way: the copies
    for Matrix wait in the delivery queue, and everything arrives once, in order, both ways once
    Synapse is back."""
    hs = appservice.synapse
    async with Setup(appservice, ngircd, tmp_path) as run:
        s, bridge = run.stream(), run.bridge
        await s.batch()
        await s.batch(wait=False)
        mark = bridge.mark()
        try:
            await hs.async_stop(kill=True)
            await s.say_irc(50)
            await anyio.sleep(12.5)  # the outage itself: time passing is what is tested
            await s.say_irc(50)
            await anyio.sleep(12.5)
        finally:
            if not hs.running:
                await hs.async_start()
        await bridge.wait_log("answers again", since=mark, timeout=60)
        for _ in range(2):
            await s.batch(timeout=120)
        to_irc = Tally(list(range(s.m)), s.on_irc(s.irc))
        to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("appservice: Synapse down 25s", to_irc=to_irc, to_matrix=to_matrix)
        assert not to_irc.missing and not to_irc.duplicates and to_irc.in_order, to_irc.summary()
        assert not to_matrix.missing and not to_matrix.duplicates and to_matrix.in_order, \
            to_matrix.summary()
    run.bridge.check_clean()
