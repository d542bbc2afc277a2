"""IRC plug throughput: lines parsed and formatted per second, and the send rate it achieves.

In process, no network: raw lines -> SentMessage (tags, CTCP, mIRC formatting, mentions of the
members of a 200-nick channel), and Message -> wire lines (author, formatting, splitting to the
server's byte budget). Then against a real ngircd on loopback: lines per second a second client
receives with flood control off, and with it on (default: burst 4, 5 lines/s) against the
configured rate. Prints one JSON line per measurement.

Usage: python benchmarks/irc_lines.py [--seconds S] [--backend asyncio|trio] [--no-server]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import anyio

from chanmux import Message, RichText, Segment, User
from chanmux.testing import make_host, run_host
from chanmux_irc.protocol import format_line, parse
from chanmux_irc.state import ChannelState

CHAN = "#bench"
MEMBERS = [f"member{i}" for i in range(200)]

RAW = {
    "plain": ":alice!al@host.example PRIVMSG #bench :just a plain line of chat, nothing special here",
    "formatted": (":alice!al@host.example PRIVMSG #bench :\x02bold\x02 \x0304,12red\x03 \x1ditalic\x1d "
                  "\x1fund\x1f \x11code\x11 and a mention of member42: how are you?"),
    "tagged": ("@msgid=abc123;time=2024-05-01T12:00:00.000Z;account=alice :alice!al@host.example "
               "PRIVMSG #bench :\x01ACTION waves at member7 and member199\x01"),
    "join": ":newbie!nb@host.example JOIN #bench",
}


def offline_plug():
    """A real IRCPlug (not connected) that believes it is in #bench with 200 members."""
    config = {"plugs": {"irc": {"type": "irc", "server": "irc.example", "nick": "bridge"}}}
    host = make_host(config, path=Path(tempfile.mkdtemp()) / "bench.toml")
    plug = host.plugs["irc"]
    plug.network.info.update(["CHANTYPES=#", "NICKLEN=30", "PREFIX=(ov)@+"])
    chan = plug.network.channels[CHAN] = ChannelState(CHAN)
    for nick in [*MEMBERS, "alice", "bridge"]:
        chan.add(plug.network.fold(nick), nick)
    return plug


def rate(fn, seconds: float) -> tuple[int, float]:
    """Run fn() repeatedly for about `seconds`; (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls, now - start


def parse_benchmarks(seconds: float) -> list[dict]:
    plug = offline_plug()
    out = []
    for kind, raw in RAW.items():
        if kind == "join":
            def one(raw=raw):
                plug.incoming.convert(parse(raw))
                plug.network.channels[CHAN].remove("newbie")
        else:
            def one(raw=raw):
                plug.incoming.convert(parse(raw))
        one()
        calls, elapsed = rate(one, seconds)
        out.append({"measure": "parse", "kind": kind, "lines": calls,
                    "lines_per_s": round(calls / elapsed)})
    return out


def format_benchmarks(seconds: float) -> list[dict]:
    plug = offline_plug()
    user = User(id="@alice:matrix.example", plug="mx", real_name="Alice Example")
    words = RichText([Segment("formatted ", bold=True), Segment("text with ünïcode ✓ and "),
                      Segment("a link", link="https://example.org/x"), Segment(" and "),
                      Segment("code()", code=True), Segment(" ")])
    cases = {
        "short": Message(text="hello from the other side", user=user),
        "formatted_400": Message(text=RichText(list(words.segments) * 6), user=user),
        "long_5000": Message(text=RichText(list(words.segments) * 75), user=user),
    }
    out = []
    for kind, msg in cases.items():
        counter = [0]

        def one(msg=msg, counter=counter):
            lines = plug.renderer.lines(msg, CHAN, lambda cmd, act: plug.budget(CHAN, cmd, act))
            for line in lines:
                format_line(line.command, line.target, line.text(plug.renderer.mention))
            counter[0] += len(lines)

        one()
        per_message = counter[0]
        counter[0] = 0
        calls, elapsed = rate(one, seconds)
        out.append({"measure": "format", "kind": kind, "chars": len(msg.text),
                    "wire_lines_per_message": per_message, "messages_per_s": round(calls / elapsed),
                    "wire_lines_per_s": round(counter[0] / elapsed)})
    return out


async def send_rate(server, lines: int, burst: int, rate_: float) -> dict:
    from chanmux_testservers.ircclient import HumanIRC

    nick = f"bench{int(time.time() * 1000) % 100000}"
    config = {"plugs": {"irc": {"type": "irc", "server": server.host, "port": server.port,
                                "tls": False, "nick": nick, "flood_burst": burst,
                                "flood_rate": rate_, "max_lines": 10}},
              "channels": {"bench": {"plug": "irc", "source": CHAN}}}
    with tempfile.TemporaryDirectory() as tmp:
        async with HumanIRC.connect(server.host, server.port, f"reader{nick[5:]}") as reader:
            await reader.join(CHAN)
            async with run_host(config, path=Path(tmp) / "bench.toml") as host:
                channel = host.channels["bench"]
                mark = reader.mark()
                began = time.perf_counter()
                for i in range(lines):
                    await host.put(channel, Message(text=f"line {i}"))
                queued = time.perf_counter() - began
                arrivals = []
                for i in range(lines):  # each wait starts where the previous one matched
                    await reader.wait_for(lambda l, i=i: l.command == "PRIVMSG" and l.text == f"line {i}",
                                          timeout=600, since=mark if i == 0 else None)
                    arrivals.append(time.perf_counter())
    span = arrivals[-1] - arrivals[0]
    achieved = (lines - 1) / span if span > 0 else float("inf")
    row = {"measure": "send", "flood_control": rate_ > 0, "lines": lines,
           "put_seconds": round(queued, 4), "seconds": round(arrivals[-1] - began, 3),
           "lines_per_s": round(achieved, 2)}
    if rate_ > 0:
        expected = (lines - burst) / rate_
        row.update({"burst": burst, "configured_lines_per_s": rate_,
                    "expected_seconds_after_burst": round(expected, 3),
                    "measured_seconds_first_to_last": round(span, 3),
                    "steady_lines_per_s": round((lines - burst) / span, 3) if span else None})
    return row


async def server_benchmarks(args: argparse.Namespace) -> None:
    from chanmux_testservers.irc import start_ngircd

    with start_ngircd(None) as server:
        print(json.dumps({"backend": args.backend, **await send_rate(server, args.lines, 4, 0.0)}),
              flush=True)
        print(json.dumps({"backend": args.backend, **await send_rate(
            server, args.flood_lines, args.burst, args.rate)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per in-process measurement")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--lines", type=int, default=2000, help="lines sent with flood control off")
    parser.add_argument("--flood-lines", type=int, default=54, help="lines sent with flood control on")
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--no-server", action="store_true", help="skip the ngircd measurements")
    args = parser.parse_args()
    for row in parse_benchmarks(args.seconds) + format_benchmarks(args.seconds):
        print(json.dumps(row), flush=True)
    if not args.no_server:
        anyio.run(server_benchmarks, args, backend=args.backend)


if __name__ == "__main__":
    main()
