"""How fast SyncHook relays, and at what cost: N messages said in one channel, synced to the K-1
others, on in-memory plugs; against IMMP and the bare-asyncio floor with --compare.

Each channel is on its own in-memory plug that echoes every put back to the host with the same
id, as a network does. The plug is cheap and bounded: its network is a memory stream of
`--window` items that it drains without a checkpoint per item, it counts and keeps nothing (no
history), and messages are injected at most `--window` ahead of the slowest channel's echoes,
so no queue grows past that. The run ends when every copy has arrived and every echo has been
handled (waited on by condition, never by sleeping or polling); with --db, when the sync's last
row is written too: the clock includes the final flush of the batch writer.

Deterministic: the message sequence is fixed (`message 0`, `message 1`, ... from one author);
the host picks a channel's lane by a crc32 of the channel (core since 0.2.4; before, by the
per-process `hash()`), and the process runs with a fixed string-hash seed all the same
(`--hash-seed`, default 0; the script re-executes itself with PYTHONHASHSEED set), so that
whatever else iterates a set or hashes strings does the same in every run. The lane of each
channel is printed (`lanes`).

Prints one JSON line: wall time and rate (`seconds`, `msgs_per_s`), CPU time of the measured
part (`cpu_s`, and `cpu_us_per_msg`: `time.process_time` over it divided by N, every thread
included, so other work on the machine does not inflate it the way it does wall time), the
peak resident memory (`max_rss_kb`) and the resident memory at 20,000 messages and every tenth
of the run (`rss_kb`: run 200,000 to see whether it stays flat).

Without --db the sync keeps nothing in the database (`persist = false`). --db [PATH] writes
every copy to a SQLite file in batches, as in production (PATH must not exist; without it a
temporary file); --memory-db to an in-memory SQLite instead. --hook relay swaps SyncHook for a
minimal hook that puts each message to the other channels and nothing else (what the host
itself costs); --hook none only receives. --no-echo: the plugs do not echo puts back (the
difference is what receiving our own copies costs).

--compare runs, interleaved in one invocation (A B C, then C B A, ... so drift in the machine's
load falls on all of them alike), `--rounds` times each: this benchmark, IMMP 0.12.1's SyncHook
on the same workload (benchmarks/relay_immp.py, in a virtual environment of its own that it
makes if missing: ~/.cache/chanmux/immp-venv) and the bare-asyncio floor
(benchmarks/relay_floor.py); each run a process of its own. With --db each of them also runs
with SQLite (IMMP with its AsyncDatabaseHook: see `IMMP_DB_VENV` below). Prints each one's CPU
µs/message and msgs/s (median, min-max) and the ratios, then one JSON line.

--profile runs chanmux once under cProfile (or `--profile pyinstrument`) and prints the top
25 functions by cumulative and by own time, per message, the time per area (anyio, asyncio,
each core module, sync, attrs-generated model methods, ...), and exact per-message counts of
checkpoints, event-loop callbacks, stream receives, Events and attrs constructions (from a
second, counting pass: cProfile counts each resumption of a coroutine as a call).

Usage: python benchmarks/relay.py [--messages N] [--channels K] [--db [PATH]] [--backend trio]
       python benchmarks/relay.py --compare [--rounds 3] [--db]
       python benchmarks/relay.py --profile [cprofile|pyinstrument] [--db]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import anyio  # noqa: E402
from _measure import WORKLOAD, Clock, Watch  # noqa: E402

from chanmux import Channel, Hook, Message, Plug, Receipt, SentMessage, User, hookimpl  # noqa: E402
from chanmux.testing import run_host  # noqa: E402

#: IMMP as the comparison runs it: its virtual environment and what is installed there.
IMMP_VENV = Path.home() / ".cache" / "chanmux" / "immp-venv"
IMMP_REQUIREMENT = "immp[sync,db]==0.12.1"
#: IMMP 0.12.1's database layer fails on the tortoise-orm of today (its SyncHook's queries run
#: in a task that the connection context opened in `AsyncDatabaseHook.start` does not reach);
#: IMMP+SQLite is then measured in a second environment with the tortoise-orm that was current
#: when IMMP 0.12.1 came out (2023-06), and the output says so.
IMMP_DB_VENV = Path.home() / ".cache" / "chanmux" / "immp-tortoise019-venv"
IMMP_DB_REQUIREMENTS = [IMMP_REQUIREMENT, "tortoise-orm==0.19.3"]


# -- the chanmux run -------------------------------------------------------------------------


class RelayPlug(Plug):
    """An in-memory network that keeps nothing: it counts puts and echoes each one back."""

    network_name = "bench"
    #: the network's buffer: relay.py's window (set before the host is built)
    buffer = 2_000
    #: False: puts are not echoed back (`--no-echo`: what receiving our own copies costs)
    echo = True

    def __init__(self, name: str, config: Any, host: Any) -> None:
        super().__init__(name, config, host)
        self.puts = 0
        self.received = Watch(anyio.Event)  # messages handed to the host (`host.receive` returned)
        self._ids = 0
        self.bot = User(id=f"{name}:bot", plug=name, username="bot", is_self=True)
        self.human = User(id=f"{name}:human", plug=name, username="human", real_name="Human")
        self._send, self._recv = anyio.create_memory_object_stream[SentMessage](self.buffer)

    async def run(self) -> None:
        recv, receive, received = self._recv, self.host.receive, self.received
        while True:
            try:
                sent = recv.receive_nowait()  # no checkpoint while items wait
            except anyio.WouldBlock:
                sent = await recv.receive()
            await receive(sent)
            received.add()

    def _next(self) -> str:
        self._ids += 1
        return f"{self.name}-{self._ids}"

    def inject(self, channel: Channel, text: str) -> None:
        self._send.send_nowait(SentMessage(id=self._next(), channel=channel, text=text,
                                           user=self.human))

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        sent = SentMessage(id=self._next(), channel=channel, text=msg.text, user=self.bot)
        if not self.echo:
            self.received.add()  # as if its echo had been handed over, for the window
        else:
            try:
                self._send.send_nowait(sent)
            except anyio.WouldBlock:  # not while the window holds; a network would wait too
                await self._send.send(sent)
        self.puts += 1
        return [Receipt(id=sent.id, channel=channel, at=sent.at)]


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
    mod.chanmux_plug_types = hookimpl(lambda: {"relaybench": RelayPlug})  # type: ignore
    mod.chanmux_hook_types = hookimpl(lambda: {"minimal-relay": MinimalRelay})  # type: ignore
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


def lane_of(host: Any, channel: Channel) -> int:
    """The lane the host hands `channel`'s messages to (as lanes.py picks it)."""
    lanes = host.lanes
    pick = getattr(lanes, "_lane_of", None)  # crc32 of the channel (core 0.2.4)
    if pick is not None:
        return int(pick(channel))
    return hash(channel) % len(lanes.lanes)  # core before 0.2.4


