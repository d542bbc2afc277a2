"""Shared pieces of the end-to-end suite: the bridge as a subprocess, configs, accounts, waits.

The bridge under test is always `python -m chanmux.cli run CONFIG` in a child process. Its log
(stdout and stderr) is read by a thread into a list, so a test on either anyio backend, or a
module-scoped fixture outside any event loop, can wait on a log line with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import anyio
import httpx

from chanmux_testservers.ircclient import HumanIRC, Line
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse

#: Flood limits high enough that hundreds of lines go out in seconds (the harness's IRC
#: servers do not throttle clients).
FAST_FLOOD = {"flood_burst": 50, "flood_rate": 100.0}
#: Host settings for tests: reconnect quickly after an outage.
FAST_HOST = {"reconnect_min": 0.2, "reconnect_max": 1.0}

LogMatch = str | re.Pattern[str] | Callable[[str], bool]


def uid(n: int = 6) -> str:
    """A short random lowercase id for channel, room and user names."""
    return secrets.token_hex(n)[:n]


# -- TOML ------------------------------------------------------------------------------------


class Inline(dict):
    """A table written inline (`channels = { chat = ["a", "b"] }`) rather than as a section."""


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """A TOML document: nested dicts become [sections], `Inline` dicts inline tables."""
    out: list[str] = []

    def table(path: list[str], body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) or isinstance(v, Inline)}
        tables = {k: v for k, v in body.items() if k not in scalars}
        if path and (scalars or not tables):
            out.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars.items():
            out.append(f"{_key(k)} = {_value(v)}")
        if scalars:
            out.append("")
        for k, v in tables.items():
            table([*path, k], v)

    table([], data)
    return "\n".join(out) + "\n"


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as the bridge's TOML config."""
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def sync_hook(links: dict[str, list[str]], **keys: Any) -> dict[str, Any]:
    """A `type = "sync"` hook linking each label's channels (by config name)."""
    return {"type": "sync", "channels": Inline(links), **keys}


def irc_plug(server: Any, nick: str, *, tls: bool = False, **keys: Any) -> dict[str, Any]:
    """An `irc` plug on a harness server (plaintext, or TLS verified with the test CA)."""
    plug: dict[str, Any] = {"type": "irc", "server": server.host, "nick": nick, "tls": tls}
    if tls:
        plug.update(port=server.tls_port, ca_file=str(server.ca_file))
    else:
        plug.update(port=server.port)
    plug.update(FAST_FLOOD)
    plug.update(keys)
    return plug


def matrix_plug(hs: Synapse, account: Account, rooms: Iterable[str] = (), *,
                token_env: str | None = None, **keys: Any) -> dict[str, Any]:
    """A `matrix` plug for the bridge account; the token can come from an env variable."""
    token = f"${{{token_env}}}" if token_env else account.token
    return {"type": "matrix", "homeserver": hs.base_url, "user_id": account.user_id,
            "access_token": token, "rooms": list(rooms), **keys}


# -- Matrix accounts and rooms (synchronous, usable from module fixtures) ----------------------


@dataclass
class Account:
    user_id: str
    token: str
    password: str
    display: str | None = None


def register(hs: Synapse, localpart: str, display: str | None = None) -> Account:
    """A new Matrix account (and its display name)."""
    password = secrets.token_urlsafe(12)
    user_id, token, _ = hs.register(localpart, password)
    account = Account(user_id, token, password, display)
    if display:
        _cs(hs, token, "PUT", f"/profile/{_q(user_id)}/displayname", {"displayname": display})
    return account


def _q(part: str) -> str:
    return quote(part, safe="")


def _cs(hs: Synapse, token: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    with httpx.Client(timeout=30) as client:
        r = client.request(method, f"{hs.base_url}/_matrix/client/v3{path}", json=body,
                           headers={"Authorization": f"Bearer {token}"})
    if r.status_code >= 400:
        raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text}")
    return r.json() if r.content else {}


