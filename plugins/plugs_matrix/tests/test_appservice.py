"""The Matrix plug as an application service, against a real Synapse that loaded its registration.

People of other networks speak as Matrix users of their own (ghosts); what the homeserver
pushes reaches the host once; the homeserver's token guards the routes; the registration file
and the config must agree.
"""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from chanmux import ConfigError, Message, User
from chanmux.testing import make_host, run_cli, run_host
from chanmux_testservers.faults import FaultProxy

from matrix_helpers import client, human_events, human_sees, register

pytestmark = pytest.mark.anyio

GHOST = "@chanmux_irc_alice:chanmux.test"


def alice(nick: str = "alice") -> User:
    """A person of the memory plug `irc`, as a relay hands them to the Matrix plug."""
    return User(id=f"{nick}!a@example.org", plug="irc", username=nick, real_name=nick)


async def member(human, room: str, user_id: str) -> dict:
    return await human.get_state(room, "m.room.member", user_id)


async def test_people_of_other_networks_speak_as_matrix_users_of_their_own(appservice, person, tmp_path):
    """A message of an IRC person arrives from their ghost, named as they are, with no name
    in the text; their actions, edits and deletions too; the homeserver's copies come back to
    the host as echoes, never as new messages."""
    room = person.room
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host:
        channel, rec = host.channels["room"], host.hooks["rec"]
        receipts = await host.put(channel, Message(text="hello from IRC", user=alice()))
        seen = await human_sees(person, room, lambda s: s.text.plain == "hello from IRC")
        assert (seen.sender, seen.id) == (GHOST, receipts[0].id)
        assert (await member(person, room, GHOST))["displayname"] == "alice"
        await host.put(channel, Message(text="waves", action=True, user=alice()))
        act = await human_sees(person, room, lambda s: s.action)
        assert (act.sender, act.text.plain) == (GHOST, "waves")
        await host.edit(receipts[0], Message(text="hello again from IRC", user=alice()))
        edit = await human_sees(person, room, lambda s: s.kind == "edit")
        assert (edit.sender, edit.target, edit.text.plain) == (GHOST, seen.id, "hello again from IRC")
        await host.delete(receipts[0])
        gone = await human_sees(person, room, lambda s: s.kind == "delete")
        assert (gone.sender, gone.target) == (GHOST, seen.id)
        await rec.wait_for(lambda r: r.sent.id == edit.target and r.sent.deleted)
        ours = [r for r in rec.received if r.sent.channel == channel]
        assert ours and all(r.is_echo for r in ours), [r.sent for r in ours if not r.is_echo]


async def test_what_matrix_people_say_reaches_the_host_once(appservice, person, tmp_path):
    """Messages, edits and redactions of a Matrix person arrive through transactions, each
    once, with the person's display name."""
    room = person.room
    await person.set_displayname("Ann on Matrix")
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host:
        channel, rec = host.channels["room"], host.hooks["rec"]
        first = await person.send_text(room, "hello from Matrix")
        got = await rec.wait_for(lambda r: r.sent.id == first, timeout=20)
        assert got.sent.text.plain == "hello from Matrix" and not got.is_echo
        assert (got.sent.user.id, got.sent.user.real_name) == (person.user_id, "Ann on Matrix")
        await person.edit(room, first, "hello again from Matrix")
        edited = await rec.wait_for(lambda r: r.sent.id == first and r.sent.edited, timeout=20)
        assert edited.sent.text.plain == "hello again from Matrix"
        await person.redact(room, first)
        await rec.wait_for(lambda r: r.sent.id == first and r.sent.deleted, timeout=20)
        last = await person.send_text(room, "barrier")
        await rec.wait_for(lambda r: r.sent.id == last, timeout=20)
        ids = [r.sent.id for r in rec.received if r.sent.channel == channel and not r.sent.edited
               and not r.sent.deleted and r.sent.text is not None]
        assert ids.count(first) == 1 and ids.count(last) == 1


