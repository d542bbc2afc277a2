"""Operating a bridge between real servers: the metrics move as messages flow, health and
`chanmux status` follow an IRC server outage, and SIGHUP reopens the log file without
stopping anything.

A real `chanmux run` between ngircd and Synapse, with `[http] listen` on a free port; the test
scrapes it as Prometheus would and runs `chanmux status` as an operator would. asyncio only,
as test_failures.py says why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio
import pytest

from chanmux_testservers.irc import start_ngircd
from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import Bridge, alias_of, create_room, register, uid, write_config
from streams import BATCH, Stream, two_way_config

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def get(port: int, path: str) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
    return await anyio.to_thread.run_sync(fetch)


def sample(text: bytes, name: str, **labels: str) -> float:
    """One sample of a Prometheus exposition (0 when the series is absent)."""
    for line in text.decode().splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(3))
    return 0.0


async def metrics(port: int) -> bytes:
    status, text = await get(port, "/metrics")
    assert status == 200
    return text


async def status_cli(config: Path) -> tuple[int, str]:
    def run() -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "chanmux.cli", "status", str(config)],
                              capture_output=True, text=True, timeout=60, cwd=config.parent)
        return done.returncode, done.stdout + done.stderr
    return await anyio.to_thread.run_sync(run)


async def test_metrics_health_and_status_follow_an_irc_outage(synapse, tmp_path):
    hs = synapse
    tag = f"op{uid()}"
    ircd = await anyio.to_thread.run_sync(start_ngircd, tmp_path)
    port = free_port()
    try:
        alice = register(hs, f"{tag}a", "Alice M")
        bot = register(hs, f"{tag}bridge")
        room = create_room(hs, alice, tag)
        channel = f"#{tag}"
        config = two_way_config(ircd, tag, hs, bot, channel, alias_of(hs, tag))
        config["http"] = {"listen": f"127.0.0.1:{port}"}
        path = write_config(tmp_path / "bridge.toml", config)
        bridge = Bridge(path, plugs=["irc", "matrix"], secrets=[bot.token, bot.password])
        bridge.start()
        try:
            await bridge.ready()
            async with HumanMatrix(hs.base_url, alice.user_id, alice.token) as mx, \
                    HumanIRC.connect(ircd.host, ircd.port, f"p{uid(7)}") as irc:
                s = Stream(mx, room, channel, tag, bot.user_id)
                s.irc = irc
                await irc.join(channel)
                await mx.catch_up()
                before = await metrics(port)
                await s.batch()
                after = await metrics(port)
                # what IRC people said was received from irc and relayed to matrix, and back
                got = sample(after, "chanmux_messages_received_total", plug="irc", channel="i")
                assert got - sample(before, "chanmux_messages_received_total", plug="irc", channel="i") >= BATCH
                sent = sample(after, "chanmux_messages_relayed_total", plug="matrix", channel="m", kind="put")
                assert sent - sample(before, "chanmux_messages_relayed_total", plug="matrix", channel="m",
                                     kind="put") >= BATCH
                assert sample(after, "chanmux_messages_relayed_total", plug="irc", channel="i",
                              kind="put") >= BATCH
                assert sample(after, "chanmux_plug_up", plug="irc") == 1
                assert sample(after, "chanmux_db_batch_rows_count", writer="sync:sync") > 0
                status, body = await get(port, "/health")
                assert status == 200 and json.loads(body)["status"] == "ok"

                mark = bridge.mark()
                await anyio.to_thread.run_sync(lambda: ircd.stop(kill=True))
                await bridge.wait_log("irc: disconnected", since=mark)
                text = await metrics(port)
                assert sample(text, "chanmux_plug_up", plug="irc") == 0
                assert sample(text, "chanmux_plug_state", plug="irc", state="active") == 0
                health = json.loads((await get(port, "/health"))[1])
                assert health["status"] == "degraded" and health["down"] == ["irc"]

                await s.say_matrix(3)   # these wait for IRC
                await bridge.wait_log("sync: cannot deliver to", since=mark, timeout=60)
                code, out = await status_cli(path)
                assert code == 1, out
                assert "running, degraded" in out
                assert re.search(r"  irc\s+(failed|starting) since ", out), out
                assert "  sync: chat -> i, m" in out
                assert re.search(r"  sync -> i: [1-9]\d* \(oldest \d+s\); waiting: ", out), out
                text = await metrics(port)
                assert sample(text, "chanmux_delivery_queue_depth", hook="sync", target="i") >= 1
                assert sample(text, "chanmux_delivery_queue_waiting", hook="sync", target="i") == 1

                os.kill(bridge.pid, signal.SIGSTOP)   # rejoin as a person before the bridge does
                try:
                    await anyio.to_thread.run_sync(ircd.start)
                    async with HumanIRC.connect(ircd.host, ircd.port, f"q{uid(7)}") as irc2:
                        await irc2.join(channel)
                        os.kill(bridge.pid, signal.SIGCONT)
                        await bridge.wait_log("chanmux.host: irc: connected", since=mark, timeout=60)
                        s.irc = irc2
                        await s.batch()
                        assert set(range(s.m - BATCH - 3, s.m)) <= set(s.on_irc(irc2))
                finally:
                    os.kill(bridge.pid, signal.SIGCONT)
                health = json.loads((await get(port, "/health"))[1])
                assert health["status"] == "ok"
                text = await metrics(port)
                assert sample(text, "chanmux_plug_connections_total", plug="irc") == 2
                assert sample(text, "chanmux_delivery_queue_depth", hook="sync", target="i") == 0
                code, out = await status_cli(path)
                assert code == 0 and "running, ok" in out and "queued copies: none" in out, out
        finally:
            bridge.stop()
        code, out = await status_cli(path)
        assert code == 3 and "not running; as it was at its last stop" in out, out
        bridge.check_clean()
    finally:
        await anyio.to_thread.run_sync(ircd.close)


async def until_healthy(port: int, timeout: float = 60.0) -> None:
    """Until /health says ok (the bridge logs to a file here, so its log is not watched)."""
    with anyio.fail_after(timeout):
        while True:
            try:
                status, body = await get(port, "/health")
                if status == 200 and json.loads(body)["status"] == "ok":
                    return
            except OSError:
                pass  # not listening yet
            await anyio.sleep(0.1)


async def test_sighup_reopens_the_log_file_and_the_bridge_keeps_relaying(synapse, ngircd, tmp_path):
    """logrotate's way: the log file is renamed away, then SIGHUP. The bridge opens a new file
    at the configured path, says so there, and relays as before."""
    hs = synapse
    tag = f"hu{uid()}"
    port = free_port()
    alice = register(hs, f"{tag}a", "Alice M")
    bot = register(hs, f"{tag}bridge")
    room = create_room(hs, alice, tag)
    channel = f"#{tag}"
    log_file = tmp_path / "bridge-file.log"
    config = two_way_config(ngircd, tag, hs, bot, channel, alias_of(hs, tag))
    config["http"] = {"listen": f"127.0.0.1:{port}"}
    config["logging"] = {"level": "INFO", "file": str(log_file)}
    path = write_config(tmp_path / "bridge.toml", config)
    bridge = Bridge(path, plugs=["irc", "matrix"], secrets=[bot.token, bot.password])
    bridge.start()
    try:
        await until_healthy(port)
        async with HumanMatrix(hs.base_url, alice.user_id, alice.token) as mx, \
                HumanIRC.connect(ngircd.host, ngircd.port, f"p{uid(7)}") as irc:
            s = Stream(mx, room, channel, tag, bot.user_id)
            s.irc = irc
            await irc.join(channel)
            await mx.catch_up()
            await s.batch()
            rotated = log_file.with_name("bridge-file.log.1")
            log_file.rename(rotated)
            os.kill(bridge.pid, signal.SIGHUP)
            await s.batch()     # relayed both ways after the SIGHUP
            assert bridge.running
    finally:
        code = bridge.stop()
    assert code == 0, bridge.tail()
    before, after = rotated.read_text(), log_file.read_text()
    assert "chanmux.host: irc: connected" in before and "SIGHUP" not in before
    assert after.splitlines()[0].endswith(f"received SIGHUP; reopened the log file {log_file}")
    assert after.splitlines()[-1].endswith("chanmux.host: stopped")
    assert " ERROR " not in before + after and "Traceback" not in before + after
