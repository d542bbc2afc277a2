"""Connecting, registering and staying connected (real servers): TLS, SASL, nick collisions,
channel types and keys, commands after connecting, and surviving a server crash with
messages queued."""

from __future__ import annotations

import logging
import secrets
import time

import anyio
import pytest
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.tls import TLSAttribute

from chanmux import Message, User
from chanmux_testservers.irc import NgircdServer, _SyncClient, start_ngircd

from irc_helpers import bridge, human, humans, lines_from, sees, unique

pytestmark = pytest.mark.anyio


def failures(host) -> list[str]:
    return [reason or "" for name, state, reason in host.hooks["rec"].states if state == "failed"]


def refusal(reason: str) -> str:
    """The message of an ActionRequired, as the host reports it."""
    return reason.removeprefix("ActionRequired: ")


class PasswordNgircd(NgircdServer):
    """An ngircd that asks every client for a server password (`Password` in [Global])."""

    password = "letmein-" + secrets.token_hex(4)

    def _write_config(self) -> None:
        super()._write_config()
        conf = self.directory / "ngircd.conf"
        conf.write_text(conf.read_text().replace(
            "[Limits]", f"\tPassword = {self.password}\n[Limits]", 1))

    def _wait_ready(self, deadline: float) -> None:
        """The harness's probe registers without a password: this one gives it."""
        while True:
            assert self.process is not None
            if not self.process.running:
                raise self._fail(f"process exited with status {self.process.returncode}")
            try:
                with _SyncClient(self.host, self.port, timeout=2.0) as probe:
                    probe.send(f"PASS {self.password}")
                    probe.register("probe", deadline)
                return
            except (OSError, ConnectionError):
                if time.monotonic() >= deadline:
                    raise self._fail("no 001 with the password") from None
                time.sleep(0.05)  # backoff between connect attempts while it starts


async def test_a_wrong_server_password_says_what_to_change(tmp_path):
    """ngircd answers a wrong or missing password with `ERROR :Access denied: Bad password?`
    and closes: retrying cannot help, so the plug raises ActionRequired saying what to set."""
    server = await anyio.to_thread.run_sync(lambda: PasswordNgircd(tmp_path / "pw").start())
    said = "(ERROR Access denied: Bad password?)"
    try:
        async with bridge(server, tmp_path, password="wrong", wait_ready=None) as host:
            await host.hooks["rec"].wait_until(lambda: failures(host))
            assert refusal(failures(host)[0]) == \
                f"the server refused the password {said}: check plugs.irc.password"
        async with bridge(server, tmp_path, wait_ready=None) as host:
            await host.hooks["rec"].wait_until(lambda: failures(host))
            assert refusal(failures(host)[0]) == \
                f"the server asks for a password {said}: set plugs.irc.password"
        async with bridge(server, tmp_path, password=server.password) as host:
            assert host.plugs["irc"].connections == 1 and not failures(host)
    finally:
        await anyio.to_thread.run_sync(server.close)


async def test_tls_with_the_test_ca(ircd, tmp_path):
    chan = "#" + unique("tls")
    async with bridge(ircd, tmp_path, {"room": chan}, tls=True, port=ircd.tls_port,
                      ca_file=str(ircd.ca_file), wait_ready=None) as host, human(ircd) as a:
        await a.join(chan)
        await host.wait_ready()
        plug = host.plugs["irc"]
        assert plug.conn._stream.extra(TLSAttribute.ssl_object).version().startswith("TLS")
        await host.put(host.channels["room"], Message(text="over tls"))
        await sees(a, plug.nick, lambda s: s.plain == "over tls")


async def test_tls_refuses_a_certificate_it_cannot_verify(ircd, tmp_path):
    async with bridge(ircd, tmp_path, tls=True, port=ircd.tls_port, wait_ready=None) as host:
        await host.hooks["rec"].wait_until(lambda: failures(host))
        assert "CERTIFICATE_VERIFY_FAILED" in failures(host)[0]
        assert host.plugs["irc"].connections == 0


