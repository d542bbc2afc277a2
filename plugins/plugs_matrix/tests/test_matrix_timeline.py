"""The /sync reader (`chanmux_matrix.timeline.Timeline`) through its own interface: what it is
given when built, and what it hands to its sink, with no homeserver and no plug.

(test_matrix_receive.py and test_resilience.py show the same against a real Synapse.)
"""

from __future__ import annotations

import time

import pytest

from chanmux.testing import make_host
from chanmux_matrix.client import HomeserverUnavailable
from chanmux_matrix.positions import Positions

from matrix_helpers import offline_timeline, sync_response

BRIDGE = "@bridge:hs.test"
BOB = "@bob:hs.test"
MOD = "@mod:hs.test"
ROOM = "!room:hs.test"
OTHER = "!other:hs.test"
OLD = 1_700_000_000_000  # 2023: older than any max_catchup_age here


def joined(user: str, name: str, event_id: str = "$join", ts: int = OLD) -> dict:
    return {"type": "m.room.member", "event_id": event_id, "sender": user, "state_key": user,
            "content": {"membership": "join", "displayname": name}, "origin_server_ts": ts}


def text(event_id: str, sender: str, body: str, ts: int | None = None, **content) -> dict:
    return {"type": "m.room.message", "event_id": event_id, "sender": sender,
            "content": {"msgtype": "m.text", "body": body, **content},
            "origin_server_ts": int(time.time() * 1000) if ts is None else ts}


