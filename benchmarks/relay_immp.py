"""IMMP 0.12.1 on relay.py's workload: N messages said in one channel, synced to the others by
IMMP's own SyncHook, on in-memory plugs; one JSON line, with the same fields as relay.py.

Runs under the Python of IMMP's virtual environment (`relay.py --compare` makes it:
`~/.cache/chanmux/immp-venv`, `pip install "immp[sync,db]==0.12.1"`); it imports IMMP as
installed and nothing of chanmux. The plugs are what relay.py's are: each echoes every put
back as the network would, counts, and keeps nothing (IMMP itself keeps every message it sent in
`Plug._sent` and every SyncRef in its cache: that is IMMP's memory, and it shows). Messages are
injected at most `--window` ahead of the slowest channel's echoes, as in relay.py; the run ends
when every message and echo has been through IMMP's hooks.

--db PATH adds IMMP's AsyncDatabaseHook on that SQLite file (tortoise-orm), so SyncHook keeps
its SyncBackRef rows there, one transaction per row, as IMMP does.

Usage: <immp-venv>/bin/python benchmarks/relay_immp.py [--messages N] [--channels K] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import immp
from _measure import Clock, Watch, workload_arguments
from immp.hook.sync import SyncHook


def versions() -> dict[str, str | None]:
    """IMMP's version and its database layer's, as installed."""
    found: dict[str, str | None] = {}
    for name in ("immp", "tortoise-orm", "aiosqlite"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


class BenchPlug(immp.Plug):
    """An in-memory network that keeps nothing: it counts puts and echoes each one back."""

    network_name = "bench"

    def __init__(self, name: str, config: dict, host: immp.Host) -> None:
        super().__init__(name, config, host)
        self.network_id = f"bench:{name}"
        self.puts = 0
        self.received = Watch()  # messages handed to the host (IMMP's PlugStream)
        self._ids = 0
        self.bot = immp.User(id_=f"{name}:bot", plug=self, username="bot")
        self.human = immp.User(id_=f"{name}:human", plug=self, username="human", real_name="Human")

    def _next(self) -> str:
        self._ids += 1
        return f"{self.name}-{self._ids}"

    def inject(self, channel: immp.Channel, text: str) -> None:
        self.queue(immp.SentMessage(id_=self._next(), channel=channel, text=text, user=self.human))

    async def put(self, channel: immp.Channel, msg: immp.Message) -> list[immp.Receipt]:
        sent = immp.SentMessage(id_=self._next(), channel=channel, text=msg.text, user=self.bot)
        self.queue(sent)
        self.puts += 1
        return [immp.Receipt(sent.id, channel, at=sent.at)]

    def _lookup(self, sent: immp.SentMessage) -> tuple:
        self.received.add()
        return super()._lookup(sent)


class BenchHost(immp.Host):
    """IMMP's host, counting the messages whose hooks have all run."""

    def __init__(self) -> None:
        super().__init__()
        self.handled = Watch()

    async def _callback(self, sent, source, primary) -> None:  # type: ignore[no-untyped-def]
        await super()._callback(sent, source, primary)
        self.handled.add()


async def probe_database(host: BenchHost) -> str | None:
    """Why SyncHook cannot use IMMP's database, as seen from the task that relays (tortoise-orm
    1.x keeps its connections in a context that the task opening the database does not hand
    on), or None if it can."""
    if any(h.state != immp.OpenState.active for h in host.resources.values()):
        return "AsyncDatabaseHook did not open (see the log above)"
    from immp.hook.sync import SyncBackRef
    try:
        await SyncBackRef.filter(key="probe").count()
    except Exception as exc:  # noqa: BLE001 - said in the result, as IMMP says it
        return f"SyncBackRef query failed: {type(exc).__name__}: {exc}"
    return None


async def main(args: argparse.Namespace) -> dict:
    host = BenchHost()
    names = [f"c{i}" for i in range(args.channels)]
    plugs: list[BenchPlug] = []
    for name in names:
        plug = BenchPlug(f"plug-{name}", {}, host)  # one namespace for plugs and channels
        host.add_plug(plug)
        host.add_channel(name, immp.Channel(plug, f"#{name}"))
        plugs.append(plug)
    db_error = None
    if args.db:
        from immp.hook.database import AsyncDatabaseHook
        host.add_hook(AsyncDatabaseHook("db", {"url": f"sqlite://{args.db}"}, host))
    host.add_hook(SyncHook("sync", {"channels": {"main": names}}, host), priority=1)
    host.loaded()
    try:
        await host.open()
    except Exception as exc:  # noqa: BLE001 - said in the result, as IMMP says it
        db_error = f"{type(exc).__name__}: {exc}"
    if args.db and not db_error:
        db_error = await probe_database(host)
    if db_error:
        await host.close()
        return {"system": "immp", "messages": args.messages, "db": args.db, "error": db_error,
                "versions": versions()}
    process = asyncio.ensure_future(host.process())
    first, targets = plugs[0], plugs[1:]
    channel = host.channels["c0"]
    window, n = args.window, args.messages
    chunk = max(1, min(args.chunk or window // 4, window))
    clock = Clock(n)
    clock.start()
    for i in range(n):
        if i % chunk == 0 and i + chunk > window:
            for plug in targets:
                await plug.received.reach(i + chunk - window)
        first.inject(channel, f"message {i}")
        clock.injected(i + 1)
    for plug in targets:
        await plug.received.reach(n)
    await host.handled.reach(n * args.channels)
    clock.stop()
    assert all(p.puts == n for p in targets), [p.puts for p in targets]
    assert first.puts == 0, "a message came back to its own channel"
    process.cancel()
    try:
        await process
    except asyncio.CancelledError:
        pass
    await host.close()
    return clock.result("immp", channels=args.channels, db=args.db, window=window, chunk=chunk,
                        versions=versions())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(parser, "SQLite file for IMMP's AsyncDatabaseHook")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main(args))), flush=True)
    # a database connection IMMP could not close (tortoise-orm 1.x: see probe_database) keeps
    # a thread that would hold the exit forever
    os._exit(0)
