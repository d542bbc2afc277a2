"""Restarts, outages and rate limits: nothing lost, nothing doubled, order kept."""

from __future__ import annotations

import re
import types

import anyio
import pytest

from chanmux import Hook, Message, User, hookimpl
from chanmux.testing import run_host

from matrix_helpers import client, host_config, human_events, register

pytestmark = pytest.mark.anyio

ALICE = User(id="alice@irc", plug="irc", username="alice", real_name="Alice")


def texts(host):
    return [r.sent.text.plain for r in host.hooks["rec"].received if r.sent.text]


async def wait_text(host, word, timeout=30.0):
    return await host.hooks["rec"].wait_for(
        lambda r: r.sent.text is not None and word in r.sent.text.plain, timeout=timeout)


class Keeper(Hook):
    """Keeps the delivery of every message said "keep ..." for later, as a relay does for a
    target that is down: it takes a hold and never releases it."""

    def on_load(self):
        self.holds = []

    async def on_receive(self, sent, source, primary):
        if sent.text is not None and sent.text.plain.startswith("keep"):
            self.holds.append(self.host.hold())


def keeper_module():
    mod = types.ModuleType("keeper_hooks")

    @hookimpl
    def chanmux_hook_types():
        return {"keeper": Keeper}

    mod.chanmux_hook_types = chanmux_hook_types
    return mod


async def test_a_restart_fetches_again_what_was_not_delivered_and_only_that(synapse, bot, human,
                                                                            tmp_path):
    """The saved /sync position never moves past a message whose delivery is not done: a
    message whose copy was still on its way at the stop comes again after the restart; the
    messages delivered around it (even in the same /sync response) do not."""
    room = await human.create_room(name="undelivered", preset="public_chat")
    config = host_config(synapse, bot, room)
    config["hooks"]["keeper"] = {"type": "keeper"}
    path, modules = tmp_path / "c.toml", [("keeper", keeper_module())]
    async with run_host(config, path=path, modules=modules) as host:
        await human.send_text(room, "before")
        await wait_text(host, "before")
        for word in ("one", "keep two", "three"):
            await human.send_text(room, word)
        await wait_text(host, "three")
        assert len(host.hooks["keeper"].holds) == 1
    async with run_host(config, path=path, modules=modules) as host:
        await human.send_text(room, "after")
        await wait_text(host, "after")
        assert texts(host) == ["keep two", "after"]


async def test_restart_relays_what_was_missed_once(synapse, bot, human, tmp_path):
    room = await human.create_room(name="restart", preset="public_chat")
    for i in range(3):
        await human.send_text(room, f"history {i}")
    config = host_config(synapse, bot, room, timeline_limit=3)
    path = tmp_path / "c.toml"
    async with run_host(config, path=path) as host:
        await human.send_text(room, "live one")
        await wait_text(host, "live one")
        assert texts(host) == ["live one"], "the first start relayed old history"
        (live,) = [r.sent for r in host.hooks["rec"].received if r.sent.text]
    for i in range(8):
        await human.send_text(room, f"missed {i}")
    await human.redact(room, live.id)
    async with run_host(config, path=path) as host:
        await human.send_text(room, "after restart")
        await wait_text(host, "after restart")
        assert texts(host) == [f"missed {i}" for i in range(8)] + ["after restart"]
        deleted = [r.sent for r in host.hooks["rec"].received if r.sent.deleted]
        assert [d.id for d in deleted] == [live.id]
    async with run_host(config, path=path) as host:
        await human.send_text(room, "third run")
        await wait_text(host, "third run")
        assert texts(host) == ["third run"]


async def test_catch_up_skips_what_is_too_old(synapse, bot, human, tmp_path, logwatch):
    room = await human.create_room(name="stale", preset="public_chat")
    path = tmp_path / "c.toml"
    async with run_host(host_config(synapse, bot, room), path=path) as host:
        await human.send_text(room, "fresh")
        await wait_text(host, "fresh")
    for i in range(3):
        await human.send_text(room, f"stale {i}")
    async with run_host(host_config(synapse, bot, room, max_catchup_age=0.0), path=path) as host:
        await human.send_text(room, "new again")
        await wait_text(host, "new again")
        assert texts(host) == ["new again"]
        # the homeserver may hand the missed events over in more than one /sync response
        # (it answers a repeated request from its cache): each is backlog all the same
        def skipped(lines: list[str]) -> int:
            return sum(int(re.search(r"skipped (\d+) events", line)[1]) for line in lines)

        lines = await logwatch.wait_until("older than max_catchup_age", lambda l: skipped(l) >= 3)
        assert skipped(lines) == 3 and texts(host) == ["new again"], lines


