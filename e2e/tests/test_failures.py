"""Surviving failures, each over more than 500 messages sent from both sides: the IRC server
killed and restarted, Synapse stopped and restarted, and chanmux itself killed (SIGKILL) and
started again, each in the middle of a stream of numbered messages.

What arrived is counted on each side: which numbers, in what order, how many twice. What the
IRC protocol cannot deliver is named in each test and excepted; nothing else may be lost, no
message may arrive twice, and each sender's order is kept. The counts are printed (`-s`).

The stream goes in batches of 20 each way (a Matrix message and an IRC line in turn), the
next batch once the previous one has arrived, so each batch is a check that nothing is stuck;
the failure strikes right after a batch was sent, while it is still on its way. (An unbroken
two-way stream is test_traffic.py.)

These tests run on asyncio only: the bridge is a child process (on its default backend), so
the test's own backend only drives the two clients and changes nothing about what is tested;
once is enough for tests this long. Every other test module runs on both backends, bridge
included.
"""

from __future__ import annotations

import json
import os
import re
import signal
from contextlib import AsyncExitStack

import anyio
import pytest

from chanmux_testservers.irc import start_ngircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from helpers import (FAST_HOST, Bridge, Tally, alias_of, body, create_room, irc_plug, irc_until,
                     matrix_find, matrix_plug, matrix_until, privmsgs, register, room_history, sync_hook,
                     uid, write_config)

pytestmark = pytest.mark.anyio

