"""Config builders and waiting helpers shared by the sync tests."""

from __future__ import annotations

from typing import Any

from chanmux.testing import MemoryPlug


def config(channels: dict[str, list[str]] | None = None, plugs: dict[str, dict[str, Any]] | None = None,
           **sync: Any) -> dict[str, Any]:
    """Memory plugs a, b, c (one channel each: #a, #b, #c) synced under label "main" unless told
    otherwise; `plugs` gives keys of each memory plug; `sync` gives keys of the sync hook."""
    plugs = plugs if plugs is not None else {"a": {}, "b": {}, "c": {}}
    sync.setdefault("channels", channels or {"main": sorted(plugs)})
    return {
        "plugs": {name: {"type": "memory", **keys} for name, keys in plugs.items()},
        "channels": {name: {"plug": name, "source": f"#{name}"} for name in plugs},
        "hooks": {"sync": {"type": "sync", **sync}, "rec": {"type": "recorder"}},
        "host": {"hook_timeout": 10.0, "reconnect_min": 0.01, "reconnect_max": 0.05},
    }


async def settle(host: Any, timeout: float = 10.0) -> None:
    """Wait until every put, edit and delete of the memory plugs has come back as an echo and
    every received message has been handled (so nothing more is on its way)."""
    rec = host.hooks["rec"]
    mem = [p for p in host.plugs.values() if isinstance(p, MemoryPlug) and p.config.echo]

    def done() -> bool:
        expected = sum(len(p.events) for p in mem)
        seen = sum(1 for r in rec.received if r.sent.user is not None and r.sent.user.is_self
                   and r.sent.channel.plug in {p.name for p in mem})
        return seen >= expected

    syncs = [h for h in host.hooks.values() if hasattr(h, "delivered")]
    while True:
        for sync in syncs:
            await sync.delivered(timeout)
        await rec.wait_until(done, timeout)
        await host.wait_idle(timeout)
        if done() and all(c.idle or c.down for s in syncs for c in s.queues.values()):
            return


def user(plug: Any, username: str, real_name: str | None = None) -> Any:
    return plug.user(username, real_name)