def create_room(hs: Synapse, owner: Account, alias: str, name: str | None = None,
                members: Iterable[Account] = ()) -> str:
    """A public room `#alias:server` created by `owner`, joined by `members`; its room id."""
    body = {"preset": "public_chat", "room_alias_name": alias, "name": name or alias}
    room_id = _cs(hs, owner.token, "POST", "/createRoom", body)["room_id"]
    for member in members:
        _cs(hs, member.token, "POST", f"/join/{_q(room_id)}", {})
    return room_id


def alias_of(hs: Synapse, alias: str) -> str:
    return f"#{alias}:{hs.server_name}"


def fresh_database(postgres_url: str) -> str:
    """A new, empty PostgreSQL database on the session's server; its SQLAlchemy URL."""
    import psycopg

    parts = urlsplit(postgres_url)
    name = f"e2e_{uid(10)}"
    admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


@dataclass
class Pair:
    """One test's sync label on a module's shared bridge: an IRC channel and a Matrix room."""

    label: str
    plug: str
    channel: str
    room: str
    alias: str
    overrides: dict[str, Any]


def module_pairs(request: Any, hs: Synapse, owner: Account, members: Iterable[Account],
                 prefix: str) -> dict[str, Pair]:
    """A pair for every test function of the requesting module, by function name. A test's
    `@pytest.mark.label(plug=..., **keys)` picks its IRC plug and per-label sync settings."""
    items = [i for i in request.session.items if i.module is request.module]
    pairs: dict[str, Pair] = {}
    for item in items:
        name = item.originalname
        if name in pairs:
            continue
        marker = item.get_closest_marker("label")
        keys = dict(marker.kwargs) if marker else {}
        plug = keys.pop("plug", "irc")
        label = safe_name(name.removeprefix("test_"))[:20] + uid(4)
        alias = f"{prefix}{label}"
        room = create_room(hs, owner, alias, members=members)
        pairs[name] = Pair(label, plug, f"#{prefix}{label}"[:48], room, alias_of(hs, alias), keys)
    return pairs


def pair_config(pairs: Iterable[Pair], matrix: str = "matrix") -> tuple[dict, dict]:
    """The `[channels]` of the pairs and the sync hook linking each pair on its own label."""
    channels: dict[str, Any] = {}
    links: dict[str, list[str]] = {}
    labels: dict[str, Any] = {}
    for p in pairs:
        channels[f"i-{p.label}"] = {"plug": p.plug, "source": p.channel}
        channels[f"m-{p.label}"] = {"plug": matrix, "source": p.alias}
        links[p.label] = [f"i-{p.label}", f"m-{p.label}"]
        if p.overrides:
            labels[p.label] = p.overrides
    hook = sync_hook(links)
    if labels:
        hook["labels"] = labels
    return channels, hook


# -- the bridge --------------------------------------------------------------------------------


