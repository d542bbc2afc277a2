"""Joins, leaves and changes of name without a homeserver: how membership events read, how the
room state follows them, and the notices the plug puts for them.

The /sync responses here have the shapes Synapse gives them, lazily loaded members included:
its state block repeats the timeline's own member events (see test_matrix_receive.py for the
same against a real Synapse).
"""

from __future__ import annotations

import pytest

from chanmux import Channel, Message, RichText, User
from chanmux_matrix.incoming import Incoming
from chanmux_matrix.outgoing import Renderer
from chanmux_matrix.rooms import Room
from chanmux_matrix.timeline import Timeline

from matrix_helpers import offline_timeline, sync_response

BRIDGE = "@bridge:hs.test"
BOB = "@bob:hs.test"
MOD = "@mod:hs.test"
ROOM = "!room:hs.test"
CHANNEL = Channel("mx", ROOM)


def member(event_id: str, user: str, membership: str, name: str | None = None, *,
           prev: dict | None = None, sender: str | None = None, replaces: str | None = None) -> dict:
    """An m.room.member timeline event as Synapse sends it."""
    content = {"membership": membership}
    if name is not None:
        content["displayname"] = name
    unsigned: dict = {"age": 10}
    if prev is not None:
        unsigned["prev_content"] = prev
    if replaces is not None:
        unsigned["replaces_state"] = replaces
    return {"type": "m.room.member", "event_id": event_id, "sender": sender or user,
            "state_key": user, "content": content, "origin_server_ts": 1_700_000_000_000,
            "unsigned": unsigned}


def text(event_id: str, sender: str, body: str) -> dict:
    return {"type": "m.room.message", "event_id": event_id, "sender": sender,
            "content": {"msgtype": "m.text", "body": body}, "origin_server_ts": 1_700_000_000_000}


def incoming() -> Incoming:
    async def fetch(url: str) -> bytes:
        raise AssertionError("nothing is downloaded here")

    return Incoming("mx", BRIDGE, lambda room, user: None, fetch)


def joined_room(*members: tuple[str, str | None]) -> Room:
    room = Room(ROOM)
    for index, (user, name) in enumerate(members):
        room.apply(member(f"$j{index}", user, "join", name))
    return room


# -- reading membership events ---------------------------------------------------------------


def test_a_join_names_the_person_by_the_event():
    sent = incoming().convert(CHANNEL, Room(ROOM), member("$1", BOB, "join", "Bob M"))
    (user,) = sent.joined
    assert user.id == BOB and user.real_name == "Bob M" and user.display == "Bob M"
    assert sent.user == user and sent.is_membership and sent.renamed is None


def test_a_leave_names_the_person_as_they_were():
    """The room may no longer know the name (its state can already hold the leave): the
    event's prev_content does."""
    room = Room(ROOM)
    leave = member("$2", BOB, "leave", prev={"membership": "join", "displayname": "Bob M"})
    sent = incoming().convert(CHANNEL, room, leave)
    (user,) = sent.left
    assert user.id == BOB and user.display == "Bob M"
    assert sent.user == user and not sent.joined and sent.renamed is None
    # the older top-level prev_content counts too
    old_style = {**leave, "unsigned": {}, "prev_content": {"membership": "join", "displayname": "Bobby"}}
    assert incoming().convert(CHANNEL, room, old_style).left[0].display == "Bobby"


def test_a_leave_without_prev_content_uses_what_the_room_knew():
    room = joined_room((BOB, "Bob M"))
    sent = incoming().convert(CHANNEL, room, member("$2", BOB, "leave"))
    assert [u.display for u in sent.left] == ["Bob M"]


