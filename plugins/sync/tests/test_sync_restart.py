"""Sync state lives in the host database: a new host on the same SQLite file maps edits,
deletes and replies of messages synced before the restart."""

import types

import anyio
import pytest
import sqlalchemy as sa

from chanmux import BatchWriter, Hook, Receipt, hookimpl
from chanmux.testing import make_host, run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


def rows(path):
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            "select key, plug, channel, message, origin, author, excerpt from sync_backref "
            "order by id")).all()
    engine.dispose()
    return found


async def first_run(tmp_path, cfg, count=3):
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        originals = [await a.inject("#a", f"before {i}", user=a.user("alice", "Alice")) for i in range(count)]
        await c.wait_for(lambda: len(c.sent) == count)
        await settle(host)
        copies = {n: [e.receipt for e in host.plugs[n].sent] for n in "bc"}
    return originals, copies


async def test_anchor_edits_and_deletes_after_a_restart_reach_the_old_copies(tmp_path):
    cfg = config(plugs={"a": {}, "b": {"edit": False}, "c": {}})
    originals, copies = await first_run(tmp_path, cfg)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "after edit", id=originals[1].id, edited=True)
        await c.wait_for(lambda: len(c.edits) == 1)
        await b.wait_for(lambda: len(b.sent) == 1)
        assert c.edits[0].receipt.id == copies["c"][1].id
        assert b.sent[0].msg.edit_of.id == copies["b"][1].id
        await settle(host)
        await a.inject("#a", None, id=originals[1].id, deleted=True)
        await b.wait_for(lambda: len(b.deletes) == 2)
        await c.wait_for(lambda: len(c.deletes) == 1)
        await settle(host)
        assert {d.receipt.id for d in b.deletes} == {copies["b"][1].id, b.sent[0].receipt.id}
        assert c.deletes[0].receipt.id == copies["c"][1].id
        assert a.deletes == [] and a.texts() == []
        assert host.hooks["sync"].cache.reads >= 1


async def test_anchor_reply_to_a_message_loaded_from_the_database_after_restart(tmp_path):
    cfg = config()
    originals, copies = await first_run(tmp_path, cfg)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        # a receipt alone (no text), as a network gives it: IMMP crashed here
        parent = copies["b"][0]
        await b.inject("#b", "late answer", reply_to=Receipt(id=parent.id, channel=parent.channel))
        await a.wait_for(lambda: a.sent)
        await c.wait_for(lambda: c.sent)
        to_a, to_c = a.sent[0].msg.reply_to, c.sent[0].msg.reply_to
        assert to_a.id == originals[0].id and to_a.channel == originals[0].channel
        assert to_c.id == copies["c"][0].id
        assert to_a.text.plain == "before 0" and to_a.user.real_name == "Alice"
        assert a.sent[0].msg.text.plain == "late answer"


async def test_a_reply_quotes_a_pre_restart_parent_where_it_never_arrived(tmp_path):
    cfg = config()
    originals, _ = await first_run(tmp_path, cfg)
    cfg2 = config(plugs={"a": {}, "b": {}, "c": {}, "d": {}})
    async with run_host(cfg2, path=tmp_path / "x.toml") as host:
        a, d = host.plugs["a"], host.plugs["d"]
        await a.inject("#a", "reply", reply_to=Receipt(id=originals[2].id, channel=originals[2].channel))
        await d.wait_for(lambda: d.sent)
        assert d.sent[0].msg.text.plain == "> Alice: before 2\nreply"
        assert d.sent[0].msg.reply_to is None


async def test_anchor_every_copy_is_one_row_and_keys_are_unique_across_restarts(tmp_path):
    cfg = config()
    await first_run(tmp_path, cfg, count=2)
    await first_run(tmp_path, cfg, count=2)
    found = rows(tmp_path / "x.sqlite")
    assert len(found) == 4 * 3
    keys = {r.key for r in found}
    assert len(keys) == 4, "message keys collided across runs"
    for key in keys:
        mine = [r for r in found if r.key == key]
        assert sorted(r.plug for r in mine) == ["a", "b", "c"]
        [origin] = [r for r in mine if r.origin]
        assert origin.plug == "a" and origin.author == "Alice" and origin.excerpt.startswith("before")