class Bridge:
    """`chanmux run CONFIG` as a child process, with its log lines collected as they come."""

    def __init__(self, config: Path, *, backend: str = "asyncio", plugs: Iterable[str] = (),
                 env: dict[str, str] | None = None, secrets: Iterable[str] = ()) -> None:
        self.config = Path(config)
        self.backend = backend
        self.plugs = list(plugs)
        self.env = dict(env or {})
        self.secrets = [s for s in secrets if s]
        self.lines: list[str] = []
        self.log_path = self.config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[int] = []
        self.exit_codes: list[int | None] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = True

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process (not waiting for it to connect; see `ready`)."""
        assert self.proc is None or self.proc.poll() is not None, "bridge already running"
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self._cond:
            self.starts.append(len(self.lines))
            self.lines.append(f"=== e2e: start #{len(self.starts)} ({self.backend})")
            self._eof = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chanmux.cli", "run", str(self.config), "--backend", self.backend],
            cwd=self.config.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                with self._cond:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean stop) and wait; returns the exit code."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash, nothing gets to clean up."""
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, timeout: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.exit_codes.append(proc.returncode)
        self.proc = None
        return self.exit_codes[-1]

    # -- the log ----------------------------------------------------------------------------

    def since_start(self) -> int:
        return self.starts[-1] if self.starts else 0

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def find(self, match: LogMatch, since: int = 0) -> int | None:
        pred = _log_predicate(match)
        with self._cond:
            for i in range(since, len(self.lines)):
                if pred(self.lines[i]):
                    return i
        return None

    def wait_log_sync(self, match: LogMatch, timeout: float = 30.0, since: int | None = None) -> int:
        """Index of the first log line (from `since`, default this start) matching; raises
        TimeoutError with the log's tail, or RuntimeError if the process ended first."""
        pred = _log_predicate(match)
        start = self.since_start() if since is None else since
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    if pred(self.lines[index]):
                        return index
                    index += 1
                if self._eof:
                    raise RuntimeError(f"bridge exited before logging {match!r}:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no bridge log line {match!r} within {timeout}s:\n{self.tail()}")
                self._cond.wait(left)

    async def wait_log(self, match: LogMatch, timeout: float = 30.0, since: int | None = None) -> int:
        return await anyio.to_thread.run_sync(
            partial(self.wait_log_sync, match, timeout, since), abandon_on_cancel=True)

    def ready_sync(self, timeout: float = 60.0, since: int | None = None) -> None:
        """Wait for "<plug>: connected" of every plug (since this start)."""
        for plug in self.plugs:
            self.wait_log_sync(f"chanmux.host: {plug}: connected", timeout, since)

    async def ready(self, timeout: float = 60.0, since: int | None = None) -> None:
        await anyio.to_thread.run_sync(partial(self.ready_sync, timeout, since),
                                       abandon_on_cancel=True)

    def tail(self, n: int = 60) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def problems(self, allow: Iterable[str | re.Pattern[str]] = (), since: int = 0) -> list[str]:
        """Log lines showing something went wrong: ERROR/CRITICAL records, tracebacks, a
        secret in clear. `allow` lists patterns of lines a test expects."""
        allowed = [re.compile(a) if isinstance(a, str) else a for a in allow]
        bad = []
        with self._cond:
            lines = self.lines[since:]
        for line in lines:
            wrong = (" ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
                     or any(s in line for s in self.secrets))
            if wrong and not any(a.search(line) for a in allowed):
                bad.append(line)
        return bad

    def check_clean(self, allow: Iterable[str | re.Pattern[str]] = ()) -> None:
        bad = self.problems(allow)
        assert not bad, "the bridge logged problems:\n" + "\n".join(bad[:30])
        assert all(code == 0 for code in self.exit_codes if code is not None and code >= 0), (
            f"bridge exit codes {self.exit_codes}:\n{self.tail()}")


def _log_predicate(match: LogMatch) -> Callable[[str], bool]:
    if isinstance(match, str):
        return lambda line: match in line
    if isinstance(match, re.Pattern):
        return lambda line: match.search(line) is not None
    return match


# -- waiting on the humans -------------------------------------------------------------------


async def irc_until(irc: HumanIRC, cond: Callable[[], bool], timeout: float = 20.0,
                    what: str = "condition") -> None:
    """Wait until `cond()` (looking at `irc.lines`) holds, re-checking on every new line."""
    if cond():
        return
    try:
        await irc.wait_for(lambda _line: cond(), timeout=timeout, since=irc.mark())
    except TimeoutError:
        tail = "\n".join(l.raw for l in irc.lines[-15:])
        raise TimeoutError(f"{irc.nick}: {what} not met within {timeout}s; last lines:\n{tail}") from None


async def matrix_until(mx: HumanMatrix, cond: Callable[[], bool], timeout: float = 20.0,
                       what: str = "condition") -> None:
    """Wait until `cond()` (looking at `mx.events`) holds, long-polling /sync meanwhile."""
    deadline = anyio.current_time() + timeout
    while not cond():
        left = deadline - anyio.current_time()
        if left <= 0:
            tail = "\n".join(f"  {e.get('sender')} {e.get('type')} {json.dumps(e.get('content'))[:160]}"
                             for e in mx.events[-12:])
            raise TimeoutError(f"{mx.user_id}: {what} not met within {timeout}s; last events:\n{tail}")
        await mx.sync_once(min(left, 5.0))


