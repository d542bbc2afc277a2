"""A numbered two-way stream between a Matrix room and an IRC channel, and its tallies: what
the failure and chaos tests send through a bridge and count on the other side."""

from __future__ import annotations

import json
import re

import anyio

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Tally,
    body,
    irc_plug,
    irc_until,
    lines,
    matrix_plug,
    matrix_until,
    privmsgs,
    room_history,
    sync_hook,
    uid,
)

BATCH = 20


def numbers(texts: list[str], tag: str) -> list[int]:
    found = []
    for text in lines(texts):
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

    async def batch(self, wait: bool = True, irc: bool = True, timeout: float = 60) -> None:
        """BATCH messages each way, in turn; if `wait`, until both have arrived."""
        for _ in range(BATCH):
            await self.say_matrix(1)
            if irc:
                await self.say_irc(1)
        if wait:
            await self.arrived(irc=irc, timeout=timeout)

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
            await matrix_until(self.mx, lambda last=last, room=room: any(
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


async def kill_during_a_burst(s: Stream, bridge, at: float, name: str, burst: int = 200) -> None:
    """A burst of `burst` Matrix messages and as many IRC lines; the bridge is killed
    (SIGKILL) once IRC has seen `at` of the Matrix side, and started again. Asserts what the
    bridge promises: every Matrix message reaches IRC, in order (a line the IRC server got in
    the very moment of the kill, before confirming it, may be said again: allowed only for
    messages said before the kill, counted); IRC lines the bridge had read are relayed after
    the restart, and lost are only lines still on their way to it at the kill (the last ones
    said before it), counted. Prints the tallies as `name`."""
    h = s.irc
    assert h is not None
    threshold = s.m + int(burst * at)

    async def irc_side() -> None:
        for _ in range(burst):
            await s.say_irc(1)
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(s.say_matrix, burst)
        tg.start_soon(irc_side)
        await irc_until(h, lambda: len(set(s.on_irc(h))) >= threshold, timeout=120,
                        what=f"{threshold} Matrix messages on IRC")
        bridge.kill()
        killed_m, killed_i = s.m, s.i
    restart_i = s.i
    bridge.start()
    await bridge.ready()
    await s.batch(timeout=120)
    to_irc = Tally(list(range(s.m)), s.on_irc(h))
    to_matrix = Tally(list(range(s.i)), await s.on_matrix())
    report(name, to_irc=to_irc, to_matrix=to_matrix)
    lost = to_matrix.missing
    in_flight = [n for n in lost if n < killed_i]
    print(f"   IRC lines not relayed: {len(in_flight)} in flight at the kill, "
          f"{len(lost) - len(in_flight)} said while the bridge was down; Matrix messages "
          f"said twice (in flight at the kill): {len(to_irc.duplicates)}")
    assert not to_irc.missing, f"Matrix -> IRC: lost {to_irc.missing}"
    assert to_irc.in_order, f"Matrix -> IRC: order {to_irc.received}"
    assert all(n < killed_m for n in to_irc.duplicates), to_irc.duplicates
    assert all(n < restart_i for n in lost), f"lost after the restart: {lost}"
    assert in_flight == list(range(killed_i - len(in_flight), killed_i)), (
        f"lost more than the lines on their way at the kill: {in_flight}")
    assert not to_matrix.duplicates and to_matrix.in_order
