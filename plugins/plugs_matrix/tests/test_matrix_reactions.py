"""Reactions both ways, against a real Synapse: with the bridge account (bot mode) and as
ghosts (application service).

A Matrix person's reaction reaches the host as a reaction to the right message, and its
redaction as the removal; a reaction the host puts shows as an ``m.reaction`` on the right
event (from the bridge account, or from the reactor's ghost), and its removal redacts it,
also after a restart.
"""

from __future__ import annotations

import pytest

from chanmux import Message, Reaction, Receipt, User
from chanmux.testing import run_host

from matrix_helpers import bridged, host_config, human_events

pytestmark = pytest.mark.anyio


def irc(nick: str) -> User:
    """A person of the memory plug `irc`, as a relay hands them to the Matrix plug."""
    return User(id=f"{nick}!{nick}@example.org", plug="irc", username=nick, real_name=nick)


def reactions_on(target: str):
    """Reaction events on `target`, as the human's client sees them."""
    return lambda e: (e.get("type") == "m.reaction"
                      and (e.get("content") or {}).get("m.relates_to", {}).get("event_id") == target)


def redaction_of(event_id: str):
    return lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == event_id


def annotation(event: dict) -> tuple[str, str]:
    relates = event["content"]["m.relates_to"]
    assert relates["rel_type"] == "m.annotation"
    return event["sender"], relates["key"]


async def test_a_matrix_persons_reaction_and_its_removal_reach_the_host(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec, channel = host.hooks["rec"], host.channels["room"]
        said = await human.send_text(room, "react to me")
        await rec.wait_for(lambda r: r.sent.id == said)
        like = await human.react(room, said, "👍")
        got = await rec.wait_for(lambda r: r.sent.id == like)
        reaction = got.sent.reaction
        assert (reaction.key, reaction.target.id, reaction.target.channel, reaction.removed) == (
            "👍", said, channel, False)
        assert got.sent.user.id == human.user_id and not got.sent.text and not got.is_echo
        await human.redact(room, like)
        gone = await rec.wait_for(lambda r: r.sent.id == like and r.sent.deleted)
        assert gone.sent.channel == channel


async def test_reactions_from_another_network_are_the_bridge_accounts_once_per_key(
        synapse, bot, human, tmp_path):
    """Two people of another network react with the same key: one m.reaction from the bridge
    account, which stays until both took theirs back; another key is another reaction."""
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec, channel = host.hooks["rec"], host.channels["room"]
        said = await human.send_text(room, "good news")
        await rec.wait_for(lambda r: r.sent.id == said)
        target = Receipt(id=said, channel=channel)
        [alice_like] = await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target)))
        [bob_like] = await host.put(channel, Message(user=irc("bob"), reaction=Reaction("👍", target)))
        [party] = await host.put(channel, Message(user=irc("bob"), reaction=Reaction("🎉", target)))
        assert alice_like.id == bob_like.id != party.id
        events = await human_events(human, room, reactions_on(said), 2)
        assert sorted(annotation(e) for e in events) == [(bot.user_id, "🎉"), (bot.user_id, "👍")]
        assert [e["event_id"] for e in events if annotation(e)[1] == "👍"] == [alice_like.id]
        await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target, removed=True)))
        assert sorted(e["event_id"] for e in await human.relations(room, said)) == sorted(
            [alice_like.id, party.id])
        await host.put(channel, Message(user=irc("bob"), reaction=Reaction("👍", target, removed=True)))
        await human_events(human, room, redaction_of(alice_like.id), 1)
        assert [e["event_id"] for e in await human.relations(room, said)] == [party.id]
        # the homeserver's copies come back as the bridge's own, never as new reactions
        await rec.wait_for(lambda r: r.sent.id == party.id)
        assert all(r.is_echo for r in rec.received
                   if r.sent.reaction is not None and r.sent.channel == channel)


async def test_a_reaction_is_taken_back_after_a_restart(synapse, bot, human, tmp_path):
    """The plug forgets what it sent when it stops: a removal then finds the reaction
    through the relations API, and the same reaction put again is the one already there."""
    room = await human.create_room(name="restart", preset="public_chat")
    said = await human.send_text(room, "before the restart")
    config = host_config(synapse, bot, room)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        target = Receipt(id=said, channel=channel)
        [like] = await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target)))
        [party] = await host.put(channel, Message(user=irc("alice"), reaction=Reaction("🎉", target)))
        await human_events(human, room, reactions_on(said), 2)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        target = Receipt(id=said, channel=channel)
        await host.put(channel, Message(user=irc("alice"), reaction=Reaction("🎉", target, removed=True)))
        await human_events(human, room, redaction_of(party.id), 1)
        [again] = await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target)))
        assert again.id == like.id
        await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target, removed=True)))
        await human_events(human, room, redaction_of(like.id), 1)
        assert await human.relations(room, said) == []


async def test_reactions_are_each_persons_own_as_an_application_service(appservice, person, tmp_path):
    """Each person of another network reacts as their ghost, so Matrix counts them one by
    one; taking one back redacts only theirs (also after a restart)."""
    room = person.room
    said = await person.send_text(room, "vote here")
    config = appservice.host_config([room])
    ghost_of = {nick: f"@chanmux_irc_{nick}:chanmux.test" for nick in ("alice", "bob")}
    async with run_host(config, path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        target = Receipt(id=said, channel=channel)
        receipts = {nick: (await host.put(channel, Message(user=irc(nick),
                                                           reaction=Reaction("👍", target))))[0]
                    for nick in ("alice", "bob")}
        events = await human_events(person, room, reactions_on(said), 2)
        assert sorted(annotation(e) for e in events) == [(ghost_of["alice"], "👍"),
                                                          (ghost_of["bob"], "👍")]
        assert {e["sender"]: e["event_id"] for e in events} == {
            ghost_of[nick]: receipt.id for nick, receipt in receipts.items()}
        await host.put(channel, Message(user=irc("alice"), reaction=Reaction("👍", target, removed=True)))
        [redaction] = await human_events(person, room, redaction_of(receipts["alice"].id), 1)
        assert redaction["sender"] == ghost_of["alice"]
        assert [e["sender"] for e in await person.relations(room, said)] == [ghost_of["bob"]]
    async with run_host(config, path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        await host.put(channel, Message(user=irc("bob"), reaction=Reaction(
            "👍", Receipt(id=said, channel=channel), removed=True)))
        [redaction] = await human_events(person, room, redaction_of(receipts["bob"].id), 1)
        assert redaction["sender"] == ghost_of["bob"]
        assert await person.relations(room, said) == []


async def test_a_matrix_persons_reaction_reaches_an_application_service(appservice, person, tmp_path):
    room = person.room
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host:
        rec, channel = host.hooks["rec"], host.channels["room"]
        [copy] = await host.put(channel, Message(text="from IRC", user=irc("alice")))
        like = await person.react(room, copy.id, "❤️")
        got = await rec.wait_for(lambda r: r.sent.id == like, timeout=20)
        assert (got.sent.reaction.key, got.sent.reaction.target.id) == ("❤️", copy.id)
        assert got.sent.user.id == person.user_id and not got.is_echo
        await person.redact(room, like)
        await rec.wait_for(lambda r: r.sent.id == like and r.sent.deleted, timeout=20)
