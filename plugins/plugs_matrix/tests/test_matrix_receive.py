"""Receiving from Matrix: text, formatting, names, replies, edits, redactions, files, rooms."""

from __future__ import annotations

import pytest

from chanmux import FileKind, Receipt
from chanmux.testing import run_host

from matrix_helpers import bridged, client, host_config, register

pytestmark = pytest.mark.anyio


def said(word):
    return lambda r: r.sent.text is not None and word in r.sent.text.plain


async def test_display_names_and_their_changes(synapse, bot, human, tmp_path):
    await human.set_displayname("Human One")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        await human.send_text(room, "first words")
        got = await rec.wait_for(said("first words"))
        assert got.sent.user.real_name == "Human One"
        assert got.sent.user.id == human.user_id and got.sent.user.plug == "mx"
        assert got.sent.user.link == f"https://matrix.to/#/{human.user_id}"
        await human.set_displayname("Human Renamed")
        # The homeserver writes the new member event into each of the human's rooms in the
        # background (one after the other: the human is in the rooms of other tests too), so
        # wait until the human sees it in this room before expecting the bridge to have it.
        await human.sync_until(lambda e: e["room_id"] == room and e["type"] == "m.room.member"
                               and e["content"].get("displayname") == "Human Renamed",
                               timeout=60)
        # the bridge account is in the rooms of other tests too, where the human renames as well
        here = host.channels["room"]
        renamed = await rec.wait_for(lambda r: r.sent.renamed is not None and r.sent.channel == here)
        before, after = renamed.sent.renamed
        assert (before.id, before.display) == (human.user_id, "Human One")
        assert (after.id, after.display) == (human.user_id, "Human Renamed")
        assert renamed.sent.user == after and renamed.sent.is_membership and not renamed.sent.text
        await human.send_text(room, "second words")
        got = await rec.wait_for(said("second words"))
        assert got.sent.user.real_name == "Human Renamed"
        mine = [r.sent for r in rec.received if r.sent.channel == here]
        assert not any(m.joined for m in mine), "a name change is not a join"
        assert [m.id for m in mine if m.renamed] == [renamed.sent.id]


async def test_joins_and_leaves_carry_the_display_name(synapse, bot, human, tmp_path):
    """A leave names the person as they were in the room (the room state no longer has their
    name by then), as a kick does; the join before it names them the same way."""
    someone = register(synapse, "member")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room), \
            client(synapse, someone) as other:
        rec, here = host.hooks["rec"], host.channels["room"]
        await other.set_displayname("Some One")
        await other.join(room)
        joined = await rec.wait_for(lambda r: r.sent.joined and r.sent.channel == here)
        assert [u.display for u in joined.sent.joined] == ["Some One"]
        assert joined.sent.user.id == someone.user_id
        await other.leave(room)
        left = await rec.wait_for(lambda r: r.sent.left and r.sent.channel == here)
        assert [(u.id, u.display) for u in left.sent.left] == [(someone.user_id, "Some One")]
        assert left.sent.user.display == "Some One" and not left.sent.joined
        await other.join(room)
        await rec.wait_until(lambda: len([r for r in rec.received if r.sent.joined
                                          and r.sent.channel == here]) == 2)
        await human.request("POST", f"/_matrix/client/v3/rooms/{room}/kick",
                            json={"user_id": someone.user_id})
        kicked = await rec.wait_for(lambda r: r.sent.left and r.sent.channel == here
                                    and r.sent.id != left.sent.id)
        assert [u.display for u in kicked.sent.left] == ["Some One"]
        assert kicked.sent.user.id == human.user_id


