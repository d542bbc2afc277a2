"""The IRC harness (ngircd, InspIRCd + Anope) and the HumanIRC client against real servers."""

from __future__ import annotations

import itertools
import secrets
import ssl

import anyio
import pytest
from anyio.streams.tls import TLSAttribute

from chanmux_testservers.irc import (
    AccountError,
    InspIRCdServer,
    NgircdServer,
    ServerStartError,
    start_inspircd,
    start_ngircd,
)
from chanmux_testservers.ircclient import ConnectionClosed, HumanIRC, Line, SaslError

pytestmark = pytest.mark.anyio

_counter = itertools.count()

# IRCv3 capabilities the Debian InspIRCd 3 build must offer with our module list.
INSPIRCD_CAPS = {
    "account-notify", "account-tag", "away-notify", "batch", "cap-notify", "chghost",
    "echo-message", "extended-join", "invite-notify", "labeled-response", "message-tags",
    "multi-prefix", "server-time", "setname", "userhost-in-names", "sasl",
}


def unique(prefix: str) -> str:
    """A short unique nick/channel suffix (servers are shared by the session)."""
    return f"{prefix}{next(_counter)}x{secrets.token_hex(2)}"


def privmsg_from(nick: str, text: str):
    return lambda l: l.command == "PRIVMSG" and l.nick == nick and l.text == text


# -- pure parsing ---------------------------------------------------------------------------


def test_line_parse_tags_prefix_and_trailing():
    line = Line.parse(r"@time=2024-01-01T00:00:00.000Z;msgid=a\:b\sc;+draft/x "
                      r":nick!user@host PRIVMSG #chan :hello there")
    assert line.tags == {"time": "2024-01-01T00:00:00.000Z", "msgid": "a;b c", "+draft/x": ""}
    assert (line.nick, line.user, line.host) == ("nick", "user", "host")
    assert line.command == "PRIVMSG"
    assert line.params == ["#chan", "hello there"]
    assert Line.parse("PING :abc").params == ["abc"]
    assert Line.parse(":srv 005 me A=1 B :are supported").params == ["me", "A=1", "B", "are supported"]


# -- both servers ---------------------------------------------------------------------------


async def test_server_facts(ircd):
    assert ircd.running
    assert ircd.host == "127.0.0.1"
    assert ircd.port != ircd.tls_port
    assert ircd.isupport["NICKLEN"] == str(ircd.nicklen) == "30"
    assert ircd.isupport["NETWORK"] == ircd.network
    assert ircd.isupport["CHANTYPES"] == ircd.chantypes
    assert ircd.ca_file.exists()
    assert isinstance(ircd, NgircdServer if ircd.name == "ngircd" else InspIRCdServer)


async def test_two_humans_talk_in_a_channel(ircd):
    chan = "#" + unique("talk")
    alice, bob = unique("alice"), unique("bob")
    async with HumanIRC.connect(ircd.host, ircd.port, alice) as a:
        async with HumanIRC.connect(ircd.host, ircd.port, bob) as b:
            await a.join(chan)
            names = await b.join(chan)
            assert any(n.lstrip("~&@%+") == alice for n in names)
            await a.wait_for(lambda l: l.command == "JOIN" and l.nick == bob)
            await a.privmsg(chan, "hello from alice")
            got = await b.wait_for(privmsg_from(alice, "hello from alice"))
            assert got.target == chan
            await b.privmsg(chan, "hi alice, bob here")
            await a.wait_for(privmsg_from(bob, "hi alice, bob here"))
            await b.privmsg(alice, "a private word")
            direct = await a.wait_for(privmsg_from(bob, "a private word"))
            assert direct.target == alice


async def test_long_nick_and_no_flood_throttling(ircd):
    long_nick = ("n" + unique("L") + "z" * 30)[:30]
    chan = "#" + unique("flood")
    async with HumanIRC.connect(ircd.host, ircd.port, long_nick) as a:
        assert a.nick == long_nick
        async with HumanIRC.connect(ircd.host, ircd.port, unique("reader")) as b:
            await a.join(chan)
            await b.join(chan)
            with anyio.fail_after(10):  # 200 lines at once must arrive promptly, not throttled
                for i in range(200):
                    await a.privmsg(chan, f"burst {i}")
                for i in range(200):
                    await b.wait_for(privmsg_from(long_nick, f"burst {i}"))


async def test_tls_port_with_generated_ca(ircd):
    async with HumanIRC.connect(ircd.host, ircd.tls_port, unique("tls"), tls=True, ca_file=ircd.ca_file) as h:
        assert h.isupport["NICKLEN"] == "30"
        tls_object = h.stream.extra(TLSAttribute.ssl_object)
        assert tls_object.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    # Verification really is on: without the test CA the handshake must fail.
    with pytest.raises(ssl.SSLCertVerificationError):
        async with HumanIRC.connect(ircd.host, ircd.tls_port, unique("notrust"), tls=True,
                                    ssl_context=ssl.create_default_context()):
            pass