def test_a_kick_is_the_kicked_persons_leave_by_the_moderator():
    room = joined_room((BOB, "Bob M"), (MOD, "Mod"))
    kick = member("$3", BOB, "leave", sender=MOD, prev={"membership": "join", "displayname": "Bob M"})
    sent = incoming().convert(CHANNEL, room, kick)
    assert [u.display for u in sent.left] == ["Bob M"]
    assert sent.user.id == MOD and sent.user.display == "Mod"
    ban = member("$4", BOB, "ban", sender=MOD, prev={"membership": "join", "displayname": "Bob M"})
    assert [u.id for u in incoming().convert(CHANNEL, room, ban).left] == [BOB]


def test_a_change_of_display_name_is_a_rename():
    room = joined_room((BOB, "Bob M"))
    event = member("$5", BOB, "join", "Robert", prev={"membership": "join", "displayname": "Bob M"})
    sent = incoming().convert(CHANNEL, room, event)
    before, after = sent.renamed
    assert (before.id, before.display) == (BOB, "Bob M")
    assert (after.id, after.display) == (BOB, "Robert")
    assert before.username == after.username == BOB and before.plug == after.plug == "mx"
    assert sent.user == after
    assert sent.is_membership and sent.is_event and not sent.joined and not sent.left


def test_a_name_set_or_removed_is_a_rename_too():
    first = member("$6", BOB, "join", "Bob M", prev={"membership": "join"})
    before, after = incoming().convert(CHANNEL, Room(ROOM), first).renamed
    assert (before.real_name, before.display, after.display) == (None, BOB, "Bob M")
    gone = member("$7", BOB, "join", prev={"membership": "join", "displayname": "Bob M"})
    before, after = incoming().convert(CHANNEL, Room(ROOM), gone).renamed
    assert (before.display, after.real_name, after.display) == ("Bob M", None, BOB)


def test_an_avatar_change_says_nothing():
    prev = {"membership": "join", "displayname": "Bob M", "avatar_url": "mxc://hs.test/a"}
    event = member("$8", BOB, "join", "Bob M", prev=prev)
    event["content"]["avatar_url"] = "mxc://hs.test/b"
    assert incoming().convert(CHANNEL, joined_room((BOB, "Bob M")), event) is None
    blank = member("$9", BOB, "join", "  ", prev={"membership": "join"})
    assert incoming().convert(CHANNEL, Room(ROOM), blank) is None


def test_a_rename_without_prev_content_compares_with_the_room():
    room = joined_room((BOB, "Bob M"))
    sent = incoming().convert(CHANNEL, room, member("$10", BOB, "join", "Robert"))
    assert [u.display for u in sent.renamed] == ["Bob M", "Robert"]
    assert incoming().convert(CHANNEL, room, member("$11", BOB, "join", "Bob M")) is None


def test_invites_and_their_refusals_are_not_membership_messages():
    invite = member("$12", BOB, "invite", sender=MOD)
    refuse = member("$13", BOB, "leave", prev={"membership": "invite"})
    assert incoming().convert(CHANNEL, Room(ROOM), invite) is None
    assert incoming().convert(CHANNEL, Room(ROOM), refuse) is None
    accept = member("$14", BOB, "join", "Bob M", prev={"membership": "invite"})
    assert [u.display for u in incoming().convert(CHANNEL, Room(ROOM), accept).joined] == ["Bob M"]


def test_room_state_ignores_a_member_event_it_has_seen_replaced():
    room = Room(ROOM)
    join = member("$j", BOB, "join", "Bob M")
    rename = member("$r", BOB, "join", "Robert", prev={"membership": "join", "displayname": "Bob M"},
                    replaces="$j")
    room.apply(join)
    room.apply(rename)
    room.apply(join)  # a later state block can hold it: the state before a message sent meanwhile
    assert room.names[BOB] == "Robert" and BOB in room.members
    room.apply(member("$l", BOB, "leave", prev={"membership": "join"}, replaces="$r"))
    assert BOB not in room.members


# -- the sync side: each event read against the state before it -------------------------------


async def sync(timeline: Timeline, state: list[dict], events: list[dict]) -> None:
    await timeline.process(sync_response(ROOM, state, events), "s1", relay=True,
                           backlog_before=None)


