"""The Matrix plug passes the plug contract suite against a real Synapse.

The plug reaches Synapse through the session's fault proxy (`synapse_faults`), which drops
its /sync requests when the suite drops the connection; the human talks to Synapse directly.
"""

from __future__ import annotations

import types
from types import SimpleNamespace

import attrs
import pytest

from chanmux import Hook, hookimpl
from chanmux.testing import ContractEnv, PlugContract, run_host
from chanmux_testservers.faults import FaultProxy

from matrix_helpers import client, host_config, human_sees, register

#: /sync long-polls this long, so a dropped one is noticed quickly
SYNC_TIMEOUT = 2.0


class MatrixEnv(ContractEnv):
    formats = frozenset({"bold", "italic", "underline", "strike", "code"})
    human_can = frozenset({"edit", "delete", "rename", "title"})
    #: HTTP: the plug retries its requests itself and stays active through a drop
    drop_reconnects = False

    def __init__(self, host, human, room, proxy):
        self.host = host
        self.plug = host.plugs["mx"]
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]
        self.human = human
        self.room = room
        self.proxy = proxy
        self.human_name = human.user_id

    async def human_say(self, text):
        await self.human.send_text(self.room, text)

    async def human_act(self, text):
        await self.human.send_emote(self.room, text)

    async def human_join(self):
        await self.human.join(self.room)

    async def human_leave(self):
        await self.human.leave(self.room)

    async def human_edit(self, id, text):
        await self.human.edit(self.room, id, text)

    async def human_delete(self, id):
        await self.human.redact(self.room, id)

    async def human_rename(self, name):
        await self.human.set_displayname(name)  # the plug still names the human by user id

    async def human_set_title(self, title):
        await self.human.set_room_name(self.room, title)

    async def drop_connection(self):
        """Two /sync requests in a row get no answer (the connection closes under them)."""
        fault = self.proxy.drop("GET", r"/sync$", times=2)
        await fault.wait(2, timeout=4 * SYNC_TIMEOUT + 10)

    async def human_sees(self, predicate, timeout=20.0):
        return await human_sees(self.human, self.room, predicate, timeout)


class TestMatrixPlugContract(PlugContract):
    @pytest.fixture
    async def contract_env(self, synapse, synapse_faults, bot, human_account, tmp_path):
        async with client(synapse, human_account) as human:
            room = await human.create_room(name="contract", preset="public_chat")
            through = SimpleNamespace(base_url=synapse_faults.base_url)
            config = host_config(through, bot, room, sync_timeout=SYNC_TIMEOUT)
            async with run_host(config, path=tmp_path / "c.toml") as host:
                yield MatrixEnv(host, human, room, synapse_faults)


class Stamp(Hook):
    """Gives the authors of what the suite puts a network of their own (`irc`), as a relay
    does, so that the application-service plug sends them as ghosts."""

    async def before_put(self, channel, msg):
        user = msg.user
        if user is not None and user.plug is None and not user.is_self:
            return msg.clone(user=attrs.evolve(user, plug="irc"))
        return msg


def stamp_module():
    module = types.ModuleType("chanmux_test_stamp")
    module.chanmux_hook_types = hookimpl(lambda: {"stamp": Stamp})
    return module


class MatrixAppServiceEnv(MatrixEnv):
    async def drop_connection(self):
        """Two checks of the homeserver in a row get no answer (the plug watches it with
        /versions between the transactions it is pushed)."""
        fault = self.proxy.drop("GET", r"/_matrix/client/versions$", times=2)
        await fault.wait(2, timeout=4 * SYNC_TIMEOUT + 10)


class TestMatrixAppServiceContract(PlugContract):
    """The same suite with the plug running as an application service: the homeserver pushes
    what the human says; what the suite puts goes out as the author's ghost."""

    @pytest.fixture
    async def contract_env(self, appservice, tmp_path):
        account = register(appservice.synapse, "human")
        async with client(appservice.synapse, account) as human, \
                FaultProxy(appservice.synapse.base_url) as proxy:
            room = await human.create_room(name="contract", preset="public_chat")
            config = appservice.host_config([room], homeserver=proxy.base_url,
                                            sync_timeout=SYNC_TIMEOUT)
            config["hooks"]["stamp"] = {"type": "stamp"}
            async with run_host(config, path=tmp_path / "c.toml",
                                modules=[("stamp", stamp_module())]) as host:
                yield MatrixAppServiceEnv(host, human, room, proxy)
