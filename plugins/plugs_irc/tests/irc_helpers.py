"""Helpers of the IRC tests: a human client, bridge configs, what a client saw (the servers
come from conftest.py's fixtures)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from chanmux.testing import Seen, run_host
from chanmux_irc.formatting import parse
from chanmux_irc.protocol import split_ctcp
from chanmux_testservers.ircclient import HumanIRC, Line, irc_lower

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A short name unique in the session (servers are shared between tests)."""
    return f"{prefix}{next(_counter)}x{secrets.token_hex(2)}"


def plug_config(server: Any, nick: str, **extra: Any) -> dict[str, Any]:
    """An `irc` plug on `server`'s plaintext port; flood control generous so tests are quick."""
    config: dict[str, Any] = {"type": "irc", "server": server.host, "port": server.port,
                              "tls": False, "nick": nick, "flood_burst": 50, "flood_rate": 100.0}
    config.update(extra)
    return config


def host_config(server: Any, nick: str, channels: dict[str, str] | None = None,
                **extra: Any) -> dict[str, Any]:
    """A host with one irc plug `irc`, channels by name, and a recorder hook `rec`."""
    return {
        "plugs": {"irc": plug_config(server, nick, **extra)},
        "channels": {name: {"plug": "irc", "source": src} for name, src in (channels or {}).items()},
        "hooks": {"rec": {"type": "recorder"}},
        "host": {"reconnect_min": 0.05, "reconnect_max": 0.5},
    }


@asynccontextmanager
async def human(server: Any, nick: str | None = None, **kwargs: Any) -> AsyncIterator[HumanIRC]:
    async with HumanIRC.connect(server.host, server.port, nick or unique("h"), **kwargs) as client:
        yield client


@asynccontextmanager
async def humans(server: Any, count: int, **kwargs: Any) -> AsyncIterator[list[HumanIRC]]:
    """`count` humans, registering at the same time (InspIRCd takes a second for each)."""
    clients: list[Any] = [None] * count
    ready = [anyio.Event() for _ in range(count)]
    done = anyio.Event()

    async def hold(index: int) -> None:
        async with human(server, **kwargs) as client:
            clients[index] = client
            ready[index].set()
            await done.wait()

    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(hold, index)
        try:
            for event in ready:
                await event.wait()
            yield clients
        finally:
            done.set()


@asynccontextmanager
async def bridge(server: Any, path: Any, channels: dict[str, str] | None = None, *,
                 nick: str | None = None, wait_ready: float | None = 30.0,
                 **extra: Any) -> AsyncIterator[Any]:
    """A running host whose irc plug `irc` is connected to `server`."""
    config = host_config(server, nick or unique("b"), channels, **extra)
    async with run_host(config, path=path / "bridge.toml", wait_ready=wait_ready) as host:
        yield host


def from_nick(line: Line, nick: str, target: str | None = None) -> bool:
    """A PRIVMSG or NOTICE from `nick` (to `target`)."""
    return (line.command in ("PRIVMSG", "NOTICE") and line.nick is not None
            and irc_lower(line.nick) == irc_lower(nick)
            and (target is None or irc_lower(line.target) == irc_lower(target)))


def seen(line: Line) -> Seen:
    """What a person sees in a PRIVMSG, parsed with the plug's own mIRC parser."""
    text, action = line.text, False
    request = split_ctcp(text)
    if request is not None and request[0] == "ACTION":
        text, action = request[1], True
    return Seen("message", text=parse(text), action=action, sender=line.nick)


async def sees(client: HumanIRC, nick: str, predicate: Callable[[Seen], Any], *,
               target: str | None = None, timeout: float = 20.0, since: int = 0) -> Seen:
    """The first message from `nick` the human saw (from line `since`) matching `predicate`."""
    line = await client.wait_for(lambda l: from_nick(l, nick, target) and predicate(seen(l)),
                                 timeout=timeout, since=since)
    return seen(line)


def lines_from(client: HumanIRC, nick: str, target: str | None = None, since: int = 0) -> list[Line]:
    return [l for l in client.lines[since:] if from_nick(l, nick, target)]


async def put_confirmed(host: Any, channel: Any, msg: Any, timeout: float = 20.0) -> list[Any]:
    """`host.put` and wait until the server confirmed the last line (so the plug has learnt
    the msgid of what it said, where the server echoes it); the receipts."""
    from chanmux import Hold, Tracker

    done = anyio.Event()
    tracker = Tracker(done.set)
    handling = Hold(tracker)
    with handling.active():
        receipts = await host.put(channel, msg)
    handling.release()
    tracker.done()
    with anyio.fail_after(timeout):
        await done.wait()
    return receipts


def tagmsgs(client: HumanIRC, nick: str, target: str | None = None, since: int = 0) -> list[Line]:
    """The TAGMSGs from `nick` (to `target`) the human got."""
    return [l for l in client.lines[since:] if l.command == "TAGMSG" and l.nick is not None
            and irc_lower(l.nick) == irc_lower(nick)
            and (target is None or irc_lower(l.target) == irc_lower(target))]