async def test_leaves_kicks_and_bans_carry_their_reason(synapse, bot, human, tmp_path):
    someone = register(synapse, "member")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room), \
            client(synapse, someone) as other:
        rec, here = host.hooks["rec"], host.channels["room"]

        def leaves():
            return [r.sent for r in rec.received if r.sent.left and r.sent.channel == here]

        def joins():
            return [r.sent for r in rec.received if r.sent.joined and r.sent.channel == here]

        await other.join(room)
        await rec.wait_until(lambda: len(joins()) == 1)
        await other.request("POST", f"/_matrix/client/v3/rooms/{room}/leave",
                            json={"reason": "gone fishing"})
        await rec.wait_until(lambda: len(leaves()) == 1)
        await other.join(room)
        await rec.wait_until(lambda: len(joins()) == 2)
        await human.request("POST", f"/_matrix/client/v3/rooms/{room}/kick",
                            json={"user_id": someone.user_id, "reason": "too\nloud  today"})
        await rec.wait_until(lambda: len(leaves()) == 2)
        await other.join(room)
        await rec.wait_until(lambda: len(joins()) == 3)
        await human.request("POST", f"/_matrix/client/v3/rooms/{room}/ban",
                            json={"user_id": someone.user_id})
        await rec.wait_until(lambda: len(leaves()) == 3)
        assert [(m.reason, m.left[0].id) for m in leaves()] == [
            ("gone fishing", someone.user_id), ("too loud today", someone.user_id),
            (None, someone.user_id)]


