"""Config builders and waiting helpers shared by the forward tests."""

from __future__ import annotations

from typing import Any

from chanmux.testing import MemoryPlug


def config(forward: dict[str, Any] | None = None, plugs: dict[str, dict[str, Any]] | None = None,
           **hooks: Any) -> dict[str, Any]:
    """Memory plugs a, b, c (channels #a, #b, #c named a, b, c); a forward hook "fwd" with
    keys `forward` (default a -> b and c) and any more hooks given by name."""
    plugs = plugs if plugs is not None else {"a": {}, "b": {}, "c": {}}
    fwd = {"type": "forward", **(forward or {"channels": {"a": ["b", "c"]}})}
    return {
        "plugs": {name: {"type": "memory", **keys} for name, keys in plugs.items()},
        "channels": {name: {"plug": name, "source": f"#{name}"} for name in plugs},
        "hooks": {"fwd": fwd, "rec": {"type": "recorder"}, **hooks},
        "host": {"hook_timeout": 10.0, "reconnect_min": 0.01, "reconnect_max": 0.05},
    }


async def settle(host: Any, timeout: float = 10.0) -> None:
    """Wait until every put, edit and delete has come back as an echo and been handled."""
    rec = host.hooks["rec"]
    mem = [p for p in host.plugs.values() if isinstance(p, MemoryPlug) and p.config.echo]
    names = {p.name for p in mem}

    def done() -> bool:
        expected = sum(len(p.events) for p in mem)
        seen = sum(1 for r in rec.received if r.sent.user is not None and r.sent.user.is_self
                   and r.sent.channel.plug in names)
        return seen >= expected

    while True:
        await rec.wait_until(done, timeout)
        await host.wait_idle(timeout)
        if done():
            return