async def relay(args: argparse.Namespace, profiler: Any = None) -> dict[str, Any]:
    """One chanmux run; `profiler` (with enable/disable) runs over the measured part only."""
    RelayPlug.buffer = args.window
    RelayPlug.echo = not args.no_echo
    async with run_host(build_config(args), modules=[("bench-relay", module())]) as host:
        plugs = [host.plugs[f"c{i}"] for i in range(args.channels)]
        first, targets = plugs[0], plugs[1:]
        channel = host.channels["c0"]
        if args.hook == "relay":
            MinimalRelay.source = channel
            MinimalRelay.targets = [host.channels[p.name] for p in targets]
        n, window = args.messages, args.window
        chunk = max(1, min(args.chunk or window // 4, window))
        echoes = n if args.hook != "none" else 0
        sync = host.hooks.get("sync")
        writer = sync.cache.writer if sync is not None else None
        clock = Clock(n)
        clock.start()
        if profiler is not None:
            profiler.enable()
        watched = plugs if echoes else [first]  # whose network buffers must not overflow
        for i in range(n):
            if i % chunk == 0 and i + chunk > window:
                for plug in watched:
                    await plug.received.reach(i + chunk - window)
            first.inject(channel, f"message {i}")
            clock.injected(i + 1)
        await first.received.reach(n)
        for plug in targets:
            await plug.received.reach(echoes)
        await host.wait_idle(timeout=600)
        if writer is not None:
            await writer.flush(timeout=600)
        if profiler is not None:
            profiler.disable()
        clock.stop()
        if echoes:
            assert all(p.puts == n for p in targets), [p.puts for p in targets]
        assert first.puts == 0, "a message came back to its own channel"
        lanes = {name: lane_of(host, host.channels[name]) for name in sorted(host.channels)}
        extra: dict[str, Any] = {}
        if writer is not None:
            extra = {"db_batches": writer.batches, "db_rows": int(writer.batch_rows.sum)}
    db = args.db or ("sqlite://" if args.memory_db else None)
    result = clock.result("chanmux", channels=args.channels, db=db, window=args.window, chunk=chunk,
                          backend=args.backend, hash_seed=os.environ.get("PYTHONHASHSEED"),
                          lanes=lanes, **extra)
    if args.hook != "sync":
        result["hook"] = args.hook
    if args.no_echo:
        result["echo"] = False
    return result


# -- the comparison --------------------------------------------------------------------------


def ensure_venv(venv: Path, requirements: list[str]) -> Path:
    """The Python of `venv`, made with `requirements` from PyPI if it is not there yet."""
    python = venv / "bin" / "python"
    probe = "import immp, importlib.metadata as m; print(m.version('immp'))"
    if python.exists():
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == "0.12.1":
            return python
    print(f"installing {' '.join(requirements)} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *requirements], check=True)
    return python


def run_json(cmd: list[str], env: dict[str, str], timeout: float = 3600) -> dict[str, Any]:
    """Run one benchmark process; its last JSON line, or an error naming what failed."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:g}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {done.returncode}: {tail}"}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = format(_median(values), fmt)
    if len(values) == 1:
        return med
    return f"{med} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def compare(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONHASHSEED": str(args.hash_seed)}
    immp = ensure_venv(IMMP_VENV, [IMMP_REQUIREMENT])
    common = ["--messages", str(args.messages), "--channels", str(args.channels),
              "--window", str(args.window), "--chunk", str(args.chunk)]
    systems: list[tuple[str, list[str] | None]] = [
        ("chanmux", [sys.executable, str(HERE / "relay.py"), *common, "--backend", args.backend]),
        ("immp", [str(immp), str(HERE / "relay_immp.py"), *common]),
        ("floor", [sys.executable, str(HERE / "relay_floor.py"), *common]),
    ]
    notes: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="chanmux-relay-")
    if args.db is not None:
        immp_db_name = "immp+sqlite"
        immp_db: Path | None = immp
        probe = run_json([str(immp), str(HERE / "relay_immp.py"), "--messages", "10",
                          "--db", f"{tmp.name}/probe.sqlite"], env, timeout=300)
        if "error" in probe:
            versions = probe.get("versions", {})
            notes.append(f"IMMP 0.12.1's database layer fails on tortoise-orm "
                         f"{versions.get('tortoise-orm')}: {probe['error']}")
            try:
                immp_db = ensure_venv(IMMP_DB_VENV, IMMP_DB_REQUIREMENTS)
            except (subprocess.CalledProcessError, OSError) as exc:
                notes.append(f"and tortoise-orm 0.19.3 could not be installed ({exc}): "
                             "IMMP is measured without its database")
                immp_db = None
            else:
                immp_db_name = "immp+sqlite(tortoise-0.19.3)"
                notes.append("IMMP+SQLite is measured with tortoise-orm 0.19.3 (current when "
                             "IMMP 0.12.1 came out, 2023-06), in " + str(IMMP_DB_VENV))
        systems += [
            ("chanmux+sqlite", [sys.executable, str(HERE / "relay.py"), *common,
                                "--backend", args.backend, "--db"]),
            (immp_db_name, [str(immp_db), str(HERE / "relay_immp.py"), *common, "--db"]
             if immp_db is not None else None),
            ("floor+sqlite", [sys.executable, str(HERE / "relay_floor.py"), *common, "--db"]),
        ]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in systems}
    runs = 0
    for rnd in range(args.rounds):
        order = systems if rnd % 2 == 0 else systems[::-1]
        for name, cmd in order:
            if cmd is None:
                continue
            if cmd[-1] == "--db":
                runs += 1
                cmd = [*cmd, f"{tmp.name}/run{runs}.sqlite"]
            result = run_json(cmd, env)
            result["round"] = rnd
            results[name].append(result)
            if "error" in result:
                print(f"round {rnd + 1} {name}: {result['error']}", flush=True)
            else:
                print(f"round {rnd + 1} {name:<30} {result['cpu_us_per_msg']:8.1f} CPU µs/msg "
                      f"{result['msgs_per_s']:8,} msgs/s  "
                      f"max RSS {result['max_rss_kb'] // 1024} MB", flush=True)
    tmp.cleanup()
    summary = summarise(args, results, notes)
    print(json.dumps(summary), flush=True)


def summarise(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]],
              notes: list[str]) -> dict[str, Any]:
    print()
    print(f"relay: {args.messages:,} messages in one of {args.channels} synced channels, "
          f"{args.rounds} rounds interleaved, hash seed {args.hash_seed}, backend {args.backend}")
    print(f"{'system':<30} {'CPU µs/msg median (min-max)':<30} {'msgs/s median (min-max)':<28} "
          f"{'max RSS MB':>10}")
    summary: dict[str, Any] = {"messages": args.messages, "channels": args.channels,
                               "rounds": args.rounds, "systems": {}, "ratios": {},
                               "notes": notes}
    for name, runs in results.items():
        good = [r for r in runs if "error" not in r]
        cpu = [r["cpu_us_per_msg"] for r in good]
        rate = [r["msgs_per_s"] for r in good]
        rss = [r["max_rss_kb"] / 1024 for r in good]
        errors = sorted({r["error"] for r in runs if "error" in r})
        print(f"{name:<30} {_spread(cpu, '.1f'):<30} {_spread(rate, ',.0f'):<28} "
              f"{_median(rss) if rss else float('nan'):>10.0f}")
        for error in errors:
            print(f"    {name} failed: {error}")
        summary["systems"][name] = {"cpu_us_per_msg": cpu, "msgs_per_s": rate,
                                    "max_rss_mb": [round(v) for v in rss], "errors": errors}
    print()
    print("ratios, median of the per-round ratios (min-max); CPU: >1 means chanmux costs more "
          "per message")
    pairs = [("chanmux", "immp"), ("chanmux", "floor")]
    if args.db is not None:
        immp_db = next((n for n in results if n.startswith("immp+sqlite")), None)
        if immp_db is not None:
            pairs.append(("chanmux+sqlite", immp_db))
        pairs.append(("chanmux+sqlite", "floor+sqlite"))
    for a, b in pairs:
        by_round = {r["round"]: r for r in results.get(b, []) if "error" not in r}
        cpu = [r["cpu_us_per_msg"] / by_round[r["round"]]["cpu_us_per_msg"]
               for r in results.get(a, []) if "error" not in r and r["round"] in by_round]
        rate = [r["msgs_per_s"] / by_round[r["round"]]["msgs_per_s"]
                for r in results.get(a, []) if "error" not in r and r["round"] in by_round]
        print(f"  {a + ' / ' + b:<46} CPU per message {_spread(cpu, '.2f'):<22} "
              f"msgs/s {_spread(rate, '.3f')}")
        summary["ratios"][f"{a}/{b}"] = {"cpu": [round(v, 3) for v in cpu],
                                        "msgs_per_s": [round(v, 4) for v in rate]}
    for note in notes:
        print(f"note: {note}")
    return summary


# -- the profile -----------------------------------------------------------------------------


def _where(file: str, line: int, name: str) -> str:
    if file == "~":
        return name
    for marker in ("site-packages/", "/work/main/core/", "/work/main/plugins/sync/",
                   "/work/main/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "/lib/python3":
                file = "stdlib/" + file.split("/", 1)[1]
            break
    return f"{file}:{line} {name}"


def area(file: str) -> str:
    """What a function belongs to, for the time per area."""
    if file == "~":
        return "C functions and methods (builtins)"
    if file.startswith("<attrs generated"):
        return "attrs-generated methods (model: __init__, __hash__, __eq__)"
    if file.startswith("<"):
        return "generated code (dataclasses, ...)"
    for marker, name in (("/anyio/", "anyio"), ("/sniffio/", "anyio (sniffio)"),
                         ("/asyncio/", "asyncio event loop"), ("/trio/", "trio"),
                         ("/pluggy/", "pluggy"), ("/sqlalchemy/", "sqlalchemy"),
                         ("/attr/", "attrs"), ("/benchmarks/", "benchmark plug and driver")):
        if marker in file:
            return name
    for marker in ("chanmux_sync/", "chanmux/"):
        if marker in file:
            return marker + file.split(marker, 1)[1]
    return "stdlib/other: " + Path(file).name


def count_calls(run: Any) -> dict[tuple[str, int, str], int]:
    """Exact calls of every Python function during `run()` (a coroutine's resumptions are not
    calls): a profile hook that counts a frame only when it starts at its first instruction."""
    import dis

    first: dict[types.CodeType, int] = {}
    counts: dict[types.CodeType, int] = {}

    def hook(frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        start = first.get(code)
        if start is None:
            start = first[code] = next((i.offset for i in dis.get_instructions(code)
                                        if i.opname == "RESUME"), 0)
        if frame.f_lasti <= start:
            counts[code] = counts.get(code, 0) + 1

    class Counting:
        def enable(self) -> None:
            sys.setprofile(hook)

        def disable(self) -> None:
            sys.setprofile(None)

    run(Counting())
    return {(c.co_filename, c.co_firstlineno, c.co_name): n for c, n in counts.items()}


def print_profile(stats: Any, calls: dict[tuple[str, int, str], int], result: dict[str, Any],
                  counted: int, top: int = 25) -> None:
    rows = [(key, nc, tt, ct) for key, (_cc, nc, tt, ct, _callers) in stats.stats.items()]
    total = sum(tt for _key, _nc, tt, _ct in rows)
    messages = result["messages"]
    per = 1e6 / messages

    def calls_per_msg(key: tuple[str, int, str], nc: int) -> str:
        if key in calls:
            return f"{calls[key] / counted:8.2f}"
        return f"{nc / messages:7.2f}*"

    print(f"\nprofile of chanmux's relay ({messages:,} messages; main thread, cProfile): "
          f"{total * per:.1f} µs of profiled time per message (cProfile inflates it)")
    print("calls/msg: exact, from a counting pass over "
          f"{counted:,} messages; * = cProfile's count (a coroutine's resumptions included)")
    print("cProfile's clock is wall time: `poll of select.epoll` is the loop waiting (for the "
          "database thread, or for the CPU while other processes run)")
    print(f"garbage collection: {result['gc_us_per_msg']} µs/msg of CPU in this run "
          f"(collections per generation {result['gc_collections']}), which cProfile charges "
          "to whatever allocated when it ran")
    for title, col in (("cumulative", 3), ("own (total) time", 2)):
        print(f"\ntop {top} by {title}: calls/msg, own µs/msg, cumulative µs/msg, function")
        for key, nc, tt, ct in sorted(rows, key=lambda r: -r[col])[:top]:
            print(f"  {calls_per_msg(key, nc)} {tt * per:8.2f} {ct * per:9.2f}  {_where(*key)}")
    areas: dict[str, float] = {}
    for (file, _line, _name), _nc, tt, _ct in rows:
        areas[area(file)] = areas.get(area(file), 0.0) + tt
    print("\nown time per area: µs/msg, share")
    for name, tt in sorted(areas.items(), key=lambda kv: -kv[1]):
        if tt / total >= 0.002:
            print(f"  {tt * per:8.2f} {tt / total:6.1%}  {name}")

    def exact(match: Any) -> float:
        return sum(n for key, n in calls.items() if match(*key)) / counted

    def cum(match: Any) -> float:
        return sum(ct for key, _nc, _tt, ct in rows if match(*key)) * per

    backend = ("anyio/_backends/",)
    checkpoints = ("checkpoint", "checkpoint_if_cancelled", "cancel_shielded_checkpoint")
    print("\nper message (exact calls per message said; each message makes 2 copies and 2 echoes)")
    counts = [
        ("anyio checkpoints (backend checkpoint calls)",
         lambda f, _l, n: any(b in f for b in backend) and n in checkpoints),
        ("event-loop callbacks run (asyncio Handle._run)",
         lambda f, _l, n: f.endswith("asyncio/events.py") and n == "_run"),
        ("asyncio tasks created", lambda f, _l, n: f.endswith("asyncio/base_events.py")
         and n == "create_task"),
        ("memory-stream receive()", lambda f, _l, n: f.endswith("anyio/streams/memory.py")
         and n == "receive"),
        ("memory-stream receive() that blocked (a receiver object and task info each)",
         lambda f, _l, n: f.endswith("anyio/_core/_testing.py") and n == "get_current_task"),
        ("memory-stream send()", lambda f, _l, n: f.endswith("anyio/streams/memory.py")
         and n == "send"),
        ("anyio Events created", lambda f, _l, n: any(b in f for b in backend)
         and n == "create_event"),
        ("asyncio Events created", lambda f, _l, n: f.endswith("asyncio/locks.py")
         and n == "__init__" and _l == _event_init_line()),
        ("Channel.__hash__", lambda f, _l, n: "chanmux.model.Channel" in f and n == "__hash__"),
        ("Channel.__eq__", lambda f, _l, n: "chanmux.model.Channel" in f and n == "__eq__"),
        ("sync on_receive", lambda f, _l, n: f.endswith("chanmux_sync/hook.py")
         and n == "on_receive"),
    ]
    for label, match in counts:
        print(f"  {exact(match):8.2f}  {label}")
    model = sorted({f.rsplit(".", 1)[-1].rstrip(">") for (f, _l, n) in calls
                    if f.startswith("<attrs generated") and n == "__init__"})
    for cls in model:
        def init(f: str, _l: int, n: str, c: str = cls) -> bool:
            return f.startswith("<attrs generated") and f.endswith(f".{c}>") and n == "__init__"

        print(f"  {exact(init):8.2f}  {cls} constructed (attrs __init__)")
    attrs_init = cum(lambda f, _l, n: f.startswith("<attrs generated") and n == "__init__")
    sync_cum = cum(lambda f, _l, n: "chanmux_sync/" in f and n == "on_receive")
    print(f"\n  {attrs_init:8.2f} µs/msg cumulative in attrs __init__ (converters included)")
    print(f"  {sync_cum:8.2f} µs/msg cumulative in sync's on_receive (its own work and the "
          "inline deliveries it makes)")


def _event_init_line() -> int:
    import asyncio

    return int(asyncio.Event.__init__.__code__.co_firstlineno)


def profile(args: argparse.Namespace) -> None:
    def run(profiler: Any) -> dict[str, Any]:
        return dict(anyio.run(relay, args, profiler, backend=args.backend))

    if args.profile == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")

        class Wrapped:
            def enable(self) -> None:
                profiler.start()

            def disable(self) -> None:
                profiler.stop()

        result = run(Wrapped())
        print(json.dumps({**result, "profiled": "pyinstrument"}), flush=True)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    result = run(profiler)
    print(json.dumps({**result, "profiled": "cprofile"}), flush=True)
    stats = pstats.Stats(profiler)
    messages = args.messages
    counted = min(messages, args.count_messages)
    db = args.db
    if db:
        args.db = str(Path(db).with_suffix(".count.sqlite"))
        for suffix in ("", "-wal", "-shm"):  # a fresh database, as for the timed pass
            Path(args.db + suffix).unlink(missing_ok=True)
    args.messages = counted
    calls = count_calls(run)
    args.messages, args.db = messages, db
    print_profile(stats, calls, result, counted)


# -- the command line ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=WORKLOAD)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--db", nargs="?", const="", default=None, metavar="PATH",
                        help="sync writes to SQLite (PATH must not exist; default: a temporary "
                             "file)")
    parser.add_argument("--window", type=int, default=2_000,
                        help="most messages injected ahead of the slowest channel's echoes "
                             "(and each network's buffer)")
    parser.add_argument("--chunk", type=int, default=0,
                        help="messages injected at a time (default: a quarter of the "
                             "window; 1: the driver refills one at a time, woken per message)")
    parser.add_argument("--memory-db", action="store_true",
                        help="without --db: keep the sync's rows in an in-memory SQLite")
    parser.add_argument("--hook", choices=["sync", "relay", "none"], default="sync")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--no-echo", action="store_true",
                        help="the plugs do not echo puts back (not what a network does: to "
                             "measure what receiving our own copies costs)")
    parser.add_argument("--hash-seed", default="0",
                        help="PYTHONHASHSEED for the run (set iteration orders depend on it, and "
                             "before core 0.2.4 the lane layout did)")
    parser.add_argument("--compare", action="store_true",
                        help="chanmux, IMMP 0.12.1 and the bare-asyncio floor, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: runs of each")
    parser.add_argument("--profile", nargs="?", const="cprofile",
                        choices=["cprofile", "pyinstrument"])
    parser.add_argument("--count-messages", type=int, default=5_000,
                        help="with --profile: messages of the counting pass")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != args.hash_seed:
        env = {**os.environ, "PYTHONHASHSEED": args.hash_seed}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.compare:
        compare(args)
        return
    with tempfile.TemporaryDirectory(prefix="chanmux-relay-") as tmp:
        if args.db == "":
            args.db = f"{tmp}/relay.sqlite"
        elif args.db and Path(args.db).exists():
            parser.error(f"{args.db} exists: give a new path (or none, for a temporary file)")
        if args.profile:
            profile(args)
            return
        print(json.dumps(anyio.run(relay, args, backend=args.backend)), flush=True)


if __name__ == "__main__":
    main()
