"""The IRC plug passes core's plug contract suite against real ngircd and InspIRCd.

People on IRC cannot edit or delete what they said, so those cases check that the plug says so
(`Capabilities`) and that a corrected line arrives as a new message. Neither server can REDACT,
so the bridge runs with `deletions = "none"`: the suite's delete case expects a deleted
message gone from the human's client, which a notice (the default, tested in
test_irc_ircv3.py) is not. Code is shown between backticks, not as a format (`monospace`
is off). The plug reaches the server through `Cutter`, a TCP relay that drops its
connections when the suite asks.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from chanmux.testing import ContractEnv, PlugContract
from chanmux_testservers.ircclient import irc_lower

from irc_helpers import bridge, human, sees, unique


class Cutter:
    """A TCP relay to `host`:`port` on a free local port; `cut()` closes every connection
    through it at once, as a network failure or a server restart would, and later
    connections pass again."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.host = "127.0.0.1"
        self.port = 0
        self.cuts = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._tg: Any = None

    async def __aenter__(self) -> Cutter:
        listener = await anyio.create_tcp_listener(local_host=self.host)
        self.port = listener.extra(SocketAttribute.local_port)
        self._tg = await anyio.create_task_group().__aenter__()
        self._tg.start_soon(listener.serve, self._relay)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    async def _relay(self, client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(*self.upstream)
            except OSError:
                return
            async with upstream:
                with anyio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with anyio.create_task_group() as tg:
                            async def pipe(source: SocketStream, sink: SocketStream) -> None:
                                try:
                                    async for data in source:
                                        await sink.send(data)
                                except (anyio.BrokenResourceError, anyio.ClosedResourceError,
                                        OSError):
                                    pass
                                tg.cancel_scope.cancel()  # one side gone: the relay ends

                            tg.start_soon(pipe, client, upstream)
                            tg.start_soon(pipe, upstream, client)
                    finally:
                        self._scopes.discard(scope)

    def cut(self) -> int:
        """Close every connection through the relay now; how many there were."""
        scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()
        self.cuts += len(scopes)
        return len(scopes)


class IRCEnv(ContractEnv):
    formats = frozenset({"bold", "italic", "underline", "strike"})
    #: nobody edits or deletes on IRC; nick changes and topics are reported
    human_can = frozenset({"rename", "title"})
    #: one PRIVMSG line, with room for the server's prefix
    human_text_bytes = 300

    def __init__(self, host, client, source, cutter):
        self.host = host
        self.plug = host.plugs["irc"]
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]
        self.client = client
        self.source = source
        self.cutter = cutter
        self.human_name = client.nick

    async def human_say(self, text):
        for line in text.split("\n"):  # as an IRC client sends a pasted text: line by line
            await self.client.privmsg(self.source, line)

    async def human_act(self, text):
        await self.client.privmsg(self.source, f"\x01ACTION {text}\x01")

    async def human_join(self):
        await self.client.join(self.source)

    async def human_leave(self):
        await self.client.part(self.source)

    async def human_rename(self, name):
        mark = self.client.mark()
        await self.client.send_raw(f"NICK {name}")
        await self.client.wait_for(lambda l: l.command == "NICK" and l.params
                                   and irc_lower(l.params[0]) == irc_lower(name), since=mark)
        self.human_name = self.client.nick

    async def human_set_title(self, title):
        mark = self.client.mark()
        await self.client.send_raw(f"TOPIC {self.source} :{title}")
        await self.client.wait_for(lambda l: l.command == "TOPIC" and l.params[-1:] == [title],
                                   since=mark)

    async def drop_connection(self):
        states = len(self.recorder.states)
        assert self.cutter.cut() >= 1, "the plug had no connection to drop"
        # the plug sees its socket closed, the host reconnects it (through the relay again)
        await self.recorder.wait_until(lambda: any(
            s[:2] == (self.plug.name, "failed") for s in self.recorder.states[states:]), 20)

    async def human_sees(self, predicate, timeout=20.0):
        return await sees(self.client, self.plug.nick, predicate, target=self.source, timeout=timeout)


class TestIRCPlugContract(PlugContract):
    @pytest.fixture
    async def contract_env(self, ircd, tmp_path):
        source = "#" + unique("contract")
        async with Cutter(ircd.host, ircd.port) as cutter, human(ircd) as client:
            # the human makes the channel, so is its operator (and can set its topic)
            await client.join(source)
            server = SimpleNamespace(host=cutter.host, port=cutter.port)
            async with bridge(server, tmp_path, {"room": source}, deletions="none") as host:
                yield IRCEnv(host, client, source, cutter)