async def test_joins_leaves_and_new_nicks_are_the_ghosts_own(appservice, person, tmp_path):
    """An IRC join makes the ghost join (no notice from the bridge account), a leave makes
    it leave, and a change of nick renames the same ghost, whose next message still comes
    from it; someone taking the old nick gets a ghost of their own."""
    room = person.room
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        assert await host.put(channel, Message(joined=[alice()])) == []
        await human_events(person, room, lambda e: e.get("type") == "m.room.member"
                           and e.get("state_key") == GHOST
                           and e["content"].get("membership") == "join", 1)
        await host.put(channel, Message(renamed=(alice(), alice("alice_away"))))
        await human_events(person, room, lambda e: e.get("state_key") == GHOST
                           and e["content"].get("displayname") == "alice_away", 1)
        receipts = await host.put(channel, Message(text="brb", user=alice("alice_away")))
        seen = await human_sees(person, room, lambda s: s.text.plain == "brb")
        assert (seen.sender, seen.id) == (GHOST, receipts[0].id)
        await host.put(channel, Message(text="I am new here", user=alice()))
        newcomer = await human_sees(person, room, lambda s: s.text.plain == "I am new here")
        assert newcomer.sender == "@chanmux_irc_alice-2:chanmux.test"
        await host.put(channel, Message(left=[alice("alice_away")]))
        await human_events(person, room, lambda e: e.get("state_key") == GHOST
                           and e["content"].get("membership") == "leave", 1)
        notices = [e for e in person.events if e.get("room_id") == room
                   and e.get("sender") == appservice.bot and e.get("type") == "m.room.message"]
        assert notices == []


async def test_a_ghost_leaves_saying_why_and_addresses_people_with_a_pill(appservice, person, tmp_path):
    """A part or quit message is the reason of the ghost's leave; a line of the ghost that
    starts with a member's name mentions that member (m.mentions)."""
    room = person.room
    await person.set_displayname("Ann")
    # the homeserver renames the person in their rooms in the background: wait for this one
    await human_events(person, room, lambda e: e.get("state_key") == person.user_id
                       and e["content"].get("displayname") == "Ann", 1)
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host:
        channel = host.channels["room"]
        await host.put(channel, Message(text="ann: hi there", user=alice()))
        seen = await human_sees(person, room, lambda s: s.text.plain == "ann: hi there")
        assert seen.sender == GHOST
        assert [(s.text, s.mention.id) for s in seen.text if s.mention] == [("ann", person.user_id)]
        [event] = await human_events(person, room, lambda e: e["event_id"] == seen.id, 1)
        assert event["content"]["m.mentions"] == {"user_ids": [person.user_id]}
        await host.put(channel, Message(left=[alice()], reason="gone fishing"))
        [leave] = await human_events(person, room, lambda e: e.get("state_key") == GHOST
                                     and e["content"].get("membership") == "leave", 1)
        assert leave["content"].get("reason") == "gone fishing"


async def test_the_moves_of_nicks_are_kept_across_a_restart(appservice, person, tmp_path):
    room = person.room
    config = appservice.host_config([room])
    async with run_host(config, path=tmp_path / "c.toml") as host:
        await host.put(host.channels["room"], Message(renamed=(alice("bob"), alice("robert"))))
    async with run_host(config, path=tmp_path / "c.toml") as host:
        await host.put(host.channels["room"], Message(text="still me", user=alice("robert")))
        seen = await human_sees(person, room, lambda s: s.text.plain == "still me")
        assert seen.sender == "@chanmux_irc_bob:chanmux.test"


async def test_an_invite_only_room_lets_ghosts_in_through_the_bridge_account(appservice, tmp_path, caplog):
    """Where a ghost may not join by itself the bridge account invites it; where the bridge
    account may not invite either, one ERROR says what to change and the message comes
    from the bridge account with the name in front: never lost."""
    caplog.set_level(logging.ERROR)
    account = register(appservice.synapse, "owner")
    async with client(appservice.synapse, account) as owner:
        open_to_bot = await owner.create_room(name="private", invite=[appservice.bot])
        closed = await owner.create_room(name="closed", invite=[appservice.bot])
        levels = await owner.get_state(closed, "m.room.power_levels")
        await owner.send_state(closed, "m.room.power_levels", {**levels, "invite": 100})
        config = appservice.host_config([open_to_bot, closed])
        config["channels"]["closed"] = {"plug": "mx", "source": closed}
        async with run_host(config, path=tmp_path / "c.toml") as host:
            await host.put(host.channels["room"], Message(text="in private", user=alice()))
            seen = await human_sees(owner, open_to_bot, lambda s: s.text.plain == "in private")
            assert seen.sender == GHOST
            for n in range(2):
                await host.put(host.channels["closed"], Message(text=f"in closed {n}", user=alice()))
                seen = await human_sees(owner, closed, lambda s, n=n: s.text.plain.endswith(f"in closed {n}"))
                assert seen.sender == appservice.bot and seen.text.plain == f"alice: in closed {n}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and closed in errors[0] and "power to invite" in errors[0]