async def test_anchor_rows_are_written_in_batches(tmp_path):
    cfg = config()
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        for i in range(200):
            await a.inject("#a", f"m{i}")
        await c.wait_for(lambda: len(c.sent) == 200)
        await settle(host)
        writer = host.hooks["sync"].cache.writer
        await writer.flush()
        assert writer.batches < 200, "one transaction per row"
    assert len(rows(tmp_path / "x.sqlite")) == 600


async def test_without_persistence_nothing_is_written(tmp_path):
    cfg = config(persist=False)
    await first_run(tmp_path, cfg, count=2)
    assert rows(tmp_path / "x.sqlite") == []


async def test_the_tables_come_from_the_plugin_metadata(tmp_path):
    host = make_host(config(), path=tmp_path / "x.toml")
    names = set()
    for md in host.pm.hook.chanmux_metadata():
        if md is not None:
            names |= set(md.tables)
    assert "sync_backref" in names


async def test_rows_a_cancelled_batch_lost_are_written_at_close(tmp_path, caplog):
    """The host's batch writer can lose a batch cancelled at shutdown before it reached the
    database; the sync writes such rows itself when it closes."""
    cfg = config()
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        cache = host.hooks["sync"].cache
        await cache.writer.flush()
        # from here on a writer takes the rows and never writes them, like one whose batch
        # was cancelled at shutdown before it reached the database (the host does not run it)
        cache.writer = BatchWriter(host.store, "lost", cache.write)
        await a.inject("#a", "late")
        await c.wait_for(lambda: c.sent)
        await settle(host)
        assert cache.writer.pending == 3
    assert len(rows(tmp_path / "x.sqlite")) == 3
    assert "wrote 3 sync rows" in caplog.text


async def test_a_database_backlog_makes_the_chat_wait_for_it(tmp_path):
    """Rows the database has not taken yet are bounded: past `write_backlog` a message waits
    for them to be written, so memory stays flat when the database is slower than the chat."""
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, c = host.plugs["a"], host.plugs["c"]
        sync = host.hooks["sync"]
        sync.write_backlog = 0
        for i in range(20):
            await a.inject("#a", f"m{i}")
        await c.wait_for(lambda: len(c.sent) == 20)
        await settle(host)
        assert sync.cache.writer.pending <= 2
    assert len(rows(tmp_path / "x.sqlite")) == 60


async def test_copies_waiting_for_a_plug_that_is_down_survive_a_stop(tmp_path, caplog):
    """Said while b is down and the bridge then stopped, messages reach b after the next start,
    once each, in order, with formatting and author; c got them at once and not again. Edits
    of them after the restart still reach b's copies."""
    import logging

    from chanmux import RichText, Segment

    caplog.set_level(logging.INFO)
    cfg = config()
    cfg["host"].update(reconnect_min=0.2, reconnect_max=0.2)
    bold = RichText([Segment("bold", bold=True), Segment(" news")])
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        b.fail_next_opens(10_000)
        b.fail("down")
        await rec.wait_until(lambda: any(s[:2] == ("b", "failed") for s in rec.states))
        first = await a.inject("#a", bold, user=a.user("alice", "Alice"))
        await a.inject("#a", "second")
        await c.wait_for(lambda: c.texts() == ["bold news", "second"])
        await settle(host)   # c's courier is done (a put cut short by the stop is kept too)
    assert "sync: kept 2 copies not yet delivered, for the next start" in caplog.text
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await b.wait_for(lambda: b.texts() == ["bold news", "second"])
        assert list(b.sent[0].msg.text) == list(bold) and b.sent[0].msg.user.real_name == "Alice"
        await a.inject("#a", "bold news, edited", id=first.id, edited=True)
        await b.wait_for(lambda: len(b.edits) == 1)
        assert b.edits[0].receipt.id == b.sent[0].receipt.id
        await settle(host)
        assert c.texts() == [] and len(b.sent) == 2
    assert "sync: 2 copies kept from the last run will be delivered" in caplog.text
    async with run_host(cfg, path=tmp_path / "x.toml") as host:   # delivered: not again
        b = host.plugs["b"]
        await host.plugs["a"].inject("#a", "third")
        await b.wait_for(lambda: b.texts() == ["third"])


