"""`chanmux status FILE`: asked of a running bridge through its listener, or read from the
database of a stopped one."""

from __future__ import annotations

import json
import socket

import anyio
import pytest

from chanmux.testing import run_cli, run_host

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path, listen: bool = True):
    port = free_port()
    mapping = {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"rec": {"type": "recorder"}},
    }
    text = ('[plugs.a]\ntype = "memory"\n[plugs.b]\ntype = "memory"\n'
            '[channels.in]\nplug = "a"\nsource = "#in"\n[channels.out]\nplug = "b"\nsource = "#out"\n'
            '[hooks.rec]\ntype = "recorder"\n')
    if listen:
        mapping["http"] = {"listen": f"127.0.0.1:{port}"}
        text += f'[http]\nlisten = "127.0.0.1:{port}"\n'
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path, mapping


async def status(path, *extra):
    return await anyio.to_thread.run_sync(run_cli, ["status", str(path), *extra])


async def test_status_of_a_running_bridge_then_of_the_stopped_one(tmp_path, capsys):
    path, mapping = write_config(tmp_path)
    async with run_host(mapping, path=path) as host:
        await host.plugs["a"].inject("#in", "hello")
        await host.wait_idle()
        capsys.readouterr()
        assert await status(path) == 0
        out = capsys.readouterr().out
        assert "running, ok (asked http://127.0.0.1:" in out
        assert "  a  active since " in out and "  b  active since " in out
        assert "in   last received 20" in out and "out  last received never" in out
        assert "queued copies: none" in out
        assert await status(path, "--json") == 0
        data = json.loads(capsys.readouterr().out)
        assert data["running"] is True and data["plugs"]["a"]["state"] == "active"
    assert await status(path) == 3
    out = capsys.readouterr().out
    assert "not running; as it was at its last stop" in out and "read from sqlite:///" in out
    assert "  a  active since " in out
    assert "received but not yet relayed: none" in out


async def test_status_without_a_listener_reads_the_database(tmp_path, capsys):
    path, mapping = write_config(tmp_path, listen=False)
    assert await status(path) == 3
    assert "never ran with this config (no database at" in capsys.readouterr().out
    async with run_host(mapping, path=path):
        pass
    assert await status(path) == 3
    out = capsys.readouterr().out
    assert "as it was at its last stop" in out and "set [http] listen to see a running bridge" in out


async def test_status_of_a_bridge_whose_listener_is_gone_reads_what_it_kept(tmp_path, capsys):
    """A configured listener that does not answer (the bridge was stopped or killed) is not an
    error: the status comes from the database."""
    path, mapping = write_config(tmp_path)
    async with run_host(mapping, path=path):
        pass
    assert await status(path) == 3
    assert "as it was at its last stop" in capsys.readouterr().out
