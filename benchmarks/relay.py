"""How fast SyncHook relays: N messages said in one channel, synced to the K-1 others.

Each channel is on its own in-memory plug that echoes every put back to the host with the same
id, as a network does. The plugs keep no history (the test kit's MemoryPlug keeps every event,
which would measure its memory, not the bridge's). Messages are injected one by one, at most
`--window` ahead of the slowest copy, and the run ends when every copy has arrived and every
echo has been handled (waited on by condition, never by sleeping).

Without --db the sync keeps nothing in the database (`persist = false`; the host's own database
is an in-memory SQLite that stays empty), so the figures are the bridge's alone: "db" is null.
With --db PATH the sync writes every copy to that SQLite file, in batches, as in production.
--memory-db writes them to an in-memory SQLite (`sqlite://`) instead, whose rows then count in
the memory figure. Prints one JSON line:
{"messages", "channels", "db", "seconds", "msgs_per_s", "max_rss_kb"}.

--hook relay swaps SyncHook for a minimal hook that puts each message to the other channels
and nothing else, to measure what the host itself costs; --hook none only receives.

Usage: python benchmarks/relay.py --messages N --channels K [--db PATH] [--backend trio]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
import types
from typing import Any

import anyio

from chanmux import Channel, Hook, Message, Plug, Receipt, SentMessage, User, hookimpl
from chanmux.testing import run_host


class RelayPlug(Plug):
    """An in-memory network that keeps nothing: it counts puts and echoes each one back."""

    network_name = "bench"

    def __init__(self, name: str, config: Any, host: Any) -> None:
        super().__init__(name, config, host)
        self.puts = 0
        self.received = 0
        self._ids = 0
        self.bot = User(id=f"{name}:bot", plug=name, username="bot", is_self=True)
        self.human = User(id=f"{name}:human", plug=name, username="human", real_name="Human")
        self._send, self._recv = anyio.create_memory_object_stream[SentMessage](math.inf)
        self.watch: tuple[int, anyio.Event] | None = None

    async def run(self) -> None:
        async for sent in self._recv:
            await self.host.receive(sent)
            self.received += 1

    def _next(self) -> str:
        self._ids += 1
        return f"{self.name}-{self._ids}"

    def inject(self, source: str, text: str) -> None:
        self._send.send_nowait(SentMessage(id=self._next(), channel=Channel(self.name, source),
                                           text=text, user=self.human))

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        sent = SentMessage(id=self._next(), channel=channel, text=msg.text, user=self.bot)
        self._send.send_nowait(sent)
        self.puts += 1
        watch = self.watch
        if watch is not None and self.puts >= watch[0]:
            self.watch = None
            watch[1].set()
        return [Receipt(id=sent.id, channel=channel, at=sent.at)]

    async def reach(self, puts: int) -> None:
        """Wait until this plug has been put `puts` messages."""
        if self.puts < puts:
            event = anyio.Event()
            self.watch = (puts, event)
            await event.wait()


class MinimalRelay(Hook):
    """Puts each message said in the first channel to the others; nothing else."""

    targets: list[Channel] = []
    source: Channel | None = None

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        if source is not sent or sent.channel != self.source:
            return
        for target in self.targets:
            await self.host.put(target, Message(text=sent.text, user=sent.user))


def module() -> types.ModuleType:
    mod = types.ModuleType("bench_relay")
    mod.chanmux_plug_types = hookimpl(lambda: {"relaybench": RelayPlug})
    mod.chanmux_hook_types = hookimpl(lambda: {"minimal-relay": MinimalRelay})
    return mod


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    names = [f"c{i}" for i in range(args.channels)]
    hooks: dict[str, Any] = {}
    if args.hook == "sync":
        persist = bool(args.db or args.memory_db)
        hooks["sync"] = {"type": "sync", "channels": {"main": names}, "persist": persist}
    elif args.hook == "relay":
        hooks["relay"] = {"type": "minimal-relay"}
    return {
        "plugs": {name: {"type": "relaybench"} for name in names},
        "channels": {name: {"plug": name, "source": f"#{name}"} for name in names},
        "hooks": hooks,
        "database": {"url": f"sqlite:///{args.db}" if args.db else "sqlite://"},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with run_host(build_config(args), modules=[("bench-relay", module())]) as host:
        plugs = [host.plugs[f"c{i}"] for i in range(args.channels)]
        first, targets = plugs[0], plugs[1:]
        if args.hook == "relay":
            MinimalRelay.source = host.channels["c0"]
            MinimalRelay.targets = [host.channels[p.name] for p in targets]
        expect = args.messages if args.hook != "none" else 0
        window = args.window
        start = time.perf_counter()
        for i in range(args.messages):
            if i >= window and expect:
                for plug in targets:
                    await plug.reach(i - window)
            first.inject("#c0", f"message {i}")
        for plug in targets:
            await plug.reach(expect)
        with anyio.fail_after(600):
            while any(p.received < p.puts for p in targets) or first.received < args.messages:
                await anyio.lowlevel.checkpoint()
        await host.wait_idle(timeout=600)
        seconds = time.perf_counter() - start
        if expect:
            assert all(p.puts == args.messages for p in targets), [p.puts for p in targets]
        assert first.puts == 0, "a message came back to its own channel"
        sync = host.hooks.get("sync")
        if sync is not None and sync.cache.writer is not None:
            await sync.cache.writer.flush(timeout=600)
    db = args.db or ("sqlite://" if args.memory_db else None)
    return {"messages": args.messages, "channels": args.channels, "db": db,
            "seconds": round(seconds, 3), "msgs_per_s": round(args.messages / seconds),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--db", default=None, help="SQLite file (default: in-memory SQLite)")
    parser.add_argument("--window", type=int, default=2_000,
                        help="most messages injected ahead of the slowest copy")
    parser.add_argument("--memory-db", action="store_true",
                        help="without --db: keep the sync's rows in an in-memory SQLite")
    parser.add_argument("--hook", choices=["sync", "relay", "none"], default="sync")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    result = anyio.run(main, args, backend=args.backend)
    if args.hook != "sync":
        result["hook"] = args.hook
    print(json.dumps(result), flush=True)
