"""End-to-end latency and IRC send rate of a real bridge: `chanmux run` between ngircd and Synapse.

Starts ngircd and Synapse on loopback (the test harness), then measures, one message at a time
(the next is sent once the previous has arrived), the time from a person sending a message to
the other person receiving it:

- floor_irc: IRC client to IRC client in one channel, no bridge;
- floor_matrix: Matrix client to Matrix client in one room (the receiver long-polls /sync);
- floor_matrix_busy: the same while a third client of the room long-polls /sync too, as the
  bridge's own account does (the homeserver then answers two syncs for every event);
- irc_to_matrix: an IRC person to a Matrix person through `chanmux run` (flood control off);
- matrix_to_irc: a Matrix person to an IRC person through it.

The bridged path crosses both networks, so what chanmux adds is the bridged figure minus the
sum of the two floors (`added_p50_ms`; the goal is under 5 ms). For IRC -> Matrix the bridge's
own /sync is a second listener the homeserver serves, so `added_vs_busy_p50_ms` subtracts the
busy Matrix floor instead.

Then the sustained rate towards IRC under flood control: with `flood_burst = 1` and
`flood_rate = 5`, 50 messages said on Matrix at once arrive on IRC at `rate_per_s`, which
should be the configured rate (`fraction_of_limit` close to 1, never above).

Prints one JSON line per figure. Usage: python benchmarks/e2e.py [--messages N] [--backend trio]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "tests"))

from chanmux_testservers.irc import start_ngircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse

from e2e_helpers import (
    Bridge,
    alias_of,
    body,
    create_room,
    irc_plug,
    matrix_plug,
    register,
    sync_hook,
    uid,
    write_config,
)

WARMUP = 5


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, max(0, round(0.99 * len(ms)) - 1))]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(ms), 2), "max_ms": round(ms[-1], 2)}


async def timed(n: int, send, receive) -> list[float]:
    """Latencies of n messages sent one after the other (the first WARMUP not counted)."""
    out = []
    for k in range(n + WARMUP):
        key = f"b{uid(8)}-{k}"
        start = time.perf_counter()
        await send(key)
        await receive(key)
        if k >= WARMUP:
            out.append(time.perf_counter() - start)
    return out


def irc_receiver(person: HumanIRC):
    async def receive(key: str) -> None:
        await person.wait_for(lambda l: l.command == "PRIVMSG" and key in l.text, timeout=30,
                              since=0)
    return receive


def matrix_receiver(person: HumanMatrix, room: str):
    async def receive(key: str) -> None:
        await person.sync_until(lambda e: e.get("room_id") == room and key in body(e), timeout=30)
    return receive


def row(name: str, backend: str, samples: list[float], **extra) -> dict:
    return {"bench": name, "backend": backend, **percentiles(samples), **extra}


async def run(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="chanmux-bench-e2e-"))
    ircd = start_ngircd(base)
    hs = Synapse(server_name="bench.e2e", extra_config={"bcrypt_rounds": 4})
    n = args.messages
    try:
        await hs.async_start()
        alice = register(hs, "alice", "Alice")
        bob = register(hs, "bob", "Bob")
        account = register(hs, "bridge")
        carol = register(hs, "carol", "Carol")
        channel = f"#bench{uid()}"
        room = create_room(hs, alice, "bench", members=[bob])
        floor_room = create_room(hs, alice, "floor", members=[bob, carol])
        rows: list[dict] = []
        async with HumanIRC.connect(ircd.host, ircd.port, "ia") as ia, \
                HumanIRC.connect(ircd.host, ircd.port, "ib") as ib, \
                HumanMatrix(hs.base_url, alice.user_id, alice.token) as ma, \
                HumanMatrix(hs.base_url, bob.user_id, bob.token) as mb:
            floor_chan = f"#floor{uid()}"
            await ia.join(floor_chan)
            await ib.join(floor_chan)
            await mb.catch_up()
            floor_irc = await timed(n, lambda k: ia.privmsg(floor_chan, k), irc_receiver(ib))
            floor_mx = await timed(n, lambda k: ma.send_text(floor_room, k),
                                   matrix_receiver(mb, floor_room))
            async with HumanMatrix(hs.base_url, carol.user_id, carol.token) as mc, \
                    anyio.create_task_group() as tg:
                await mc.catch_up()

                async def listen() -> None:
                    while True:
                        await mc.sync_once(30)

                tg.start_soon(listen)
                floor_busy = await timed(n, lambda k: ma.send_text(floor_room, k),
                                         matrix_receiver(mb, floor_room))
                tg.cancel_scope.cancel()
            rows += [row("floor_irc", args.backend, floor_irc),
                     row("floor_matrix", args.backend, floor_mx),
                     row("floor_matrix_busy", args.backend, floor_busy)]
            for r in rows:
                print(json.dumps(r), flush=True)

            config = {
                "logging": {"level": "INFO"},
                "plugs": {"irc": irc_plug(ircd, "bridge", flood_burst=1000, flood_rate=10000.0),
                          "matrix": matrix_plug(hs, account)},
                "channels": {"i": {"plug": "irc", "source": channel},
                             "m": {"plug": "matrix", "source": alias_of(hs, "bench")}},
                "hooks": {"sync": sync_hook({"bench": ["i", "m"]})},
            }
            bridge = Bridge(write_config(base / "bridge.toml", config), backend=args.backend,
                            plugs=["irc", "matrix"])
            bridge.start()
            await bridge.ready(timeout=60)
            await ia.join(channel)
            await mb.catch_up()
            # The bridge is ready once a line said on IRC comes out on Matrix.
            await ia.privmsg(channel, "hello")
            await mb.sync_until(lambda e: e.get("room_id") == room and "hello" in body(e), timeout=60)
            try:
                i2m = await timed(n, lambda k: ia.privmsg(channel, k), matrix_receiver(mb, room))
                m2i = await timed(n, lambda k: ma.send_text(room, k), irc_receiver(ia))
            finally:
                bridge.stop()
            fi, fm, fb = percentiles(floor_irc), percentiles(floor_mx), percentiles(floor_busy)
            for name, samples in (("irc_to_matrix", i2m), ("matrix_to_irc", m2i)):
                r = row(name, args.backend, samples)
                r["floor_p50_ms"] = round(fi["p50_ms"] + fm["p50_ms"], 2)
                r["added_p50_ms"] = round(r["p50_ms"] - r["floor_p50_ms"], 2)
                r["added_p99_ms"] = round(r["p99_ms"] - fi["p99_ms"] - fm["p99_ms"], 2)
                if name == "irc_to_matrix":
                    r["added_vs_busy_p50_ms"] = round(r["p50_ms"] - fi["p50_ms"] - fb["p50_ms"], 2)
                print(json.dumps(r), flush=True)

            # Sustained rate towards IRC under flood control.
            burst, rate = 1, 5.0
            channel2 = f"#rate{uid()}"
            room2 = create_room(hs, alice, f"rate{uid()}")
            config["plugs"]["irc"] = irc_plug(ircd, "ratebridge", flood_burst=burst, flood_rate=rate)
            config["channels"] = {"i": {"plug": "irc", "source": channel2},
                                  "m": {"plug": "matrix", "source": room2}}
            account2 = register(hs, "bridge2")
            config["plugs"]["matrix"] = matrix_plug(hs, account2)
            bridge2 = Bridge(write_config(base / "rate.toml", config), backend=args.backend,
                             plugs=["irc", "matrix"])
            bridge2.start()
            try:
                await bridge2.ready(timeout=60)
                await ib.join(channel2)
                count = 50
                arrivals: list[float] = []

                async def collect() -> None:
                    while len(arrivals) < count:
                        await ib.wait_for(lambda l: l.command == "PRIVMSG" and l.text.startswith(
                            "<Alice> rate "), timeout=count / rate + 60)
                        arrivals.append(time.perf_counter())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(collect)  # timestamps each line as it comes
                    for k in range(count):
                        await ma.send_text(room2, f"rate {k}")
            finally:
                bridge2.stop()
            steady = arrivals[burst:]
            measured = (len(steady) - 1) / (steady[-1] - steady[0])
            print(json.dumps({"bench": "irc_flood_rate", "backend": args.backend, "messages": count,
                              "flood_burst": burst, "flood_rate": rate,
                              "rate_per_s": round(measured, 3),
                              "fraction_of_limit": round(measured / rate, 3),
                              "seconds": round(arrivals[-1] - arrivals[0], 2)}), flush=True)
    finally:
        await hs.async_stop()
        hs.close()
        ircd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per latency figure")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio",
                        help="event loop of the bridge and of the benchmark's clients")
    args = parser.parse_args()
    anyio.run(run, args, backend=args.backend)


if __name__ == "__main__":
    main()
