"""What each part of the relay path costs, counted exactly: machine instructions per relayed
message (valgrind's callgrind), on `relay.py`'s workload, with one part at a time replaced by
the least that keeps the relay running; and IMMP 0.12.1 and the bare-asyncio floor counted the
same way.

CPU time on a shared machine drifts by a third from one hour to the next, and a profiler
inflates what it measures unevenly; an instruction count is the same in every run. Each count
is the difference of two runs (`--low` and `--high` messages) over the messages between them,
so start-up and shutdown cancel out. A part's cost is the baseline's count less the count with
that part replaced. The parts are not independent (replacing two can save more or less than
the two alone); what no part names is the interpreter and the event loop carrying the rest.

To turn instructions into time, `relay.py` measured in the same session gives CPU µs per
message for the baseline: time = instructions × (that µs / the baseline's instructions).

What each replacement keeps and drops is in `PARTS`. None of them is something chanmux could
do without: each drops a guarantee (see the descriptions), which is why they are measured and
not shipped.

Needs valgrind. Each run takes about 40 s (under valgrind Python runs ~50 times slower);
`--jobs` runs that many at once (each is one process and one core).

Usage: python benchmarks/costs.py [--parts baseline,echo,...] [--low 1000] [--high 4000]
                                  [--jobs 2] [--compare]
       python benchmarks/costs.py --run PART --messages N   (one run: what valgrind runs)
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: name: (what the replacement drops, what the guarantee is)
PARTS: dict[str, str] = {
    "baseline": "nothing replaced: relay.py as it runs",
    "again": "nothing replaced, counted a second time: how far two counts of the same code "
             "differ (the schedule of tasks is not quite the same from run to run)",
    "echo": "the networks send no copy of a put back: recognising our own copies (the plug's "
            "receive, the host's echo check) is not paid",
    "lanes": "a received message is handed to the sync hook at once, in the plug's task, and "
             "calls are awaited directly (as `caller`): no per-channel lane (order with other "
             "hooks, the watchdog's budget, the hook chain, done callbacks for resume points)",
    "queue": "a copy goes straight to the hook's execute: no delivery queue (the quick check, "
             "attempt bookkeeping, the idempotency key, latency, retry and fall back)",
    "holds": "no delivery hold per copy: a plug's resume point would pass copies not yet "
             "delivered",
    "caller": "each plug or hook method is awaited directly: no lane budget or timeout scope, "
              "no argument filter (a hanging plug would stall its lane for good)",
    "inflight": "puts under way are not tracked per channel: an echo that overtakes its put's "
                "reply would be taken for a new message",
    "cache": "the sync cache keeps nothing: no index of the copies, so no edit, reply, "
             "reaction or delete could find them",
    "render": "each copy is the source message itself: no rendering per target (author names, "
              "fields the target takes)",
    "all": "every part above replaced at once: what is left is the message model, the plugs, "
           "the sync's planning and the event loop",
}


def _hooks() -> list[Any]:
    from chanmux_sync.hook import SyncHook

    made: list[Any] = []
    init = SyncHook.__init__

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    SyncHook.__init__ = record  # type: ignore[method-assign]
    return made


def steady() -> None:
    """What makes a count depend on the clock, turned off. Under valgrind a put takes some
    50 times as long, around the 5 ms past which a delivery queue stops delivering inline and
    hands copies to its own task: which path a copy took changed from run to run, and with
    it the count by tens of thousands of instructions per message. Every run here keeps the
    inline path, as at full speed."""
    from chanmux import queue

    init = queue.DeliveryQueue.__init__

    def quick(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.slow = 3600.0

    queue.DeliveryQueue.__init__ = quick  # type: ignore[method-assign]

    # nor the event-loop watchdog's thread, which wakes by the clock (and under valgrind
    # finds the loop "blocked" and formats its stack)
    import relay

    build = relay.build_config

    def config(args: argparse.Namespace) -> dict[str, Any]:
        made = build(args)
        made.setdefault("host", {})["loop_block_warning"] = 0
        return made

    relay.build_config = config


def patch(part: str) -> None:
    """Replace `part` (see `PARTS`) in this process, before the host starts."""
    from chanmux import host, lanes, queue
    from chanmux.caller import HookCaller
    from chanmux_sync import cache

    replacements: dict[str, Callable[[], None]] = {}

    def echo() -> None:
        pass  # relay.py's --no-echo (see `run_one`)

    def lanes_() -> None:
        made = _hooks()

        async def submit(self: Any, sent: Any, source: Any, primary: bool,
                         on_handled: Any = None, fold: bool = False) -> None:
            await made[0].on_receive(sent, sent if source is None else source, primary)
            if on_handled is not None:
                on_handled()

        lanes.Lanes.submit = submit  # type: ignore[method-assign]
        caller()  # (outside a lane a call is bounded by a cancel scope: dearer than a budget)

    def queue_() -> None:
        async def deliver(self: Any, item: Any) -> None:
            await self._execute(self.channel, item)
            item.finished()

        queue.DeliveryQueue.deliver = deliver  # type: ignore[method-assign]

    def holds() -> None:
        host.Host.hold = staticmethod(lambda: None)  # type: ignore[method-assign,assignment]

    def caller() -> None:
        async def call(self: Any, spec: str, impl: Any, kwargs: dict[str, Any],
                       timeout: float | None) -> Any:
            return await impl.function(**kwargs)

        HookCaller._call = call  # type: ignore[method-assign]

    def inflight() -> None:
        host._Inflight.enter = lambda self, channel: 0  # type: ignore[method-assign]
        host._Inflight.leave = lambda self, channel, seq: None  # type: ignore[method-assign]

    def cache_() -> None:
        cache.SyncCache.record = lambda self, ref, channel, receipts: None  # type: ignore[method-assign]
        cache.SyncCache.remember = lambda self, ref, back=False: ref  # type: ignore[method-assign]

    def render() -> None:
        from chanmux_sync.hook import SyncHook

        SyncHook._render = (  # type: ignore[method-assign]
            lambda self, label, msg, target, policy, context, edited: msg)

    replacements.update(baseline=lambda: None, again=lambda: None, echo=echo, lanes=lanes_, queue=queue_,
                        holds=holds, caller=caller, inflight=inflight, cache=cache_,
                        render=render)
    if part == "all":
        for name, replace in replacements.items():
            if name not in ("all", "lanes"):  # (lanes replaces caller as well)
                replace()
        lanes_()
        return
    replacements[part]()


def run_one(part: str, messages: int) -> None:
    gc.disable()  # as `counted` does
    steady()
    patch(part)
    import relay

    sys.argv = [str(HERE / "relay.py"), "--messages", str(messages)]
    if part in ("echo", "all"):
        sys.argv.append("--no-echo")
    relay.main()


def counted(python: str, script: str, messages: int) -> list[str]:
    """The command that runs `script` of this folder with the garbage collector off.

    Every count is made so: when a collection falls inside one run and not the other, it adds
    as much as 10-40k instructions per message to one count and none to the other, so the
    figures would differ by that much from run to run. On this workload the collector costs
    2-3 µs per message of CPU (`relay.py` prints it as `gc_us_per_msg`)."""
    run = ("import gc, runpy, sys; gc.disable(); sys.argv = sys.argv[1:]; "
           "runpy.run_path(sys.argv[0], run_name='__main__')")
    return [python, "-c", run, str(HERE / script), "--messages", str(messages)]


def instructions(cmd: list[str], out: Path) -> int:
    """Instructions valgrind counted for `cmd` (callgrind's "I refs")."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                          capture_output=True, text=True, env=env)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode}: {tail}")
    return int(found.group(1).replace(",", ""))


def per_message(cmd: Callable[[int], list[str]], low: int, high: int, tmp: str,
                tag: str) -> float:
    counts = [instructions(cmd(n), Path(tmp) / f"{tag}.{n}.out") for n in (low, high)]
    return (counts[1] - counts[0]) / (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--low", type=int, default=1000)
    parser.add_argument("--high", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--compare", action="store_true",
                        help="also count IMMP 0.12.1 (relay_immp.py) and the floor "
                             "(relay_floor.py)")
    parser.add_argument("--run", choices=list(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run, args.messages)
        return
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    if "baseline" not in parts:
        parts.insert(0, "baseline")
    jobs: dict[str, Callable[[int], list[str]]] = {
        part: (lambda n, p=part: [sys.executable, __file__, "--run", p, "--messages", str(n)])
        for part in parts}
    if args.compare:
        from relay import IMMP_REQUIREMENT, IMMP_VENV, ensure_venv

        immp = str(ensure_venv(IMMP_VENV, [IMMP_REQUIREMENT]))
        jobs["immp"] = lambda n: counted(immp, "relay_immp.py", n)
        jobs["floor"] = lambda n: counted(sys.executable, "relay_floor.py", n)
    with tempfile.TemporaryDirectory(prefix="chanmux-costs-") as tmp, \
            ThreadPoolExecutor(args.jobs) as pool:
        found = dict(zip(jobs, pool.map(
            lambda item: per_message(item[1], args.low, args.high, tmp, item[0]),
            jobs.items()), strict=True))
    base = found["baseline"]
    print(f"instructions per relayed message (valgrind, {args.low:,} to {args.high:,} messages "
          "among 3 synced channels)")
    print(f"  {'baseline':10} {base:12,.0f}")
    for part in parts:
        if part == "baseline":
            continue
        cost = base - found[part]
        print(f"  {part:10} {cost:12,.0f}  {cost / base:6.1%}  {PARTS[part]}")
    for other in ("immp", "floor"):
        if other in found:
            print(f"  {other:10} {found[other]:12,.0f}  chanmux / {other} = "
                  f"{base / found[other]:.3f}")


if __name__ == "__main__":
    main()
