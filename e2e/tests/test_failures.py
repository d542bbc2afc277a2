"""Surviving the bridge itself being killed (SIGKILL) and started again in the middle of a
stream of numbered messages sent from both sides, with edits, deletes and replies to messages
from before the kill checked on the right copies afterwards. (Servers going down, for a short
time and for minutes, are test_chaos.py.)

What arrived is counted on each side: which numbers, in what order, how many twice. What the
IRC protocol cannot deliver is named in the test and excepted; nothing else may be lost, no
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
    matrix_find,
    matrix_plug,
    register,
    room_history,
    sync_hook,
    uid,
    write_config,
)
from streams import BATCH, Stream, report

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only: see the module docstring."""
    return "asyncio"


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
