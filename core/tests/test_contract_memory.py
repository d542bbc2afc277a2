"""The in-memory plug passes the plug contract suite every plug package runs."""

import pytest

from chanmux.testing import ContractEnv, PlugContract, Seen, run_host

CONFIG = {
    "plugs": {"mem": {"type": "memory"}},
    "channels": {"room": {"plug": "mem", "source": "#room"}},
    "hooks": {"rec": {"type": "recorder"}},
}


class MemoryEnv(ContractEnv):
    human_name = "human"
    formats = frozenset({"bold", "italic", "underline", "strike", "code"})

    def __init__(self, host):
        self.host = host
        self.plug = host.plugs["mem"]
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]

    async def human_say(self, text):
        await self.plug.inject("#room", text)

    async def human_act(self, text):
        await self.plug.inject("#room", text, action=True)

    async def human_join(self):
        await self.plug.inject("#room", joined=[self.plug.user("human")])

    async def human_leave(self):
        await self.plug.inject("#room", left=[self.plug.user("human")])

    def _seen(self):
        for event in self.plug.events:
            if event.kind == "delete":
                yield Seen("delete", target=event.receipt.id)
            else:
                yield Seen("message" if event.kind == "put" else "edit", text=event.msg.text,
                           action=event.msg.action, id=event.receipt.id,
                           target=event.receipt.id if event.kind == "edit" else None)

    async def human_sees(self, predicate, timeout=20.0):
        return await self.plug.wait_for(
            lambda: next((s for s in self._seen() if predicate(s)), None), timeout)


class TestMemoryPlugContract(PlugContract):
    @pytest.fixture
    async def contract_env(self, tmp_path):
        async with run_host(CONFIG, path=tmp_path / "c.toml") as host:
            yield MemoryEnv(host)


class TestMemoryPlugWithoutEditOrDeleteContract(TestMemoryPlugContract):
    @pytest.fixture
    async def contract_env(self, tmp_path):
        config = {**CONFIG, "plugs": {"mem": {"type": "memory", "edit": False, "delete": False}}}
        async with run_host(config, path=tmp_path / "c.toml") as host:
            yield MemoryEnv(host)
