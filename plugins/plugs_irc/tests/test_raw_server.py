"""A raw TCP server in the test speaks bad (or no) IRC: the plug survives whatever it sends,
notices a dead connection by PING timeout, and handles servers without CAP."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream, TaskStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanmux.testing import run_host

from irc_helpers import unique

pytestmark = pytest.mark.anyio


class RawClient:
    """One connection the raw server accepted: lines it read, and a way to answer."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self.closed = False
        self._changed = anyio.Event()
        # the test and a task answering the bridge (a served client) both write: one at a time
        # (anyio refuses a second writer while a send waits on a busy socket)
        self._writing = anyio.Lock()

    async def send(self, *lines: str | bytes) -> None:
        async with self._writing:
            for line in lines:
                data = line if isinstance(line, bytes) else line.encode()
                await self.stream.send(data + b"\r\n")

    async def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        with anyio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                if self.closed:
                    raise ConnectionError("client went away")
                await self._changed.wait()

    async def wait_count(self, predicate: Callable[[str], bool], count: int,
                         timeout: float = 10) -> list[str]:
        """Wait until `count` lines read match `predicate`; return them."""
        with anyio.fail_after(timeout):
            while len(found := [line for line in self.lines if predicate(line)]) < count:
                if self.closed:
                    raise ConnectionError("client went away")
                await self._changed.wait()
            return found

    async def line_at(self, index: int) -> str:
        """The `index`th line read, once it is there (ConnectionError if the client goes)."""
        while len(self.lines) <= index:
            if self.closed:
                raise ConnectionError("client went away")
            await self._changed.wait()
        return self.lines[index]

    async def wait_closed(self, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not self.closed:
                await self._changed.wait()

    async def run(self) -> None:
        buffer = b""
        try:
            async for chunk in self.stream:
                buffer += chunk
                *complete, buffer = buffer.split(b"\r\n")
                self.lines.extend(c.decode("utf-8", "replace") for c in complete)
                self._changed.set()
                self._changed = anyio.Event()
        except (anyio.BrokenResourceError, OSError):
            pass
        finally:
            self.closed = True
            self._changed.set()


class RawServer:
    """An anyio TCP listener; each connection becomes a RawClient the test drives."""

    def __init__(self) -> None:
        self.clients: list[RawClient] = []
        self._changed = anyio.Event()
        self.port = 0

    async def serve(self, *, task_status: TaskStatus[int]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(self.port)
        await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        client = RawClient(stream)
        self.clients.append(client)
        self._changed.set()
        self._changed = anyio.Event()
        async with stream:
            await client.run()

    async def client(self, index: int, timeout: float = 10) -> RawClient:
        with anyio.fail_after(timeout):
            while len(self.clients) <= index:
                await self._changed.wait()
        return self.clients[index]


async def register(client: RawClient, channel: str | None = None, cap: bool = False) -> str:
    """Answer a registration like a minimal server (no CAP unless asked); returns the nick."""
    nick_line = await client.wait_for(lambda l: l.startswith("NICK "))
    await client.wait_for(lambda l: l.startswith("USER "))
    nick = nick_line.split()[1]
    if not cap:
        await client.send(":raw.test 421 * CAP :Unknown command")
    await client.send(f":raw.test 001 {nick} :Welcome {nick}!user@raw.host",
                      f":raw.test 005 {nick} CHANTYPES=# NICKLEN=30 :are supported",
                      f":raw.test 376 {nick} :End of MOTD")
    if channel:
        await client.wait_for(lambda l: l.startswith("JOIN "))
        await client.send(f":{nick}!user@raw.host JOIN {channel}",
                          f":raw.test 353 {nick} = {channel} :{nick} @human",
                          f":raw.test 366 {nick} {channel} :End of NAMES")
    return nick


@asynccontextmanager
async def raw_bridge(tmp_path: Any, channel: str | None = None, wait_ready: float | None = None,
                     host_settings: dict[str, Any] | None = None, **extra: Any):
    """A host whose irc plug (with the keys `extra`) connects to a RawServer; the host's
    `[host]` table takes `host_settings` too."""
    async with anyio.create_task_group() as tg:
        server = RawServer()
        port = await tg.start(server.serve)
        plug = {"type": "irc", "server": "127.0.0.1", "port": port, "tls": False,
                "nick": unique("raw"), "flood_rate": 0.0, "join_timeout": 5.0, **extra}
        config = {"plugs": {"irc": plug}, "hooks": {"rec": {"type": "recorder"}},
                  "channels": {"room": {"plug": "irc", "source": channel}} if channel else {},
                  "host": {"reconnect_min": 0.05, "reconnect_max": 0.2, **(host_settings or {})}}
        async with run_host(config, path=tmp_path / "raw.toml", wait_ready=wait_ready) as host:
            yield host, server
        tg.cancel_scope.cancel()


NASTY = [
    b"", b":", b"@", b"@;;; :x!y@z", b"PING", b"PONG", b"001", b":srv 005", b":srv 005 me",
    b":srv 353 me = #fuzz :", b":srv 353 me = #fuzz :@ + !@ a!b@", b":srv 366", b":srv 332 me",
    b"CAP", b"CAP * LS", b"CAP * NEW :sasl", b"CAP * DEL", b"CAP * ACK", b"CAP * NAK :x y",
    b"AUTHENTICATE", b"AUTHENTICATE +", b":a!b@c JOIN", b":a!b@c JOIN #fuzz * :real name",
    b":a!b@c PART", b":a!b@c KICK #fuzz", b":a!b@c KICK", b":a!b@c NICK", b":a!b@c NICK :",
    b":a!b@c TOPIC", b":a!b@c TOPIC #nowhere :x", b":a!b@c QUIT", b":a!b@c PRIVMSG",
    b":a!b@c PRIVMSG #fuzz", b":a PRIVMSG #fuzz :no user part", b"PRIVMSG #fuzz :no source",
    b":a!b@c PRIVMSG #fuzz :\x01", b":a!b@c PRIVMSG #fuzz :\x01ACTION", b":a!b@c PRIVMSG #fuzz :\x01\x01",
    b":a!b@c NOTICE #fuzz :\x01VERSION x\x01", b"@time=garbage;msgid= :a!b@c PRIVMSG #fuzz :bad time",
    b"@+draft/reply :a!b@c PRIVMSG #fuzz :empty reply tag", b"@account :a!b@c PRIVMSG #fuzz :x",
    b":a!b@c PRIVMSG #fuzz :\xff\xfe\xfd invalid utf-8", b"\x00\x01\x02\x03",
    b":\x00!\x00@\x00 PRIVMSG \x00 :\x00",
    b":a!b@c PRIVMSG @#fuzz :statusmsg", b":a!b@c PRIVMSG @ :x", b":a!b@c CHGHOST", b":a!b@c ACCOUNT",
    b":srv 731 me", b":srv 433", b":srv 904", b"ERROR", b":srv BATCH +x netsplit a b",
    b":a!b@c PRIVMSG #fuzz :" + b"\x03" * 5000, b":a!b@c PRIVMSG #fuzz :" + b"x" * 100_000,
    b"\r\r\r", b" " * 1000, b":a!b@c " + b"x " * 5000,
]


def generated_lines() -> list[bytes]:
    """Random protocol-shaped and random-byte lines, drawn with hypothesis."""
    drawn: list[bytes] = []
    word = st.text(st.sampled_from(list("#&@:!;=+ \x01\x02\x03\\abcABC019")), max_size=12)
    shaped = st.builds(
        lambda tags, src, cmd, params: (f"@{tags} " if tags else "") + (f":{src} " if src else "")
        + cmd + " " + " ".join(params),
        word, word, st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "QUIT", "NICK",
                                     "TOPIC", "353", "366", "332", "CAP", "PING", "MODE", "005"]),
        st.lists(word, max_size=5))

    @settings(max_examples=300, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), shaped.map(lambda s: s.encode("utf-8", "replace"))))
    def collect(line: bytes) -> None:
        drawn.append(line.replace(b"\r", b"").replace(b"\n", b""))

    collect()
    return drawn


