"""Typing both ways, against a real Synapse.

A Matrix person who types (and stops) is heard by the hooks (`on_typing`), in the bot mode
from /sync and as an application service from the transactions' ephemeral events; the
bridge's own users typing are not. As an application service a person of another network
types as their ghost; the bot mode shows nobody typing (the bridge account would).
"""

from __future__ import annotations

import httpx
import pytest

from chanmux import Message, User
from chanmux.testing import run_host

from matrix_helpers import client, host_config, human_sees, register, typing_watch_module

pytestmark = pytest.mark.anyio

GHOST = "@chanmux_irc_alice:chanmux.test"
ALICE = User(id="alice!a@example.org", plug="irc", username="alice", real_name="alice")


def watching(config: dict) -> dict:
    config["hooks"]["typing"] = {"type": "typing-watch"}
    return config


async def test_a_matrix_person_typing_is_heard_by_the_hooks(synapse, bot, tmp_path):
    account = register(synapse, "typist")
    async with client(synapse, account) as human:
        await human.set_displayname("Typing Human")  # before the room: its member event has it
        room = await human.create_room(name="typing", preset="public_chat")
        config = watching(host_config(synapse, bot, room))
        async with run_host(config, path=tmp_path / "c.toml",
                            modules=[typing_watch_module()]) as host:
            watch, channel = host.hooks["typing"], host.channels["room"]
            await human.set_typing(room, True)
            _, user, _ = await watch.wait_for(lambda c, u, active: c == channel and active)
            assert (user.id, user.display, user.plug) == (human.user_id, "Typing Human", "mx")
            await human.set_typing(room, False)
            await watch.wait_for(lambda c, u, active: c == channel and not active)
            assert [(u.id, active) for c, u, active in watch.seen if c == channel] == [
                (human.user_id, True), (human.user_id, False)]
            # the bridge account cannot show who types on another network: it does not try
            assert not host.plugs["mx"].capabilities.typing


async def test_as_an_application_service_typing_goes_both_ways(appservice, person, tmp_path):
    """The ghost of a person of another network types where it is in the room; the person on
    Matrix typing is heard, and the ghost's own typing (pushed back) is not."""
    room = person.room
    config = watching(appservice.host_config([room]))
    async with run_host(config, path=tmp_path / "c.toml", modules=[typing_watch_module()]) as host:
        watch, channel = host.hooks["typing"], host.channels["room"]
        assert host.plugs["mx"].capabilities.typing
        await host.put(channel, Message(text="hi, typing next", user=ALICE))
        await human_sees(person, room, lambda s: s.text.plain == "hi, typing next")
        await host.typing(channel, ALICE, True)
        await person.wait_for_typing(room, lambda ids: GHOST in ids)
        await host.typing(channel, ALICE, False)
        await person.wait_for_typing(room, lambda ids: GHOST not in ids)
        await person.set_typing(room, True)
        _, user, _ = await watch.wait_for(lambda c, u, active: c == channel and active)
        assert user.id == person.user_id
        await person.set_typing(room, False)
        await watch.wait_for(lambda c, u, active: c == channel and not active)
        assert [(u.id, active) for c, u, active in watch.seen] == [
            (person.user_id, True), (person.user_id, False)]


async def test_typing_pushed_under_the_older_key_is_heard_and_nonsense_is_skipped(
        appservice, person, tmp_path, logwatch):
    """Homeservers that speak the older MSC2409 name the list ``de.sorunome.msc2409.ephemeral``;
    a malformed m.typing is one warning, and the transaction is still taken."""
    room = person.room
    hs_token = appservice.registration.read_text().split("hs_token: ", 1)[1].split()[0]
    url = f"http://127.0.0.1:{appservice.port}/_matrix/app/v1/transactions/typing-{tmp_path.name}"
    config = watching(appservice.host_config([room]))
    async with run_host(config, path=tmp_path / "c.toml", modules=[typing_watch_module()]) as host, \
            httpx.AsyncClient() as http:
        watch, channel = host.hooks["typing"], host.channels["room"]
        ephemeral = [
            {"type": "m.typing", "room_id": room, "content": {"user_ids": "nonsense"}},
            {"type": "m.receipt", "room_id": room, "content": {}},
            {"type": "m.typing", "room_id": room, "content": {"user_ids": [person.user_id, GHOST]}},
        ]
        answer = await http.put(url, json={"events": [], "de.sorunome.msc2409.ephemeral": ephemeral},
                                headers={"Authorization": f"Bearer {hs_token}"})
        assert answer.status_code == 200
        await watch.wait_for(lambda c, u, active: c == channel and u.id == person.user_id and active)
        assert [u.id for c, u, active in watch.seen] == [person.user_id]
        assert len(logwatch.lines("skipped malformed m.typing")) == 1