async def test_restart_on_same_ports(tmp_path):
    for factory in (start_ngircd, lambda p: start_inspircd(p, services=False)):
        with factory(tmp_path) as server:
            port, tls_port = server.port, server.tls_port
            async with HumanIRC.connect(server.host, server.port, unique("before")) as h:
                await anyio.to_thread.run_sync(server.restart)
                with pytest.raises(ConnectionClosed):
                    await h.wait_for(lambda l: False, timeout=10)
            assert (server.port, server.tls_port) == (port, tls_port)
            async with HumanIRC.connect(server.host, server.port, unique("after")) as h:
                assert h.isupport["NETWORK"] == server.network
            await anyio.to_thread.run_sync(lambda: server.restart(kill=True))
            async with HumanIRC.connect(server.host, server.tls_port, unique("afterkill"), tls=True,
                                        ca_file=server.ca_file):
                pass


# -- InspIRCd + Anope -----------------------------------------------------------------------


async def test_inspircd_offers_ircv3_caps_and_sasl(inspircd):
    assert INSPIRCD_CAPS <= set(inspircd.caps), sorted(INSPIRCD_CAPS - set(inspircd.caps))
    assert set(inspircd.caps["sasl"].split(",")) >= {"PLAIN", "EXTERNAL"}
    chan = "#" + unique("v3")
    caps = ["message-tags", "server-time", "echo-message", "batch", "labeled-response", "account-tag"]
    async with HumanIRC.connect(inspircd.host, inspircd.port, unique("v3a"), caps=caps) as a:
        assert set(caps) <= a.enabled_caps
        async with HumanIRC.connect(inspircd.host, inspircd.port, unique("v3b"), caps=caps) as b:
            await a.join(chan)
            await b.join(chan)
            await a.privmsg(chan, "tagged", tags={"+chanmux/test": "a;b c"})
            echo = await a.wait_for(privmsg_from(a.nick, "tagged"))  # echo-message
            got = await b.wait_for(privmsg_from(a.nick, "tagged"))
            assert got.tags["+chanmux/test"] == "a;b c"
            assert "time" in got.tags and "msgid" in got.tags
            assert got.tags["msgid"] == echo.tags["msgid"]


async def test_nickserv_register_then_sasl_plain(inspircd):
    account = unique("acct")
    password = "correct-horse-battery"
    reply = await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    assert reply == f"Nickname {account} registered."
    with pytest.raises(AccountError):
        await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    async with HumanIRC.connect(inspircd.host, inspircd.port, unique("sasl"), sasl=(account, password)) as h:
        assert h.account == account
        assert any(l.command == "903" for l in h.lines)
    with pytest.raises(SaslError, match="904"):
        async with HumanIRC.connect(inspircd.host, inspircd.port, unique("bad"), sasl=(account, "wrong-password")):
            pass


async def test_account_tag_and_sasl_over_tls(inspircd):
    account, password = unique("tagged"), "another-secret-pw"
    await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    chan = "#" + unique("acc")
    async with HumanIRC.connect(inspircd.host, inspircd.tls_port, unique("s"), tls=True, ca_file=inspircd.ca_file,
                                sasl=(account, password)) as a:
        async with HumanIRC.connect(inspircd.host, inspircd.port, unique("o"), caps=["account-tag"]) as b:
            await a.join(chan)
            await b.join(chan)
            await a.privmsg(chan, "who am i")
            got = await b.wait_for(privmsg_from(a.nick, "who am i"))
            assert got.tags["account"] == account


async def test_sasl_external_with_client_certificate(inspircd):
    account, password = unique("ext"), "external-secret"
    await anyio.to_thread.run_sync(inspircd.register_account, account, password)
    cert = await anyio.to_thread.run_sync(inspircd.ca.issue_client_cert, account)
    reply = await anyio.to_thread.run_sync(inspircd.add_certificate, account, password, cert)
    assert cert.fingerprint_sha256 in reply
    async with HumanIRC.connect(inspircd.host, inspircd.tls_port, unique("e"), tls=True, ca_file=inspircd.ca_file,
                                client_cert=(cert.cert_file, cert.key_file), sasl="EXTERNAL") as h:
        assert h.account == account


async def test_inspircd_restart_keeps_services_and_accounts(tmp_path):
    with start_inspircd(tmp_path, services=True) as server:
        account, password = unique("keep"), "persist-me-please"
        await anyio.to_thread.run_sync(server.register_account, account, password)
        # IRCd crash (kill -9): Anope keeps running and relinks.
        await anyio.to_thread.run_sync(lambda: server.restart(kill=True))
        assert "sasl" in server.caps
        async with HumanIRC.connect(server.host, server.port, unique("k1"), sasl=(account, password)) as h:
            assert h.account == account
        # Graceful restart of both; the account survives in Anope's database.
        await anyio.to_thread.run_sync(lambda: server.restart(restart_services=True))
        async with HumanIRC.connect(server.host, server.port, unique("k2"), sasl=(account, password)) as h:
            assert h.account == account


# -- failure reporting ----------------------------------------------------------------------


class BrokenInspIRCd(InspIRCdServer):
    """An InspIRCd whose config loads a module that does not exist."""

    def _write_config(self) -> None:
        super()._write_config()
        with open(self.directory / "inspircd.conf", "a") as conf:
            conf.write('<module name="chanmux_no_such_module">\n')


def test_startup_failure_reports_the_server_log(tmp_path):
    server = BrokenInspIRCd(tmp_path, services=False, start_timeout=20)
    with pytest.raises(ServerStartError) as failure:
        server.start()
    message = str(failure.value)
    assert "did not start" in message
    assert "chanmux_no_such_module" in message  # InspIRCd's own complaint, from the log tail
    assert not server.running
