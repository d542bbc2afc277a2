"""Hook types used by the host tests, provided as a plugin module."""

import time
import types

import anyio
import attrs

from chanmux import Hook, Message, SentMessage, codec, hookimpl
from chanmux.queue import Delivery, DeliveryQueues


class FailingHook(Hook):
    """Raises on every message."""

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        raise RuntimeError("this hook is broken")


class HangingHook(Hook):
    """Never returns from on_receive."""

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        await anyio.sleep_forever()


class StuckHook(Hook):
    """Never returns from close."""

    async def close(self) -> None:
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


class BusyHook(Hook):
    """Takes 1 ms of CPU for each message said (never waiting), and counts them."""

    handled = 0

    async def on_receive(self, sent, source, primary):
        if self.host.is_echo(sent):
            return
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:
            pass
        self.handled += 1


def module() -> types.ModuleType:
    mod = types.ModuleType("chanmux_test_hooks")

    @hookimpl
    def chanmux_hook_types():
        return {"failing": FailingHook, "hanging": HangingHook, "shout": ShoutHook,
                "relay": RelayHook, "censor": CensorHook, "holder": HolderHook,
                "queued-relay": QueuedRelayHook, "gate": GateHook, "stuck": StuckHook,
                "busy": BusyHook}

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
        self.echo_first = False  # True: the echo is sent before the gate, the reply after

    async def put(self, channel, msg):
        gate = anyio.Event()
        self.gates.append(gate)
        self._touch()
        if self.echo_first:
            receipts = await super().put(channel, msg)
            await gate.wait()
            return receipts
        await gate.wait()
        return await super().put(channel, msg)


def gated_module() -> types.ModuleType:
    mod = types.ModuleType("chanmux_test_gated")
    mod.chanmux_plug_types = hookimpl(lambda: {"gated": GatedPlug})
    return mod


@attrs.frozen
class QueuedRelayConfig:
    limit: int = 0
    max_age: float = 0.0
    retry_min: float = 0.01


class QueuedRelayHook(Hook):
    """Relays what is said in `#in` to the channel named "out" through core's delivery queue,
    with only the public API, as a third party's relay hook would."""

    Config = QueuedRelayConfig
    echoes = False  # it never relays its own copies back

    def on_load(self):
        c = self.config
        self.out = self.host.channel("out")
        self.queues = DeliveryQueues(self.host, self.name, self._execute, limit=c.limit,
                                     max_age=c.max_age, retry_min=c.retry_min,
                                     dump=self._dump, load=self._load)
        self.queues.add(self.out)

    async def open(self):
        await self.queues.restore()
        self.queues.start()

    async def close(self):
        await self.queues.save()

    async def on_receive(self, sent, source, primary):
        if self.host.is_echo(sent) or sent.channel.source != "#in":
            return
        if not (sent.text or sent.joined or sent.left):
            return
        copy = Message(text=sent.text, user=sent.user, joined=list(sent.joined),
                       left=list(sent.left))
        await self.queues[self.out].deliver(Delivery(
            "put", copy, key=f"{sent.channel}|{sent.id}", hold=self.host.hold()))

    async def _execute(self, channel, item):
        await self.host.put(channel, item.msg)

    def _dump(self, channel, item):
        return {"msg": codec.dump(item.msg), "key": item.key, "since": item.since}

    def _load(self, row):
        return self.out, Delivery("put", codec.load(row["msg"]), key=row["key"],
                                  since=row["since"])


class GateHook(Hook):
    """Holds up the lane at the first message saying "gate" until the test sets `gate`."""

    def on_load(self):
        self.gate = anyio.Event()
        self.waiting = anyio.Event()

    async def on_receive(self, sent, source, primary):
        if sent.text and sent.text.plain == "gate":
            self.waiting.set()
            await self.gate.wait()


def _installed_first_party() -> str:
    from importlib import metadata

    names = []
    for name in ("chanmux-irc", "chanmux-matrix", "chanmux-sync", "chanmux-forward"):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        names.append(name)
    return ",".join(names)


#: The first-party plugin packages installed here, for CHANMUX_DISABLE_PLUGINS: a `chanmux`
#: subprocess with only core (and a test's throwaway package) loaded, wherever core's tests
#: run (alone, or beside every plugin). Naming one not installed would be warned about.
FIRST_PARTY = _installed_first_party()
