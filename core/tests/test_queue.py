"""The delivery queue (`chanmux.queue`): a relay's copies reach a target whatever it does.

Every test drives a small relay hook written with only the public API (`QueuedRelayHook` in
core_helpers.py: `#in` on plug a to channel "out" on plug b), between two memory networks.
"""

from __future__ import annotations

import logging
import re
import time

import anyio
import pytest

from chanmux import RichText, Segment, State, TryLater
from chanmux.testing import make_host, run_host

import core_helpers as helpers

pytestmark = pytest.mark.anyio

MODULES = [("test-hooks", helpers.module())]


def config(**relay):
    return {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"relay": {"type": "queued-relay", **relay}, "rec": {"type": "recorder"}},
        "host": {"reconnect_min": 0.001, "reconnect_max": 0.002, "hook_timeout": 10.0},
    }


async def until_failed(host, name="b"):
    await host.hooks["rec"].wait_until(lambda: any(s[:2] == (name, "failed")
                                                   for s in host.hooks["rec"].states))


async def test_copies_wait_while_the_target_logs_in_again_and_none_is_tried_meanwhile(tmp_path):
    """The regression behind "0 of 5 lines reached Matrix": copies were tried while the target
    was still logging in, and given up. Now nothing is tried until the plug is ready."""
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        gate = b.hold_opens()
        b.fail("homeserver restarted")
        await until_failed(host)
        await b.wait_for(lambda: b.opens >= 2)          # connecting: open() waits at the gate
        assert host.plug_state("b") == "starting"
        done: list[int] = []
        all_done = anyio.Event()

        def handled(i: int) -> None:
            done.append(i)
            if len(done) == 5:
                all_done.set()

        for i in range(5):
            await a.inject("#in", f"m{i}", on_handled=lambda i=i: handled(i))
        await host.hooks["rec"].wait_until(lambda: len(host.hooks["rec"].received) == 5)
        await host.wait_idle()
        assert b.sent == [] and done == []               # each message waits for its copy
        assert b.calls_while_down == 0                   # never tried while not ready
        gate.set()
        await b.wait_for(lambda: len(b.sent) == 5)
        assert b.texts() == [f"m{i}" for i in range(5)]
        with anyio.fail_after(10):
            await all_done.wait()
        assert sorted(done) == list(range(5))


@pytest.mark.parametrize("attempts", [1, 40, 400])
async def test_an_outage_of_any_length_loses_nothing(tmp_path, attempts):
    """The target stays down for `attempts` failed reconnections (past any retry budget) while
    300 messages are said; all arrive once, in order, when it is back."""
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        b.fail_next_opens(attempts)
        b.fail("gone")
        await until_failed(host)
        for i in range(300):
            await a.inject("#in", f"m{i:03d}")
        await b.wait_for(lambda: len(b.sent) == 300, timeout=60)
        await host.hooks["relay"].queues.wait_idle()
        assert b.texts() == [f"m{i:03d}" for i in range(300)]
        assert b.opens >= attempts + 1


async def test_failures_that_will_pass_are_retried_while_the_plug_stays_up(tmp_path, caplog):
    """429, a dropped connection and a timeout while the plug stays connected: the copy is
    tried again (with backoff), keeps its place, and nothing after it overtakes it."""
    caplog.set_level(logging.INFO)
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        b.fail_next_puts(TryLater("HTTP 429 M_LIMIT_EXCEEDED"), ConnectionResetError("reset"),
                         TimeoutError())
        for i in range(3):
            await a.inject("#in", f"m{i}")
        await b.wait_for(lambda: len(b.sent) == 3)
        assert b.texts() == ["m0", "m1", "m2"]
        assert b.state is State.active
    waits = [r.getMessage() for r in caplog.records if "cannot deliver to b:#out" in r.getMessage()]
    assert len(waits) == 1 and "TryLater: HTTP 429 M_LIMIT_EXCEEDED" in waits[0]
    assert re.search(r"b:#out takes copies again after [\d.]+s; delivering the 3 copies",
                     caplog.text)