async def test_the_routes_want_the_homeservers_token_and_a_repeated_transaction_is_taken_once(
        appservice, person, tmp_path):
    room = person.room
    hs_token = appservice.registration.read_text().split("hs_token: ", 1)[1].split()[0]
    base = f"http://127.0.0.1:{appservice.port}/_matrix/app/v1"
    event = {"type": "m.room.message", "room_id": room, "sender": person.user_id,
             "event_id": "$made-up-by-the-test", "origin_server_ts": int(time.time() * 1000),
             "content": {"msgtype": "m.text", "body": "pushed twice"}}
    body = json.dumps({"events": [event]})
    async with run_host(appservice.host_config([room]), path=tmp_path / "c.toml") as host, \
            httpx.AsyncClient() as http:
        rec = host.hooks["rec"]
        url = f"{base}/transactions/test-1"
        missing = await http.put(url, content=body)
        wrong = await http.put(url, content=body, headers={"Authorization": "Bearer nope"})
        assert (missing.status_code, missing.json()["errcode"]) == (401, "M_UNAUTHORIZED")
        assert (wrong.status_code, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")
        auth = {"Authorization": f"Bearer {hs_token}"}
        for _ in range(2):
            done = await http.put(url, content=body, headers=auth)
            assert (done.status_code, done.json()) == (200, {})
        again = await http.put(f"{base}/transactions/test-2", content=body, headers=auth)
        assert again.status_code == 200
        barrier = await person.send_text(room, "barrier")
        await rec.wait_for(lambda r: r.sent.id == barrier, timeout=20)
        assert [r.sent.id for r in rec.received].count("$made-up-by-the-test") == 1
        user = await http.get(f"{base}/users/{GHOST}", headers=auth)
        stranger = await http.get(f"{base}/users/@someone:chanmux.test", headers=auth)
        assert (user.status_code, stranger.status_code) == (200, 404)
        bad = await http.put(f"{base}/transactions/test-3", content=b"{", headers=auth)
        assert bad.status_code == 400


async def test_the_registration_and_the_config_must_agree(appservice, tmp_path):
    """Each disagreement is one line naming the key and what to do, with the file's other
    problems; no listener is one too."""
    other = tmp_path / "other.yaml"
    other.write_text(appservice.registration.read_text().replace("chanmux_", "other_")
                     .replace("sender_localpart: chanmux", "sender_localpart: someone"))
    config = appservice.host_config([])
    config["plugs"]["mx"]["registration"] = str(other)
    del config["http"]
    with pytest.raises(ConfigError) as raised:
        make_host(config, path=tmp_path / "c.toml")
    problems = sorted(raised.value.issues)
    assert [where for where, _ in problems] == ["http.listen", "plugs.mx.registration",
                                                "plugs.mx.registration"]
    assert 'sender_localpart is "someone"' in problems[1][1] + problems[2][1]
    assert "exclusive user namespace is not @chanmux_" in problems[1][1] + problems[2][1]
    assert all("--force" in problem for _, problem in problems[1:])
    config["plugs"]["mx"]["registration"] = str(tmp_path / "missing.yaml")
    config["http"] = {"listen": "127.0.0.1:1"}
    with pytest.raises(ConfigError) as raised:
        make_host(config, path=tmp_path / "c.toml")
    [(where, problem)] = raised.value.issues
    assert where == "plugs.mx.registration" and "chanmux matrix-registration" in problem


def test_the_registration_command_writes_a_file_the_plug_accepts(tmp_path, capsys):
    bridge = tmp_path / "bridge.toml"
    bridge.write_text('[http]\nlisten = "127.0.0.1:9180"\n\n[plugs.mx]\ntype = "matrix"\n'
                      'homeserver = "https://matrix.example.org"\nuser_id = "@bridge:example.org"\n'
                      'registration = "registration.yaml"\nghost_prefix = "irc_"\n')
    assert run_cli(["matrix-registration", str(bridge)]) == 0
    written = tmp_path / "registration.yaml"
    assert "app_service_config_files" in capsys.readouterr().out
    assert written.stat().st_mode & 0o777 == 0o600
    text = written.read_text()
    assert "url: http://127.0.0.1:9180\n" in text and "sender_localpart: bridge\n" in text
    assert "regex: '@irc_.*:example\\.org'" in text
    assert "receive_ephemeral: true\n" in text  # so that who types on Matrix is heard
    assert run_cli(["check", str(bridge)]) == 0
    assert "receive_ephemeral" not in capsys.readouterr().err
    # a registration written before typing was relayed still works; check says what it misses
    written.write_text(text.replace("receive_ephemeral: true\n", "")
                       .replace("de.sorunome.msc2409.push_ephemeral: true\n", ""))
    assert run_cli(["check", str(bridge)]) == 0
    assert "receive_ephemeral: true" in capsys.readouterr().err
    written.write_text(text)
    assert run_cli(["matrix-registration", str(bridge)]) == 2
    assert "exists" in capsys.readouterr().err and written.read_text() == text
    assert run_cli(["matrix-registration", "--force", str(bridge)]) == 0
    assert written.read_text() != text


async def test_a_homeserver_that_does_not_know_the_service_is_said_once(appservice, synapse, tmp_path,
                                                                      logwatch):
    """Started against a homeserver that never loaded the registration: one ERROR naming the
    file and what to do, and the plug is not ready (copies wait)."""
    config = appservice.host_config([])
    config["plugs"]["mx"]["homeserver"] = synapse.base_url
    config["host"] = {"reconnect_min": 0.1, "reconnect_max": 0.2}
    async with run_host(config, path=tmp_path / "c.toml", wait_ready=None) as host:
        await logwatch.wait_for("still failing", timeout=20)
        assert not host.plug_ready("mx")
    errors = [r.getMessage() for r in logwatch.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(appservice.registration) in errors[0], errors
    assert "app_service_config_files" in errors[0]


async def test_what_the_homeserver_does_not_push_is_read_back(appservice, person, tmp_path, logwatch):
    """A homeserver can fail to push events (Synapse loses its queue when killed, and can leave
    a transaction unsent): the plug reads each bridged room's history every `sync_timeout`
    seconds and relays what it has not been pushed. Here every push is refused (the bridge's
    copy of the registration has another hs_token), and the message still arrives, once."""
    room = person.room
    refusing = tmp_path / "registration.yaml"
    text = appservice.registration.read_text()
    token = text.split("hs_token: ", 1)[1].split()[0]
    refusing.write_text(text.replace(token, "not-the-homeservers-token"))
    config = appservice.host_config([room], sync_timeout=1)
    config["plugs"]["mx"]["registration"] = str(refusing)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec = host.hooks["rec"]
        said = await person.send_text(room, "pushed or not")
        got = await rec.wait_for(lambda r: r.sent.id == said, timeout=30)
        assert got.sent.text.plain == "pushed or not"
        await logwatch.wait_for("refused a request to", timeout=30)
        second = await person.send_text(room, "and again")
        await rec.wait_for(lambda r: r.sent.id == second, timeout=30)
        assert [r.sent.id for r in rec.received].count(said) == 1


async def test_an_event_the_homeserver_drops_before_others_it_pushes_is_read_back(
        appservice, person, tmp_path):
    """Synapse can drop one event from its push queue and push the ones after it (seen in
    CI: an event said as it marked the service up again, after the bridge restarted). Here
    the bridge is made to lose the transaction that carries one message (it is answered, as
    if it had never been sent) while the next is pushed and taken: the catch-up reads each
    room back to what it checked last, not to the last event taken, so the lost message
    still arrives, once, after the one said after it."""
    room = person.room
    config = appservice.host_config([room], sync_timeout=2)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec = host.hooks["rec"]
        service = host.plugs["mx"].appservice
        intake = service.intake

        async def losing(events: list[dict]) -> None:  # the homeserver's drop, reproduced
            await intake([e for e in events
                          if (e.get("content") or {}).get("body") != "dropped by the homeserver"])

        service.intake = losing
        lost = await person.send_text(room, "dropped by the homeserver")
        after = await person.send_text(room, "pushed after it")
        await rec.wait_for(lambda r: r.sent.id == after, timeout=30)
        await rec.wait_for(lambda r: r.sent.id == lost, timeout=30)
        ids = [r.sent.id for r in rec.received]
        assert ids.count(lost) == 1 and ids.count(after) == 1


async def test_what_is_said_while_the_bridge_is_stopped_is_read_back_in_order_at_a_start(
        appservice, person, tmp_path, logwatch):
    """The plug keeps how far it read each room back, and what it took since. Started again,
    it reads back what was said while it was stopped and hands it over in order, before what
    is said after, even when the homeserver never pushes it (here every push is refused, as
    when Synapse leaves a transaction unsent); what the last run took is not handed over
    again."""
    room = person.room
    config = appservice.host_config([room], sync_timeout=1)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec, channel = host.hooks["rec"], host.channels["room"]
        first = await person.send_text(room, "said while running")
        await rec.wait_for(lambda r: r.sent.id == first, timeout=30)
    away = [await person.send_text(room, f"said while stopped {n}") for n in range(3)]
    refusing = tmp_path / "registration.yaml"
    text = appservice.registration.read_text()
    token = text.split("hs_token: ", 1)[1].split()[0]
    refusing.write_text(text.replace(token, "not-the-homeservers-token"))
    config["plugs"]["mx"]["registration"] = str(refusing)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec = host.hooks["rec"]
        await logwatch.wait_for("3 events said while the bridge was stopped", timeout=30)
        after = await person.send_text(room, "said after the start")
        await rec.wait_for(lambda r: r.sent.id == after, timeout=30)
        ids = [r.sent.id for r in rec.received if r.sent.channel == channel]
        assert ids == [*away, after]


async def test_what_was_said_longer_ago_than_max_catchup_age_is_not_relayed_at_a_start(
        appservice, person, tmp_path, logwatch):
    """`max_catchup_age` means in this mode what it means with a bot account: what was said
    while the bridge was away, longer ago than that, is not relayed when the homeserver
    sends it at the next start (here 0: nothing said while it was stopped), with one line
    saying how many; what is said after the start is."""
    room = person.room
    # (sync_timeout 1: what the homeserver holds back, busy with an earlier test's bridge, is
    # read back within a second)
    config = appservice.host_config([room], max_catchup_age=0, sync_timeout=1)
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec = host.hooks["rec"]
        first = await person.send_text(room, "said while running")
        await rec.wait_for(lambda r: r.sent.id == first, timeout=30)
    old = await person.send_text(room, "said while stopped")
    skips = len(logwatch.lines("older than max_catchup_age"))
    async with run_host(config, path=tmp_path / "c.toml") as host:
        rec, channel = host.hooks["rec"], host.channels["room"]
        await logwatch.wait_for("older than max_catchup_age", timeout=60, count=skips + 1)
        after = await person.send_text(room, "said after the start")
        await rec.wait_for(lambda r: r.sent.id == after, timeout=30)
        assert old not in [r.sent.id for r in rec.received if r.sent.channel == channel]


async def test_a_ping_the_homeserver_fails_after_it_reached_the_bridge_is_no_error(
        appservice, person, tmp_path, caplog):
    """At a start the plug asks the homeserver to ping it. When the ping does not reach the
    bridge, one ERROR says to check the url; when it reached the bridge and the homeserver
    fails afterwards (Synapse does, when its retry of what it kept is already running),
    nothing is wrong with the bridge's setup and no ERROR is said, and the plug pings again
    a second later, so that the homeserver does send what it kept."""
    caplog.set_level(logging.ERROR)
    room = person.room
    failed = {"errcode": "M_CONNECTION_FAILED", "error": "AlreadyCalled"}
    async with FaultProxy(appservice.synapse.base_url) as proxy:
        # (sync_timeout 1: what the homeserver holds back, when the ping did not reach the
        # bridge, is read back within a second)
        config = appservice.host_config([room], homeserver=proxy.base_url, sync_timeout=1)
        for forward in (True, False):
            proxy.answer("POST", r"/appservice/[^/]+/ping$", 502, failed, forward=forward)
            before = len(proxy.seen("POST", "/ping$"))
            async with run_host(config, path=tmp_path / "c.toml") as host:
                said = await person.send_text(room, f"pinged, forwarded={forward}")
                await host.hooks["rec"].wait_for(lambda r, said=said: r.sent.id == said, timeout=30)
                if forward:  # and pinged again, so that the homeserver sends what it kept
                    await proxy.wait_for(lambda n=before + 2: len(proxy.seen("POST", "/ping$")) == n,
                                         "the second ping")
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            if forward:
                # (forwarded: the homeserver answered the proxy, having pinged the bridge)
                pings = proxy.seen("POST", "/ping$")[before:]
                assert errors == [] and pings[0].upstream is not None and pings[1].status == 200
            else:
                assert len(errors) == 1 and "cannot reach the bridge" in errors[0]
