"""A one-way announcement with the forward hook: what allowed people say in a Matrix room is
copied to two IRC channels (ngircd); nothing said on IRC goes back, and people not on the
`users` list are not forwarded.

"Nothing went back" needs a barrier: the same bridge also syncs a second IRC channel with a
second Matrix room. The IRC person speaks in the announcement channel, then in the synced
one; the bridge reads both lines in that order from one connection, so once the second has
reached Matrix, a copy of the first would have been put before it.
"""

from __future__ import annotations

import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import (
    FAST_HOST,
    Bridge,
    alias_of,
    body,
    create_room,
    irc_plug,
    matrix_plug,
    privmsgs,
    register,
    room_messages,
    sync_hook,
    uid,
    write_config,
)

pytestmark = pytest.mark.anyio


async def test_forward_announcements_one_way(anyio_backend: str, synapse, ngircd, tmp_path):
    hs, run = synapse, uid()
    alice = register(hs, f"fw{run}a", "Alice M")
    bob = register(hs, f"fw{run}b", "Bob M")
    account = register(hs, f"fw{run}bridge")
    news = create_room(hs, alice, f"fwnews{run}", members=[bob])
    talk = create_room(hs, alice, f"fwtalk{run}")
    main, dev, chat = f"#fwmain{run}", f"#fwdev{run}", f"#fwchat{run}"
    nick = f"fb{run}"
    config = {
        "logging": {"level": "INFO"},
        "host": FAST_HOST,
        "plugs": {"irc": irc_plug(ngircd, nick), "matrix": matrix_plug(hs, account)},
        "channels": {
            "announcements": {"plug": "matrix", "source": alias_of(hs, f"fwnews{run}")},
            "irc-main": {"plug": "irc", "source": main},
            "irc-dev": {"plug": "irc", "source": dev},
            "irc-chat": {"plug": "irc", "source": chat},
            "matrix-chat": {"plug": "matrix", "source": alias_of(hs, f"fwtalk{run}")},
        },
        "hooks": {
            "announce": {"type": "forward", "channels": {"announcements": ["irc-main", "irc-dev"]},
                         "users": [alice.user_id]},
            "sync": sync_hook({"chat": ["irc-chat", "matrix-chat"]}),
        },
    }
    bridge = Bridge(write_config(tmp_path / "bridge.toml", config), backend=anyio_backend,
                    plugs=["irc", "matrix"], secrets=[account.token])
    bridge.start()
    try:
        await bridge.ready()
        async with HumanIRC.connect(ngircd.host, ngircd.port, f"h{uid(7)}") as irc, \
                HumanMatrix(hs.base_url, alice.user_id, alice.token) as mx, \
                HumanMatrix(hs.base_url, bob.user_id, bob.token) as mbob:
            for channel in (main, dev, chat):
                await irc.join(channel)
            await mx.catch_up()
            mark = irc.mark()
            t = uid()
            eid = await mx.send_text(news, f"{t} release 1.0 is out")
            await mbob.send_text(news, f"{t} bob is not an announcer")
            await mx.send_text(news, f"{t} second announcement")
            for channel in (main, dev):
                await irc.wait_for(lambda l, c=channel: l.command == "PRIVMSG" and l.params[0] == c
                                   and "second announcement" in l.text, timeout=20, since=mark)
                assert [l.text for l in privmsgs(irc, channel, mark, nick)] == [
                    f"<Alice M> {t} release 1.0 is out", f"<Alice M> {t} second announcement"]
            # An edit of an announcement follows it, shown the IRC plug's way.
            edit_mark = irc.mark()
            await mx.edit(news, eid, f"{t} release 1.0.1 is out")
            for channel in (main, dev):
                line = await irc.wait_for(lambda l, c=channel: l.command == "PRIVMSG"
                                          and l.params[0] == c and "s/" in l.text, timeout=20,
                                          since=edit_mark)
                assert line.text == "<Alice M> s/1.0/1.0.1/"
            # Nothing goes back from IRC: not from the announcement channels...
            mx_mark = len(mx.events)
            await irc.privmsg(main, f"{t} thanks from irc")
            await irc.privmsg(dev, f"{t} thanks from dev")
            # ...while the synced pair still works both ways (and is the barrier).
            await irc.privmsg(chat, f"{t} barrier")
            await mx.sync_until(lambda e: e.get("room_id") == talk and f"{t} barrier" in body(e),
                                timeout=20)
            assert room_messages(mx, news, mx_mark, account.user_id) == []
            await mx.send_text(talk, f"{t} chat back")
            await irc.wait_for(lambda l: l.command == "PRIVMSG" and l.params[0] == chat
                               and f"{t} chat back" in l.text, timeout=20)
            assert not any("thanks from" in body(e) for e in mx.events
                           if e.get("sender") == account.user_id)
    finally:
        code = bridge.stop()
    assert code == 0, bridge.tail()
    bridge.check_clean()
