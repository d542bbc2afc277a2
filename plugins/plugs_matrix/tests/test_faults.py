"""The plug behind a homeserver that fails: 5xx, 429, replies cut short, dropped connections,
a revoked login and wrong credentials. What the human sees in the room is the measure.

Every test relays what is said in `#in` on a memory plug `a` to a Matrix room through core's
delivery queue (the relay below uses only the public API, as a third party's would), with
the plug's `homeserver` pointed at a FaultProxy in front of the real Synapse.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import anyio
import attrs
import httpx
import pytest

from chanmux import Delivery, DeliveryQueues, Hook, Message, codec, hookimpl
from chanmux.testing import make_host, run_host

from matrix_helpers import Account, register

pytestmark = pytest.mark.anyio

SEND = r"/send/m\.room\.message/"
#: the host's slowest reconnection: a plug needing action is retried this often
RECONNECT_MAX = 1.0


@attrs.frozen
class RelayConfig:
    retry_min: float = 0.05
    retry_max: float = 0.5


class Relay(Hook):
    """Relays `a:#in` to the channel named "out" through a `DeliveryQueues`, edits as edits;
    keeps the receipts of its copies (`copies`, `edits`: by the id of the message in #in)."""

    Config = RelayConfig

    def on_load(self) -> None:
        self.out = self.host.channel("out")
        self.copies: dict[str, list[Any]] = {}
        self.edits: dict[str, list[Any]] = {}
        self._stored: anyio.Event | None = None
        self.queues = DeliveryQueues(self.host, self.name, self._execute,
                                     retry_min=self.config.retry_min,
                                     retry_max=self.config.retry_max,
                                     dump=self._dump, load=self._load)
        self.queues.add(self.out)

    async def open(self) -> None:
        await self.queues.restore()
        self.queues.start()

    async def close(self) -> None:
        await self.queues.save()

    async def on_receive(self, sent, source, primary) -> None:
        if self.host.is_echo(sent) or sent.channel.source != "#in" or not sent.text:
            return
        copy = Message(text=sent.text, user=sent.user)
        kind = "edit" if sent.edited else "put"
        key = f"{sent.channel}|{sent.id}|{kind}|{sent.revision or ''}"
        await self.queues[self.out].deliver(Delivery(kind, copy, ref=sent.id, key=key,
                                                     hold=self.host.hold()))

    async def _execute(self, channel, item: Delivery) -> None:
        if item.kind == "edit":
            self.edits[item.ref] = await self.host.edit(self.copies[item.ref][0], item.msg)
        else:
            self.copies[item.ref] = await self.host.put(channel, item.msg)
        if self._stored is not None:
            self._stored.set()
            self._stored = None

    async def copy_of(self, ref: str) -> list[Any]:
        """The receipts of the copy of `ref`, once its put has returned (a Matrix client can
        see the event before that: the homeserver has it while the plug still waits for the
        reply, or asks again after a reply cut short)."""
        try:
            with anyio.fail_after(30):
                while ref not in self.copies:
                    if self._stored is None:
                        self._stored = anyio.Event()
                    await self._stored.wait()
        except TimeoutError:
            raise AssertionError(f"relay: the put of the copy of {ref} did not return in 30 s; "
                                 f"copies so far: {sorted(self.copies)}") from None
        return self.copies[ref]

    def _dump(self, channel, item: Delivery) -> dict[str, Any]:
        return {"kind": item.kind, "ref": item.ref, "msg": codec.dump(item.msg),
                "key": item.key, "since": item.since}

    def _load(self, row: dict[str, Any]) -> tuple[Any, Delivery]:
        return self.out, Delivery(row["kind"], codec.load(row["msg"]), ref=row["ref"],
                                  key=row["key"], since=row["since"])


def relay_module() -> types.ModuleType:
    mod = types.ModuleType("fault_relay")
    mod.chanmux_hook_types = hookimpl(lambda: {"fault-relay": Relay})
    return mod


MODULES = [("fault-relay", relay_module())]


def config(proxy, bot: Account, room: str, *, token: str | None = None,
           password: str | None = None, **plug: Any) -> dict[str, Any]:
    """`a:#in` relayed to `room` by the plug `mx`, which reaches Synapse through `proxy`."""
    mx: dict[str, Any] = {"type": "matrix", "homeserver": proxy.base_url,
                          "user_id": bot.user_id, "rooms": [room], "send_retry_for": 1.0,
                          "retry_max_delay": 0.2, "sync_timeout": 2.0, "request_timeout": 10.0,
                          **plug}
    if token:
        mx["access_token"] = token
    if password:
        mx["password"] = password
    return {"plugs": {"a": {"type": "memory"}, "mx": mx},
            "channels": {"in": {"plug": "a", "source": "#in"},
                         "out": {"plug": "mx", "source": room}},
            "hooks": {"relay": {"type": "fault-relay"}},
            "host": {"reconnect_min": 0.05, "reconnect_max": RECONNECT_MAX}}


def body(event: dict[str, Any]) -> str:
    return event.get("content", {}).get("body", "")


def is_edit(event: dict[str, Any]) -> bool:
    return (event.get("content", {}).get("m.relates_to") or {}).get("rel_type") == "m.replace"


async def bridge_says(human, room: str, bot: Account, last: str, timeout: float = 60.0,
                      edits: bool = False) -> list[dict[str, Any]]:
    """The bridge's messages (or edits) the human sees in `room`, once one says `last`: the
    relay sends in order, so a copy doubled before it would be there by then."""
    def mine() -> list[dict[str, Any]]:
        return [e for e in human.events if e.get("room_id") == room
                and e.get("sender") == bot.user_id and e.get("type") == "m.room.message"
                and is_edit(e) == edits]

    try:
        with anyio.fail_after(timeout):
            while not any(body(e).endswith(last) for e in mine()):
                await human.sync_once(5.0)
    except TimeoutError:
        raise TimeoutError(f"the human did not see the bridge say {last!r} within {timeout:g}s; "
                           f"it said {[body(e) for e in mine()]}") from None
    return mine()


async def revoke(hs, token: str) -> None:
    """Log the access token out on the homeserver itself (not through the proxy)."""
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=30) as http:
        r = await http.post("/_matrix/client/v3/logout", json={},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text


def errors(logwatch, text: str) -> list[str]:
    return [r.getMessage() for r in logwatch.records
            if r.levelno >= logging.ERROR and text in r.getMessage()]


async def test_a_burst_through_5xx_then_429_arrives_once_in_order(synapse, synapse_faults, human,
                                                                tmp_path):
    """Longer than the plug's own retry window (send_retry_for), so the delivery queue retries
    too; every copy keeps its transaction id, so none is shown twice."""
    proxy = synapse_faults
    bot = register(synapse, "burst")
    room = await human.create_room(preset="public_chat")
    faults = [proxy.answer("PUT", SEND, 500, times=6), proxy.answer("PUT", SEND, 502, times=6),
              proxy.answer("PUT", SEND, 429, {"errcode": "M_LIMIT_EXCEEDED",
                                              "error": "Too Many Requests",
                                              "retry_after_ms": 50}, times=6)]
    async with run_host(config(proxy, bot, room, token=bot.token), path=tmp_path / "c.toml",
                        modules=MODULES) as host:
        a, relay = host.plugs["a"], host.hooks["relay"]
        said = [await a.inject("#in", f"burst {i:02d}") for i in range(30)]
        await a.inject("#in", "end")
        events = await bridge_says(human, room, bot, "end")
        assert [body(e) for e in events] == [f"human: burst {i:02d}" for i in range(30)] + ["human: end"]
        assert [relay.copies[s.id][0].id for s in said] == [e["event_id"] for e in events[:30]]
        assert [f.hits for f in faults] == [6, 6, 6]
        assert host.plugs["mx"].client.rate_limited >= 6


async def test_a_send_whose_reply_is_cut_short_arrives_once_with_its_real_id(
        synapse, synapse_faults, human, tmp_path):
    proxy = synapse_faults
    bot = register(synapse, "cut")
    room = await human.create_room(preset="public_chat")
    async with run_host(config(proxy, bot, room, token=bot.token), path=tmp_path / "c.toml",
                        modules=MODULES) as host:
        a, relay = host.plugs["a"], host.hooks["relay"]
        cut = proxy.cut("PUT", SEND, keep=12)
        first = await a.inject("#in", "cut short")
        (seen,) = await bridge_says(human, room, bot, "cut short")
        assert cut.hits == 1
        assert (await relay.copy_of(first.id))[0].id == seen["event_id"]
        await a.inject("#in", "cut short, then edited", id=first.id, edited=True, revision="r1")
        (edit,) = await bridge_says(human, room, bot, "cut short, then edited", edits=True)
        assert edit["content"]["m.relates_to"]["event_id"] == seen["event_id"]
        await a.inject("#in", "end")
        assert [body(e) for e in await bridge_says(human, room, bot, "end")] == [
            "human: cut short", "human: end"]
    sends = proxy.seen("PUT", SEND)
    assert [e.fault for e in sends[:2]] == ["cut", None] and sends[0].path == sends[1].path


@pytest.mark.parametrize("drops", [1, 10], ids=["once", "past-the-retry-window"])
async def test_a_send_whose_connection_drops_after_synapse_handled_it_arrives_once(
        synapse, synapse_faults, human, tmp_path, drops):
    """Dropped once, the plug asks again; dropped for longer than send_retry_for, the delivery
    queue puts the copy again, under the same transaction id (made from its delivery key)."""
    proxy = synapse_faults
    bot = register(synapse, "drop")
    room = await human.create_room(preset="public_chat")
    async with run_host(config(proxy, bot, room, token=bot.token), path=tmp_path / "c.toml",
                        modules=MODULES) as host:
        a, relay = host.plugs["a"], host.hooks["relay"]
        proxy.drop("PUT", SEND, times=drops)
        first = await a.inject("#in", "dropped")
        await a.inject("#in", "end")
        events = await bridge_says(human, room, bot, "end")
        assert [body(e) for e in events] == ["human: dropped", "human: end"]
        assert relay.copies[first.id][0].id == events[0]["event_id"]
    sends = proxy.seen("PUT", SEND)
    assert [(e.status, e.upstream, e.fault) for e in sends[:drops + 1]] == (
        [(None, 200, "drop")] * drops + [(200, 200, None)])
    assert len({e.path for e in sends[:drops + 1]}) == 1  # always the same transaction id


async def test_a_revoked_token_with_a_password_logs_in_again_and_loses_nothing(
        synapse, synapse_faults, human, tmp_path, logwatch):
    proxy = synapse_faults
    bot = register(synapse, "relogin")
    room = await human.create_room(preset="public_chat")
    cfg = config(proxy, bot, room, token=bot.token, password=bot.password)
    async with run_host(cfg, path=tmp_path / "c.toml", modules=MODULES) as host:
        a = host.plugs["a"]
        await a.inject("#in", "before")
        await bridge_says(human, room, bot, "before")
        login = proxy.hold("POST", r"/login$")
        await revoke(synapse, bot.token)
        for i in range(3):   # while the plug may not have noticed yet
            await a.inject("#in", f"meanwhile {i}")
        await login.wait()   # the plug is logging in again: it cannot send now
        assert not host.plug_ready("mx")
        for i in range(3, 6):
            await a.inject("#in", f"meanwhile {i}")
        login.release()
        await a.inject("#in", "end")
        events = await bridge_says(human, room, bot, "end")
        assert [body(e) for e in events] == (["human: before"]
                                             + [f"human: meanwhile {i}" for i in range(6)]
                                             + ["human: end"])
        assert host.plug_ready("mx")
    assert len(logwatch.lines("the access token stopped working; logging in with the password")) == 1
    assert len(logwatch.lines("logged in as")) == 1
    assert errors(logwatch, "") == []


async def test_a_revoked_token_without_a_password_says_so_once_and_keeps_the_copies(
        synapse, synapse_faults, human, tmp_path, logwatch):
    proxy = synapse_faults
    bot = register(synapse, "revoked")
    room = await human.create_room(preset="public_chat")
    path = tmp_path / "c.toml"
    async with run_host(config(proxy, bot, room, token=bot.token), path=path,
                        modules=MODULES) as host:
        a, relay = host.plugs["a"], host.hooks["relay"]
        await a.inject("#in", "before")
        await bridge_says(human, room, bot, "before")
        await relay.queues.wait_idle()
        await revoke(synapse, bot.token)
        await logwatch.wait_for("plugs.mx.access_token")
        sends_before = len(proxy.seen("PUT", SEND))
        for i in range(3):
            await a.inject("#in", f"kept {i}")
        await host.wait_idle()
        assert relay.queues.waiting == 3
        await logwatch.wait_for("still failing", count=3, timeout=30)  # tried again, quietly
        assert len(errors(logwatch, "plugs.mx.access_token")) == 1
        assert errors(logwatch, "") == errors(logwatch, "plugs.mx.access_token")
        assert relay.queues.waiting == 3
        assert len(proxy.seen("PUT", SEND)) == sends_before  # nothing was even tried
    (line,) = errors(logwatch, "plugs.mx.access_token")
    assert "M_UNKNOWN_TOKEN" in line and "plugs.mx.password" in line
    assert logwatch.lines("kept 3 copies not yet delivered")

    user_id, token, _device = await anyio.to_thread.run_sync(synapse.login, bot.localpart,
                                                             bot.password)
    assert user_id == bot.user_id and token != bot.token
    restarted = make_host(config(proxy, bot, room, token=token), path=path, modules=MODULES)
    kept = await restarted.store.get_state("relay", "queued")
    assert [codec.load(row["msg"]).text.plain for row in kept] == [f"kept {i}" for i in range(3)]
    async with run_host(restarted) as host:
        await host.plugs["a"].inject("#in", "end")
        events = await bridge_says(human, room, bot, "end")
        assert [body(e) for e in events] == (["human: before"]
                                             + [f"human: kept {i}" for i in range(3)]
                                             + ["human: end"])
        await host.hooks["relay"].queues.wait_idle()


async def test_a_wrong_password_at_start_is_one_error_however_often_it_is_tried(
        synapse, synapse_faults, human, tmp_path, logwatch):
    proxy = synapse_faults
    bot = register(synapse, "wrongpw")
    room = await human.create_room(preset="public_chat")
    cfg = config(proxy, bot, room, password="not-the-password")
    async with run_host(cfg, path=tmp_path / "c.toml", modules=MODULES, wait_ready=None) as host:
        await logwatch.wait_for("plugs.mx.password")
        await logwatch.wait_for("still failing", count=2, timeout=30)
        assert len(proxy.seen("POST", r"/login$")) >= 3
        assert not host.plug_ready("mx")
    (line,) = errors(logwatch, "")
    assert "M_FORBIDDEN" in line and "plugs.mx.password" in line and bot.user_id in line
    assert "not-the-password" not in " ".join(r.getMessage() for r in logwatch.records)