async def test_content_the_network_refuses_goes_as_plain_text_then_as_a_notice(tmp_path, caplog):
    """Refused for good: the copy goes as plain text; refused again, as a short notice; never
    silence."""
    caplog.set_level(logging.WARNING)
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        b.refuse = lambda msg: "formatting not allowed" if any(
            s.bold for s in msg.text or ()) else None
        await a.inject("#in", RichText([Segment("big", bold=True), Segment(" news")]))
        await b.wait_for(lambda: len(b.sent) == 1)
        assert b.texts() == ["big news"] and not any(s.bold for s in b.sent[0].msg.text)
        b.refuse = lambda msg: None if msg.notice else "too long for this network"
        await a.inject("#in", "x" * 50, user=a.user("alice"))
        await b.wait_for(lambda: len(b.sent) == 2)
        notice = b.sent[1].msg
        assert notice.notice and notice.user.username == "alice"
        assert notice.text.plain == "(a message could not be shown here: Refused: too long for " \
                                    "this network)"
    assert "sending it as plain text" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_only_the_limit_drops_copies_and_says_how_many(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    async with run_host(config(limit=3), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        b.fail_next_opens(10**9)
        b.fail("down")
        await until_failed(host)
        for i in range(5):
            await a.inject("#in", f"m{i}")
        await host.wait_idle()
        b.fail_next_opens(0)
        await b.wait_for(lambda: len(b.sent) == 3)
        await host.hooks["relay"].queues.wait_idle()
        assert b.texts() == ["m2", "m3", "m4"]
    drops = [r.getMessage() for r in caplog.records if "drop" in r.getMessage()]
    assert drops == ["relay: b:#out: dropping the oldest copies waiting for b: more than 3 "
                     "copies wait (limit)",
                     "relay: 2 copies for b:#out were dropped while they waited"]


async def test_copies_waiting_at_a_stop_are_kept_and_delivered_after_the_next_start(tmp_path):
    """Kept in the database with their delivery key, so a network that de-duplicates by it
    (Matrix transaction ids) can tell a copy sent again from a new one."""
    cfg = config()
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        b.fail_next_opens(10**9)
        b.fail("down")
        await until_failed(host)
        said = [await a.inject("#in", f"m{i}") for i in range(3)]
        await host.wait_idle()
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        b = host.plugs["b"]
        await b.wait_for(lambda: len(b.sent) == 3)
        assert b.texts() == ["m0", "m1", "m2"]
        assert [e.key for e in b.sent] == [f"a:#in|{m.id}" for m in said]
        await host.hooks["relay"].queues.wait_idle()
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        b = host.plugs["b"]
        await host.plugs["a"].inject("#in", "after")
        await b.wait_for(lambda: b.texts() == ["after"])   # the kept ones: not again


async def test_a_copy_older_than_max_age_is_dropped_with_a_count(tmp_path, caplog):
    """An explicit age limit: a copy kept from a run an hour ago is dropped, and said."""
    caplog.set_level(logging.WARNING)
    cfg = config(max_age=60.0)
    host = make_host(cfg, path=tmp_path / "x.toml", modules=MODULES)
    from chanmux import Message, codec

    old = {"msg": codec.dump(Message(text="an hour old")), "key": "k1", "since": time.time() - 3600}
    new = {"msg": codec.dump(Message(text="recent")), "key": "k2", "since": time.time()}
    await host.store.run(host.store.create, [m for m in host.pm.hook.chanmux_metadata() if m])
    await host.store.set_state("relay", "queued", [old, new])
    async with run_host(host, wait_ready=30) as host:
        b = host.plugs["b"]
        await b.wait_for(lambda: b.texts() == ["recent"])
        await host.hooks["relay"].queues.wait_idle()
    assert "dropping the oldest copies waiting for b: older than 60s (max_age)" in caplog.text


async def test_the_target_plug_state_is_known_to_relays(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        b = host.plugs["b"]
        assert host.plug_ready("b") and host.plug_state("b") == "active"
        first = host.plug_connection("b")
        b.fail("flap")
        with anyio.fail_after(10):
            await host.until_ready("b", newer_than=first)
        assert host.plug_connection("b") == first + 1 and host.plug_ready("b")


async def test_a_stop_lets_a_copy_on_its_way_arrive_rather_than_keep_it(tmp_path):
    """A clean stop while a put is under way (the network has not answered yet) waits for
    it (at most `SETTLE` seconds): the copy arrives once, nothing is kept for the next start,
    and so the next start sends it no second time."""
    cfg = config()
    cfg["plugs"]["b"] = {"type": "gated"}
    modules = [*MODULES, ("gated", helpers.gated_module())]
    path = tmp_path / "x.toml"
    async with run_host(cfg, path=path, modules=modules) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#in", "on its way")
        await b.wait_for(lambda: len(b.gates) == 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.stop)
            b.gates[0].set()
    assert b.texts() == ["on its way"]
    async with run_host(cfg, path=path, modules=modules) as host:
        assert host.hooks["relay"].queues.waiting == 0
        assert host.plugs["b"].texts() == []
