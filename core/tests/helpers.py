"""Hook types used by the host tests, provided as a plugin module."""

import types

import anyio

from chanmux import Hook, Message, SentMessage, hookimpl


class FailingHook(Hook):
    """Raises on every message."""

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        raise RuntimeError("this hook is broken")


class HangingHook(Hook):
    """Never returns from on_receive."""

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        await anyio.sleep_forever()


class ShoutHook(Hook):
    """before_put: upper-cases text; drops messages saying 'drop'."""

    async def before_put(self, channel, msg):
        if msg.text and msg.text.plain == "drop":
            return None
        return msg.clone(text=msg.text.plain.upper()) if msg.text else msg


class RelayHook(Hook):
    """Relays every non-echo message from one memory channel to another (a tiny sync)."""

    async def on_receive(self, sent, source, primary):
        if self.host.is_echo(sent) or sent.channel.source != "#in":
            return
        await self.host.put(self.host.channels["out"], sent.clone())


def module() -> types.ModuleType:
    mod = types.ModuleType("chanmux_test_hooks")

    @hookimpl
    def chanmux_hook_types():
        return {"failing": FailingHook, "hanging": HangingHook, "shout": ShoutHook,
                "relay": RelayHook, "censor": CensorHook, "holder": HolderHook}

    mod.chanmux_hook_types = chanmux_hook_types
    return mod


class CensorHook(Hook):
    """before_receive: drops messages saying 'secret', marks others."""

    async def before_receive(self, sent, source, primary):
        if sent.text and "secret" in sent.text.plain:
            return None
        return SentMessage.of(sent, id=sent.id, channel=sent.channel,
                              text=f"[checked] {sent.text.plain}")


class HolderHook(Hook):
    """Keeps every message's delivery for later: takes a hold, leaves it in `holds`."""

    def on_load(self):
        self.holds = []

    async def on_receive(self, sent, source, primary):
        self.holds.append(self.host.hold())


def metadata_module():
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table("plugin_things", md, sa.Column("id", sa.Integer, primary_key=True))
    mod = types.ModuleType("chanmux_test_tables")
    mod.chanmux_metadata = hookimpl(lambda: md)
    return mod


from chanmux.testing import MemoryPlug  # noqa: E402


class GatedPlug(MemoryPlug):
    """A memory network whose puts wait at a gate the test opens (a put under way)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gates: list[anyio.Event] = []

    async def put(self, channel, msg):
        gate = anyio.Event()
        self.gates.append(gate)
        self._touch()
        await gate.wait()
        return await super().put(channel, msg)


def gated_module() -> types.ModuleType:
    mod = types.ModuleType("chanmux_test_gated")
    mod.chanmux_plug_types = hookimpl(lambda: {"gated": GatedPlug})
    return mod
