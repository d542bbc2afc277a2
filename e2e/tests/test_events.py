"""Joins, leaves and nick changes through `chanmux run`, IRC (ngircd) <-> Matrix, with the sync
hook's `joins` setting on (the default) and off (a per-label override).

One bridge per anyio backend serves the module; each test has its own channel/room pair.
"Nothing relayed" is checked with a barrier: after the events, the person on the same side says
something; the bridge handles one channel's (one room's) messages in order, so when the
barrier arrives on the other side, anything the events caused would have arrived before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Account,
    Bridge,
    Pair,
    body,
    irc_plug,
    matrix_plug,
    module_pairs,
    pair_config,
    privmsgs,
    register,
    room_messages,
    uid,
    write_config,
)

pytestmark = pytest.mark.anyio


@dataclass
class Events:
    bridge: Bridge
    hs: object
    ircd: object
    alice: Account
    bob: Account
    account: Account
    nick: str
    pairs: dict[str, Pair]


@pytest.fixture(scope="module")
def events(request: pytest.FixtureRequest, anyio_backend: str, synapse, ngircd,
           tmp_path_factory: pytest.TempPathFactory):
    hs, run = synapse, uid()
    alice = register(hs, f"ev{run}a", "Alice M")
    bob = register(hs, f"ev{run}b", "Bob M")
    account = register(hs, f"ev{run}bridge")
    pairs = module_pairs(request, hs, alice, [], f"e{run}")
    channels, hook = pair_config(pairs.values())
    nick = f"eb{run}"
    config = {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {"irc": irc_plug(ngircd, nick), "matrix": matrix_plug(hs, account)},
        "channels": channels,
        "hooks": {"sync": hook},
    }
    bridge = Bridge(write_config(tmp_path_factory.mktemp("events") / "bridge.toml", config),
                    backend=anyio_backend, plugs=["irc", "matrix"], secrets=[account.token])
    bridge.start()
    try:
        bridge.ready_sync(timeout=90)
        yield Events(bridge, hs, ngircd, alice, bob, account, nick, pairs)
    finally:
        code = bridge.stop()
    assert code == 0, bridge.tail()
    bridge.check_clean()


@pytest.fixture
def pair(events: Events, request: pytest.FixtureRequest) -> Pair:
    return events.pairs[request.node.originalname]


@pytest.fixture
async def irc(events: Events, pair: Pair):
    async with HumanIRC.connect(events.ircd.host, events.ircd.port, f"a{uid(7)}") as person:
        await person.join(pair.channel)
        yield person


@pytest.fixture
async def mx(events: Events, pair: Pair, irc: HumanIRC):
    """Alice on Matrix; the IRC person's own join has been dealt with by the bridge (relayed,
    or not, then a barrier message)."""
    async with HumanMatrix(events.hs.base_url, events.alice.user_id, events.alice.token) as person:
        t = uid()
        await irc.privmsg(pair.channel, f"ready {t}")
        await person.sync_until(lambda e: e.get("room_id") == pair.room and f"ready {t}" in body(e),
                                timeout=30)
        yield person


def bridged_events(events: Events, mx: HumanMatrix, pair: Pair, since: int) -> list[str]:
    return [body(e) for e in room_messages(mx, pair.room, since, sender=events.account.user_id)]


async def irc_barrier(events: Events, pair: Pair, irc: HumanIRC, mx: HumanMatrix) -> None:
    t = uid()
    await irc.privmsg(pair.channel, f"barrier {t}")
    await mx.sync_until(lambda e: e.get("room_id") == pair.room and f"barrier {t}" in body(e),
                        timeout=20)


async def matrix_barrier(events: Events, pair: Pair, irc: HumanIRC, mx: HumanMatrix) -> None:
    t = uid()
    await mx.send_text(pair.room, f"barrier {t}")
    await irc.wait_for(lambda l: l.command == "PRIVMSG" and f"barrier {t}" in l.text, timeout=20)


async def test_irc_joins_leaves_and_nick_changes(events: Events, pair: Pair, irc: HumanIRC,
                                                 mx: HumanMatrix):
    """With `joins` on, an IRC join, part, quit and nick change each show once in the Matrix
    room, in the order they happened; a part or quit shows its reason (ngircd puts a quit
    message in quotes)."""
    mark = len(mx.events)
    other, gone = f"b{uid(7)}", f"c{uid(7)}"
    async with HumanIRC.connect(events.ircd.host, events.ircd.port, other) as b:
        await b.join(pair.channel)
        renamed = f"d{uid(7)}"
        await b.send_raw(f"NICK {renamed}")
        await b.wait_for(lambda l: l.command == "NICK" and l.params == [renamed], timeout=10)
        await b.part(pair.channel, "see you")
    async with HumanIRC.connect(events.ircd.host, events.ircd.port, gone) as c:
        await c.join(pair.channel)
        await c.quit("gone now")
    await irc_barrier(events, pair, irc, mx)
    got = bridged_events(events, mx, pair, mark)
    # Joins, leaves and renames come as notices naming each person once.
    wanted = [f"{other} joined", f"{other} is now known as {renamed}", f"{renamed} left (see you)",
              f"{gone} joined", f'{gone} left ("gone now")']
    assert len(got) == len(wanted) + 1 and got[:-1] == wanted, got


async def test_matrix_joins_and_leaves(events: Events, pair: Pair, irc: HumanIRC,
                                       mx: HumanMatrix):
    """With `joins` on, a Matrix join and leave show on IRC as `* Name joined` / `* Name left`."""
    mark = irc.mark()
    async with HumanMatrix(events.hs.base_url, events.bob.user_id, events.bob.token) as bob:
        await bob.join(pair.room)
        await irc.wait_for(lambda l: l.command == "PRIVMSG" and "joined" in l.text, timeout=20)
        await bob.leave(pair.room)
        await irc.wait_for(lambda l: l.command == "PRIVMSG" and "left" in l.text, timeout=20)
    lines = [l.text for l in privmsgs(irc, pair.channel, mark, events.nick)]
    assert lines == ["* Bob M joined", "* Bob M left"], lines


@pytest.mark.label(joins=False)
async def test_joins_and_leaves_off(events: Events, pair: Pair, irc: HumanIRC, mx: HumanMatrix):
    """With `joins = false` no join or leave crosses, either way; messages still do."""
    mark, irc_mark = len(mx.events), irc.mark()
    async with HumanIRC.connect(events.ircd.host, events.ircd.port, f"b{uid(7)}") as b:
        await b.join(pair.channel)
        await b.part(pair.channel)
    async with HumanIRC.connect(events.ircd.host, events.ircd.port, f"c{uid(7)}") as c:
        await c.join(pair.channel)
        await c.quit("bye")
    await irc_barrier(events, pair, irc, mx)
    got = bridged_events(events, mx, pair, mark)
    assert len(got) == 1 and got[0].startswith(f"{irc.nick}: barrier"), got
    async with HumanMatrix(events.hs.base_url, events.bob.user_id, events.bob.token) as bob:
        await bob.join(pair.room)
        await bob.leave(pair.room)
    await matrix_barrier(events, pair, irc, mx)
    lines = [l.text for l in privmsgs(irc, pair.channel, irc_mark, events.nick)]
    assert len(lines) == 1 and lines[0].startswith("<Alice M> barrier"), lines