async def test_malformed_lines_never_crash_the_plug(tmp_path, caplog):
    async with raw_bridge(tmp_path, "#fuzz") as (host, server):
        client = await server.client(0)
        nick = await register(client, "#fuzz")
        await host.wait_ready()
        plug, rec = host.plugs["irc"], host.hooks["rec"]
        for line in NASTY + generated_lines():
            await client.send(line)
        await client.send(f":{nick}!user@raw.host NICK {nick}",   # in case a line renamed us
                          ":human!h@raw.host PRIVMSG #fuzz :still alive")
        got = await rec.wait_for(lambda r: r.sent.text is not None and r.sent.text.plain == "still alive")
        assert got.sent.channel == host.channels["room"]
        assert plug.connections == 1 and not [s for s in rec.states if s[1] == "failed"]
        assert len(server.clients) == 1 and not client.closed
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert not errors, [(r.getMessage(), r.exc_text) for r in errors][:3]


async def test_a_silent_server_is_detected_by_ping_timeout(tmp_path):
    async with raw_bridge(tmp_path, ping_interval=0.3, ping_timeout=0.3) as (host, server):
        first = await server.client(0)
        await register(first)
        await host.wait_ready()
        await first.wait_for(lambda l: l.startswith("PING "))
        second = await server.client(1)   # the plug gave up on the first and came back
        failed = [reason for _, state, reason in host.hooks["rec"].states if state == "failed"]
        assert failed and "ping timeout" in failed[0]
        await first.wait_closed()
        await register(second)
        await host.hooks["rec"].wait_until(lambda: host.plugs["irc"].connections == 2)


