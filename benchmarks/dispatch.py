"""How many on_receive fan-outs per second the host sustains with 1, 4 and 16 hooks.

Each message goes the whole receive path (lane, before_receive, on_receive fan-out to every
hook, each awaited with its own timeout and failure isolation). Prints one JSON line per hook
count. Usage: python benchmarks/dispatch.py [--messages N] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import json
import time
import types

import anyio

from chanmux import Hook, SentMessage, hookimpl
from chanmux.testing import run_host


class CountingHook(Hook):
    count = 0

    async def on_receive(self, sent, source, primary):
        CountingHook.count += 1


def module():
    mod = types.ModuleType("bench_hooks")
    mod.chanmux_hook_types = hookimpl(lambda: {"counting": CountingHook})
    return mod


async def measure(hooks: int, messages: int) -> dict:
    config = {"plugs": {"mem": {"type": "memory"}},
              "hooks": {f"h{i}": {"type": "counting"} for i in range(hooks)}}
    async with run_host(config, modules=[("bench", module())]) as host:
        chan = host.plugs["mem"].channel("#bench")
        batch = [SentMessage(id=str(i), channel=chan, text=f"message {i}") for i in range(messages)]
        CountingHook.count = 0
        start = time.perf_counter()
        for sent in batch:
            await host.receive(sent)
        await host.wait_idle(timeout=600)
        seconds = time.perf_counter() - start
        assert CountingHook.count == hooks * messages
    return {"hooks": hooks, "messages": messages, "seconds": round(seconds, 3),
            "fanouts_per_s": round(messages / seconds), "hook_calls_per_s": round(hooks * messages / seconds)}


async def main(args: argparse.Namespace) -> None:
    for hooks in (1, 4, 16):
        print(json.dumps({"backend": args.backend, **await measure(hooks, args.messages)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args, backend=args.backend)
