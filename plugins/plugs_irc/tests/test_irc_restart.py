"""A clean restart of the bridge (real servers, the same database file): nothing said twice on
IRC, nothing queued lost, and replies to lines said before the restart still map."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from chanmux import Message, Receipt, Store, User
from chanmux_irc.store import OwnMsgids, metadata, own_msgids, read_receipt, write_rows

from irc_helpers import bridge, from_nick, human, sees, unique

pytestmark = pytest.mark.anyio

#: One line a second: a stop right after the first line leaves the others queued (whether the
#: first is confirmed yet is a race; test_raw_server.py stops with a line unconfirmed for sure).
SLOW = {"flood_burst": 1, "flood_rate": 1.0}


def text_of(record) -> str:
    return record.sent.text.plain if record.sent.text is not None else ""


async def test_a_clean_restart_says_each_line_once(ircd, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    chan, nick = "#" + unique("once"), unique("once")
    async with human(ircd) as a:
        await a.join(chan)
        async with bridge(ircd, tmp_path, {"room": chan}, nick=nick, **SLOW) as host:
            plug, room = host.plugs["irc"], host.channels["room"]
            for i in range(4):
                await host.put(room, Message(text=f"line {i}", user=User(username="q")))
            await sees(a, plug.nick, lambda s: s.plain == "<q> line 0")
            first = plug.nick
        before = [l.text for l in a.lines if from_nick(l, first, chan)]
        assert 1 <= len(before) < 4, "some lines should still be queued at the stop"
        assert any("unsent lines for the next start" in r.getMessage() for r in caplog.records)
        mark = len(a.lines)
        async with bridge(ircd, tmp_path, {"room": chan}, nick=nick, **SLOW) as host:
            plug = host.plugs["irc"]
            await host.put(host.channels["room"], Message(text="after", user=User(username="q")))
            await sees(a, plug.nick, lambda s: s.plain == "<q> after", since=mark, timeout=30)
            second = plug.nick
    said = [l.text for l in a.lines if from_nick(l, first, chan) or from_nick(l, second, chan)]
    assert said == [f"<q> line {i}" for i in range(4)] + ["<q> after"]


async def test_a_reply_to_a_line_said_before_a_restart_maps_to_its_receipt(inspircd, tmp_path):
    chan, nick = "#" + unique("replied"), unique("replied")
    async with human(inspircd, caps=["message-tags"]) as a:
        await a.join(chan)
        async with bridge(inspircd, tmp_path, {"room": chan}, nick=nick) as host:
            plug, rec = host.plugs["irc"], host.hooks["rec"]
            (receipt,) = await host.put(host.channels["room"], Message(text="said before"))
            ours = await a.wait_for(lambda l: l.command == "PRIVMSG" and l.text == "said before")
            msgid = ours.tags["msgid"]
            # The server echoed our line to the plug before relaying the human's next one.
            await a.privmsg(chan, "barrier")
            await rec.wait_for(lambda r: text_of(r) == "barrier")
            assert plug.own_id(msgid) == receipt.id
            # Written while running, in a batch: a crash now would not lose it.
            await plug.own_msgids.writer.flush()
            stored = await host.store.transaction(lambda conn: read_receipt(conn, "irc", msgid))
            assert stored == receipt.id
        async with bridge(inspircd, tmp_path, {"room": chan}, nick=nick) as host:
            plug, rec = host.plugs["irc"], host.hooks["rec"]
            assert msgid not in plug.own_msgids  # not in memory: it comes from the database
            await a.privmsg(chan, "answer", tags={"+draft/reply": msgid})
            got = await rec.wait_for(lambda r: text_of(r) == "answer")
            assert isinstance(got.sent.reply_to, Receipt)
            assert got.sent.reply_to.id == receipt.id


async def test_a_reply_to_the_last_line_before_a_stop_maps_to_its_receipt(inspircd, tmp_path):
    """Stopped as soon as a line is seen: its echo reached the plug either before the stop or
    while the plug had the server confirm its lines; either way its msgid is kept."""
    chan, nick = "#" + unique("last"), unique("last")
    async with human(inspircd, caps=["message-tags"]) as a:
        await a.join(chan)
        async with bridge(inspircd, tmp_path, {"room": chan}, nick=nick, **SLOW) as host:
            room = host.channels["room"]
            (receipt,) = await host.put(room, Message(text="last words"))
            await host.put(room, Message(text="queued words"))
            ours = await a.wait_for(lambda l: l.command == "PRIVMSG" and l.text == "last words",
                                    timeout=20)
        async with bridge(inspircd, tmp_path, {"room": chan}, nick=nick) as host:
            rec = host.hooks["rec"]
            await a.wait_for(lambda l: l.command == "PRIVMSG" and l.text == "queued words",
                             timeout=20)
            await a.privmsg(chan, "answer", tags={"+draft/reply": ours.tags["msgid"]})
            got = await rec.wait_for(lambda r: text_of(r) == "answer")
            assert got.sent.reply_to.id == receipt.id
    said = [l.text for l in a.lines if l.command == "PRIVMSG" and "words" in l.text]
    assert said == ["last words", "queued words"]


async def test_msgids_learned_after_the_writers_stopped_are_saved(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.run(store.create, [metadata])
    memory = OwnMsgids("p", 3, store)
    memory["early"] = "r1"      # handed to the batch writer, which never ran
    memory.closing = True
    memory["late"] = "r2"       # learned while closing: held for save()
    assert await memory.save() == 2
    again = OwnMsgids("p", 3, store)
    assert [await again.fetch("early"), await again.fetch("late"), await again.fetch("x")] == [
        "r1", "r2", None]
    assert again.reads == 3 and await again.fetch("late") == "r2" and again.reads == 3
    await store.run(store.dispose)


def test_the_msgid_table_keeps_the_newest_rows_of_each_plug():
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        write_rows(conn, [("a", f"m{i}", f"r{i}") for i in range(4)], keep=3)
        write_rows(conn, [("b", "m0", "other")], keep=3)
        write_rows(conn, [("a", f"m{i}", "again") for i in range(4, 7)] + [("a", "m6", "dup")],
                   keep=3)
        rows = conn.execute(sa.select(own_msgids.c.plug, own_msgids.c.msgid, own_msgids.c.receipt)
                            .order_by(own_msgids.c.id)).all()
    assert [tuple(r) for r in rows] == [("b", "m0", "other"), ("a", "m4", "again"),
                                        ("a", "m5", "again"), ("a", "m6", "again")]