async def test_a_message_received_again_after_a_crash_goes_only_where_it_had_not_arrived(tmp_path):
    """What a bridge killed mid-way leaves: a message kept in the host's inbox (received from
    a network without history, not done), relayed to b before the kill but not to c. After the
    restart the host hands it over again (`replayed`), and sync sends it to c only."""
    cfg = config(plugs={"a": {"journal": True}, "b": {}, "c": {}})
    path = tmp_path / "x.toml"
    async with run_host(cfg, path=path) as host:
        a, c = host.plugs["a"], host.plugs["c"]
        said = await a.inject("#a", "said before the kill", user=a.user("alice", "Alice"))
        await c.wait_for(lambda: len(c.sent) == 1)
        await settle(host)
        host.inbox.keep(said)                   # as if its "done" never reached the disk
        await host.inbox.journal.writer.flush()
        sync = host.hooks["sync"]
        await sync.cache.writer.flush()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.begin() as conn:                # and as if c's copy had never been made
        conn.execute(sa.text("delete from sync_backref where plug = 'c'"))
    engine.dispose()
    async with run_host(cfg, path=path) as host:
        b, c = host.plugs["b"], host.plugs["c"]
        await c.wait_for(lambda: c.texts() == ["said before the kill"])
        await settle(host)
        assert b.sent == []                     # b had it: not again
        assert c.sent[0].msg.user.real_name == "Alice"
    async with run_host(cfg, path=path) as host:  # done now: not handed over a third time
        b, c = host.plugs["b"], host.plugs["c"]
        await host.plugs["a"].inject("#a", "next")
        await c.wait_for(lambda: c.texts() == ["next"])
        await settle(host)
        assert b.texts() == ["next"]


class Stuck(Hook):
    """Keeps the lane busy with every message saying "stuck ..." (until the host stops)."""

    async def on_receive(self, sent, source, primary):
        if sent.text and sent.text.plain.startswith("stuck"):
            await anyio.sleep_forever()


def stuck_module():
    mod = types.ModuleType("stuck_hooks")
    mod.chanmux_hook_types = hookimpl(lambda: {"stuck": Stuck})
    return mod


async def test_messages_not_handled_at_a_stop_are_handed_over_after_the_start(tmp_path):
    """A network without history (`journal`): what it received and the hooks had not handled
    when the bridge stopped is in the inbox and reaches the other channels after the start."""
    cfg = config(plugs={"a": {"journal": True}, "b": {}, "c": {}})
    path, modules = tmp_path / "x.toml", [("stuck", stuck_module())]
    stuck_cfg = {**cfg, "hooks": {**cfg["hooks"], "stuck": {"type": "stuck", "priority": 1}}}
    async with run_host(stuck_cfg, path=path, modules=modules) as host:
        a = host.plugs["a"]
        await a.inject("#a", "stuck 1")
        await a.inject("#a", "stuck 2")
        await host.inbox.journal.writer.flush()
    async with run_host(cfg, path=path) as host:
        b, c = host.plugs["b"], host.plugs["c"]
        await c.wait_for(lambda: c.texts() == ["stuck 1", "stuck 2"])
        await b.wait_for(lambda: b.texts() == ["stuck 1", "stuck 2"])
        await settle(host)


async def test_a_reply_to_an_edited_message_quotes_its_current_text_also_after_a_restart(tmp_path):
    cfg = config()
    originals, copies = await first_run(tmp_path, cfg, count=1)
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a = host.plugs["a"]
        await a.inject("#a", "before 0, corrected", id=originals[0].id, edited=True, revision="r1",
                       user=a.user("alice", "Alice"))
        await settle(host)
    cfg2 = config(plugs={"a": {}, "b": {}, "c": {}, "d": {}})
    async with run_host(cfg2, path=tmp_path / "x.toml") as host:
        b, d = host.plugs["b"], host.plugs["d"]
        parent = copies["b"][0]
        await b.inject("#b", "answer", reply_to=Receipt(id=parent.id, channel=parent.channel))
        await d.wait_for(lambda: d.sent)
        assert d.sent[0].msg.text.plain == "> Alice: before 0, corrected\nanswer"