async def test_colours_arrive_with_the_text(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        html = ('<font data-mx-color="#FF0000" data-mx-bg-color="#000000">alarm</font> '
                '<span data-mx-color="#00ff00">calm</span> <font color="#0000ff">old</font> '
                '<font color="blue">named</font>')
        await human.send_text(room, "alarm calm old named", html=html)
        got = await rec.wait_for(said("alarm"))
        assert [(s.text, s.color, s.background) for s in got.sent.text] == [
            ("alarm", "#ff0000", "#000000"), (" ", None, None), ("calm", "#00ff00", None),
            (" ", None, None), ("old", "#0000ff", None), (" named", None, None)]


async def test_an_avatar_change_is_not_relayed(synapse, bot, human, tmp_path):
    await human.set_displayname("Human Pictured")
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        mxc = await human.upload(b"\x89PNG avatar", "image/png", "me.png")
        await human.request("PUT", f"/_matrix/client/v3/profile/{human.user_id}/avatar_url",
                            json={"avatar_url": mxc})
        await human.sync_until(lambda e: e["room_id"] == room and e["type"] == "m.room.member"
                               and e["content"].get("avatar_url") == mxc)
        await human.send_text(room, "after the picture")
        got = await rec.wait_for(said("after the picture"))
        assert got.sent.user.display == "Human Pictured"
        # (the bridge account is in other tests' rooms too, where the human changes as well)
        here = [r.sent.id for r in rec.received if r.sent.channel == host.channels["room"]]
        assert here == [got.sent.id], "an avatar change says nothing"


async def test_notice_and_formatting(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        await human.send_notice(room, "a notice")
        got = await rec.wait_for(said("a notice"))
        assert got.sent.notice and not got.sent.action
        html = ('<b>bold</b> <i>it</i> <u>under</u> <del>gone</del> <code>x=1</code> '
                '<a href="https://example.org/">link</a><blockquote>quote</blockquote>'
                '<ul><li>item</li></ul><pre><code>pre  code</code></pre>')
        await human.send_text(room, "fallback", html=html)
        got = await rec.wait_for(said("bold"))
        text = got.sent.text
        assert text.plain == "bold it under gone x=1 link\n> quote\n• item\npre  code"
        flags = {s.text: s for s in text}
        assert flags["bold"].bold and flags["it"].italic and flags["under"].underline
        assert flags["gone"].strike and flags["x=1"].code and flags["pre  code"].pre
        assert flags["link"].link == "https://example.org/"


async def test_mentions_become_users(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        html = f'hey <a href="https://matrix.to/#/{bot.user_id}">bridge</a> look'
        await human.send_text(room, "hey bridge look", html=html)
        got = await rec.wait_for(said("look"))
        mention = [s for s in got.sent.text if s.mention is not None]
        assert len(mention) == 1 and mention[0].text == "bridge"
        assert mention[0].mention.id == bot.user_id and mention[0].mention.plug == "mx"
        assert mention[0].mention.is_self


async def test_hostile_html_is_disarmed(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        html = ('<script>alert(1)</script><img src=x onerror="alert(2)">safe '
                '<a href="javascript:alert(3)">click</a> <a href=" JAVASCRIPT:alert(4)">two</a>'
                ' <style>*{}</style><b onmouseover="alert(5)">end</b>')
        await human.send_text(room, "safe click two end", html=html)
        got = await rec.wait_for(said("safe"))
        assert got.sent.text.plain == "safe click two end"
        assert all(s.link is None for s in got.sent.text)
        assert [s.text for s in got.sent.text if s.bold] == ["end"]


async def test_replies_strip_fallbacks(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        parent = await human.send_text(room, "the parent")
        await rec.wait_for(said("the parent"))
        content = {
            "msgtype": "m.text",
            "body": f"> <{human.user_id}> the parent\n\nthe answer",
            "format": "org.matrix.custom.html",
            "formatted_body": (f"<mx-reply><blockquote><a href=\"https://matrix.to/#/{room}/{parent}\">"
                               "In reply to</a> the parent</blockquote></mx-reply>the answer"),
            "m.relates_to": {"m.in_reply_to": {"event_id": parent}},
        }
        await human.send_event(room, "m.room.message", content)
        got = await rec.wait_for(said("the answer"))
        assert got.sent.text.plain == "the answer"
        assert isinstance(got.sent.reply_to, Receipt)
        assert got.sent.reply_to.id == parent and got.sent.reply_to.channel == host.channels["room"]
        plain = dict(content, body=content["body"].replace("the answer", "plain answer"))
        del plain["format"], plain["formatted_body"]
        await human.send_event(room, "m.room.message", plain)
        got = await rec.wait_for(said("plain answer"))
        assert got.sent.text.plain == "plain answer"


async def test_edits_and_redactions(synapse, bot, human, other_account, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        original = await human.send_text(room, "tpyo here")
        first = await rec.wait_for(said("tpyo"))
        edit_id = await human.edit(room, original, "typo here", new_html="<i>typo</i> here")
        edited = await rec.wait_for(lambda r: r.sent.edited)
        assert edited.sent.id == original == first.sent.id
        assert edited.sent.revision == edit_id
        assert edited.sent.text.plain == "typo here" and edited.sent.text.segments[0].italic
        # an "edit" by someone else is not an edit
        async with client(synapse, other_account) as other:
            await other.join(room)
            await other.edit(room, original, "forged text")
            await other.send_text(room, "other done")
        await rec.wait_for(said("other done"))
        assert not any(r.sent.text and "forged" in r.sent.text.plain for r in rec.received)
        await human.redact(room, original)
        gone = await rec.wait_for(lambda r: r.sent.deleted)
        assert gone.sent.id == original and gone.sent.user.id == human.user_id


async def test_room_name_is_a_title_and_look_ups(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        channel = host.channels["room"]
        assert await host.channel_title(channel) == "bridged"
        await human.set_room_name(room, "renamed room")
        got = await rec.wait_for(lambda r: r.sent.title is not None)
        assert got.sent.title == "renamed room" and got.sent.is_event
        assert await host.channel_title(channel) == "renamed room"
        members = await host.channel_members(channel)
        assert {m.id for m in members} == {bot.user_id, human.user_id}
        assert [m.is_self for m in members if m.id == bot.user_id] == [True]
        assert await host.channel_is_private(channel) is False
        assert channel in await host.public_channels("mx")
        assert channel not in await host.private_channels("mx")
        link = await host.channel_link(channel)
        assert link.startswith("https://matrix.to/#/!")


async def test_direct_chat_is_private(synapse, human_account, tmp_path):
    bot = register(synapse, "dmbot")
    async with client(synapse, human_account) as human:
        async with run_host(host_config(synapse, bot, None, accept_invites=True),
                            path=tmp_path / "c.toml") as host:
            dm = await human.create_room(invite=[bot.user_id], is_direct=True,
                                         preset="trusted_private_chat")
            await human.sync_until(lambda e: e["room_id"] == dm and e["type"] == "m.room.member"
                                   and e.get("state_key") == bot.user_id
                                   and e["content"].get("membership") == "join")
            channel = host.plugs["mx"].channel(dm)
            assert await host.channel_is_private(channel) is True
            assert channel in await host.private_channels("mx")
            assert channel not in await host.public_channels("mx")
        # a new run knows it from the account's m.direct
        async with run_host(host_config(synapse, bot, None), path=tmp_path / "c.toml") as host:
            assert await host.channel_is_private(host.plugs["mx"].channel(dm)) is True


async def test_invites_are_declined_unless_configured(synapse, human_account, tmp_path, logwatch):
    bot = register(synapse, "shy")
    async with client(synapse, human_account) as human:
        async with run_host(host_config(synapse, bot, None), path=tmp_path / "c.toml"):
            room = await human.create_room(invite=[bot.user_id])
            (line,) = await logwatch.wait_for("accept_invites is off")
            assert room in line and human.user_id in line
            assert await human.joined_members(room) == [human.user_id]


async def test_files_arrive_with_a_fetch(synapse, bot, human, tmp_path):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        data = bytes(range(256)) * 10
        mxc = await human.upload(data, "image/png", "pic.png")
        await human.send_event(room, "m.room.message", {
            "msgtype": "m.image", "body": "pic.png", "url": mxc,
            "info": {"mimetype": "image/png", "size": len(data)}})
        got = await rec.wait_for(lambda r: r.sent.attachments)
        (file,) = got.sent.attachments
        assert file.kind is FileKind.image and file.title == "pic.png" and file.url == mxc
        assert file.mime == "image/png" and file.size == len(data)
        assert await file.fetch() == data
        await human.send_event(room, "m.room.message", {"msgtype": "m.file", "body": "notes.txt",
                                                        "url": await human.upload(b"notes", "text/plain")})
        got = await rec.wait_for(lambda r: r.sent.attachments and r.sent.attachments[0].title == "notes.txt")
        assert got.sent.attachments[0].kind is FileKind.unknown
        assert await got.sent.attachments[0].fetch() == b"notes"


async def test_malformed_events_are_skipped(synapse, bot, human, tmp_path, logwatch):
    async with bridged(synapse, bot, human, tmp_path / "c.toml") as (host, room):
        rec = host.hooks["rec"]
        first = await human.send_text(room, "first")
        await rec.wait_for(said("first"))
        bad = [
            {"msgtype": "m.video", "body": "v", "url": 7},
            {"msgtype": "m.text", "body": "* x", "m.new_content": "not an object",
             "m.relates_to": {"rel_type": "m.replace", "event_id": first}},
            {"msgtype": "m.image", "body": "no url"},
            {"msgtype": "m.text", "body": "edit of nothing", "m.relates_to": {"rel_type": "m.replace"}},
            {"msgtype": "m.location", "body": "nowhere", "geo_uri": "nonsense"},
        ]
        for content in bad:
            await human.send_event(room, "m.room.message", content)
        bad_reactions = [{"m.relates_to": {"rel_type": "m.reference", "event_id": first}},
                         {"m.relates_to": "nonsense"}, {"key": "👍"}]
        for content in bad_reactions:
            await human.send_event(room, "m.reaction", content)
        await human.send_text(room, "still alive")
        await rec.wait_for(said("still alive"))
        assert [r.sent.text.plain for r in rec.received] == ["first", "still alive"]
        assert len(logwatch.lines("skipped malformed")) == len(bad) + len(bad_reactions)


async def test_encrypted_room_is_reported_once(synapse, human_account, tmp_path, logwatch):
    bot = register(synapse, "crypt")
    async with client(synapse, human_account) as human:
        room = await human.create_room(encrypted=True, preset="public_chat")
        async with run_host(host_config(synapse, bot, room), path=tmp_path / "c.toml") as host:
            await human.send_event(room, "m.room.encrypted", {
                "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "sender_key": "x",
                "device_id": "D", "session_id": "s"})
            await human.send_text(room, "plain in encrypted room")
            await host.hooks["rec"].wait_for(said("plain in encrypted"))
        warnings = logwatch.lines("end-to-end encrypted")
        assert len(warnings) == 1 and room in warnings[0]
        assert not any(r.sent.text and "ciphertext" in r.sent.text.plain
                       for r in host.hooks["rec"].received)
