"""The floor under relay.py: the same hops with bare asyncio queues and no framework.

A message said in the first channel goes: the network's queue -> the plug's reader -> the
channel's lane (a queue and its worker) -> the hook -> a put to each other channel, whose network
echoes it back -> that plug's reader -> its lane -> recognised as our own copy and dropped.
That is what chanmux and IMMP do on relay.py's workload, minus everything a framework adds
(isolation, timeouts, holds, delivery queues, the message model): what no design can go below
in this interpreter. Queues are bounded; nothing is kept but the puts whose echo has not come
back yet. Messages are injected at most `--window` ahead of the slowest channel's echoes, as in
relay.py.

--db PATH writes, as sync does, a row per copy (the original and each copy: 3 rows a message
with 3 channels) to that SQLite file with the standard library's sqlite3: a writer task hands
whatever is pending to a worker thread as one transaction (`executemany`), again and again; the
clock includes the last batch. That is the floor for sync's database writes.

Prints one JSON line, with relay.py's fields. Usage: python benchmarks/relay_floor.py
[--messages N] [--channels K] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Clock, Watch, workload_arguments

Channel = tuple[str, str]


class Sent:
    """A message as a network has it."""

    __slots__ = ("id", "channel", "text", "user")

    def __init__(self, id: str, channel: Channel, text: str, user: str) -> None:
        self.id, self.channel, self.text, self.user = id, channel, text, user


class Plug:
    """An in-memory network: a bounded queue that a reader task hands to the host."""

    def __init__(self, name: str, host: Host, buffer: int) -> None:
        self.name = name
        self.channel: Channel = (name, f"#{name}")
        self.host = host
        self.net: asyncio.Queue[Sent] = asyncio.Queue(buffer)
        self.puts = 0
        self.received = Watch()
        self._ids = 0

    def _next(self) -> str:
        self._ids += 1
        return f"{self.name}-{self._ids}"

    def inject(self, text: str) -> None:
        self.net.put_nowait(Sent(self._next(), self.channel, text, "human"))

    async def put(self, channel: Channel, text: str, user: str) -> str:
        sent = Sent(self._next(), channel, text, "bot")
        self.net.put_nowait(sent)  # the echo, as a network sends it back
        self.puts += 1
        return sent.id

    async def run(self) -> None:
        net, receive, received = self.net, self.host.receive, self.received
        while True:
            try:
                sent = net.get_nowait()
            except asyncio.QueueEmpty:
                sent = await net.get()
            await receive(sent)
            received.add()


class Writer:
    """Rows written in one transaction per batch, in a worker thread, as they come."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE backref (key TEXT NOT NULL, plug TEXT NOT NULL, "
                        "channel TEXT NOT NULL, message TEXT NOT NULL, "
                        "UNIQUE (plug, channel, message))")
        self.pending: list[tuple[str, str, str, str]] = []
        self.added = 0
        self.written = Watch()  # rows written
        self.wake = asyncio.Event()
        self.batches = 0
        #: rows waiting beyond which the hook waits for a batch to be written (memory stays
        #: flat when the database is slower than the chat; sync does the same)
        self.backlog = 20_000

    def add(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.pending.extend(rows)
        self.added += len(rows)
        self.wake.set()

    def _write(self, rows: list[tuple[str, str, str, str]]) -> None:
        with self.db:
            self.db.executemany("INSERT INTO backref VALUES (?, ?, ?, ?)", rows)

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending, []
                await asyncio.to_thread(self._write, batch)
                self.batches += 1
                self.written.add(len(batch))

    async def flush(self) -> None:
        """Wait until every row added so far is written."""
        await self.written.reach(self.added)


class Host:
    """Lanes (one queue and worker per channel), echo recognition, puts."""

    def __init__(self, channels: int, buffer: int, db: str | None) -> None:
        self.plugs = {f"c{i}": Plug(f"c{i}", self, buffer) for i in range(channels)}
        self.members = [plug.channel for plug in self.plugs.values()]
        self.lanes: dict[Channel, asyncio.Queue[Sent]] = {c: asyncio.Queue() for c in self.members}
        self.ours: dict[tuple[Channel, str], str] = {}  # puts whose echo has not come back
        self.handled = Watch()
        self.writer = Writer(db) if db else None

    async def receive(self, sent: Sent) -> None:
        self.lanes[sent.channel].put_nowait(sent)

    async def lane(self, queue: asyncio.Queue[Sent]) -> None:
        ours, handled = self.ours, self.handled
        while True:
            try:
                sent = queue.get_nowait()
            except asyncio.QueueEmpty:
                sent = await queue.get()
            source = ours.pop((sent.channel, sent.id), None)
            if source is None:
                await self.on_receive(sent)
            handled.add()

    async def put(self, channel: Channel, text: str, user: str, key: str) -> str:
        id = await self.plugs[channel[0]].put(channel, text, user)
        self.ours[channel, id] = key
        return id

    async def on_receive(self, sent: Sent) -> None:
        """The hook: a copy to every other channel, with the author named as sync names it."""
        key = f"{sent.channel[0]}|{sent.id}"
        user = f"{sent.user} ({sent.channel[0]})"
        rows = [(key, sent.channel[0], sent.channel[1], sent.id)]
        for target in self.members:
            if target != sent.channel:
                id = await self.put(target, sent.text, user, key)
                rows.append((key, target[0], target[1], id))
        writer = self.writer
        if writer is not None:
            writer.add(rows)
            if len(writer.pending) > writer.backlog:
                await writer.written.reach(writer.written.count + 1)


async def main(args: argparse.Namespace) -> dict:
    window = args.window
    chunk = max(1, min(args.chunk or window // 4, window))
    host = Host(args.channels, window, args.db)
    plugs = list(host.plugs.values())
    first, targets = plugs[0], plugs[1:]
    tasks = [asyncio.ensure_future(plug.run()) for plug in plugs]
    tasks += [asyncio.ensure_future(host.lane(queue)) for queue in host.lanes.values()]
    if host.writer is not None:
        tasks.append(asyncio.ensure_future(host.writer.run()))
    n = args.messages
    clock = Clock(n)
    clock.start()
    for i in range(n):
        if i % chunk == 0 and i + chunk > window:
            for plug in targets:
                await plug.received.reach(i + chunk - window)
        first.inject(f"message {i}")
        clock.injected(i + 1)
    for plug in targets:
        await plug.received.reach(n)
    await host.handled.reach(n * args.channels)
    if host.writer is not None:
        await host.writer.flush()
    clock.stop()
    assert all(p.puts == n for p in targets), [p.puts for p in targets]
    assert not host.ours, "an echo did not come back"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    extra = {}
    if host.writer is not None:
        extra["batches"] = host.writer.batches
        rows = host.writer.db.execute("SELECT count(*) FROM backref").fetchone()[0]
        assert rows == n * args.channels, rows
    return clock.result("floor", channels=args.channels, db=args.db, window=window, chunk=chunk,
                        **extra)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(parser, "SQLite file (must not exist)")
    args = parser.parse_args()
    if args.db and Path(args.db).exists():
        parser.error(f"{args.db} exists: give a new path")
    print(json.dumps(asyncio.run(main(args))), flush=True)
