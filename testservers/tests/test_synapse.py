"""The Synapse harness and HumanMatrix client against a real Synapse on loopback."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from chanmux_testservers.matrixclient import HumanMatrix, MatrixError
from chanmux_testservers.synapse import SYNAPSE_VERSION, Synapse, SynapseError

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def new_human(hs: Synapse, name: str):
    """Register a fresh (non-admin) user named ``name<random>`` and yield its client."""
    user_id, token, device_id = await hs.async_register(f"{name}{uuid.uuid4().hex[:8]}")
    async with HumanMatrix(hs.base_url, user_id, token, device_id=device_id) as human:
        yield human


def is_message(room_id: str, body: str):
    """Predicate: an m.room.message in ``room_id`` whose body is ``body``."""
    return lambda ev: (
        ev["room_id"] == room_id
        and ev["type"] == "m.room.message"
        and ev["content"].get("body") == body
    )


async def shared_room(alice: HumanMatrix, bob: HumanMatrix, **kwargs) -> str:
    """Alice creates a room and invites Bob; Bob sees the invite via /sync and joins."""
    room = await alice.create_room(invite=[bob.user_id], **kwargs)
    assert await bob.wait_for_invite(room) == room
    assert await bob.join(room) == room
    return room


async def test_synapse_answers(synapse: Synapse):
    assert synapse.running
    assert synapse.base_url == f"http://127.0.0.1:{synapse.port}"
    assert synapse.last_start_seconds is not None and synapse.last_start_seconds < 60
    async with httpx.AsyncClient() as client:
        r = await client.get(synapse.base_url + "/_matrix/client/versions")
        assert r.status_code == 200 and r.json()["versions"]
        r = await client.get(synapse.base_url + "/_synapse/admin/v1/server_version")
        assert r.json()["server_version"].startswith(SYNAPSE_VERSION)


async def test_register_gives_working_tokens(synapse: Synapse):
    name = f"carol{uuid.uuid4().hex[:8]}"
    user_id, token, device_id = synapse.register(name, password="s3cret")
    assert user_id == synapse.user_id(name) and device_id
    async with HumanMatrix(synapse.base_url, user_id, token) as carol:
        assert await carol.whoami() == user_id
    # the password works too, and a duplicate registration is refused
    assert synapse.login(name, "s3cret")[0] == user_id
    with pytest.raises(SynapseError, match="M_USER_IN_USE"):
        await synapse.async_register(name)


async def test_two_users_exchange_messages(synapse: Synapse):
    async with new_human(synapse, "alice") as alice, new_human(synapse, "bob") as bob:
        await alice.set_displayname("Alice A.")
        room = await shared_room(alice, bob, name="chat")
        assert await alice.joined_members(room) == sorted([alice.user_id, bob.user_id])

        await alice.send_text(room, "hello **bob**", html="hello <b>bob</b>")
        got = await bob.sync_until(is_message(room, "hello **bob**"))
        assert got["sender"] == alice.user_id
        assert got["content"]["formatted_body"] == "hello <b>bob</b>"
        assert got["content"]["msgtype"] == "m.text"

        reply_id = await bob.reply(room, got["event_id"], "hi alice")
        seen = await alice.sync_until(is_message(room, "hi alice"))
        assert seen["event_id"] == reply_id
        assert seen["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == got["event_id"]

        await alice.send_emote(room, "waves")
        emote = await bob.sync_until(is_message(room, "waves"))
        assert emote["content"]["msgtype"] == "m.emote"

        await alice.set_room_name(room, "renamed")
        named = await bob.sync_until(lambda ev: ev["type"] == "m.room.name" and ev["room_id"] == room)
        assert named["content"]["name"] == "renamed"
        assert all(ev["room_id"] for ev in bob.events)


async def test_sync_until_keeps_later_events(synapse: Synapse):
    """Events fetched while waiting for an earlier one are still found by the next wait."""
    async with new_human(synapse, "alice") as alice, new_human(synapse, "bob") as bob:
        room = await shared_room(alice, bob)
        for body in ("one", "two", "three"):
            await alice.send_text(room, body)
        assert (await bob.sync_until(is_message(room, "three")))["content"]["body"] == "three"
        # "one" and "two" came before the returned event: skipped from now on
        with pytest.raises(TimeoutError):
            await bob.sync_until(is_message(room, "one"), timeout=0.5)
        await alice.send_text(room, "four")
        await alice.send_text(room, "five")
        assert (await bob.sync_until(is_message(room, "five")))["content"]["body"] == "five"
        await bob.catch_up()
        await alice.send_text(room, "six")
        nxt = await bob.sync_until(lambda ev: ev["room_id"] == room and ev["type"] == "m.room.message")
        assert nxt["content"]["body"] == "six"


async def test_edit_and_redaction_visible(synapse: Synapse):
    async with new_human(synapse, "alice") as alice, new_human(synapse, "bob") as bob:
        room = await shared_room(alice, bob)
        original = await alice.send_text(room, "tpyo")
        await bob.sync_until(is_message(room, "tpyo"))

        edit_id = await alice.edit(room, original, "typo", new_html="<i>typo</i>")
        edit = await bob.sync_until(lambda ev: ev["event_id"] == edit_id)
        assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": original}
        assert edit["content"]["m.new_content"]["body"] == "typo"
        assert edit["content"]["m.new_content"]["formatted_body"] == "<i>typo</i>"

        redaction_id = await alice.redact(room, original, reason="oops")
        redaction = await bob.sync_until(lambda ev: ev["event_id"] == redaction_id)
        assert redaction["type"] == "m.room.redaction"
        assert (redaction.get("redacts") or redaction["content"].get("redacts")) == original
        fetched = await bob.request("GET", f"/_matrix/client/v3/rooms/{room}/event/{original}")
        assert fetched["content"] == {}


async def test_upload_and_download(synapse: Synapse):
    async with new_human(synapse, "alice") as alice:
        data = bytes(range(256)) * 40
        mxc = await alice.upload(data, "application/octet-stream", "blob.bin")
        assert mxc.startswith(f"mxc://{synapse.server_name}/")
        assert await alice.download(mxc) == data


async def test_rate_limits_lifted(synapse: Synapse):
    """Synapse's default rc_message (burst 10) would refuse this burst."""
    async with new_human(synapse, "alice") as alice:
        room = await alice.create_room()
        for i in range(40):
            await alice.send_text(room, f"burst {i}")


