"""FaultProxy in front of the real Synapse: each fault does what it says, the rest passes."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import anyio
import httpx
import pytest

from chanmux_testservers.faults import FaultProxy
from chanmux_testservers.matrixclient import HumanMatrix, MatrixError
from chanmux_testservers.synapse import Synapse, free_port

pytestmark = pytest.mark.anyio

CS = "/_matrix/client/v3"
SEND = r"/send/m\.room\.message/"


async def user(hs: Synapse, base_url: str) -> HumanMatrix:
    user_id, token, device_id = await hs.async_register(f"faults{uuid.uuid4().hex[:8]}")
    return HumanMatrix(base_url, user_id, token, device_id=device_id)


def authed(base_url: str, human: HumanMatrix) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30,
                             headers={"Authorization": f"Bearer {human.access_token}"})


def send_path(room: str, txn: str) -> str:
    return f"{CS}/rooms/{quote(room, safe='')}/send/m.room.message/{txn}"


async def bodies_in(reader: HumanMatrix, room: str, until: str) -> list[str]:
    """The message bodies `reader` sees in `room`, up to the one saying `until` (inclusive):
    `until` is sent last, so whatever came before it is there by then."""
    await reader.sync_until(lambda e: e["room_id"] == room
                            and e["content"].get("body") == until)
    return [e["content"]["body"] for e in reader.events
            if e["room_id"] == room and e["type"] == "m.room.message"]


async def test_requests_without_faults_pass_untouched(synapse, synapse_faults):
    proxy = synapse_faults
    direct = await user(synapse, synapse.base_url)
    async with direct, HumanMatrix(proxy.base_url, direct.user_id, direct.access_token) as via:
        assert await via.whoami() == direct.user_id
        room = await via.create_room(name="through the proxy", preset="public_chat")
        await via.send_text(room, "hello", html="<b>hello</b>")
        event = await via.sync_until(lambda e: e["content"].get("body") == "hello")
        assert event["content"]["formatted_body"] == "<b>hello</b>"
        data = bytes(range(256)) * 40
        mxc = await via.upload(data, "application/octet-stream", "blob.bin")
        assert await via.download(mxc) == data
        assert await direct.get_state(room, "m.room.name") == {"name": "through the proxy"}
        # one client, one kept-alive connection, whatever it asked
        assert proxy.connections == 1
    async with httpx.AsyncClient() as plain:
        for path in ("/_matrix/client/versions", "/no/such/page"):
            a = await plain.get(synapse.base_url + path)
            b = await plain.get(proxy.base_url + path)
            assert (b.status_code, b.headers["content-type"]) == (a.status_code, a.headers["content-type"])
            assert b.content == a.content
    assert all(e.fault is None and e.status == e.upstream for e in proxy.exchanges)
    assert [e.status for e in proxy.seen("GET", r"/no/such/page")] == [404]
    # Synapse answers JSON chunked: passed on whole
    assert proxy.seen("GET", "/whoami")[0].upstream_chunked


async def test_a_long_poll_is_answered_when_the_upstream_answers(synapse, synapse_faults):
    proxy = synapse_faults
    alice = await user(synapse, synapse.base_url)
    async with alice, HumanMatrix(proxy.base_url, alice.user_id, alice.access_token) as via:
        room = await alice.create_room(preset="public_chat")
        await via.catch_up()
        started = proxy.hold("GET", r"/sync$")
        got: list[dict] = []

        async def poll() -> None:
            got.extend(await via.sync_once(timeout=60))

        with anyio.fail_after(30):  # far less than the poll's own 60 s
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll)
                await started.wait()
                started.release()
                await alice.send_text(room, "wake up")
        assert [e["content"].get("body") for e in got] == ["wake up"]
        assert [e.status for e in proxy.seen("GET", r"/sync$")][-1] == 200


async def test_an_answer_is_given_without_forwarding(synapse, synapse_faults):
    proxy = synapse_faults
    alice = await user(synapse, synapse.base_url)
    async with alice, HumanMatrix(proxy.base_url, alice.user_id, alice.access_token) as via:
        room = await alice.create_room(preset="public_chat")
        proxy.answer("PUT", SEND, 500, times=1)
        proxy.answer("PUT", SEND, 429, {"errcode": "M_LIMIT_EXCEEDED", "error": "slow down",
                                        "retry_after_ms": 250}, times=1)
        with pytest.raises(MatrixError) as first:
            await via.send_text(room, "never 1")
        with pytest.raises(MatrixError) as second:
            await via.send_text(room, "never 2")
        await via.send_text(room, "third")
        assert first.value.status == 500 and first.value.errcode == "M_UNKNOWN"
        assert (second.value.status, second.value.errcode, second.value.retry_after_ms) == (
            429, "M_LIMIT_EXCEEDED", 250)
        proxy.answer("GET", r"/account/whoami$", 401,
                     {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"})
        with pytest.raises(MatrixError) as refused:
            await via.whoami()
        assert refused.value.errcode == "M_UNKNOWN_TOKEN"
        assert await via.whoami() == alice.user_id  # once only: the token is fine
        assert await bodies_in(alice, room, "third") == ["third"]
    sends = proxy.seen("PUT", SEND)
    assert [(e.status, e.upstream, e.fault) for e in sends] == [
        (500, None, "answer"), (429, None, "answer"), (200, 200, None)]


async def test_a_cut_reply_is_complete_but_short_and_was_handled_upstream(synapse, synapse_faults):
    proxy = synapse_faults
    alice = await user(synapse, synapse.base_url)
    async with alice, authed(proxy.base_url, alice) as via, authed(synapse.base_url, alice) as ok:
        whole = (await ok.get(f"{CS}/account/whoami")).content
        proxy.cut("GET", r"/account/whoami$", keep=10)
        cut = await via.get(f"{CS}/account/whoami")
        assert cut.status_code == 200 and cut.headers["content-length"] == "10"
        assert cut.content == whole[:10]
        with pytest.raises(json.JSONDecodeError):
            cut.json()
        room = await alice.create_room(preset="public_chat")
        proxy.cut("PUT", SEND, keep=5)
        path = send_path(room, "txn-cut")
        content = {"msgtype": "m.text", "body": "cut short"}
        short = await via.put(path, json=content)
        assert short.status_code == 200 and len(short.content) == 5
        again = await via.put(path, json=content)  # the same transaction: the same event
        assert again.content.startswith(short.content)
        event_id = again.json()["event_id"]
        await alice.send_text(room, "end")
        assert await bodies_in(alice, room, "end") == ["cut short", "end"]
        assert [e["event_id"] for e in alice.events if e["content"].get("body") == "cut short"] == [event_id]
        assert (await via.get(f"{CS}/account/whoami")).json()["user_id"] == alice.user_id
    assert [e.fault for e in proxy.seen("PUT", SEND)] == ["cut", None]


async def test_a_dropped_connection_comes_after_the_upstream_handled_it(synapse, synapse_faults):
    proxy = synapse_faults
    alice = await user(synapse, synapse.base_url)
    async with alice, authed(proxy.base_url, alice) as via:
        room = await alice.create_room(preset="public_chat")
        proxy.drop("PUT", SEND)
        path = send_path(room, "txn-drop")
        content = {"msgtype": "m.text", "body": "dropped"}
        with pytest.raises(httpx.RemoteProtocolError):
            await via.put(path, json=content)
        event_id = (await via.put(path, json=content)).json()["event_id"]
        await alice.send_text(room, "end")
        assert await bodies_in(alice, room, "end") == ["dropped", "end"]
        assert [e["event_id"] for e in alice.events if e["content"].get("body") == "dropped"] == [event_id]
    assert [(e.status, e.upstream, e.fault) for e in proxy.seen("PUT", SEND)] == [
        (None, 200, "drop"), (200, 200, None)]
    assert proxy.connections == 2  # the dropped one, then a new one


async def test_a_held_request_waits_until_released_and_others_pass(synapse, synapse_faults):
    proxy = synapse_faults
    alice = await user(synapse, synapse.base_url)
    async with alice, authed(proxy.base_url, alice) as via, httpx.AsyncClient() as other:
        held = proxy.hold("GET", r"/account/whoami$")
        answers: list[httpx.Response] = []

        async def ask() -> None:
            answers.append(await via.get(f"{CS}/account/whoami"))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await held.wait()
                versions = await other.get(proxy.base_url + "/_matrix/client/versions")
                assert versions.status_code == 200
                assert answers == [] and proxy.seen("GET", "whoami") == []
                held.release()
        assert answers[0].json()["user_id"] == alice.user_id
    assert [e.fault for e in proxy.seen("GET", "whoami")] == ["hold"]


async def test_faults_apply_in_the_order_programmed_and_until_cleared(synapse, synapse_faults):
    proxy = synapse_faults
    async with httpx.AsyncClient(base_url=proxy.base_url) as via:
        proxy.answer("GET", r"/versions$", 500)
        forever = proxy.answer("GET", r"/versions$", 502, times=None)
        proxy.answer("GET", r"/other$", 503)
        statuses = [(await via.get("/_matrix/client/versions")).status_code for _ in range(4)]
        assert statuses == [500, 502, 502, 502] and forever.hits == 3
        proxy.clear(forever)
        assert (await via.get("/_matrix/client/versions")).status_code == 200
        assert (await via.post("/_matrix/client/versions")).status_code != 503  # method differs
        proxy.clear()
        assert proxy.faults == []


async def test_an_unreachable_upstream_closes_the_connection(anyio_backend):
    async with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        async with httpx.AsyncClient(base_url=proxy.base_url) as via:
            with pytest.raises(httpx.RemoteProtocolError):
                await via.get("/_matrix/client/versions")
        assert [(e.status, e.upstream) for e in proxy.exchanges] == [(None, None)]
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.base_url
