"""Every hook specification is documented, and the host really calls each one: a plugin
implementing every spec records the calls while a host runs through what triggers them."""

import argparse
import inspect
import re
import types
from pathlib import Path

import pytest
import sqlalchemy as sa

from chanmux import Command, Hook, Message, User, cli, hookimpl, hookspecs
from chanmux.testing import MemoryPlug, make_registry, run_host

SPECS = hookspecs.spec_functions()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_documented(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    assert len(doc) > 60, f"hook spec {name} needs a docstring saying what it does"
    assert re.search(r"Since \d+\.\d+", doc), f"hook spec {name}: say since which version"
    assert any(w in doc for w in ("Sync", "Async")), f"hook spec {name}: say sync or async"


class SpyPlug(MemoryPlug):
    """A memory plug recording each owner spec the host calls on it, with its arguments."""

    calls: list[tuple[str, tuple]]

    async def put(self, channel, msg):
        self.calls.append(("put", (channel, msg)))
        return await super().put(channel, msg)

    async def edit(self, sent, msg):
        self.calls.append(("edit", (sent, msg)))
        return await super().edit(sent, msg)

    async def typing(self, channel, user, active):
        self.calls.append(("typing", (channel, user, active)))

    async def delete(self, sent):
        self.calls.append(("delete", (sent,)))
        return await super().delete(sent)

    async def channel_title(self, channel):
        self.calls.append(("channel_title", (channel,)))
        return "Title"

    async def channel_members(self, channel):
        self.calls.append(("channel_members", (channel,)))
        return [self.user("alice")]

    async def channel_is_private(self, channel):
        self.calls.append(("channel_is_private", (channel,)))
        return False

    async def channel_link(self, channel):
        self.calls.append(("channel_link", (channel,)))
        return "https://example.org/a"

    async def public_channels(self):
        self.calls.append(("public_channels", ()))
        return [self.host.channels["a"]]

    async def private_channels(self):
        self.calls.append(("private_channels", ()))
        return []


class SpyHook(Hook):
    """A hook recording each message spec the host calls on it."""

    calls: list[tuple[str, tuple]]

    async def before_receive(self, sent, source, primary):
        self.calls.append(("before_receive", (sent, source, primary)))
        return sent

    async def on_receive(self, sent, source, primary):
        self.calls.append(("on_receive", (sent, source, primary)))

    async def before_put(self, channel, msg):
        self.calls.append(("before_put", (channel, msg)))
        return msg

    async def on_plug_state(self, plug, state, reason):
        self.calls.append(("on_plug_state", (plug, state, reason)))

    async def on_typing(self, channel, user, active):
        self.calls.append(("on_typing", (channel, user, active)))

    async def http_routes(self):
        self.calls.append(("http_routes", ()))
        return []


def spy_module(calls: list) -> types.ModuleType:
    """A plugin module implementing every registration spec, recording each call."""
    module = types.ModuleType("spy_plugin")
    table = sa.MetaData()
    sa.Table("spy_rows", table, sa.Column("id", sa.Integer, primary_key=True))

    def record(name, value):
        def impl(**kwargs):
            calls.append((name, tuple(kwargs.values())))
            return value
        impl.__name__ = name
        return hookimpl(impl)

    module.chanmux_plug_types = record("chanmux_plug_types", {"spy": SpyPlug})
    module.chanmux_hook_types = record("chanmux_hook_types", {"spy": SpyHook})
    module.chanmux_metadata = record("chanmux_metadata", table)

    @hookimpl
    def chanmux_starter(channels):
        calls.append(("chanmux_starter", (channels,)))
        return '[plugs.spy]\ntype = "spy"\n'

    module.chanmux_starter = chanmux_starter
    module.chanmux_examples = record("chanmux_examples", {"spy": Path(__file__)})
    module.chanmux_commands = record("chanmux_commands", [Command("spy-cmd", "a spy", run=lambda a: 0)])
    return module


async def everything_the_host_does(tmp_path) -> list[tuple[str, tuple]]:
    """Run a host on the spy plugin through every path that calls a spec; the calls."""
    calls: list[tuple[str, tuple]] = []
    SpyPlug.calls = SpyHook.calls = calls
    module = spy_module(calls)
    config = {"database": {"url": f"sqlite:///{tmp_path / 'spy.sqlite'}"},
              "plugs": {"a": {"type": "spy"}}, "channels": {"a": {"plug": "a", "source": "#a"}},
              "hooks": {"spy": {"type": "spy"}}, "http": {"listen": "127.0.0.1:0"}}
    registry = make_registry([("spy-plugin", module)])
    assert cli._starter(registry, "bridge")
    assert "spy" in cli._examples(registry)
    sub = argparse.ArgumentParser().add_subparsers()
    cli._add_plugin_commands(sub, set(), registry)
    assert "spy-cmd" in sub.choices
    async with run_host(config, modules=[("spy-plugin", module)]) as host:
        a, channel = host.plugs["a"], host.channels["a"]
        await a.inject("#a", "hello")
        await host.wait_idle()
        (receipt,) = await host.put(channel, Message(text="put"))
        await host.edit(receipt, Message(text="edited"))
        await host.delete(receipt)
        await a.type("#a", "alice")
        await host.typing(channel, User(username="bob"), False)
        assert await host.channel_title(channel) == "Title"
        assert [u.username for u in await host.channel_members(channel)] == ["alice"]
        assert await host.channel_is_private(channel) is False
        assert await host.channel_link(channel) == "https://example.org/a"
        assert await host.public_channels("a") == [channel]
        assert await host.private_channels("a") == []
    return calls


#: What each spec must have been called with, checked on the recorded arguments.
EXPECTED = {
    "chanmux_plug_types": lambda args: args == (),
    "chanmux_hook_types": lambda args: args == (),
    "chanmux_metadata": lambda args: args == (),
    "chanmux_starter": lambda args: args == ([],),
    "chanmux_examples": lambda args: args == (),
    "chanmux_commands": lambda args: args == (),
    "before_receive": lambda args: args[0].text.plain == "hello" and args[2] is True,
    "on_receive": lambda args: args[0].text.plain == "hello" and args[2] is True,
    "before_put": lambda args: args[0].source == "#a" and args[1].text.plain == "put",
    "put": lambda args: args[0].source == "#a" and args[1].text.plain == "put",
    "edit": lambda args: args[1].text.plain == "edited",
    "delete": lambda args: args[0].channel.source == "#a",
    "channel_title": lambda args: args[0].source == "#a",
    "channel_members": lambda args: args[0].source == "#a",
    "channel_is_private": lambda args: args[0].source == "#a",
    "channel_link": lambda args: args[0].source == "#a",
    "public_channels": lambda args: args == (),
    "private_channels": lambda args: args == (),
    "on_plug_state": lambda args: args[0].name == "a" and args[1] == "active",
    "on_typing": lambda args: args[0].source == "#a" and args[1].username == "alice" and args[2],
    "typing": lambda args: args[0].source == "#a" and args[1].username == "bob" and not args[2],
    "http_routes": lambda args: args == (),
}


def test_every_spec_has_an_expectation():
    assert set(EXPECTED) == set(SPECS), "a new hook spec needs a row in EXPECTED and a path above"


@pytest.mark.anyio
async def test_the_host_calls_every_spec_with_its_arguments(tmp_path):
    calls = await everything_the_host_does(tmp_path)
    called = {name for name, _ in calls}
    assert called >= set(SPECS), f"never called: {sorted(set(SPECS) - called)}"
    for name, check in EXPECTED.items():
        assert any(check(args) for spec, args in calls if spec == name), (
            f"{name} was called, but never with the expected arguments: "
            f"{[args for spec, args in calls if spec == name]}")


def test_spec_kinds_are_known():
    assert {f.chanmux_call for f in SPECS.values()} <= {"register", "fanout", "chain", "owner"}
    for name, fn in SPECS.items():
        if fn.chanmux_call == "register":
            assert not inspect.iscoroutinefunction(fn), name
        else:
            assert inspect.iscoroutinefunction(fn), name