async def test_restart_keeps_users_and_rooms(synapse: Synapse):
    async with new_human(synapse, "alice") as alice, new_human(synapse, "bob") as bob:
        room = await shared_room(alice, bob, name="durable")
        await alice.send_text(room, "before")
        await bob.sync_until(is_message(room, "before"))
        port = synapse.port

        # Outage: the server is gone, then back on the same port with the same data.
        await synapse.async_stop()
        assert not synapse.running
        with pytest.raises(httpx.TransportError):
            await alice.whoami()
        await synapse.async_start()
        assert synapse.port == port
        assert await alice.whoami() == alice.user_id
        assert await bob.joined_members(room) == sorted([alice.user_id, bob.user_id])
        await alice.send_text(room, "after restart")
        await bob.sync_until(is_message(room, "after restart"))

        # A hard kill keeps the data too.
        await synapse.async_restart(kill=True)
        assert synapse.port == port
        assert await bob.whoami() == bob.user_id
        await bob.send_text(room, "after kill")
        got = await alice.sync_until(is_message(room, "after kill"))
        assert got["sender"] == bob.user_id


async def test_rate_limited_mode_gives_429(synapse_rate_limited: Synapse):
    hs = synapse_rate_limited
    async with new_human(hs, "spammer") as user:
        room = await user.create_room()
        with pytest.raises(MatrixError) as caught:
            for i in range(20):
                await user.send_text(room, f"spam {i}")
        err = caught.value
        assert err.status == 429
        assert err.errcode == "M_LIMIT_EXCEEDED"
        assert err.retry_after_ms is not None and err.retry_after_ms > 0

        # Honouring retry_after_ms gets the message through.
        with anyio.fail_after(15):
            while True:
                try:
                    await user.send_text(room, "patient")
                    break
                except MatrixError as e:
                    assert e.errcode == "M_LIMIT_EXCEEDED"
                    await anyio.sleep(e.retry_after_ms / 1000)


def test_missing_venv_is_reported(tmp_path):
    hs = Synapse(venv=tmp_path / "nowhere")
    try:
        with pytest.raises(SynapseError, match="install-synapse.sh"):
            hs.start()
    finally:
        hs.close()
