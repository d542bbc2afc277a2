"""An unbroken two-way stream: IRC says two lines for every Matrix message, faster than the
bridge can put them into the Matrix room, so puts into the room are under way all the time
while Matrix messages keep arriving from it. Each direction must flow meanwhile, not wait for
the other to pause: every message arrives once, in order.

`hook_timeout = 1` makes the host's watchdog (30 s by default) strike within the test if a
Matrix message were held up waiting for the room to go quiet (an earlier bug, which lost such
messages).
"""

from __future__ import annotations

import re

import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Bridge,
    Tally,
    alias_of,
    body,
    create_room,
    irc_plug,
    irc_until,
    lines,
    matrix_plug,
    matrix_until,
    privmsgs,
    register,
    room_history,
    sync_hook,
    uid,
    write_config,
)

pytestmark = pytest.mark.anyio

ROUNDS = 40


def numbered(texts: list[str], tag: str) -> list[int]:
    """The numbers tagged `tag`, a line at a time (a Matrix event may hold several lines)."""
    return [int(m.group(1)) for m in (re.search(rf"{tag} (\d+)$", x) for x in lines(texts)) if m]


async def test_two_way_stream(anyio_backend: str, synapse, ngircd, tmp_path):
    hs, run = synapse, uid()
    alice = register(hs, f"tr{run}a", "Alice M")
    account = register(hs, f"tr{run}bridge")
    room = create_room(hs, alice, f"tr{run}")
    channel, nick = f"#tr{run}", f"tr{run}"
    config = {
        "logging": {"level": "INFO"},
        "host": {**FAST_HOST, "hook_timeout": 1.0},
        "plugs": {"irc": irc_plug(ngircd, nick), "matrix": matrix_plug(hs, account)},
        "channels": {"i": {"plug": "irc", "source": channel},
                     "m": {"plug": "matrix", "source": alias_of(hs, f"tr{run}")}},
        "hooks": {"sync": sync_hook({"chat": ["i", "m"]})},
    }
    bridge = Bridge(write_config(tmp_path / "bridge.toml", config), backend=anyio_backend,
                    plugs=["irc", "matrix"], secrets=[account.token])
    bridge.start()
    try:
        await bridge.ready()
        async with HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000) as mx, \
                HumanIRC.connect(ngircd.host, ngircd.port, f"p{uid(7)}") as h:
            await h.join(channel)
            await mx.catch_up()
            t = uid()
            for n in range(ROUNDS):
                await h.privmsg(channel, f"i2m {t} {2 * n}")
                await h.privmsg(channel, f"i2m {t} {2 * n + 1}")
                await mx.send_text(room, f"m2i {t} {n}")
            on_irc = lambda: numbered([l.text for l in privmsgs(h, channel, 0, nick)], f"m2i {t}")  # noqa: E731
            await irc_until(h, lambda: ROUNDS - 1 in on_irc(), timeout=60, what="last Matrix message")
            last = f"i2m {t} {2 * ROUNDS - 1}"
            await matrix_until(mx, lambda: any(last in body(e) for e in mx.events), timeout=60)
            to_irc = Tally(list(range(ROUNDS)), on_irc())
            to_matrix = Tally(list(range(2 * ROUNDS)), numbered(
                [body(e) for e in await room_history(mx, room) if e["sender"] == account.user_id],
                f"i2m {t}"))
    finally:
        code = bridge.stop()
    print(f"\ntwo-way stream ({anyio_backend}): to IRC {to_irc.summary()}, "
          f"to Matrix {to_matrix.summary()}")
    for tally in (to_irc, to_matrix):
        assert not tally.missing and not tally.duplicates and tally.received == tally.sent, tally.summary()
    assert code == 0, bridge.tail()
    bridge.check_clean()
