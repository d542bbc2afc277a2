"""Events whose formatted_body the HTML reader cannot use still reach the bridge: their text is
the plain ``body``, and one warning names the event and the cause."""

from __future__ import annotations

import logging

import pytest

from chanmux import Channel, User
from chanmux_matrix.incoming import Incoming
from chanmux_matrix.rooms import Room

ROOM = "!room:example.org"
CHANNEL = Channel("matrix", ROOM)


async def no_download(url: str) -> bytes:
    raise AssertionError(f"nothing here downloads ({url})")


def members_unknown(room_id: str, user_id: str) -> User | None:
    """A member lookup that fails, as a broken room state would."""
    raise KeyError(f"no member list for {room_id}")


def event(formatted_body: str, body: str, event_id: str = "$ev1", **content) -> dict:
    return {"type": "m.room.message", "event_id": event_id, "sender": "@alice:example.org",
            "origin_server_ts": 1_700_000_000_000,
            "content": {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                        "formatted_body": formatted_body, **content}}


def test_a_formatted_body_that_cannot_be_read_falls_back_to_the_body(caplog):
    incoming = Incoming("matrix", "@bridge:example.org", members_unknown, no_download)
    pill = '<a href="https://matrix.to/#/@bob:example.org">Bob</a>'
    with caplog.at_level(logging.WARNING, logger="chanmux"):
        sent = incoming.convert(CHANNEL, Room(ROOM), event(f"hi <b>{pill}</b>", "hi Bob"))
    assert sent is not None and sent.id == "$ev1"
    assert sent.text.plain == "hi Bob"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "$ev1" in line and ROOM in line and "KeyError" in line and "no member list" in line
    assert warnings[0].name == "chanmux.plug.matrix"


def test_the_fallback_of_a_reply_drops_the_quoted_parent(caplog):
    incoming = Incoming("matrix", "@bridge:example.org", members_unknown, no_download)
    pill = '<a href="https://matrix.to/#/@bob:example.org">Bob</a>'
    reply = event(f"<mx-reply>quote</mx-reply>yes {pill}", "> <@bob:example.org> quote\n\nyes Bob",
                  event_id="$ev2", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$parent"}}})
    with caplog.at_level(logging.WARNING, logger="chanmux"):
        sent = incoming.convert(CHANNEL, Room(ROOM), reply)
    assert sent.text.plain == "yes Bob"
    assert sent.reply_to is not None and sent.reply_to.id == "$parent"
    assert any("$ev2" in r.getMessage() for r in caplog.records)


def test_the_fallback_of_an_edit_names_the_edit(caplog):
    incoming = Incoming("matrix", "@bridge:example.org", members_unknown, no_download)
    pill = '<a href="https://matrix.to/#/@bob:example.org">Bob</a>'
    new = {"msgtype": "m.text", "body": "bye Bob", "format": "org.matrix.custom.html",
           "formatted_body": f"bye {pill}"}
    edit = event("* x", "* x", event_id="$edit",
                 **{"m.new_content": new, "m.relates_to": {"rel_type": "m.replace", "event_id": "$ev1"}})
    with caplog.at_level(logging.WARNING, logger="chanmux"):
        sent = incoming.convert(CHANNEL, Room(ROOM), edit)
    assert sent.id == "$ev1" and sent.edited and sent.text.plain == "bye Bob"
    assert any("$edit" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("start", ["\u00b2", "\u0663", "9" * 5000])
def test_an_ol_start_that_is_no_number_keeps_the_event(start, caplog):
    """``<ol start="²">``: str.isdigit() said yes, int() raised, and the event was skipped."""
    incoming = Incoming("matrix", "@bridge:example.org", lambda room, user: None, no_download)
    html = f'<ol start="{start}"><li>first</li><li>second</li></ol>'
    with caplog.at_level(logging.WARNING, logger="chanmux"):
        sent = incoming.convert(CHANNEL, Room(ROOM), event(html, "1. first\n2. second"))
    assert sent.text.plain == "1. first\n2. second"
    assert not caplog.records, "the HTML itself is read: no fallback needed"


def test_html_that_used_to_raise_is_read(caplog):
    incoming = Incoming("matrix", "@bridge:example.org", lambda room, user: None, no_download)
    html = "<b>big</b> &#" + "1" * 5000 + "; number"
    with caplog.at_level(logging.WARNING, logger="chanmux"):
        sent = incoming.convert(CHANNEL, Room(ROOM), event(html, "big ? number"))
    assert sent.text.plain == "big \ufffd number"
    assert not caplog.records