@pytest.mark.anyio
async def test_a_leave_repeated_in_the_state_block_still_names_the_person():
    timeline, handed = offline_timeline(BRIDGE)
    join = member("$j", BOB, "join", "Bob M")
    await sync(timeline, [join], [join])
    leave = member("$l", BOB, "leave", prev={"membership": "join", "displayname": "Bob M"},
                   replaces="$j")
    await sync(timeline, [leave], [leave])
    joined, left = handed.received
    assert [u.display for u in joined.joined] == ["Bob M"]
    assert [u.display for u in left.left] == ["Bob M"] and left.user.display == "Bob M"
    assert BOB not in timeline.rooms[ROOM].members
    assert timeline.bad_events == 0


@pytest.mark.anyio
async def test_messages_carry_the_name_their_author_had_when_they_were_sent():
    timeline, handed = offline_timeline(BRIDGE)
    join = member("$j", BOB, "join", "Bob M")
    rename = member("$r", BOB, "join", "Robert", prev={"membership": "join", "displayname": "Bob M"},
                    replaces="$j")
    # one /sync: a message, the change of name, another message; the state block (Synapse,
    # lazy members) holds the change of name that is in the timeline as well
    await sync(timeline, [join], [join])
    await sync(timeline, [rename], [text("$m1", BOB, "before"), rename, text("$m2", BOB, "after")])
    _join, before, renamed, after = handed.received
    assert before.text.plain == "before" and before.user.display == "Bob M"
    assert [u.display for u in renamed.renamed] == ["Bob M", "Robert"]
    assert after.text.plain == "after" and after.user.display == "Robert"
    # a later state block with the replaced join (the state before a message sent while the
    # change of name was on its way) does not bring the old name back
    await sync(timeline, [join], [text("$m3", BOB, "raced")])
    await sync(timeline, [], [text("$m4", BOB, "later")])
    assert handed.received[-1].user.display == "Robert"
    assert timeline.rooms[ROOM].names[BOB] == "Robert"
    assert timeline.bad_events == 0, "every author's state was in the responses: nothing fetched"


# -- the notices the plug puts ---------------------------------------------------------------

BOB_IRC = User(id="bob", plug="irc", username="bob")
BOB_M = User(id=BOB, plug="other", username=BOB, real_name="Bob M")


def notice(msg: Message) -> dict:
    (part,) = Renderer("mx", "{name}: ", "{name} ").parts(msg, None)
    assert part.content["msgtype"] == "m.notice"
    assert "<b>" not in part.content["formatted_body"], "no author in front"
    return part.content


def test_membership_notices_name_each_person_once():
    assert notice(Message(joined=[BOB_IRC], user=BOB_IRC))["body"] == "bob joined"
    assert notice(Message(left=[BOB_M], user=BOB_M))["body"] == "Bob M left"
    robert = User(id="robert", plug="irc", username="robert")
    assert notice(Message(renamed=(BOB_IRC, robert), user=robert))["body"] == "bob is now known as robert"
    two = Message(joined=[BOB_IRC, BOB_M], user=None)
    assert notice(two)["body"] == "bob, Bob M joined"


def test_a_title_notice_names_who_changed_it_once():
    content = notice(Message(title="new topic", user=BOB_M))
    assert content["body"] == "Bob M changed the title to new topic"
    assert notice(Message(title="x", user=None))["body"] == "someone changed the title to x"


def test_said_things_keep_their_author():
    (part,) = Renderer("mx", "{name}: ", "{name} ").parts(Message(text="hello", user=BOB_M), None)
    assert part.content["body"] == "Bob M: hello" and part.content["msgtype"] == "m.text"
    (part,) = Renderer("mx", "{name}: ", "{name} ").parts(
        Message(text=RichText.plain_text("waves"), action=True, joined=[BOB_M], user=BOB_M), None)
    assert part.content["body"] == "Bob M waves"