async def test_server_password_first_and_no_cap(tmp_path):
    async with raw_bridge(tmp_path, password="s3cret pw") as (host, server):
        client = await server.client(0)
        await register(client)
        await host.wait_ready()
        assert client.lines[0] == "PASS :s3cret pw"
        assert client.lines[1] == "CAP LS 302"
        assert host.plugs["irc"].conn.caps == set()


async def test_sasl_required_but_not_offered_fails_clearly(tmp_path):
    async with raw_bridge(tmp_path, sasl_mechanism="PLAIN", sasl_username="u",
                          sasl_password="p") as (host, server):
        client = await server.client(0)
        await client.wait_for(lambda l: l.startswith("USER "))
        await client.send(":raw.test CAP * LS :multi-prefix")
        await client.wait_for(lambda l: l == "CAP REQ :multi-prefix")
        await client.send(":raw.test CAP * ACK :multi-prefix")
        await host.hooks["rec"].wait_until(lambda: host.hooks["rec"].states)
        (_, state, reason), *_ = host.hooks["rec"].states
        assert state == "failed" and "does not offer SASL" in reason


async def test_what_reaches_the_server_has_no_injected_command(tmp_path):
    from chanmux import Channel, Message, User

    async with raw_bridge(tmp_path, "#fuzz") as (host, server):
        client = await server.client(0)
        await register(client, "#fuzz")
        await host.wait_ready()
        room = host.channels["room"]
        start = len(client.lines)
        evil = "x\r\nQUIT :pwned\rJOIN #evil\nPRIVMSG #evil :y\0z\x00"
        await host.put(room, Message(text=evil, user=User(real_name=evil)))
        await host.put(room, Message(text=evil, action=True, notice=True, user=User(username=evil)))
        await host.put(room, Message(title=evil, user=User(username="u")))
        await host.put(room, Message(joined=[User(real_name=evil)]))
        for source in ("#fuzz\r\nQUIT", "#fuzz QUIT", "#a,#b", "nick\0", ":x"):
            with pytest.raises(ValueError):
                await host.put(Channel("irc", source), Message(text="never"))
        await host.put(room, Message(text="done"))
        await client.wait_for(lambda l: l == "PRIVMSG #fuzz done")
        sent = [l for l in client.lines[start:] if not l.startswith(("PING ", "PONG "))]
        assert all(l.startswith(("PRIVMSG #fuzz :", "NOTICE #fuzz :", "PRIVMSG #fuzz done"))
                   for l in sent), sent
        assert not any("\0" in l or "\r" in l for l in sent)
        name = "xQUIT :pwnedJOIN #evilPRIVMSG #evil :yz"
        body = ["x", "QUIT :pwned", "JOIN #evil", "PRIVMSG #evil :yz"]
        assert sent == [*(f"PRIVMSG #fuzz :<{name}> {b}" for b in body),
                        *(f"NOTICE #fuzz :* {name} {b}" for b in body),
                        f"PRIVMSG #fuzz :* u changed the title to: {name}",
                        f"PRIVMSG #fuzz :* {name} joined", "PRIVMSG #fuzz done"]