BATCH = 20


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: see the module docstring."""
    return "asyncio"


def numbers(texts: list[str], tag: str) -> list[int]:
    found = []
    for text in texts:
        hit = re.search(rf"{tag} (\d{{4}})(\D|$)", text)
        if hit:
            found.append(int(hit.group(1)))
    return found


def irc_numbers(person: HumanIRC, channel: str, nick: str, tag: str) -> list[int]:
    return numbers([l.text for l in privmsgs(person, channel, 0, nick)], tag)


async def matrix_numbers(mx: HumanMatrix, room: str, sender: str, tag: str) -> list[int]:
    return numbers([body(e) for e in await room_history(mx, room) if e.get("sender") == sender], tag)


def report(name: str, **tallies: Tally) -> None:
    print(f"\n{name}: " + json.dumps({k: v.summary() for k, v in tallies.items()}))


def assert_lossless(tally: Tally, what: str) -> None:
    assert not tally.missing, f"{what}: lost {tally.missing}"
    assert not tally.duplicates, f"{what}: twice {tally.duplicates}"
    assert tally.received == tally.sent, f"{what}: order {tally.received}"


class Stream:
    """Numbered messages both ways between a Matrix room and an IRC channel."""

    def __init__(self, mx: HumanMatrix, room: str, channel: str, nick: str, bridge_user: str) -> None:
        self.mx, self.room, self.channel, self.nick, self.bridge_user = mx, room, channel, nick, bridge_user
        self.t = uid()
        self.m = 0  # next number said on Matrix
        self.i = 0  # next number said on IRC
        self.irc: HumanIRC | None = None
        self.also: list[str] = []  # other rooms the Matrix messages are copied to

    def m_text(self, n: int) -> str:
        return f"m2i {self.t} {n:04d}"

    def i_text(self, n: int) -> str:
        return f"i2m {self.t} {n:04d}"

    async def say_matrix(self, count: int) -> None:
        for _ in range(count):
            await self.mx.send_text(self.room, self.m_text(self.m))
            self.m += 1

    async def say_irc(self, count: int) -> None:
        assert self.irc is not None
        for _ in range(count):
            await self.irc.privmsg(self.channel, self.i_text(self.i))
            self.i += 1

    async def batch(self, wait: bool = True, irc: bool = True) -> None:
        """BATCH messages each way, in turn; if `wait`, until both have arrived."""
        for _ in range(BATCH):
            await self.say_matrix(1)
            if irc:
                await self.say_irc(1)
        if wait:
            await self.arrived(irc=irc)

    async def arrived(self, irc: bool = True, timeout: float = 60) -> None:
        """Until the last Matrix message said has reached IRC and the last IRC line Matrix."""
        assert self.irc is not None
        last_m = self.m - 1
        await irc_until(self.irc, lambda: last_m in irc_numbers(self.irc, self.channel, self.nick,
                                                                f"m2i {self.t}"),
                        timeout=timeout, what=f"Matrix message {last_m}")
        if irc and self.i:
            last = self.i_text(self.i - 1)
            await matrix_until(self.mx, lambda: any(last in body(e) for e in self.mx.events),
                               timeout=timeout, what=f"IRC line {self.i - 1}")
        for room in self.also:
            last = self.m_text(self.m - 1)
            await matrix_until(self.mx, lambda: any(
                last in body(e) and e.get("room_id") == room and e.get("sender") == self.bridge_user
                for e in self.mx.events), timeout=timeout, what=f"Matrix message {last_m} in {room}")

    def on_irc(self, person: HumanIRC) -> list[int]:
        return irc_numbers(person, self.channel, self.nick, f"m2i {self.t}")

    async def on_matrix(self) -> list[int]:
        return await matrix_numbers(self.mx, self.room, self.bridge_user, f"i2m {self.t}")


def two_way_config(ircd, nick: str, hs, account, channel: str, alias: str) -> dict:
    return {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {"irc": irc_plug(ircd, nick), "matrix": matrix_plug(hs, account)},
        "channels": {"i": {"plug": "irc", "source": channel},
                     "m": {"plug": "matrix", "source": alias}},
        "hooks": {"sync": sync_hook({"chat": ["i", "m"]})},
    }


async def test_irc_server_killed_and_restarted(synapse, tmp_path):
    """The IRC server is killed (SIGKILL) while a batch is on its way both ways, stays down while
    100 messages are said on Matrix, and comes back on the same port.

    Lost by the nature of IRC: lines the IRC person had sent that the dying server had not yet
    passed on to the bridge (a server keeps no history, nobody can ask for them again): they
    can only be the last ones before the kill. Nobody can say anything on IRC while the server
    is down. Everything said on Matrix reaches IRC, once, in order: what was said while IRC was
    down arrives after the reconnect, and so do lines the bridge had sent just before the kill.

    While the server restarts, the bridge is paused (SIGSTOP) until the IRC person is back in
    the channel: IRC shows a channel's lines only to those in it, so otherwise what the bridge
    sends in its first moments could reach the channel before the person could see it.
    """
    hs, run = synapse, uid()
    alice = register(hs, f"fa{run}a", "Alice M")
    account = register(hs, f"fa{run}bridge")
    room = create_room(hs, alice, f"fa{run}")
    channel, nick = f"#fa{run}", f"fa{run}"
    ircd = await anyio.to_thread.run_sync(start_ngircd, tmp_path)
    bridge = Bridge(write_config(tmp_path / "bridge.toml", two_way_config(
        ircd, nick, hs, account, channel, alias_of(hs, f"fa{run}"))), plugs=["irc", "matrix"],
        secrets=[account.token])
    try:
        bridge.start()
        await bridge.ready()
        async with AsyncExitStack() as stack:
            mx = await stack.enter_async_context(HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000))
            s = Stream(mx, room, channel, nick, account.user_id)
            h1 = s.irc = await stack.enter_async_context(
                HumanIRC.connect(ircd.host, ircd.port, f"p{uid(7)}"))
            await h1.join(channel)
            await mx.catch_up()
            for _ in range(4):
                await s.batch()
            await s.batch(wait=False)
            mark, i_before = bridge.mark(), s.i
            await anyio.to_thread.run_sync(lambda: ircd.stop(kill=True))
            await bridge.wait_log("irc: disconnected", since=mark)
            down_from = s.m
            await s.say_matrix(100)
            down_to = s.m
            os.kill(bridge.pid, signal.SIGSTOP)
            try:
                await anyio.to_thread.run_sync(ircd.start)
                h2 = s.irc = await stack.enter_async_context(
                    HumanIRC.connect(ircd.host, ircd.port, f"q{uid(7)}"))
                await h2.join(channel)
            finally:
                os.kill(bridge.pid, signal.SIGCONT)
            await bridge.wait_log("chanmux.host: irc: connected", since=mark, timeout=30)
            for _ in range(5):
                await s.batch()
            first, second = s.on_irc(h1), s.on_irc(h2)
            to_irc = Tally(list(range(s.m)), first + second)
            to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("a) IRC server killed", to_irc=to_irc, to_matrix=to_matrix)
        lost = to_matrix.missing
        print(f"   Matrix -> IRC: {len(first)} before the kill, {len(second)} after the reconnect; "
              f"IRC lines lost in the dying server: {len(lost)}")
        assert_lossless(to_irc, "Matrix -> IRC")
        assert set(range(down_from, down_to)) <= set(second)
        assert lost == list(range(i_before - len(lost), i_before)), f"more lost than in flight: {lost}"
        assert len(lost) <= BATCH
        assert not to_matrix.duplicates and to_matrix.in_order, to_matrix.received
    finally:
        bridge.stop()
        await anyio.to_thread.run_sync(ircd.close)
    bridge.check_clean()


async def test_synapse_stopped_and_restarted(synapse, ngircd, tmp_path):
    """Synapse is stopped while a batch is on its way both ways; 100 lines are said on IRC while
    it is down; it starts again on the same port with the same data.

    Nothing is lost by the nature of IRC here: the bridge stays in the IRC channel and hears
    every line. Nobody can say anything on Matrix while the homeserver is down. So everything
    arrives on both sides, once, in order: every IRC line said while Synapse was down reaches
    Matrix once it is back.
    """
    hs, run = synapse, uid()
    alice = register(hs, f"fb{run}a", "Alice M")
    account = register(hs, f"fb{run}bridge")
    room = create_room(hs, alice, f"fb{run}")
    channel, nick = f"#fb{run}", f"fb{run}"
    bridge = Bridge(write_config(tmp_path / "bridge.toml", two_way_config(
        ngircd, nick, hs, account, channel, alias_of(hs, f"fb{run}"))), plugs=["irc", "matrix"],
        secrets=[account.token])
    try:
        bridge.start()
        await bridge.ready()
        async with HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000) as mx, \
                HumanIRC.connect(ngircd.host, ngircd.port, f"p{uid(7)}") as h:
            s = Stream(mx, room, channel, nick, account.user_id)
            s.irc = h
            await h.join(channel)
            await mx.catch_up()
            for _ in range(4):
                await s.batch()
            await s.batch(wait=False)
            try:
                await hs.async_stop()
                down_from = s.i
                await s.say_irc(100)
                down_to = s.i
            finally:
                if not hs.running:
                    await hs.async_start()
            for _ in range(5):
                await s.batch()
            to_irc = Tally(list(range(s.m)), s.on_irc(h))
            to_matrix = Tally(list(range(s.i)), await s.on_matrix())
        report("b) Synapse stopped", to_irc=to_irc, to_matrix=to_matrix)
        print(f"   IRC lines said while Synapse was down: {down_to - down_from}")
        assert_lossless(to_irc, "Matrix -> IRC")
        assert_lossless(to_matrix, "IRC -> Matrix")
    finally:
        bridge.stop()
    bridge.check_clean()


async def test_bridge_killed_and_started_again(synapse, inspircd, tmp_path):
    """chanmux is killed with SIGKILL while IRC lines are on their way to Matrix, stays down while
    100 messages are said on Matrix (and 20 lines on IRC), then starts again on the same config
    and database. The stream runs between an IRC channel (InspIRCd, for reply tags) and room S;
    a second label links another channel with rooms A and B, so that edits, deletes and
    replies to messages from before the kill have copies to land on.

    Lost by the nature of IRC: the 20 lines said on IRC while the bridge was down (IRC keeps no
    history; the bridge never sees them), and lines on their way when it was killed, read by
    it or not yet, but not delivered (IRC cannot give them again): at most the batch in flight.
    Nothing said on Matrix is lost: the homeserver keeps everything and the bridge resumes
    from its saved position, so every message said while the bridge was down reaches IRC after
    the restart, once, in order. Edits, deletes and replies made after the restart to messages
    from before the kill land on the right copies.

    The kill comes right after a batch said on Matrix and a batch said on IRC, so both are
    on their way: fetched or not, delivered or not. The Matrix batch is not lost either (the
    saved /sync position never passes a message whose line the IRC server has not
    confirmed). A line the server got in the moment before the kill, before confirming it,
    may be said again after the restart (at least once, never lost): duplicates are allowed
    in that batch only, and counted.
    """
    hs, run = synapse, uid()
    alice = register(hs, f"fc{run}a", "Alice M")
    account = register(hs, f"fc{run}bridge")
    rooms = {k: create_room(hs, alice, f"fc{run}{k}") for k in "sab"}
    channel, mapped, nick = f"#fc{run}", f"#fc{run}map", f"fc{run}"
    config = {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {"irc": irc_plug(inspircd, nick), "matrix": matrix_plug(hs, account)},
        "channels": {"i": {"plug": "irc", "source": channel},
                     "s": {"plug": "matrix", "source": alias_of(hs, f"fc{run}s")},
                     "im": {"plug": "irc", "source": mapped},
                     "a": {"plug": "matrix", "source": alias_of(hs, f"fc{run}a")},
                     "b": {"plug": "matrix", "source": alias_of(hs, f"fc{run}b")}},
        "hooks": {"sync": sync_hook({"stream": ["i", "s"], "map": ["im", "a", "b"]})},
    }
    bridge = Bridge(write_config(tmp_path / "bridge.toml", config), plugs=["irc", "matrix"],
                    secrets=[account.token])
    room_a, room_b = rooms["a"], rooms["b"]
    try:
        bridge.start()
        await bridge.ready()
        async with HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000) as mx, \
                HumanIRC.connect(inspircd.host, inspircd.port, f"p{uid(7)}",
                                 caps=("message-tags",)) as h:
            s = Stream(mx, rooms["s"], channel, nick, account.user_id)
            s.irc = h
            await h.join(channel)
            await h.join(mapped)
            await mx.catch_up()
            t = s.t

            def copy_in(room: str, text: str):
                return lambda e: (e.get("room_id") == room and e.get("sender") == account.user_id
                                  and text in body(e))

            # Messages from before the kill, for edits, deletes and replies after it.
            x = await mx.send_text(room_a, f"{t} x the quick brown fox")
            y = await mx.send_text(room_a, f"{t} y to be deleted")
            v = await mx.send_text(room_a, f"{t} v matrix says")
            await h.privmsg(mapped, f"{t} z irc says")
            x_b = (await matrix_find(mx, copy_in(room_b, "x the quick"), 20))["event_id"]
            y_b = (await matrix_find(mx, copy_in(room_b, "y to be deleted"), 20))["event_id"]
            v_b = (await matrix_find(mx, copy_in(room_b, "v matrix says"), 20))["event_id"]
            z_a = (await matrix_find(mx, copy_in(room_a, "z irc says"), 20))["event_id"]
            z_b = (await matrix_find(mx, copy_in(room_b, "z irc says"), 20))["event_id"]
            await h.wait_for(lambda l: l.command == "PRIVMSG" and "v matrix says" in l.text,
                             timeout=20, since=0)

            for _ in range(5):
                await s.batch()
            m_in_flight = s.m
            await s.say_matrix(BATCH)
            await s.say_irc(BATCH)
            i_before = s.i
            bridge.kill()
            down_from = s.m
            await s.say_matrix(100)
            down_to = s.m
            said_while_down = [f"{t} said while down {k}" for k in range(20)]
            for text in said_while_down:
                await h.privmsg(channel, text)
            bridge.start()
            await bridge.ready()

            # Edits, deletes and replies to messages from before the kill.
            mark_irc, mark_mx = h.mark(), len(mx.events)
            await mx.edit(room_a, x, f"{t} x the quick red fox")
            edit_b = await matrix_find(mx, lambda e: e.get("room_id") == room_b and e.get(
                "content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace", 30, mark_mx)
            assert edit_b["content"]["m.relates_to"]["event_id"] == x_b
            assert edit_b["content"]["m.new_content"]["body"].endswith(f"{t} x the quick red fox")
            line = await h.wait_for(lambda l: l.command == "PRIVMSG" and "red" in l.text,
                                    timeout=30, since=mark_irc)
            assert line.text in ("<Alice M> s/brown/red/",
                                 f"<Alice M> * correction: {t} x the quick red fox")
            await mx.redact(room_a, y)
            gone = await matrix_find(mx, lambda e: e.get("room_id") == room_b
                                     and e.get("type") == "m.room.redaction", 30, mark_mx)
            assert gone["redacts"] == y_b
            await mx.reply(room_a, z_a, f"{t} reply to z")
            reply_b = await matrix_find(mx, copy_in(room_b, "reply to z"), 30, mark_mx)
            assert reply_b["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == z_b
            line = await h.wait_for(lambda l: l.command == "PRIVMSG" and "reply to z" in l.text,
                                    timeout=30, since=mark_irc)
            assert line.text == f'<Alice M> {h.nick}: "{t} z irc says" {t} reply to z'
            await mx.reply(room_a, v, f"{t} reply to v")
            reply_b = await matrix_find(mx, copy_in(room_b, "reply to v"), 30, mark_mx)
            assert reply_b["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == v_b

            for _ in range(5):
                await s.batch()
            to_irc = Tally(list(range(s.m)), s.on_irc(h))
            to_matrix = Tally(list(range(s.i)), await s.on_matrix())
            history = [body(e) for e in await room_history(mx, rooms["s"])]
        report("c) chanmux killed", to_irc=to_irc, to_matrix=to_matrix)
        lost = to_matrix.missing
        print(f"   Matrix messages said while the bridge was down: {down_to - down_from}; IRC "
              f"lines said while it was down: {len(said_while_down)} (never seen); IRC lines in flight "
              f"when it was killed (said just before, never relayed): {len(lost)}")
        in_flight = range(m_in_flight, m_in_flight + BATCH)
        print(f"   Matrix messages said just before the kill: {BATCH}; said again after the "
              f"restart: {len(to_irc.duplicates)} {to_irc.duplicates}")
        assert not to_irc.missing, f"Matrix -> IRC: lost {to_irc.missing}"
        assert to_irc.in_order, f"Matrix -> IRC: order {to_irc.received}"
        assert all(n in in_flight for n in to_irc.duplicates), to_irc.duplicates
        assert set(range(down_from, down_to)) <= set(to_irc.received)
        assert lost == list(range(i_before - len(lost), i_before)), f"more lost than in flight: {lost}"
        assert len(lost) <= BATCH
        assert not to_matrix.duplicates and to_matrix.in_order
        assert not any("said while down" in text for text in history)
    finally:
        bridge.stop()
    bridge.check_clean()