def edit(event_id: str, sender: str, target: str, body: str) -> dict:
    return text(event_id, sender, f"* {body}",
                **{"m.new_content": {"msgtype": "m.text", "body": body},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": target}})


@pytest.mark.anyio
async def test_a_message_holds_the_resume_point_until_it_is_done():
    positions = Positions("s0")
    timeline, handed = offline_timeline(BRIDGE, positions=positions)
    data = sync_response(ROOM, [joined(BOB, "Bob")], [text("$m1", BOB, "hello")], next_batch="s1")
    assert await timeline.take(data, "s0", backlog_before=None) == "s1"
    (sent,) = handed.received
    assert sent.id == "$m1" and sent.text.plain == "hello" and sent.user.display == "Bob"
    assert positions.token == "s0", "not done yet: a restart fetches it again"
    (done,) = handed.on_handled
    done()
    assert positions.state() == ("s1", [])


@pytest.mark.anyio
async def test_after_a_restart_what_was_done_is_not_handed_over_again():
    positions = Positions("s0", ["$m1"])  # saved by the last run: $m1 done beyond s0
    timeline, handed = offline_timeline(BRIDGE, positions=positions)
    data = sync_response(ROOM, [joined(BOB, "Bob")],
                         [text("$m1", BOB, "done before"), text("$m2", BOB, "new")], next_batch="s1")
    await timeline.take(data, "s0", backlog_before=None)
    assert [s.id for s in handed.received] == ["$m2"]
    handed.on_handled[0]()
    assert positions.state() == ("s1", [])


@pytest.mark.anyio
async def test_a_response_cut_short_by_the_homeserver_is_taken_again_without_repeats():
    """A gap to fill while the homeserver is gone: the client raises, the batch ends without a
    token, and the event it had handed over is skipped when the response comes again."""
    positions = Positions("s0")
    timeline, handed = offline_timeline(BRIDGE, positions=positions)
    data = sync_response(ROOM, [joined(BOB, "Bob")], [text("$a1", BOB, "first")], next_batch="s1")
    data["rooms"]["join"][OTHER] = {"timeline": {"events": [text("$b1", BOB, "later")],
                                                 "limited": True, "prev_batch": "p1"}}
    with pytest.raises(HomeserverUnavailable, match="no homeserver"):
        await timeline.take(data, "s0", backlog_before=None)
    assert [s.id for s in handed.received] == ["$a1"]
    handed.on_handled[0]()
    assert positions.state() == ("s0", ["$a1"]), "done beyond the resume point, which stays"
    again = sync_response(ROOM, [], [text("$a1", BOB, "first"), text("$a2", BOB, "second")],
                          next_batch="s1")
    await timeline.take(again, "s0", backlog_before=None)
    assert [s.id for s in handed.received] == ["$a1", "$a2"]
    handed.on_handled[1]()
    assert positions.state() == ("s1", [])


@pytest.mark.anyio
async def test_own_events_are_dropped_but_echoes_of_own_sends_go_over_marked_self():
    def echo(event: dict) -> bool:
        return event.get("unsigned", {}).get("transaction_id") == "txn-1"

    timeline, handed = offline_timeline(BRIDGE, echoes=echo)
    mine = text("$own", BRIDGE, "sent by another client")
    echoed = {**text("$echo", BRIDGE, "sent by this plug"), "unsigned": {"transaction_id": "txn-1"}}
    data = sync_response(ROOM, [joined(BRIDGE, "Bridge"), joined(BOB, "Bob", "$join2")],
                         [mine, echoed, text("$m", BOB, "hi")])
    await timeline.process(data, "s0", relay=True, backlog_before=None)
    assert [(s.id, s.user.is_self) for s in handed.received] == [("$echo", True), ("$m", False)]
    assert timeline.bad_events == 0


@pytest.mark.anyio
async def test_backlog_older_than_max_catchup_age_is_skipped_and_its_state_kept(logwatch):
    timeline, handed = offline_timeline(BRIDGE, max_catchup_age=600)
    old_rename = {**joined(BOB, "Robert", "$rename"),
                  "unsigned": {"prev_content": {"membership": "join", "displayname": "Bob"}}}
    recent = text("$recent", BOB, "missed a second ago", ts=int(time.time() * 1000) - 1000)
    data = sync_response(ROOM, [joined(BOB, "Bob")],
                         [text("$old", BOB, "an hour ago", ts=OLD), old_rename, recent])
    await timeline.process(data, "s0", relay=True, backlog_before=time.time())
    (sent,) = handed.received
    assert sent.id == "$recent" and sent.replayed, "backlog: relayed only where it is not yet"
    assert sent.user.display == "Robert", "the skipped rename was taken into the room state"
    assert logwatch.lines("skipped 2 events older than max_catchup_age (600s)")


@pytest.mark.anyio
async def test_the_first_sync_learns_state_and_hands_over_nothing():
    timeline, handed = offline_timeline(BRIDGE)
    data = sync_response(ROOM, [joined(BOB, "Bob")], [text("$m", BOB, "history")])
    await timeline.process(data, None, relay=False, backlog_before=None)
    assert handed.received == [] and timeline.rooms[ROOM].names[BOB] == "Bob"


@pytest.mark.anyio
async def test_invites_leaves_direct_chats_and_encryption_go_to_the_sink():
    timeline, handed = offline_timeline(BRIDGE)
    encryption = {"type": "m.room.encryption", "event_id": "$e", "sender": BOB, "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}, "origin_server_ts": OLD}
    data = sync_response(ROOM, [encryption], [], invite={"!invited:hs.test": {}},
                         leave={"!gone:hs.test": {}},
                         account_data=[{"type": "m.direct", "content": {BOB: ["!dm:hs.test"]}}])
    await timeline.process(data, "s0", relay=True, backlog_before=None)
    assert handed.invited == ["!invited:hs.test"] and handed.left == ["!gone:hs.test"]
    assert handed.encrypted == [ROOM] and handed.received == []
    assert timeline.rooms.is_direct("!dm:hs.test") and not timeline.rooms.is_direct(ROOM)


@pytest.mark.anyio
async def test_only_the_author_can_edit_a_message():
    timeline, handed = offline_timeline(BRIDGE)
    first = sync_response(ROOM, [joined(BOB, "Bob"), joined(MOD, "Mod", "$join2")],
                          [text("$orig", BOB, "helo")])
    await timeline.process(first, "s0", relay=True, backlog_before=None)
    later = sync_response(ROOM, [], [edit("$fake", MOD, "$orig", "hijacked"),
                                     edit("$fix", BOB, "$orig", "hello")])
    await timeline.process(later, "s1", relay=True, backlog_before=None)
    orig, fixed = handed.received
    assert (fixed.id, fixed.edited, fixed.revision, fixed.text.plain) == ("$orig", True, "$fix", "hello")
    assert timeline.bad_events == 0


@pytest.mark.anyio
async def test_the_plugs_timeline_reaches_the_homeserver_only_through_its_connection():
    """Built by MatrixPlug, a timeline that needs the homeserver before the plug connected (or
    after it closed) gets the plug's own "not connected" error, a ConnectionError the host
    reconnects on."""
    host = make_host({"plugs": {"mx": {"type": "matrix", "homeserver": "https://matrix.example.org",
                                       "user_id": BRIDGE, "access_token": "secret-token"}}})
    plug = host.plugs["mx"]
    data = sync_response(ROOM, [], [text("$m", BOB, "after a gap")], limited=True)
    with pytest.raises(HomeserverUnavailable, match="mx is not connected"):
        await plug.timeline.take(data, "s0", backlog_before=None)
    assert plug.positions.state() == (None, []), "nothing handed over, no position moved"


def typing(*user_ids) -> dict:
    return {"type": "m.typing", "content": {"user_ids": list(user_ids)}}


@pytest.mark.anyio
async def test_typing_is_handed_over_as_each_persons_start_and_stop():
    """m.typing lists who types now: the sink hears each change, not the list again; the
    bridge's own account is left out, and the first /sync (relay off) only learns it."""
    timeline, handed = offline_timeline(BRIDGE)
    await timeline.process(sync_response(ROOM, [], [], ephemeral=[typing(MOD)]), None,
                           relay=False, backlog_before=None)
    for users in [(BOB, MOD, BRIDGE), (BOB, MOD), (MOD,), ()]:
        await timeline.process(sync_response(ROOM, [joined(BOB, "Bob")], [],
                                             ephemeral=[typing(*users)]),
                               "s0", relay=True, backlog_before=None)
    assert handed.typing == [(ROOM, BOB, True), (ROOM, BOB, False), (ROOM, MOD, False)]
    # someone /sync named nowhere, and no homeserver to ask their name: heard by user id
    await timeline.process(sync_response(ROOM, [], [], ephemeral=[typing("@carol:hs.test")]),
                           "s0", relay=True, backlog_before=None)
    assert handed.typing[-1] == (ROOM, "@carol:hs.test", True)
