"""The chanmux demo: a local IRC server and a local Synapse, bridged by `chanmux run`.

Started by scripts/demo. It brings up InspIRCd on loopback, writes a config that links an IRC
channel and a Matrix room through the sync hook (database: SQLite beside the config), with
chanmux-matrix as a Matrix application service, so that IRC people are Matrix users of their
own. `chanmux matrix-registration` writes the registration file and Synapse starts with it,
as an operator would set it up. Then `chanmux run` runs on the config showing its log, a
person on each side says something (an IRC person's line arrives from their own Matrix user;
a picture and a 40-line message said on Matrix reach IRC as links that open them; a
reaction goes each way), and it tells you how to join in. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import httpx
from anyio.streams.text import TextReceiveStream

from chanmux_testservers.irc import start_inspircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse, free_port

CHANNEL = "#chanmux"
PASSWORD = "chanmux-demo"


def config_text(irc, server_name: str, homeserver: str, listen: str, room: str) -> str:
    return textwrap.dedent(f"""\
        # Written by the chanmux demo: one IRC channel <-> one Matrix room.
        [logging]
        level = "INFO"

        [http]                        # the homeserver pushes Matrix events here; links live here
        listen = "{listen}"
        public_url = "http://{listen}"

        [plugs.irc]
        type = "irc"
        server = "{irc.host}"
        port = {irc.tls_port}
        tls = true
        ca_file = "{irc.ca_file}"
        nick = "bridge"
        join = ["{CHANNEL}"]
        flood_burst = 10
        flood_rate = 5.0
        max_lines = 5                 # longer messages: their first lines and a link to the whole

        [plugs.matrix]                # an application service: IRC people are Matrix users
        type = "matrix"
        homeserver = "{homeserver}"
        user_id = "@chanmux:{server_name}"
        registration = "registration.yaml"   # written by `chanmux matrix-registration`
        display_name = "chanmux bridge"
        rooms = ["{room}"]

        [channels.irc-chat]
        plug = "irc"
        source = "{CHANNEL}"

        [channels.matrix-chat]
        plug = "matrix"
        source = "{room}"

        [hooks.sync]
        type = "sync"
        channels = {{ chat = ["irc-chat", "matrix-chat"] }}
        """)


def say(text: str) -> None:
    print(f"\n\033[1m>> {text}\033[0m", flush=True)


async def follow(stream, prefix: str, seen: list[str], changed: list[anyio.Event]) -> None:
    async for chunk in TextReceiveStream(stream):
        for line in chunk.splitlines():
            seen.append(line)
            print(f"{prefix}{line}", flush=True)
        changed[0].set()
        changed[0] = anyio.Event()


async def wait_log(seen: list[str], changed: list[anyio.Event], *needles: str, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not all(any(n in line for line in seen) for n in needles):
            await changed[0].wait()


async def run(args: argparse.Namespace) -> int:
    data = Path(args.data).resolve()
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    say("starting a local IRC server (InspIRCd, which passes IRCv3 client tags: reactions)")
    irc = await anyio.to_thread.run_sync(lambda: start_inspircd(data, services=False))
    hs: Synapse | None = None
    try:
        server_name, port, listen = "chanmux.demo", free_port(), f"127.0.0.1:{free_port()}"
        alias = f"#chanmux:{server_name}"
        config = data / "demo.toml"
        config.write_text(config_text(irc, server_name, f"http://127.0.0.1:{port}", listen, alias))
        say(f"config written to {config}; its Matrix plug is an application service, so: "
            f"chanmux matrix-registration {config}")
        made = await anyio.run_process([sys.executable, "-m", "chanmux.cli",
                                        "matrix-registration", str(config)], check=False)
        print(textwrap.indent((made.stdout + made.stderr).decode(), "  chanmux | "), flush=True)
        if made.returncode:
            return made.returncode
        say("starting a local Matrix homeserver (Synapse) that loads that registration")
        hs = Synapse(server_name=server_name, port=port, extra_config={
            "app_service_config_files": [str(data / "registration.yaml")]})
        await hs.async_start()
        you_id, you_token, _ = await hs.async_register("you", PASSWORD)
        async with HumanMatrix(hs.base_url, you_id, you_token) as you:
            await you.set_displayname("You (Matrix)")
            room = await you.create_room(name="chanmux demo", alias="chanmux", preset="public_chat")
            say(f"starting: chanmux run {config}")
            seen: list[str] = []
            changed = [anyio.Event()]
            async with await anyio.open_process(
                    [sys.executable, "-m", "chanmux.cli", "run", str(config)], stdin=None) as bridge:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow, bridge.stderr, "  bridge | ", seen, changed)
                    tg.start_soon(follow, bridge.stdout, "  bridge | ", seen, changed)
                    await wait_log(seen, changed, "irc: connected", "matrix: connected")
                    code = await converse(irc, hs, you, room, args)
                    bridge.send_signal(signal.SIGTERM)
                    with anyio.fail_after(30):
                        await bridge.wait()
                    tg.cancel_scope.cancel()
            say(f"chanmux exited with {bridge.returncode}")
            return code or (bridge.returncode or 0)
    finally:
        with anyio.CancelScope(shield=True):
            if hs is not None:
                await hs.async_stop()
                hs.close()
            await anyio.to_thread.run_sync(irc.close)
            say("stopped the IRC server" + (" and Synapse" if hs is not None else ""))


async def converse(irc, hs: Synapse, you: HumanMatrix, room: str, args: argparse.Namespace) -> int:
    async with HumanIRC.connect(irc.host, irc.port, "alice", caps=["message-tags"]) as alice:
        await alice.join(CHANNEL)
        await you.catch_up()
        say("alice says something on IRC (with bold text)")
        await alice.privmsg(CHANNEL, "hello from IRC, \x02bold\x02 and all")
        event = await you.sync_until(
            lambda e: e.get("room_id") == room and "hello from IRC" in e.get("content", {}).get("body", ""),
            timeout=30)
        member = await you.get_state(room, "m.room.member", event["sender"])
        print(f"  matrix | {member.get('displayname')} ({event['sender']}): "
              f"{event['content'].get('formatted_body') or event['content']['body']}")
        say(f"alice speaks on Matrix as a user of her own, {event['sender']}")
        say("you say something on Matrix, then edit it")
        event_id = await you.send_text(room, "hello from Matrix", html="hello from <i>Matrix</i>")
        line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "hello from" in (ln.text or "")
                                    and "Matrix" in (ln.text or ""), timeout=30)
        print(f"  irc    | <{line.nick}> {line.text!r}")
        await you.edit(room, event_id, "hello again from Matrix", new_html="hello <b>again</b> from Matrix")
        line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "again" in (ln.text or ""),
                                    timeout=30)
        print(f"  irc    | <{line.nick}> {line.text!r}")
        await reactions(alice, you, room, event["event_id"], event_id)
        await links(alice, you, room)
        if args.once:
            say("the bridge relayed both ways; --once given, so stopping")
            return 0
        say(textwrap.dedent(f"""\
            The bridge is running. Join in:
               IRC:    connect any IRC client to {irc.host} port {irc.port} (no TLS), then /join {CHANNEL}
               Matrix: homeserver {hs.base_url}, user "you", password "{PASSWORD}", room #chanmux:{hs.server_name}
            Or type here: a line is said on IRC by alice; start it with "m " to say it on Matrix as you.
            Ctrl-C stops the bridge and both servers."""))
        async with anyio.create_task_group() as tg:
            tg.start_soon(show_irc, alice)
            tg.start_soon(show_matrix, you, room)
            async with anyio.wrap_file(sys.stdin) as stdin:
                async for line in stdin:
                    text = line.rstrip("\n")
                    if text.startswith("m "):
                        await you.send_text(room, text[2:])
                    elif text:
                        await alice.privmsg(CHANNEL, text)
            tg.cancel_scope.cancel()
    return 0


async def reactions(alice: HumanIRC, you: HumanMatrix, room: str, alices: str, yours: str) -> None:
    """A reaction each way: yours to alice's line reaches her IRC client as a +draft/react
    tag; hers to your line reaches Matrix as her own m.reaction."""
    say("you react 👍 on Matrix to alice's line; her IRC client gets it as a reaction tag")
    mark = alice.mark()
    await you.react(room, alices, "👍")
    line = await alice.wait_for(lambda ln: ln.command == "TAGMSG" and "+draft/react" in ln.tags,
                                timeout=30, since=mark)
    print(f"  irc    | TAGMSG from {line.nick}: react {line.tags['+draft/react']} to "
          f"{line.tags.get('+draft/reply')}")
    say("alice reacts 🎉 on IRC to your line; Matrix shows her reaction")
    yours_on_irc = next(ln for ln in reversed(alice.lines) if ln.command == "PRIVMSG"
                        and "hello from" in (ln.text or "") and "msgid" in ln.tags)
    await alice.send_raw(f"@+draft/react=🎉;+draft/reply={yours_on_irc.tags['msgid']} "
                         f"TAGMSG {CHANNEL}")
    event = await you.sync_until(lambda e: e.get("room_id") == room and e.get("type") == "m.reaction"
                                 and e.get("sender") != you.user_id, timeout=30)
    relates = event["content"]["m.relates_to"]
    print(f"  matrix | {event['sender']} reacted {relates['key']} to "
          f"{'your message' if relates['event_id'] == yours else relates['event_id']}")


async def links(alice: HumanIRC, you: HumanMatrix, room: str) -> None:
    """A picture and a 40-line message said on Matrix reach IRC as links that open them."""
    say("you send a picture on Matrix; IRC gets a link that opens it")
    picture = bytes(range(256)) * 64
    mxc = await you.upload(picture, "image/png", "demo.png")
    await you.send_event(room, "m.room.message", {"msgtype": "m.image", "body": "demo.png",
                                                  "url": mxc, "info": {"mimetype": "image/png"}})
    line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "demo.png" in (ln.text or ""),
                                timeout=30)
    print(f"  irc    | <{line.nick}> {line.text}")
    async with httpx.AsyncClient() as http:
        got = await http.get(re.search(r"<(https?://[^>]+)>", line.text or "").group(1))
    print(f"  http   | {got.status_code} {got.headers.get('content-type')}, {len(got.content)} bytes"
          f"{' (the picture)' if got.content == picture else ' (NOT the picture)'}")
    say("you send a 40-line message on Matrix; IRC gets its first lines and a link to the whole")
    mark = alice.mark()
    await you.send_text(room, "\n".join(f"line {n} of 40" for n in range(1, 41)))
    line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "full message" in (ln.text or ""),
                                timeout=30, since=mark)
    for said in alice.lines[mark:]:
        if said.command == "PRIVMSG" and said.params and said.params[0] == CHANNEL:
            print(f"  irc    | <{said.nick}> {said.text}")
    async with httpx.AsyncClient() as http:
        page = await http.get(re.search(r"<(https?://[^>]+)>", line.text or "").group(1))
    print(f"  http   | {page.status_code}: {len(page.text.splitlines())} lines, ending "
          f"{page.text.splitlines()[-1]!r}")


async def show_irc(alice: HumanIRC) -> None:
    while True:
        line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG", timeout=10 ** 9)
        print(f"  irc    | <{line.nick}> {line.text}", flush=True)


async def show_matrix(you: HumanMatrix, room: str) -> None:
    while True:
        event = await you.sync_until(lambda e: e.get("room_id") == room and e.get("type") == "m.room.message"
                                     and e.get("sender") != you.user_id, timeout=10 ** 9)
        print(f"  matrix | {event['sender']}: {event['content'].get('body')}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data", help="folder for config, database and servers")
    parser.add_argument("--once", action="store_true", help="stop after the scripted conversation")
    args = parser.parse_args()
    try:
        return anyio.run(run, args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
