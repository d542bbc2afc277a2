"""Three places on one sync label: a channel on ngircd, a channel on InspIRCd and a Matrix room,
bridged by one `chanmux run` with two IRC plugs. Each message appears exactly once in each of
the other two places (never back where it was said), every sender's order kept."""

from __future__ import annotations

import re

import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Bridge,
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
    room_messages,
    sync_hook,
    uid,
    write_config,
)

pytestmark = pytest.mark.anyio

PER_SIDE = 12


async def test_three_way_sync(anyio_backend: str, synapse, ngircd, inspircd, tmp_path):
    hs, run = synapse, uid()
    alice = register(hs, f"tw{run}a", "Alice M")
    account = register(hs, f"tw{run}bridge")
    room = create_room(hs, alice, f"tw{run}")
    channel = f"#tw{run}"
    nicks = {"ngircd": f"tn{run}", "inspircd": f"ti{run}"}
    config = {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {"ngircd": irc_plug(ngircd, nicks["ngircd"]),
                  "inspircd": irc_plug(inspircd, nicks["inspircd"], tls=True),
                  "matrix": matrix_plug(hs, account)},
        "channels": {"n": {"plug": "ngircd", "source": channel},
                     "i": {"plug": "inspircd", "source": channel},
                     "m": {"plug": "matrix", "source": alias_of(hs, f"tw{run}")}},
        # IRC copies name the network the author is on; Matrix shows plain names.
        "hooks": {"sync": sync_hook({"chat": ["n", "i", "m"]}, name_format="{name}@{plug}",
                                    plugs={"matrix": {"name_format": "{name}"}})},
    }
    bridge = Bridge(write_config(tmp_path / "bridge.toml", config), backend=anyio_backend,
                    plugs=["ngircd", "inspircd", "matrix"], secrets=[account.token])
    bridge.start()
    try:
        await bridge.ready()
        async with HumanIRC.connect(ngircd.host, ngircd.port, f"n{uid(7)}") as n, \
                HumanIRC.connect(inspircd.host, inspircd.port, f"s{uid(7)}") as s, \
                HumanMatrix(hs.base_url, alice.user_id, alice.token) as m:
            await n.join(channel)
            await s.join(channel)
            await m.catch_up()
            t = uid()
            marks = {"n": n.mark(), "s": s.mark(), "m": len(m.events)}
            for i in range(PER_SIDE):
                await n.privmsg(channel, f"{t} n {i}")
                await s.privmsg(channel, f"{t} s {i}")
                await m.send_text(room, f"{t} m {i}")
            expected = 2 * PER_SIDE

            def on_irc(person: HumanIRC, side: str) -> list[str]:
                nick = nicks["ngircd" if side == "n" else "inspircd"]
                return [l.text for l in privmsgs(person, channel, marks[side], nick) if t in l.text]

            def on_matrix() -> list[str]:  # a line per IRC line (bursts merge into one event)
                return [line for line in lines(body(e) for e in room_messages(
                    m, room, marks["m"], account.user_id)) if t in line]

            await irc_until(n, lambda: len(on_irc(n, "n")) >= expected, 30, "ngircd copies")
            await irc_until(s, lambda: len(on_irc(s, "s")) >= expected, 30, "InspIRCd copies")
            await matrix_until(m, lambda: len(on_matrix()) >= expected, 30, "Matrix copies")
            # A late duplicate would come before these end markers (order per channel is kept).
            await n.privmsg(channel, f"{t} end-n")
            await s.privmsg(channel, f"{t} end-s")
            await m.send_text(room, f"{t} end-m")
            await irc_until(n, lambda: sum("end-" in x for x in on_irc(n, "n")) == 2, 20)
            await irc_until(s, lambda: sum("end-" in x for x in on_irc(s, "s")) == 2, 20)
            await matrix_until(m, lambda: sum("end-" in x for x in on_matrix()) == 2, 20)

            def numbered(texts: list[str]) -> dict[str, list[int]]:
                found: dict[str, list[int]] = {}
                for text in texts:
                    hit = re.search(rf"{t} ([nsm]) (\d+)$", text)
                    if hit:
                        found.setdefault(hit.group(1), []).append(int(hit.group(2)))
                return found

            want = list(range(PER_SIDE))
            got = {"n": numbered(on_irc(n, "n")), "s": numbered(on_irc(s, "s")),
                   "m": numbered(on_matrix())}
            counts = {place: {side: len(v) for side, v in got[place].items()} for place in got}
            print(f"\nthree-way ({anyio_backend}): copies per place and sender: {counts}")
            assert got["n"] == {"s": want, "m": want}
            assert got["s"] == {"n": want, "m": want}
            assert got["m"] == {"n": want, "s": want}
            # Who said it, and where: IRC copies carry the author and their plug.
            assert f"<{s.nick}@inspircd> {t} s 0" in on_irc(n, "n")
            assert f"<Alice M@matrix> {t} m 0" in on_irc(s, "s")
            assert f"{n.nick}: {t} n 0" in on_matrix()
    finally:
        code = bridge.stop()
    assert code == 0, bridge.tail()
    bridge.check_clean()