async def test_password_login_keeps_its_device(synapse, human, tmp_path):
    bot = register(synapse, "device")
    room = await human.create_room(preset="public_chat")
    config = host_config(synapse, bot, room, password=True, display_name="The Bridge")
    path = tmp_path / "c.toml"
    devices = []
    for _run in range(2):
        async with run_host(config, path=path) as host:
            plug = host.plugs["mx"]
            devices.append(plug.device_id)
            await host.put(host.channels["room"], Message(text=f"run {_run}", user=ALICE))
    assert devices[0] == devices[1] is not None
    async with client(synapse, bot) as me:
        listed = await me.request("GET", "/_matrix/client/v3/devices")
        assert sorted(d["device_id"] for d in listed["devices"]).count(devices[0]) == 1
        assert len(listed["devices"]) == 2  # the registration's and the bridge's
        profile = await me.request("GET", f"/_matrix/client/v3/profile/{bot.user_id}/displayname")
        assert profile["displayname"] == "The Bridge"


async def test_homeserver_down_at_start_is_waited_for(synapse, bot, human, tmp_path, logwatch):
    room = await human.create_room(preset="public_chat")
    await synapse.async_stop()
    try:
        async with run_host(host_config(synapse, bot, room), path=tmp_path / "c.toml",
                            wait_ready=None) as host:
            await logwatch.wait_for("unreachable")
            assert host.plugs["mx"].state.value == "starting"
            await synapse.async_start()
            await host.wait_ready(60)
            await host.put(host.channels["room"], Message(text="made it", user=ALICE))
            await human_events(human, room, lambda e: "made it" in e["content"].get("body", ""), 1)
        assert len(logwatch.lines("unreachable")) == 1
        assert len(logwatch.lines("answers again")) == 1
    finally:
        if not synapse.running:
            await synapse.async_start()


async def test_homeserver_restart_during_a_burst(synapse, bot, human, tmp_path, logwatch):
    room = await human.create_room(preset="public_chat")
    async with run_host(host_config(synapse, bot, room), path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        count = 30
        ids: list[str] = []
        five_done = anyio.Event()

        async def burst():
            for i in range(count):
                receipts = await host.put(channel, Message(text=f"burst {i:02d}", user=ALICE))
                ids.extend(r.id for r in receipts)
                if i == 4:
                    five_done.set()

        async def outage():
            await five_done.wait()
            await synapse.async_restart(kill=True)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(burst)
                tg.start_soon(outage)
        finally:
            if not synapse.running:
                await synapse.async_start()
        assert len(ids) == len(set(ids)) == count
        events = await human_events(human, room, lambda e: e["content"].get("body", "").startswith(
            "Alice: burst"), count, timeout=60)
        bodies = [e["content"]["body"] for e in events]
        assert bodies == [f"Alice: burst {i:02d}" for i in range(count)]
        assert [e["event_id"] for e in events] == ids
        await human.send_text(room, "receiving again")
        await wait_text(host, "receiving again")
        assert host.plugs["mx"].state.value == "active"
    assert len(logwatch.lines("unreachable")) >= 1
    assert len(logwatch.lines("unreachable")) == len(logwatch.lines("answers again"))


async def test_long_outage_fails_puts_and_reconnects(synapse, bot, human, tmp_path, logwatch):
    room = await human.create_room(preset="public_chat")
    config = host_config(synapse, bot, room, send_retry_for=1.0)
    config["host"] = {"reconnect_min": 0.2, "reconnect_max": 1.0}
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec = host.hooks["rec"]
        await synapse.async_stop()
        try:
            await rec.wait_until(lambda: any(s[1] == "failed" for s in rec.states), timeout=30)
            with pytest.raises(ConnectionError):
                await host.put(host.channels["room"], Message(text="lost", user=ALICE))
        finally:
            await synapse.async_start()
        await rec.wait_until(lambda: [s[1] for s in rec.states][-1:] == ["active"], timeout=60)
        await host.put(host.channels["room"], Message(text="back", user=ALICE))
        await human_events(human, room, lambda e: "back" in e["content"].get("body", ""), 1)
        await human.send_text(room, "heard again")
        await wait_text(host, "heard again")
    assert len(logwatch.lines("unreachable")) == 1


async def test_rate_limits_are_honoured_in_order(synapse_rate_limited, tmp_path):
    hs = synapse_rate_limited
    bot, person = register(hs, "limited"), register(hs, "person")
    async with client(hs, person) as human:
        room = await human.create_room(preset="public_chat")
        async with run_host(host_config(hs, bot, room), path=tmp_path / "c.toml") as host:
            channel = host.channels["room"]
            for i in range(4):
                await host.put(channel, Message(text=f"limited {i}", user=ALICE))
            assert host.plugs["mx"].client.rate_limited >= 1
            events = await human_events(human, room, lambda e: "limited" in e["content"].get("body", ""), 4)
            assert [e["content"]["body"] for e in events] == [f"Alice: limited {i}" for i in range(4)]


async def test_a_refused_sync_position_starts_afresh(synapse, bot, human, tmp_path, logwatch):
    room = await human.create_room(preset="public_chat")
    path = tmp_path / "c.toml"
    async with run_host(host_config(synapse, bot, room), path=path) as host:
        await host.store.set_state("mx", "since", {"user_id": bot.user_id, "token": "not-a-token"})
    async with run_host(host_config(synapse, bot, room), path=path) as host:
        await logwatch.wait_for("refused the saved sync position")
        await human.send_text(room, "fresh start")
        await wait_text(host, "fresh start")
        assert texts(host) == ["fresh start"]