async def test_sasl_plain(inspircd, tmp_path):
    account, password = unique("acct"), "correct-horse-battery"
    await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    chan = "#" + unique("sasl")
    async with bridge(inspircd, tmp_path, {"room": chan}, sasl_mechanism="PLAIN",
                      sasl_username=account, sasl_password=password, wait_ready=None) as host, \
            human(inspircd, caps=["account-tag"]) as a:
        await a.join(chan)
        await host.wait_ready()
        plug = host.plugs["irc"]
        assert plug.conn.account == account
        await host.put(host.channels["room"], Message(text="logged in"))
        line = await a.wait_for(lambda l: l.command == "PRIVMSG" and l.nick == plug.nick)
        assert line.tags["account"] == account
    async with bridge(inspircd, tmp_path, sasl_mechanism="PLAIN", sasl_username=account,
                      sasl_password="wrong password", wait_ready=None) as host:
        await host.hooks["rec"].wait_until(lambda: failures(host))
        # no retry fixes it: the plug says what to change (chanmux.ActionRequired)
        assert refusal(failures(host)[0]) == (
            f"the server refused the SASL PLAIN login of {account} (904 SASL authentication "
            f"failed): check plugs.irc.sasl_username and plugs.irc.sasl_password")
        assert host.plugs["irc"].connections == 0


async def test_sasl_external_with_a_client_certificate(inspircd, tmp_path):
    account, password = unique("ext"), "external-secret"
    await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    cert = await anyio.to_thread.run_sync(inspircd.ca.issue_client_cert, account)
    await anyio.to_thread.run_sync(inspircd.add_certificate, account, password, cert)
    async with bridge(inspircd, tmp_path, tls=True, port=inspircd.tls_port,
                      ca_file=str(inspircd.ca_file), client_cert=str(cert.cert_file),
                      client_key=str(cert.key_file), sasl_mechanism="EXTERNAL") as host:
        assert host.plugs["irc"].conn.account == account


async def test_nick_collision_then_regain_when_the_holder_quits(ircd, tmp_path):
    wanted = unique("taken")
    chan = "#" + unique("nick")
    async with humans(ircd, 2) as (watcher, holder):
        await holder.send_raw(f"NICK {wanted}")
        await holder.wait_for(lambda l: l.command == "NICK" and l.target == wanted)
        await holder.join(chan)
        await watcher.join(chan)
        async with bridge(ircd, tmp_path, {"room": chan}, nick=wanted, nick_regain_interval=0) as host:
            plug = host.plugs["irc"]
            assert plug.nick != wanted and plug.nick.startswith(wanted[:6])
            stand_in = plug.nick
            await holder.quit()
            await watcher.wait_for(lambda l: l.command == "NICK" and l.nick == stand_in
                                   and l.target == wanted)
            await host.put(host.channels["room"], Message(text="it is me again"))
            await sees(watcher, wanted, lambda s: s.plain == "it is me again")
            assert plug.nick == wanted


async def test_nick_regained_later_without_sharing_a_channel(ircd, tmp_path):
    wanted = unique("busy")
    chan = "#" + unique("regain")
    async with humans(ircd, 2) as (watcher, holder):
        await holder.send_raw(f"NICK {wanted}")
        await holder.wait_for(lambda l: l.command == "NICK" and l.target == wanted)
        await watcher.join(chan)
        async with bridge(ircd, tmp_path, {"room": chan}, nick=wanted, nick_regain_interval=0.2) as host:
            stand_in = host.plugs["irc"].nick
            assert stand_in != wanted
            await holder.send_raw(f"NICK {unique('moved')}")
            await watcher.wait_for(lambda l: l.command == "NICK" and l.nick == stand_in
                                   and l.target == wanted, timeout=10)


async def test_every_channel_type_is_joined(ngircd, tmp_path):
    """ngircd's CHANTYPES is #&+: all three kinds are channels (IMMP joined only '#')."""
    chans = {"hash": "#" + unique("h"), "amp": "&" + unique("a"), "plus": "+" + unique("p")}
    async with bridge(ngircd, tmp_path, chans, wait_ready=None) as host, human(ngircd) as a:
        for chan in chans.values():
            await a.join(chan)
        await host.wait_ready()
        plug = host.plugs["irc"]
        assert plug.network.info.chantypes == "#&+"
        for name, chan in chans.items():
            assert await host.channel_is_private(host.channels[name]) is False
            await host.put(host.channels[name], Message(text=f"in {name}"))
            await sees(a, plug.nick, lambda s, n=name: s.plain == f"in {n}", target=chan)


