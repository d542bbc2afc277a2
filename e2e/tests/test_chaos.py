"""The chaos matrix: each server down for a short time, past every retry budget, and for
minutes, with hundreds of messages said on the other side meanwhile; the bridge's Matrix login
revoked while it runs; the bridge killed with SIGKILL at several moments of a burst.

Each test sends numbered messages through a real bridge (`chanmux run`) between a real IRC
server and a real Synapse, and counts what arrived on the other side: sent, received,
missing, duplicates, order (printed with `-s` as one JSON line per test). Nothing may be
missing except what IRC cannot give (lines said on IRC while the bridge is not there), and
nothing may arrive twice except in the at-least-once window named in each test.

Outage lengths: `CHANMUX_CHAOS_LENGTHS` (seconds, comma-separated). CI runs 5 and 45 (past the
Matrix plug's `send_retry_for` of 20 s and the host's reconnect backoff); the five-minute runs
are on demand: `CHANMUX_CHAOS_LENGTHS=5,45,300 scripts/test -e e2e-chaos -- -k chaos`.

An outage lasts its length: the test sleeps for it, the one place this suite sleeps, because
time passing is what is being tested. Every other wait is on a line, an event or a log line.
These tests run on asyncio only, as test_failures.py says why.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from chanmux_testservers.irc import start_ngircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    Account,
    Bridge,
    Tally,
    _cs,
    alias_of,
    create_room,
    register,
    uid,
    write_config,
)
from streams import Stream, assert_lossless, kill_during_a_burst, report, two_way_config

pytestmark = pytest.mark.anyio

LENGTHS = [float(x) for x in os.environ.get("CHANMUX_CHAOS_LENGTHS", "5,45").split(",") if x]
#: Messages said on the side that stays up, during each outage.
DURING = 300


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: see test_failures.py."""
    return "asyncio"