async def test_a_message_is_done_only_once_the_server_confirmed_its_line(tmp_path):
    """The plug a message came from learns it is done (and may move its resume point past
    it) only when the server answered a PING sent after the line: written to the socket is
    not enough."""
    from chanmux import Hold, Message, Tracker

    async with raw_bridge(tmp_path, "#held") as (host, server):
        client = await server.client(0)
        await register(client, "#held")
        await host.wait_ready()
        done = anyio.Event()
        tracker = Tracker(done.set)
        handling = Hold(tracker)                # as a lane handling a tracked message
        with handling.active():
            await host.put(host.channels["room"], Message(text="confirm me"))
        handling.release()
        tracker.done()                          # the hooks are done; the line is not yet
        await client.wait_for(lambda l: l.startswith("PRIVMSG #held :confirm me"))
        ping = await client.wait_for(lambda l: l.startswith("PING :chanmux-ack-"))
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        await client.send(f":raw.test PONG raw.test :{ping.split(':', 1)[1]}")
        with anyio.fail_after(10):
            await done.wait()


async def test_a_stop_asks_the_server_to_confirm_and_keeps_nothing_it_confirmed(tmp_path, caplog):
    """At a stop, lines the server got but had not confirmed yet are confirmed by one more
    PING before QUIT, so they are not kept to be said again after the next start; a line
    the server never confirms is kept."""
    import logging

    from chanmux import Message

    caplog.set_level(logging.INFO)
    async with anyio.create_task_group() as tg:
        async with raw_bridge(tmp_path, "#stop") as (host, server):
            client = await server.client(0)
            await register(client, "#stop")
            await host.wait_ready()
            await host.put(host.channels["room"], Message(text="got it"))
            await client.wait_for(lambda l: l.startswith("PING :chanmux-ack-"))  # unanswered

            async def confirm_the_stop() -> None:
                pings = await client.wait_count(lambda l: l.startswith("PING :chanmux-ack-"), 2)
                await client.send(f":raw.test PONG raw.test :{pings[1].split(':', 1)[1]}")

            tg.start_soon(confirm_the_stop)
        kept = [r.getMessage() for r in caplog.records if "unsent lines" in r.getMessage()
                or "not confirmed" in r.getMessage()]
        assert kept == [], kept
    async with raw_bridge(tmp_path, "#stop") as (host, server):
        client = await server.client(0)
        await register(client, "#stop")
        await host.wait_ready()
        await host.put(host.channels["room"], Message(text="after"))
        await client.wait_for(lambda l: l.startswith("PRIVMSG #stop ") and l.endswith("after"))
        assert not [l for l in client.lines if "got it" in l]


async def test_lines_kept_at_a_stop_stay_kept_until_the_server_confirmed_them(tmp_path):
    """Kept lines are sent after the next start, and forgotten only once the server confirmed
    them: a bridge killed before that sends them again after its next start."""
    from chanmux import Message

    async with raw_bridge(tmp_path, "#kept", flood_burst=1, flood_rate=0.5) as (host, server):
        client = await server.client(0)
        await register(client, "#kept")
        await host.wait_ready()
        for word in ("one", "two"):
            await host.put(host.channels["room"], Message(text=word))
        await client.wait_for(lambda l: l.startswith("PRIVMSG #kept one"))
    # this server never confirms: "one" (sent, unconfirmed) and "two" (queued) were kept
    async with raw_bridge(tmp_path, "#kept") as (host, server):
        client = await server.client(0)
        await register(client, "#kept")
        await host.wait_ready()
        plug = host.plugs["irc"]
        await client.wait_for(lambda l: l.startswith("PRIVMSG #kept two"))
        ping = await client.wait_for(lambda l: l.startswith("PING :chanmux-ack-"))
        kept = await plug.unsent.load()
        assert [row["text"] for _key, row in kept] == ["one", "two"]  # sent, not yet confirmed
        await client.send(f":raw.test PONG raw.test :{ping.split(':', 1)[1]}")
        with anyio.fail_after(10):
            await plug.kept_sent.wait()
        await plug.unsent.writer.flush()
        assert await plug.unsent.load() == []


