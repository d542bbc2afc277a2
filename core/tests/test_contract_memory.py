"""The in-memory plug passes the plug contract suite every plug package runs."""

import itertools

import pytest

from chanmux.testing import ContractEnv, PlugContract, Seen, run_host

CONFIG = {
    "plugs": {"mem": {"type": "memory", "journal": True}},
    "channels": {"room": {"plug": "mem", "source": "#room"}},
    "hooks": {"rec": {"type": "recorder"}},
    "host": {"reconnect_min": 0.05, "reconnect_max": 0.2},
}

_revisions = itertools.count(1)
_ids = itertools.count(1)


class MemoryEnv(ContractEnv):
    """The human is played with `MemoryPlug.inject`. With `resumes`, each message said comes
    with its own `on_handled` (a network with history, whose plug resumes by itself); else
    the plug is journaled (`journal = true`: a network without history)."""

    human_name = "human"
    formats = frozenset({"bold", "italic", "underline", "strike", "code"})
    human_can = frozenset({"edit", "delete", "rename", "title"})

    def __init__(self, host, resumes=False):
        self.host = host
        self.plug = host.plugs["mem"]
        self.plug.follow_titles = True  # channel_title answers what the human set
        self.channel = host.channels["room"]
        self.recorder = host.hooks["rec"]
        self.resumes = resumes
        self.resumed = []  # ids whose on_handled ran (where the plug would resume from)

    def _on_handled(self, id):
        return (lambda: self.resumed.append(id)) if self.resumes else None

    async def _say(self, text, **fields):
        id = f"human-{next(_ids)}"
        await self.plug.inject("#room", text, user=self.human_name, id=id,
                               on_handled=self._on_handled(id), **fields)

    async def human_say(self, text):
        await self._say(text)

    async def human_act(self, text):
        await self._say(text, action=True)

    async def human_join(self):
        await self.plug.inject("#room", joined=[self.plug.user(self.human_name)])

    async def human_leave(self):
        await self.plug.inject("#room", left=[self.plug.user(self.human_name)])

    async def human_edit(self, id, text):
        await self.plug.inject("#room", text, user=self.human_name, id=id, edited=True,
                               revision=f"rev{next(_revisions)}", on_handled=self._on_handled(id))

    async def human_delete(self, id):
        await self.plug.inject("#room", user=self.human_name, id=id, deleted=True,
                               on_handled=self._on_handled(id))

    async def human_rename(self, name):
        before, after = self.plug.user(self.human_name), self.plug.user(name)
        await self.plug.inject("#room", user=after, renamed=(before, after))
        self.human_name = name

    async def human_set_title(self, title):
        await self.plug.inject("#room", user=self.human_name, title=title)

    async def drop_connection(self):
        self.plug.fail("connection dropped by the contract suite")

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
    """A network where nobody edits or deletes, whose plug resumes by itself (on_handled)."""

    @pytest.fixture
    async def contract_env(self, tmp_path):
        config = {**CONFIG, "plugs": {"mem": {"type": "memory", "edit": False, "delete": False}}}
        async with run_host(config, path=tmp_path / "c.toml") as host:
            env = MemoryEnv(host, resumes=True)
            env.human_can = frozenset({"rename", "title"})
            yield env

