"""`chanmux status FILE`: what a bridge is doing, asked of it while it runs, or read from its
database when it is stopped.

Running (its config has `[http] listen` and the listener answers): the live `/status`.
Stopped: what the host kept at its last stop (plugs, links, channels, the copies that were
still queued), plus the received messages its inbox still holds (not done when it stopped or
was killed; they are handed to the hooks again at the next start).

Exit status: 0 running and every plug connected; 1 running with a plug down (degraded); 3 not
running (as `systemctl status` does); 2 the config or database cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import anyio
import sqlalchemy as sa

from .config import listen_address
from .store import sqlite_file

EXIT = {"ok": 0, "degraded": 1, "failed": 1}
NOT_RUNNING = 3


def _ask(listen: str, token: str | None, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running bridge's /status, or None when nothing listens there."""
    host, port = listen_address(listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: ask over loopback
    if ":" in host:
        host = f"[{host}]"
    request = urllib.request.Request(f"http://{host}:{port}/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return {"running": False, "status": "starting or stopping", "plugs": {}, "hooks": {},
                    "channels": {}, "queues": []}
        raise RuntimeError(f"the bridge at {listen} answered /status with HTTP {exc.code}"
                           + (" (is [http] token right?)" if exc.code == 401 else "")) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def _kept(host: Any) -> dict[str, Any] | None:
    """The status the host kept at its last stop, and what its inbox still holds."""
    from .journal import journal_table

    async def read() -> dict[str, Any] | None:
        kept = await host.store.get_state("chanmux", "status")

        def inbox(conn: sa.Connection) -> int:
            count = conn.execute(sa.select(sa.func.count()).select_from(journal_table)
                                 .where(journal_table.c.owner == "inbox")).scalar()
            return int(count or 0)

        waiting = await host.store.transaction(inbox)
        await host.store.run(host.store.dispose)
        if kept is None and not waiting:
            return None
        return {**(kept or {}), "inbox": waiting}

    result: dict[str, Any] | None = anyio.run(read)
    return result


def _ago(iso: str | None, now: float) -> str:
    if not iso:
        return "never"
    try:
        then = time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        return iso
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{iso} ({seconds}s ago)"
    if seconds < 7200:
        return f"{iso} ({seconds // 60} min ago)"
    return f"{iso} ({seconds // 3600} h ago)"


def render(status: dict[str, Any], where: str, now: float | None = None) -> str:
    """The status as a person reads it."""
    now = time.time() if now is None else now
    lines = []
    if status.get("running"):
        lines.append(f"chanmux {status.get('version', '?')}: running, {status.get('status')} ({where})")
    elif "stopped_at" in status:
        lines.append(f"chanmux {status.get('version', '?')}: not running; as it was at its last stop, "
                     f"{_ago(status['stopped_at'], now)} ({where})")
    else:
        lines.append(f"chanmux: {status.get('status', 'not running')} ({where})")
    plugs = status.get("plugs") or {}
    if plugs:
        lines.append("plugs:")
        width = max(len(n) for n in plugs)
        for name, plug in plugs.items():
            extra = f", {plug['connections']} connections" if plug.get("connections", 0) > 1 else ""
            lines.append(f"  {name:<{width}}  {plug.get('state')} since {_ago(plug.get('since'), now)}{extra}")
    links = [(h, label, chans) for h, hook in (status.get("hooks") or {}).items()
             for label, chans in (hook.get("links") or {}).items()]
    if links:
        lines.append("links:")
        for hook, label, chans in links:
            lines.append(f"  {hook}: {label} -> {', '.join(chans)}")
    failed = [n for n, h in (status.get("hooks") or {}).items() if h.get("state") == "failed"]
    if failed:
        lines.append(f"hooks that failed to start: {', '.join(failed)}")
    channels = status.get("channels") or {}
    if channels:
        lines.append("channels:")
        width = max(len(n) for n in channels)
        for name, chan in channels.items():
            lines.append(f"  {name:<{width}}  last received {_ago(chan.get('last_received'), now)}; "
                         f"last relayed {_ago(chan.get('last_relayed'), now)}")
    queues = status.get("queues") or []
    lines.append("queued copies:" if queues else "queued copies: none")
    for q in queues:
        why = f"; waiting: {q['waiting_for']}" if q.get("waiting_for") else ""
        lines.append(f"  {q['hook']} -> {q['target']}: {q['queued']} (oldest {q['oldest_age']:.0f}s){why}")
    if "inbox" in status:
        inbox = status["inbox"]
        lines.append(f"received but not yet relayed (handed on at the next start): {inbox}" if inbox
                     else "received but not yet relayed: none")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from .cli import _load, _registry
    from .config import ConfigError
    from .registry import LoadError

    registry = _registry(args.file)
    try:
        cfg, host = _load(args.file, registry)
    except (ConfigError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status: dict[str, Any] | None = None
    where = ""
    if cfg.http.listen:
        try:
            status = _ask(cfg.http.listen, cfg.http.token)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        where = f"asked http://{cfg.http.listen}/status"
    if status is None:
        path = sqlite_file(cfg.database_url())
        if path is not None and not path.exists():
            print(f"chanmux: not running, and never ran with this config (no database at {path})")
            return NOT_RUNNING
        try:
            status = _kept(host)
        except Exception as exc:  # noqa: BLE001 - one line, whatever the database says
            print(f"error: cannot read the database {host.store.describe()}: {exc}", file=sys.stderr)
            return 2
        where = f"read from {host.store.describe()}"
        if not cfg.http.listen:
            where += "; set [http] listen to see a running bridge"
        if status is None:
            print(f"chanmux: not running; nothing kept from a last stop ({where})")
            return NOT_RUNNING
        status["running"] = False
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        print(render(status, where))
    if not status.get("running"):
        return NOT_RUNNING
    return EXIT.get(str(status.get("status")), 1)
