"""The IRC plug passes core's plug contract suite against real ngircd and InspIRCd."""

from __future__ import annotations

import pytest

from chanmux.testing import ContractEnv, PlugContract

from conftest import bridge, human, sees, unique


class IRCEnv(ContractEnv):
    formats = frozenset({"bold", "italic", "underline", "strike", "code"})

    def __init__(self, host, client, source):
        self.host = host
        self.plug = host.plugs["irc"]
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]
        self.client = client
        self.source = source
        self.human_name = client.nick

    async def human_say(self, text):
        await self.client.privmsg(self.source, text)

    async def human_act(self, text):
        await self.client.privmsg(self.source, f"\x01ACTION {text}\x01")

    async def human_join(self):
        await self.client.join(self.source)

    async def human_leave(self):
        await self.client.part(self.source)

    async def human_sees(self, predicate, timeout=20.0):
        return await sees(self.client, self.plug.nick, predicate, target=self.source, timeout=timeout)


class TestIRCPlugContract(PlugContract):
    @pytest.fixture
    async def contract_env(self, ircd, tmp_path):
        source = "#" + unique("contract")
        # The plug registers while the human does (InspIRCd takes a second for each).
        async with bridge(ircd, tmp_path, {"room": source}, wait_ready=None) as host:
            async with human(ircd) as client:
                await client.join(source)
                await host.wait_ready(30)
                yield IRCEnv(host, client, source)
