"""A target that fails never stops delivery to the others; deliveries to a plug that is down
wait and go out, in order, when it is back."""

import logging
import re

import anyio
import pytest

from chanmux import State
from chanmux.testing import run_host

from sync_helpers import config, settle

pytestmark = pytest.mark.anyio


def slow_reconnects():
    """A config whose plugs retry their connection a few times a second, not a hundred."""
    cfg = config()
    cfg["host"].update(reconnect_min=0.2, reconnect_max=0.2)
    return cfg


async def test_a_disconnected_target_does_not_stop_the_others_and_catches_up(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with run_host(slow_reconnects(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        b.fail_next_opens(10_000)
        b.fail("gone for a while")
        await rec.wait_until(lambda: ("b", "failed", "ConnectionResetError: gone for a while") in rec.states)
        m = await a.inject("#a", "while b is down")
        await a.inject("#a", "second while down")
        await c.wait_for(lambda: c.texts() == ["while b is down", "second while down"])
        await a.inject("#a", "edited while down", id=m.id, edited=True)
        await c.wait_for(lambda: len(c.edits) == 1)
        await host.wait_idle()
        b.fail_next_opens(0)
        await b.wait_for(lambda: b.state is State.active and len(b.sent) == 2, timeout=30)
        await settle(host)
        assert b.texts() == ["edited while down", "second while down"]
        await a.inject("#a", "after")
        await b.wait_for(lambda: b.texts()[-1:] == ["after"])
    lines = [r.getMessage() for r in caplog.records if "cannot deliver to b:#b" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert re.search(r"\(b is disconnected\); 1 copy waits until b is ready", lines[0])
    assert re.search(r"sync: b:#b takes copies again after [\d.]+s; delivering the 2 copies "
                     r"that waited", caplog.text)


async def test_a_delete_while_down_cancels_the_queued_copy(tmp_path):
    async with run_host(slow_reconnects(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        b.fail_next_opens(10_000)
        b.fail("down")
        await rec.wait_until(lambda: any(s[:2] == ("b", "failed") for s in rec.states))
        m = await a.inject("#a", "regretted")
        await a.inject("#a", None, id=m.id, deleted=True)
        await a.inject("#a", "kept")
        await c.wait_for(lambda: "kept" in c.texts(), timeout=30)
        await settle(host)
        # c is up: it got the copy and its delete, or (deleted before its turn) neither
        assert c.texts() in (["regretted", "kept"], ["kept"])
        assert len(c.deletes) == len(c.texts()) - 1
        await host.wait_idle()
        b.fail_next_opens(0)
        await b.wait_for(lambda: b.state is State.active and b.texts() == ["kept"], timeout=30)
        await settle(host)
        assert b.texts() == ["kept"]


async def test_a_target_raising_an_error_is_logged_in_one_line(tmp_path, caplog):
    """A put that fails for good whatever is sent: the plain-text and notice fallbacks are
    tried, then the copy is given up with one ERROR line naming the target and the cause."""
    caplog.set_level(logging.WARNING)
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")

        async def broken(channel, msg):
            raise ValueError("cannot render this")

        b.put = broken
        host.pm.unregister(b)
        host.pm.register(b, name="b")
        if hasattr(host.caller, "invalidate"):
            host.caller.invalidate()
        await a.inject("#a", "hello")
        await c.wait_for(lambda: c.texts() == ["hello"])
        await host.wait_idle()
        await host.hooks["sync"].delivered()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["sync: gave up delivering a copy (put) to b:#b: ValueError: cannot render this"]
    assert "sending it as plain text" in caplog.text and "sending it as a short notice" in caplog.text


async def test_a_slow_target_holds_up_no_other_and_keeps_its_order(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        gate = anyio.Event()
        real_put = b.put

        async def slow_put(channel, msg):
            await gate.wait()
            return await real_put(channel, msg)

        b.put = slow_put
        host.pm.unregister(b)
        host.pm.register(b, name="b")
        for i in range(5):
            await a.inject("#a", f"m{i}")
        await c.wait_for(lambda: len(c.sent) == 5)
        assert b.sent == []
        gate.set()
        await b.wait_for(lambda: len(b.sent) == 5)
        await settle(host)
        assert b.texts() == c.texts() == [f"m{i}" for i in range(5)]


async def test_a_message_is_done_only_once_its_copies_are_delivered(tmp_path):
    """The plug a message came from is told it is done (and may move its resume point past
    it) only once every copy has arrived: a copy waiting for a plug that is down holds it."""
    async with run_host(slow_reconnects(), path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        rec = host.hooks["rec"]
        done: list[str] = []
        await a.inject("#a", "while all are up", on_handled=lambda: done.append("first"))
        await c.wait_for(lambda: c.texts() == ["while all are up"])
        await b.wait_for(lambda: b.texts() == ["while all are up"])
        await settle(host)
        assert done == ["first"]
        b.fail_next_opens(10_000)
        b.fail("gone for a while")
        await rec.wait_until(lambda: any(s[:2] == ("b", "failed") for s in rec.states))
        second = anyio.Event()

        def second_done() -> None:
            done.append("second")
            second.set()

        await a.inject("#a", "while b is down", on_handled=second_done)
        await c.wait_for(lambda: c.texts()[-1:] == ["while b is down"])
        await host.wait_idle()
        assert done == ["first"]            # c has it, b does not yet
        b.fail_next_opens(0)
        await b.wait_for(lambda: b.texts()[-1:] == ["while b is down"], timeout=30)
        with anyio.fail_after(10):
            await second.wait()
        assert done == ["first", "second"]