async def test_channel_keys_and_commands_after_connecting(ircd, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    keyed, wrong = "#" + unique("key"), "#" + unique("wrong")
    async with human(ircd) as op:
        for chan, key in ((keyed, "sekrit"), (wrong, "other")):
            await op.join(chan)
            await op.send_raw(f"MODE {chan} +k {key}")
            await op.wait_for(lambda l, c=chan: l.command == "MODE" and l.target == c)
        commands = [f"PRIVMSG {op.nick} :hello from " + "{nick}", "MODE {nick} +i"]
        async with bridge(ircd, tmp_path, {"keyed": keyed, "wrong": wrong}, commands=commands,
                          channel_keys={keyed: "sekrit", wrong: "not it"}) as host:
            plug = host.plugs["irc"]
            await sees(op, plug.nick, lambda s: s.plain == f"hello from {plug.nick}", target=op.nick)
            assert plug.network.channel(keyed) is not None
            assert plug.network.channel(wrong) is None
            assert any(f"cannot join {wrong}" in r.getMessage() for r in caplog.records)
            await host.put(host.channels["keyed"], Message(text="behind the key"))
            await sees(op, plug.nick, lambda s: s.plain == "behind the key", target=keyed)


class Gate:
    """A TCP relay in front of a real server; the test can shut it to new connections (so
    the plug stays down until the test is ready for it to come back)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = True
        self.accepted = 0

    async def serve(self, *, task_status: TaskStatus[int]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(self._relay)

    async def _relay(self, client: SocketStream) -> None:
        async with client:
            if not self.open:
                return
            self.accepted += 1
            try:
                upstream = await anyio.connect_tcp(*self.target)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                async def pipe(src, dst):
                    try:
                        async for chunk in src:
                            await dst.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        pass
                    tg.cancel_scope.cancel()
                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)


def texts(client, nick, chan) -> list[int]:
    return [int(l.text.split()[-1]) for l in lines_from(client, nick, chan) if l.text.startswith("<q> m ")]


async def test_server_killed_and_restarted_while_messages_are_queued(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    server = await anyio.to_thread.run_sync(start_ngircd, tmp_path)
    chan, chan2 = "#" + unique("crash"), "&" + unique("second")
    try:
        async with anyio.create_task_group() as tg:
            gate = Gate(server.host, server.port)
            port = await tg.start(gate.serve)
            async with bridge(server, tmp_path, {"room": chan, "other": chan2}, port=port,
                              flood_burst=2, flood_rate=15.0, ping_interval=5.0) as host:
                plug, room = host.plugs["irc"], host.channels["room"]
                async with human(server) as a:
                    await a.join(chan)
                    await host.hooks["rec"].wait_for(lambda r: r.sent.joined)
                    for i in range(10):
                        await host.put(room, Message(text=f"m {i}", user=User(username="q")))
                    await sees(a, plug.nick, lambda s: s.plain == "<q> m 2")
                    gate.open = False
                    await anyio.to_thread.run_sync(lambda: server.stop(kill=True))
                    before = texts(a, plug.nick, chan)
                for i in range(10, 20):
                    receipts = await host.put(room, Message(text=f"m {i}", user=User(username="q")))
                    assert receipts
                await host.hooks["rec"].wait_until(lambda: failures(host))
                assert plug.queued(), "the queue was dropped"
                await anyio.to_thread.run_sync(server.restart)
                async with human(server) as b:
                    await b.join(chan)
                    await b.join(chan2)
                    gate.open = True
                    await sees(b, plug.nick, lambda s: s.plain == "<q> m 19", timeout=30)
                    after = texts(b, plug.nick, chan)
                    await b.wait_for(lambda l: l.command == "JOIN" and l.nick == plug.nick
                                     and l.target == chan2, since=0)
            tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(server.close)
    # Everything arrived, in order; at most the unconfirmed lines before the crash repeat.
    assert before == list(range(len(before))) and len(before) >= 3
    assert after == list(range(after[0], 20)) and after[0] <= len(before)
    assert plug.connections >= 2
    disconnects = [r.getMessage() for r in caplog.records
                   if r.name == "chanmux.host" and "disconnected" in r.getMessage()]
    assert disconnects and all("reconnecting in" in m for m in disconnects)
    assert "irc: disconnected (" in disconnects[0]


async def test_lines_queued_at_shutdown_are_sent_after_the_next_start(ngircd, tmp_path):
    from chanmux.testing import run_host
    from chanmux_testservers.irc import free_ports

    from irc_helpers import host_config

    nick, chan = unique("keep"), "#" + unique("keep")
    (nowhere,) = free_ports(1)
    down = host_config(ngircd, nick, {"room": chan}, port=nowhere)
    async with run_host(down, path=tmp_path / "keep.toml", wait_ready=None) as host:
        for i in range(3):
            await host.put(host.channels["room"], Message(text=f"kept {i}", user=User(username="q")))
        await host.hooks["rec"].wait_until(lambda: failures(host))
    async with human(ngircd) as a:
        await a.join(chan)
        async with run_host(host_config(ngircd, nick, {"room": chan}), path=tmp_path / "keep.toml"):
            await sees(a, nick, lambda s: s.plain == "<q> kept 2")
            assert [l.text for l in lines_from(a, nick, chan)] == [f"<q> kept {i}" for i in range(3)]
