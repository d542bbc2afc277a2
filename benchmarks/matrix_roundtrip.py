"""Matrix plug throughput and latency against a real Synapse, next to plain clients (the floor).

Starts its own Synapse (chanmux_testservers), then measures, for N messages sent back to back:

  human_to_plug   a human client sends; the time until the chanmux host hands each message to
                  a hook (on_receive), through the Matrix plug's /sync
  plug_to_human   host.put into the room; the time until the human's /sync returns it
  floor           two plain HumanMatrix clients, one sending and one syncing, no chanmux

Each line is JSON: events/s over the whole run (first send to last arrival) and p50/p99 latency
of single messages. Usage: python benchmarks/matrix_roundtrip.py [--messages N] [--backend B]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import types
import uuid
from collections.abc import Awaitable, Callable

import anyio

from chanmux import Hook, Message, User, hookimpl
from chanmux.testing import run_host
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse


class ArrivalHook(Hook):
    """Notes when each message reaches the hooks."""

    arrivals: dict[str, float] = {}
    changed: anyio.Event | None = None

    async def on_receive(self, sent, source, primary):
        if sent.text is not None:
            ArrivalHook.arrivals[sent.text.plain] = time.perf_counter()
            if ArrivalHook.changed is not None:
                ArrivalHook.changed.set()


def module():
    mod = types.ModuleType("bench_matrix_hooks")
    mod.chanmux_hook_types = hookimpl(lambda: {"arrival": ArrivalHook})
    return mod


def figures(case: str, sent: dict[str, float], arrived: dict[str, float], backend: str) -> dict:
    latencies = sorted((arrived[k] - sent[k]) * 1000 for k in sent)
    span = max(arrived.values()) - min(sent.values())
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"case": case, "backend": backend, "messages": len(sent),
            "events_per_s": round(len(sent) / span, 1), "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(p99, 2), "seconds": round(span, 3)}


async def watch(human: HumanMatrix, room: str, prefix: str, arrived: dict[str, float],
                expected: int) -> None:
    """Long-poll /sync until `expected` messages starting with `prefix` were seen."""
    while len(arrived) < expected:
        for event in await human.sync_once(10.0):
            body = event.get("content", {}).get("body", "")
            if event["room_id"] == room and prefix in body:
                arrived.setdefault(body[body.index(prefix):], time.perf_counter())


async def send_all(send: Callable[[str], Awaitable[None]], count: int,
                   receiver: Callable[[str, int], Awaitable[None]]) -> dict[str, float]:
    """Send `count` numbered messages back to back while `receiver(tag, count)` waits until
    each has arrived (noting arrival times); the send time of each message."""
    tag = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver, tag, count)
        for i in range(count):
            key = f"{tag}-{i:05d}"
            sent[key] = time.perf_counter()
            await send(key)
    return sent


async def main(args: argparse.Namespace) -> None:
    with Synapse() as hs:
        bot_id, bot_token, _ = hs.register("bench-bridge")
        a_id, a_token, _ = hs.register("bench-alice")
        b_id, b_token, _ = hs.register("bench-bob")
        async with HumanMatrix(hs.base_url, a_id, a_token) as alice, \
                HumanMatrix(hs.base_url, b_id, b_token) as bob:
            room = await alice.create_room(name="bench", preset="public_chat")
            await bob.join(room)
            config = {
                "plugs": {"mx": {"type": "matrix", "homeserver": hs.base_url, "user_id": bot_id,
                                 "access_token": bot_token, "rooms": [room]}},
                "channels": {"room": {"plug": "mx", "source": room}},
                "hooks": {"arrival": {"type": "arrival"}},
                "database": {"url": "sqlite://"},
            }
            n = args.messages

            def bob_receives(arrived: dict[str, float]) -> Callable[[str, int], Awaitable[None]]:
                async def receive(tag: str, count: int) -> None:
                    await watch(bob, room, tag, arrived, count)
                return receive

            async def hook_receives(tag: str, count: int) -> None:
                with anyio.fail_after(300):
                    while sum(1 for k in ArrivalHook.arrivals if k.startswith(tag)) < count:
                        ArrivalHook.changed = anyio.Event()
                        await ArrivalHook.changed.wait()

            async with run_host(config, modules=[("bench", module())]) as host:
                channel = host.channels["room"]
                user = User(id="bench", plug="irc", real_name="Bench")

                sent = await send_all(lambda key: alice.send_text(room, key), n, hook_receives)
                print(json.dumps(figures("human_to_plug", sent, ArrivalHook.arrivals, args.backend)),
                      flush=True)

                async def put(key: str) -> None:
                    await host.put(channel, Message(text=key, user=user))

                await bob.catch_up()
                seen: dict[str, float] = {}
                sent = await send_all(put, n, bob_receives(seen))
                print(json.dumps(figures("plug_to_human", sent, seen, args.backend)), flush=True)

            await bob.catch_up()
            floor: dict[str, float] = {}
            sent = await send_all(lambda key: alice.send_text(room, key), n, bob_receives(floor))
            print(json.dumps(figures("floor_client_to_client", sent, floor, args.backend)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args, backend=args.backend)
