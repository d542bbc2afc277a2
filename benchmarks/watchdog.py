"""What the event-loop watchdog costs a healthy loop: CPU while idle, and yielding steps.

For each backend, four runs: no watchdog; a bare task that only sleeps 0.25 s in a loop
(what waking the loop 4 times a second costs by itself, the reference for the next run);
`LoopWatchdog(1.0)` (the default `[host] loop_block_warning`, ticking every 0.25 s); and
`LoopWatchdog(0.2)` (ticking every 0.05 s).
Each run first watches an idle loop for --seconds and measures the process's CPU time
(`time.process_time`, every thread: the loop's ticks and the watchdog's thread) per second
of watching; then counts how many `await anyio.sleep(0)` steps the loop makes in
--busy seconds. Prints one JSON line per run:
{"backend", "run", "idle_cpu_ms_per_s", "ticks", "busy_steps_per_s", "blocked"}.

Usage: python benchmarks/watchdog.py [--seconds 10] [--busy 2] [--backend asyncio|trio|both]
"""

from __future__ import annotations

import argparse
import json
import time

import anyio

from chanmux.watchdog import LoopWatchdog


async def measure(run: str, seconds: float, busy: float) -> dict[str, object]:
    watchdog = LoopWatchdog(float(run.split()[1])) if run.startswith("watchdog") else None
    ticks = 0

    def count(lag: float) -> None:
        nonlocal ticks
        ticks += 1

    async def bare() -> None:
        while True:
            await anyio.sleep(0.25)
            count(0.0)

    async with anyio.create_task_group() as tg:
        if watchdog is not None:
            watchdog.on_lag = count
            await tg.start(watchdog.run)
        elif run == "bare sleep 0.25":
            tg.start_soon(bare)
        cpu = time.process_time()
        await anyio.sleep(seconds)
        idle_cpu = time.process_time() - cpu
        steps = 0
        start = time.perf_counter()
        end = start + busy
        while time.perf_counter() < end:
            steps += 1
            await anyio.sleep(0)
        busy_seconds = time.perf_counter() - start
        tg.cancel_scope.cancel()
    return {"run": run, "idle_cpu_ms_per_s": round(1000 * idle_cpu / seconds, 4),
            "ticks": ticks, "busy_steps_per_s": round(steps / busy_seconds),
            "blocked": watchdog.blocked if watchdog is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--busy", type=float, default=2.0)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    for backend in backends:
        for run in ("none", "bare sleep 0.25", "watchdog 1.0", "watchdog 0.2"):
            figures = anyio.run(measure, run, args.seconds, args.busy, backend=backend)
            print(json.dumps({"backend": backend, **figures}), flush=True)


if __name__ == "__main__":
    main()
