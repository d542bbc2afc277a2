"""The Matrix plug passes the plug contract suite against a real Synapse."""

from __future__ import annotations

import pytest
from chanmux.testing import ContractEnv, PlugContract, run_host
from matrix_helpers import client, host_config, human_sees


class MatrixEnv(ContractEnv):
    formats = frozenset({"bold", "italic", "underline", "strike", "code"})

    def __init__(self, host, human, room):
        self.host = host
        self.plug = host.plugs["mx"]
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]
        self.human = human
        self.room = room
        self.human_name = human.user_id

    async def human_say(self, text):
        await self.human.send_text(self.room, text)

    async def human_act(self, text):
        await self.human.send_emote(self.room, text)

    async def human_join(self):
        await self.human.join(self.room)

    async def human_leave(self):
        await self.human.leave(self.room)

    async def human_sees(self, predicate, timeout=20.0):
        return await human_sees(self.human, self.room, predicate, timeout)


class TestMatrixPlugContract(PlugContract):
    @pytest.fixture
    async def contract_env(self, synapse, bot, human_account, tmp_path):
        async with client(synapse, human_account) as human:
            room = await human.create_room(name="contract", preset="public_chat")
            async with run_host(host_config(synapse, bot, room), path=tmp_path / "c.toml") as host:
                yield MatrixEnv(host, human, room)