def privmsgs(irc: HumanIRC, channel: str, since: int = 0, nick: str | None = None) -> list[Line]:
    """PRIVMSG lines to `channel` received since index `since` (from `nick` if given)."""
    chan = channel.lower()
    return [l for l in irc.lines[since:]
            if l.command == "PRIVMSG" and l.params and l.params[0].lower() == chan
            and (nick is None or (l.nick or "").lower() == nick.lower())]


def room_messages(mx: HumanMatrix, room_id: str, since: int = 0, sender: str | None = None
                  ) -> list[dict[str, Any]]:
    """m.room.message events in `room_id` fetched since index `since` (from `sender` if given),
    edits (m.replace) excluded."""
    out = []
    for e in mx.events[since:]:
        if e.get("room_id") != room_id or e.get("type") != "m.room.message":
            continue
        if sender is not None and e.get("sender") != sender:
            continue
        rel = e.get("content", {}).get("m.relates_to") or {}
        if rel.get("rel_type") == "m.replace":
            continue
        out.append(e)
    return out


def body(event: dict[str, Any]) -> str:
    return event.get("content", {}).get("body", "")


def lines(texts: Iterable[str]) -> list[str]:
    """The lines of `texts`: a Matrix event can hold several IRC lines (a burst merged into
    one event where the bridge was behind), and each counts as the line it was."""
    return [line for text in texts for line in text.split("\n")]


def html(event: dict[str, Any]) -> str:
    return event.get("content", {}).get("formatted_body", "")


def wire_length(line: Line) -> int:
    """Bytes the line took on the wire without its IRCv3 tags, CRLF included (the 512 rule)."""
    raw = line.raw
    if raw.startswith("@"):
        raw = raw.split(" ", 1)[1]
    return len(raw.encode("utf-8")) + 2


@dataclass
class Tally:
    """What one side received of a numbered stream: counts, order and duplicates."""

    sent: list[int]
    received: list[int] = field(default_factory=list)

    @property
    def missing(self) -> list[int]:
        got = set(self.received)
        return [n for n in self.sent if n not in got]

    @property
    def duplicates(self) -> list[int]:
        seen: set[int] = set()
        dups = []
        for n in self.received:
            if n in seen:
                dups.append(n)
            seen.add(n)
        return dups

    @property
    def in_order(self) -> bool:
        firsts: list[int] = []
        seen: set[int] = set()
        for n in self.received:
            if n not in seen:
                firsts.append(n)
                seen.add(n)
        return firsts == sorted(firsts)

    def summary(self) -> dict[str, Any]:
        out = {"sent": len(self.sent), "received": len(self.received),
               "unique": len(set(self.received)), "missing": len(self.missing),
               "duplicates": len(self.duplicates), "in_order": self.in_order}
        if self.missing:
            out["missing_numbers"] = ranges(self.missing)
        if self.duplicates:
            out["duplicate_numbers"] = ranges(self.duplicates)
        return out


def ranges(numbers: Iterable[int]) -> str:
    """1,2,3,7 -> "1-3,7"."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


async def room_history(mx: HumanMatrix, room_id: str) -> list[dict[str, Any]]:
    """Every m.room.message of a room, oldest first, read with /messages (independent of what
    /sync happened to deliver to the test)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    flt = json.dumps({"types": ["m.room.message"]})
    while True:
        params: dict[str, Any] = {"dir": "b", "limit": 1000, "filter": flt}
        if token:
            params["from"] = token
        data = await mx.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
                                params=params)
        chunk = data.get("chunk") or []
        events.extend(chunk)
        if not chunk or not data.get("end") or data.get("end") == token:
            break
        token = data["end"]
    events.reverse()
    return events


async def matrix_find(mx: HumanMatrix, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0,
                      since: int = 0) -> dict[str, Any]:
    """The first event fetched so far (from index `since`) matching `pred`, syncing until one
    comes; unlike `sync_until` it does not move a cursor, so the order of waits does not matter."""
    found: list[dict[str, Any]] = []

    def hit() -> bool:
        for e in mx.events[since:]:
            if pred(e):
                found.append(e)
                return True
        return False

    await matrix_until(mx, hit, timeout)
    return found[0]
