"""The chanmux demo: a local IRC server and a local Synapse, bridged by `chanmux run`.

Started by scripts/demo. It brings up ngircd and Synapse on loopback, writes a config that
links an IRC channel and a Matrix room through the sync hook (database: SQLite beside the
config), runs `chanmux run` on it showing its log, has a person on each side say something,
and then tells you how to join in. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import anyio
from anyio.streams.text import TextReceiveStream

from chanmux_testservers.irc import start_ngircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse

CHANNEL = "#chanmux"
PASSWORD = "chanmux-demo"


def config_text(irc, hs: Synapse, bridge_password: str, room: str) -> str:
    return textwrap.dedent(f"""\
        # Written by the chanmux demo: one IRC channel <-> one Matrix room.
        [logging]
        level = "INFO"

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

        [plugs.matrix]
        type = "matrix"
        homeserver = "{hs.base_url}"
        user_id = "@bridge:{hs.server_name}"
        password = "{bridge_password}"
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
    say("starting a local IRC server (ngircd) and a local Matrix homeserver (Synapse)")
    irc = await anyio.to_thread.run_sync(start_ngircd, data)
    hs = Synapse(server_name="chanmux.demo")
    try:
        await hs.async_start()
        bridge_id, _, _ = await hs.async_register("bridge", PASSWORD + "-bridge")
        you_id, you_token, _ = await hs.async_register("you", PASSWORD)
        async with HumanMatrix(hs.base_url, you_id, you_token) as you:
            await you.set_displayname("You (Matrix)")
            room = await you.create_room(name="chanmux demo", alias="chanmux", preset="public_chat")
            alias = f"#chanmux:{hs.server_name}"
            config = data / "demo.toml"
            config.write_text(config_text(irc, hs, PASSWORD + "-bridge", alias))
            say(f"config written to {config}; starting: chanmux run {config}")
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
            await hs.async_stop()
            await anyio.to_thread.run_sync(irc.close)
            hs.close()
            say("stopped the IRC server and Synapse")


async def converse(irc, hs: Synapse, you: HumanMatrix, room: str, args: argparse.Namespace) -> int:
    async with HumanIRC.connect(irc.host, irc.port, "alice") as alice:
        await alice.join(CHANNEL)
        await you.catch_up()
        say("alice says something on IRC (with bold text)")
        await alice.privmsg(CHANNEL, "hello from IRC, \x02bold\x02 and all")
        event = await you.sync_until(
            lambda e: e.get("room_id") == room and "hello from IRC" in e.get("content", {}).get("body", ""),
            timeout=30)
        print(f"  matrix | {event['sender']}: {event['content'].get('formatted_body') or event['content']['body']}")
        say("you say something on Matrix, then edit it")
        event_id = await you.send_text(room, "hello from Matrix", html="hello from <i>Matrix</i>")
        line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "hello from" in (ln.text or "")
                                    and "Matrix" in (ln.text or ""), timeout=30)
        print(f"  irc    | <{line.nick}> {line.text!r}")
        await you.edit(room, event_id, "hello again from Matrix", new_html="hello <b>again</b> from Matrix")
        line = await alice.wait_for(lambda ln: ln.command == "PRIVMSG" and "again" in (ln.text or ""),
                                    timeout=30)
        print(f"  irc    | <{line.nick}> {line.text!r}")
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