def test_the_close_budget_is_a_share_of_the_hosts_close_timeout():
    """At the default `[host] close_timeout` (10 s) a stop spends 7 s at most on the network,
    4 s of it waiting for the server to confirm lines, as before the setting existed; a
    shorter timeout shortens both, leaving 30% for saving."""
    from chanmux_irc.plug import close_budget

    assert close_budget(10.0) == pytest.approx((7.0, 4.0))
    assert close_budget(1.0) == pytest.approx((0.7, 0.42))
    assert close_budget(60.0) == pytest.approx((42.0, 4.0))


def close_problems(caplog: Any) -> list[str]:
    """Log lines saying a plug or hook did not close (or save its state) in time."""
    return [r.getMessage() for r in caplog.records
            if r.levelname in ("ERROR", "CRITICAL") or "failed to" in r.getMessage()]


async def test_a_stuck_server_cannot_make_a_stop_overrun_a_short_close_timeout(tmp_path, caplog):
    """The plug's time on the network at a stop comes from the host's `[host] close_timeout`:
    with a short one and a server that has stopped answering (no PONG, no goodbye after
    QUIT), the plug still says QUIT and closes within the host's timeout, and the lines the
    server never confirmed (one sent, two queued) are kept and sent after the next start."""
    import logging

    from chanmux import Message

    caplog.set_level(logging.INFO)
    async with raw_bridge(tmp_path, "#stuck", host_settings={"close_timeout": 1.0},
                          flood_burst=1, flood_rate=0.5) as (host, server):
        client = await server.client(0)
        await register(client, "#stuck")
        await host.wait_ready()
        for word in ("one", "two", "three"):
            await host.put(host.channels["room"], Message(text=word))
        await client.wait_for(lambda l: l.startswith("PRIVMSG #stuck one"))
        await host.stop()                      # the server answers nothing from here on
        await client.wait_closed()
        assert any(l.startswith("QUIT") for l in client.lines)
    assert close_problems(caplog) == []
    messages = [r.getMessage() for r in caplog.records]
    assert "kept 3 unsent lines for the next start" in messages, messages
    async with raw_bridge(tmp_path, "#stuck") as (host, server):
        client = await server.client(0)
        await register(client, "#stuck")
        await host.wait_ready()
        kept = await host.plugs["irc"].unsent.load()
        assert [row["text"] for _key, row in kept] == ["one", "two", "three"]
        found = await client.wait_count(lambda l: l.startswith("PRIVMSG #stuck "), 3)
        assert [l.split(" ", 2)[2].lstrip(":") for l in found] == ["one", "two", "three"]


async def test_a_stuck_server_cannot_make_a_puppet_overrun_a_short_close_timeout(tmp_path, caplog):
    """The same for a puppet: its goodbye to a server that stopped answering is cut at the
    plug's network budget too, and its unconfirmed line is kept (sent after the next start
    by the main connection, with its author's name)."""
    import logging

    from chanmux import Message, User

    caplog.set_level(logging.INFO)
    alice = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="Alice")
    async with raw_bridge(tmp_path, "#pup", host_settings={"close_timeout": 1.0},
                          puppets=True) as (host, server):
        client = await server.client(0)
        await register(client, "#pup")
        await host.wait_ready()
        await host.put(host.channels["room"], Message(text="alicesays", user=alice))
        puppet = await server.client(1)
        await register(puppet, "#pup")
        await puppet.wait_for(lambda l: l.startswith("PRIVMSG #pup alicesays"))
        await host.stop()
        await puppet.wait_closed()
        assert any(l.startswith("QUIT") for l in puppet.lines)
    assert close_problems(caplog) == []
    async with raw_bridge(tmp_path, "#pup") as (host, server):
        client = await server.client(0)
        await register(client, "#pup")
        await host.wait_ready()
        line = await client.wait_for(lambda l: l.startswith("PRIVMSG #pup ") and "alicesays" in l)
        assert line == "PRIVMSG #pup :<Alice> alicesays"