async def outage(length: float, say, count: int) -> None:
    """Say `count` messages during an outage of `length` seconds: half at its start, half at
    its middle (the sleeps are the outage itself)."""
    await say(count // 2)
    await anyio.sleep(length / 2)
    await say(count - count // 2)
    await anyio.sleep(length / 2)


@dataclass
class Run:
    """One test's bridge between an IRC channel and a Matrix room, with a person on each side
    (`stream.irc` and `stream.mx`), its config (`path`, rewritten by `rewrite`) and accounts."""

    bridge: Bridge
    stream: Stream
    bot: Account
    config: dict
    path: Path
    stack: AsyncExitStack

    def rewrite(self) -> None:
        write_config(self.path, self.config)


@asynccontextmanager
async def two_way(hs, ircd, tmp_path: Path, tag: str, edit: Callable[[dict, Account], None] | None = None,
                  allow: tuple = ()) -> AsyncIterator[Run]:
    """Start the bridge (asyncio), both people, one warm-up batch; at the end stop it and
    check it logged no problem (but those `allow`ed) and exited 0."""
    alice = register(hs, f"{tag}a", "Alice M")
    bot = register(hs, f"{tag}bridge")
    room = create_room(hs, alice, tag)
    channel = f"#{tag}"
    config = two_way_config(ircd, tag, hs, bot, channel, alias_of(hs, tag))
    if edit is not None:
        edit(config, bot)
    path = write_config(tmp_path / "bridge.toml", config)
    bridge = Bridge(path, plugs=["irc", "matrix"], secrets=[bot.token, bot.password])
    try:
        bridge.start()
        await bridge.ready()
        async with AsyncExitStack() as stack:
            mx = await stack.enter_async_context(
                HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000))
            s = Stream(mx, room, channel, tag, bot.user_id)
            s.irc = await stack.enter_async_context(
                HumanIRC.connect(ircd.host, ircd.port, f"p{uid(7)}"))
            await s.irc.join(channel)
            await mx.catch_up()
            await s.batch()
            yield Run(bridge, s, bot, config, path, stack)
    finally:
        bridge.stop()
    bridge.check_clean(allow=allow)


@pytest.mark.parametrize("length", LENGTHS, ids=[f"{x:g}s" for x in LENGTHS])
async def test_chaos_homeserver_down(synapse, ngircd, tmp_path, length):
    """Synapse is killed while a batch is on its way both ways and stays down for `length`
    seconds while 300 lines are said on IRC. The bridge stays in the IRC channel and hears
    every line, so everything arrives, once, in order, once Synapse is back; past the Matrix
    plug's retry window the plug reconnects and logs in again first, and nothing is tried
    before that (the lines were given up with 401 M_MISSING_TOKEN before)."""
    hs = synapse
    async with two_way(hs, ngircd, tmp_path, f"ch{uid()}") as run:
        s, bridge = run.stream, run.bridge
        await s.batch(wait=False)
        mark = bridge.mark()
        try:
            await hs.async_stop(kill=True)
            down_from = s.i
            await outage(length, s.say_irc, DURING)
            down_to = s.i
        finally:
            if not hs.running:
                await hs.async_start()
        for _ in range(3):
            await s.batch(timeout=120)
        to_irc = Tally(list(range(s.m)), s.on_irc(s.irc))
        to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report(f"chaos: Synapse down {length:g}s", to_irc=to_irc, to_matrix=to_matrix)
        print(f"   IRC lines said while Synapse was down: {down_to - down_from}")
        assert_lossless(to_irc, "Matrix -> IRC")
        assert_lossless(to_matrix, "IRC -> Matrix")
        if length > 20:  # past send_retry_for: the plug reconnected, then delivered
            assert bridge.find("matrix: disconnected", mark) is not None


@pytest.mark.parametrize("length", LENGTHS, ids=[f"{x:g}s" for x in LENGTHS])
async def test_chaos_irc_server_down(synapse, tmp_path, length):
    """The IRC server is killed (SIGKILL) while a batch is on its way both ways and stays down
    for `length` seconds while 300 messages are said on Matrix; then it starts again on the
    same port. Everything said on Matrix reaches IRC once, in order. Lost by the nature of
    IRC: lines the dying server had not passed on (the last ones before the kill, at most the
    batch in flight). The bridge is paused while the IRC person rejoins (see test_failures)."""
    ircd = await anyio.to_thread.run_sync(start_ngircd, tmp_path)
    try:
        async with two_way(synapse, ircd, tmp_path, f"ci{uid()}") as run:
            s, bridge = run.stream, run.bridge
            h1 = s.irc
            await s.batch(wait=False)
            mark, i_before = bridge.mark(), s.i
            await anyio.to_thread.run_sync(lambda: ircd.stop(kill=True))
            await bridge.wait_log("irc: disconnected", since=mark)
            down_from = s.m
            await outage(length, s.say_matrix, DURING)
            down_to = s.m
            os.kill(bridge.pid, signal.SIGSTOP)
            try:
                await anyio.to_thread.run_sync(ircd.start)
                h2 = s.irc = await run.stack.enter_async_context(
                    HumanIRC.connect(ircd.host, ircd.port, f"q{uid(7)}"))
                await h2.join(s.channel)
            finally:
                os.kill(bridge.pid, signal.SIGCONT)
            await bridge.wait_log("chanmux.host: irc: connected", since=mark, timeout=60)
            for _ in range(3):
                await s.batch(timeout=120)
            to_irc = Tally(list(range(s.m)), s.on_irc(h1) + s.on_irc(h2))
            to_matrix = Tally(list(range(s.i)), await s.on_matrix())
            report(f"chaos: IRC server down {length:g}s", to_irc=to_irc, to_matrix=to_matrix)
            lost = to_matrix.missing
            print(f"   Matrix messages said while IRC was down: {down_to - down_from}; IRC lines "
                  f"lost in the dying server: {len(lost)}")
            assert_lossless(to_irc, "Matrix -> IRC")
            assert lost == list(range(i_before - len(lost), i_before)), f"more lost than in flight: {lost}"
            assert not to_matrix.duplicates and to_matrix.in_order
    finally:
        await anyio.to_thread.run_sync(ircd.close)


def with_password(config: dict, bot: Account) -> None:
    del config["plugs"]["matrix"]["access_token"]
    config["plugs"]["matrix"]["password"] = bot.password


async def test_chaos_matrix_login_revoked_with_a_password(synapse, ngircd, tmp_path):
    """Every access token of the bridge account is revoked while it runs (`logout/all`), with a
    password configured: the plug logs in again by itself, and the lines said on IRC meanwhile
    arrive once, in order."""
    hs = synapse
    async with two_way(hs, ngircd, tmp_path, f"cp{uid()}", edit=with_password) as run:
        s, bridge, bot = run.stream, run.bridge, run.bot
        mark = bridge.mark()
        await anyio.to_thread.run_sync(lambda: _cs(hs, bot.token, "POST", "/logout/all", {}))
        await s.say_irc(100)
        await bridge.wait_log("logging in with the password", since=mark, timeout=60)
        for _ in range(2):
            await s.batch(timeout=60)
        to_irc = Tally(list(range(s.m)), s.on_irc(s.irc))
        to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("chaos: Matrix login revoked, password configured", to_irc=to_irc,
               to_matrix=to_matrix)
        assert_lossless(to_irc, "Matrix -> IRC")
        assert_lossless(to_matrix, "IRC -> Matrix")


REFUSED_TOKEN = re.compile(r"ERROR .*matrix: the homeserver refuses the access token "
                           r"\(M_UNKNOWN_TOKEN.*\): set a new plugs\.matrix\.access_token")


async def test_chaos_matrix_token_revoked_without_a_password(synapse, ngircd, tmp_path):
    """The bridge's only credential, its access token, is revoked while it runs. It says once,
    as an error, which key to change; the lines said on IRC meanwhile are kept (also at a
    stop); with a new token in the config they arrive after the restart, once, in order."""
    hs = synapse
    tokens: list[str] = []

    def own_token(config: dict, bot: Account) -> None:
        tokens.append(hs.login(bot.user_id.split(":")[0][1:], bot.password)[1])
        config["plugs"]["matrix"]["access_token"] = tokens[-1]
        config["host"] = {"reconnect_min": 0.2, "reconnect_max": 2.0}

    async with two_way(hs, ngircd, tmp_path, f"ct{uid()}", edit=own_token,
                       allow=(REFUSED_TOKEN,)) as run:
        s, bridge, bot = run.stream, run.bridge, run.bot
        bridge.secrets.append(tokens[0])
        mark = bridge.mark()
        await anyio.to_thread.run_sync(lambda: _cs(hs, tokens[0], "POST", "/logout", {}))
        await s.say_irc(50)
        await bridge.wait_log(REFUSED_TOKEN, since=mark, timeout=60)
        await bridge.wait_log("still failing (the homeserver refuses the access token",
                              since=mark, timeout=60)
        bridge.stop()
        assert len([l for l in bridge.lines[mark:] if REFUSED_TOKEN.search(l)]) == 1
        assert bridge.find(re.compile(r"sync: kept \d+ copies not yet delivered"), mark) \
            is not None
        _user, fresh, _device = await anyio.to_thread.run_sync(
            lambda: hs.login(bot.user_id.split(":")[0][1:], bot.password))
        run.config["plugs"]["matrix"]["access_token"] = fresh
        run.rewrite()
        bridge.secrets.append(fresh)
        bridge.start()
        await bridge.ready()
        await s.arrived(timeout=60)
        await s.batch(timeout=60)
        to_irc = Tally(list(range(s.m)), s.on_irc(s.irc))
        to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("chaos: Matrix token revoked, no password", to_irc=to_irc, to_matrix=to_matrix)
        print("   IRC lines said while the token was refused: 50 (kept, delivered after the restart)")
        assert_lossless(to_irc, "Matrix -> IRC")
        assert_lossless(to_matrix, "IRC -> Matrix")


@pytest.mark.parametrize("at", [0.1, 0.5, 0.9], ids=["10%", "50%", "90%"])
async def test_chaos_bridge_killed_during_a_burst(synapse, ngircd, tmp_path, at):
    """A burst of 200 Matrix messages and 200 IRC lines; the bridge is killed (SIGKILL) once
    IRC has seen `at` of the Matrix side, and started again. Matrix keeps everything: every
    message reaches IRC, in order; a line the IRC server got in the very moment of the kill,
    before confirming it, may be said again (at least once): counted, allowed only for the
    messages said before the kill. IRC lines the bridge had read are in its inbox and are
    relayed after the restart (they were lost: 18 to 180 per kill); what IRC cannot give is
    only a line still on its way to the bridge at the kill (the last ones said before it),
    counted."""
    async with two_way(synapse, ngircd, tmp_path, f"ck{uid()}") as run:
        await kill_during_a_burst(run.stream, run.bridge, at,
                                  f"chaos: bridge killed at {at:.0%} of a burst")
