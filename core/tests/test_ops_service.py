"""`chanmux run` under a service manager: systemd's notify protocol spoken to a unix datagram
socket the test listens on, as systemd does for a `Type=notify` unit; and the unit file
itself, checked by `systemd-analyze verify`.

Each test runs the real command on the test's anyio backend (`--backend`), with plug types
of a throwaway plugin package that wait for a line on standard input, so that the test
decides when a plug connects or finishes closing."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from chanmux.service import Notifier
from chanmux.testing import make_host

from core_helpers import FIRST_PARTY
from test_registry import fake_dist

CHANMUX_COMMAND = os.path.join(os.path.dirname(sys.executable), "chanmux")
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "examples" / "deploy"
#: Only core and the throwaway package: a quick start wherever these tests run.

GATED = """
    import os
    import sys

    import anyio
    import attrs

    from chanmux import hookimpl
    from chanmux.testing import MemoryConfig, MemoryPlug

    if os.environ.get("GATE_IMPORT"):  # hold the start-up while the plugins load
        print("gate: importing, waiting for a line", file=sys.stderr, flush=True)
        sys.stdin.readline()


    @attrs.frozen
    class GatedConfig(MemoryConfig):
        gate: str = "open"


    class GatedPlug(MemoryPlug):
        \"\"\"A memory plug that connects (gate = "open") or finishes closing (gate =
        "close") once a line arrives on standard input.\"\"\"

        Config = GatedConfig

        async def _line(self, what):
            self.log.info("waiting for a line before %s", what)
            await anyio.wait_readable(sys.stdin.fileno())
            os.read(sys.stdin.fileno(), 100)

        async def open(self):
            if self.config.gate == "open":
                await self._line("connecting")
            await super().open()

        async def close(self):
            await super().close()
            if self.config.gate == "close":
                await self._line("closing")


    @hookimpl
    def chanmux_plug_types():
        return {"gated": GatedPlug}
"""


def write_bridge(tmp_path, *, gate=None, logging="", name="bridge.toml"):
    """A config of one memory plug, `lobby`, and with `gate` a gated plug `slow` too; the
    throwaway package providing `gated` is written beside it."""
    if not (tmp_path / "gated_plugin_mod.py").exists():
        fake_dist(tmp_path, "gated-plugin", [], GATED, "gated_plugin_mod")
    text = f'[logging]\nlevel = "INFO"\n{logging}\n[plugs.lobby]\ntype = "memory"\n'
    if gate:
        text += f'\n[plugs.slow]\ntype = "gated"\ngate = "{gate}"\n'
    path = tmp_path / name
    path.write_text(text)
    return path


class Bridge:
    """A running `chanmux run`: its standard error read as it comes, a line waited for."""

    def __init__(self, proc):
        self.proc = proc
        self.log = ""
        self._more = anyio.Event()
        self.ended = anyio.Event()

    async def _read(self):
        async for chunk in self.proc.stderr:
            self.log += chunk.decode()
            self._more.set()
            self._more = anyio.Event()
        self.ended.set()
        self._more.set()

    async def line(self, text, timeout=30, count=1):
        """Wait until standard error has `count` lines containing `text`; return the last."""
        with anyio.fail_after(timeout):
            while True:
                found = [line for line in self.log.splitlines() if text in line]
                if len(found) >= count:
                    return found[count - 1]
                if self.ended.is_set():
                    raise AssertionError(f"the bridge ended before saying {text!r}:\n{self.log}")
                await self._more.wait()

    @property
    def running(self):
        return self.proc.returncode is None

    def signal(self, signum):
        self.proc.send_signal(signum)

    async def say(self, text="go\n"):
        await self.proc.stdin.send(text.encode())

    async def wait(self, timeout=60):
        with anyio.fail_after(timeout):
            code = await self.proc.wait()
            await self.ended.wait()
        return code


@contextlib.asynccontextmanager
async def bridge(tmp_path, config, backend, env=None, args=()):
    """Run `chanmux run CONFIG` on `backend`; leaving the block kills what is left of it."""
    environ = {**os.environ, "CHANMUX_DISABLE_PLUGINS": FIRST_PARTY,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                           os.environ.get("PYTHONPATH")]))}
    environ.pop("NOTIFY_SOCKET", None)
    environ.update(env or {})
    proc = await anyio.open_process([CHANMUX_COMMAND, "run", "--backend", backend, *args,
                                     str(config)], env=environ)
    run = Bridge(proc)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run._read)
            yield run
            await run.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
        with anyio.CancelScope(shield=True):
            await proc.aclose()


class Listener:
    """The service manager's side: a unix datagram socket, each datagram read as the
    `KEY=VALUE` lines systemd reads from it."""

    def __init__(self, tmp_path, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        if abstract:
            name = f"chanmux-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.address = f"@{name}"
        else:
            self.address = str(tmp_path / "notify.sock")
            self.sock.bind(self.address)
        self.seen = []

    @property
    def env(self):
        return {"NOTIFY_SOCKET": self.address}

    async def next(self, timeout=30):
        with anyio.fail_after(timeout):
            await anyio.wait_readable(self.sock)
        data = self.sock.recv(65536).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines() if line)
        self.seen.append(fields)
        return fields

    async def until(self, key, value=None, timeout=30):
        """Read datagrams until one has `key` (equal to `value`, or matching it if a
        compiled pattern); return it."""
        with anyio.fail_after(timeout):
            while True:
                fields = await self.next()
                got = fields.get(key)
                if got is not None and (value is None or got == value
                                        or (isinstance(value, re.Pattern) and value.search(got))):
                    return fields

    def close(self):
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    made = []

    def make(abstract=False):
        made.append(Listener(tmp_path, abstract))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.mark.anyio
async def test_ready_comes_once_every_plug_is_connected_and_stopping_at_sigterm(
        tmp_path, anyio_backend, listener):
    manager = listener()
    config = write_bridge(tmp_path, gate="open")
    async with bridge(tmp_path, config, anyio_backend, env=manager.env) as run:
        waiting = await manager.until("STATUS", "1 of 2 plugs connected; waiting for slow "
                                                "(connecting)")
        await run.line("slow: waiting for a line before connecting")
        assert "READY" not in waiting and all("READY" not in f for f in manager.seen)
        assert "lobby: connected" in run.log and "slow: connected" not in run.log
        await run.say()  # now the slow plug connects
        ready = await manager.until("READY", "1")
        assert ready["STATUS"] == "running: 2 plugs connected"
        await run.line("slow: connected")
        run.signal(signal.SIGTERM)
        stopping = await manager.until("STOPPING", "1")
        assert stopping["STATUS"].startswith("stopping")
        code = await run.wait()
    assert code == 0, run.log
    assert [f for f in manager.seen if "READY" in f] == [ready]
    assert manager.seen[0] == {"STATUS": "starting: opening the database and the hooks"}
    assert "Traceback" not in run.log and "NOTIFY_SOCKET" not in run.log


@pytest.mark.anyio
async def test_abstract_socket_and_sighup_is_a_reload_systemctl_can_wait_for(
        tmp_path, anyio_backend, listener):
    """`@name` is a socket in the abstract namespace; after READY=1, SIGHUP (what
    `systemctl reload` sends through ExecReload) is RELOADING=1, then READY=1 once done."""
    manager = listener(abstract=True)
    config = write_bridge(tmp_path)
    async with bridge(tmp_path, config, anyio_backend, env=manager.env) as run:
        ready = await manager.until("READY", "1")
        assert ready["STATUS"] == "running: 1 plug connected"
        run.signal(signal.SIGHUP)
        reloading = await manager.until("RELOADING", "1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        again = await manager.next()
        assert again == {"READY": "1", "STATUS": "running: 1 plug connected"}
        await run.line("received SIGHUP; there is no log file to reopen")
        assert run.running
        run.signal(signal.SIGTERM)
        await manager.until("STOPPING", "1")
        code = await run.wait()
    assert code == 0, run.log


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["missing file", "abstract name nobody bound"])
async def test_an_unreachable_notify_socket_is_one_warning_and_the_bridge_runs(
        tmp_path, anyio_backend, where):
    address = (str(tmp_path / "nowhere" / "notify.sock") if where == "missing file"
               else f"@chanmux-test-nobody-{uuid.uuid4().hex}")
    config = write_bridge(tmp_path)
    async with bridge(tmp_path, config, anyio_backend, env={"NOTIFY_SOCKET": address}) as run:
        await run.line("lobby: connected")
        run.signal(signal.SIGHUP)
        await run.line("received SIGHUP")
        run.signal(signal.SIGTERM)
        code = await run.wait()
    assert code == 0, run.log
    warnings = [line for line in run.log.splitlines() if "NOTIFY_SOCKET" in line]
    assert len(warnings) == 1, run.log
    assert f"WARNING chanmux.service: NOTIFY_SOCKET={address}: cannot tell the service manager" \
        in warnings[0]
    assert ("FileNotFoundError" if where == "missing file" else "ConnectionRefusedError") \
        in warnings[0]
    assert "stopped" in run.log and "Traceback" not in run.log


def test_without_notify_socket_nothing_is_sent():
    quiet = Notifier.from_environ({})
    assert not quiet.enabled
    assert quiet.send(READY="1", STATUS="x") is False
    quiet.stop()
    assert quiet.send(STOPPING="1") is False


def test_a_status_cannot_forge_another_field(tmp_path):
    """A plug's name or a reason with a line break in it stays inside STATUS=."""
    manager = Listener(tmp_path)
    try:
        notifier = Notifier(manager.address)
        assert notifier.send(STATUS="waiting for x\nREADY=1\r\nand\u2028more")
        assert manager.sock.recv(4096) == b"STATUS=waiting for x READY=1 and more\n"
        notifier.close()
    finally:
        manager.close()


# -- the unit file ---------------------------------------------------------------------------

UNIT_KEYS = {
    "Type": "notify", "ExecStart": "chanmux run /etc/chanmux/chanmux.toml",
    "Restart": "on-failure", "ExecReload": "kill -HUP $MAINPID", "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service", "DynamicUser": "yes", "StateDirectory": "chanmux",
}


def unit_keys(text):
    keys = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def seconds(span):
    """A systemd time span ("5min", "90s", "120") in seconds."""
    total = 0
    for number, unit in re.findall(r"(\d+)\s*(min|s|h)?", span):
        total += int(number) * {"min": 60, "h": 3600}.get(unit, 1)
    return total


def test_the_unit_file_has_what_an_operator_expects():
    keys = unit_keys((DEPLOY / "chanmux.service").read_text())
    for key, value in UNIT_KEYS.items():
        assert value in keys.get(key, []), (key, keys.get(key))
    # longer than the stop budget of an IRC <-> Matrix bridge (two plugs, the sync hook and
    # its virtual plug) at the default close_timeout
    typical = make_host({"plugs": {"libera": {"type": "memory"}, "matrix": {"type": "memory"},
                                   "sync-plug": {"type": "memory"}},
                         "hooks": {"sync": {"type": "recorder"}}}).stop_budget()
    assert seconds(keys["TimeoutStopSec"][0]) > typical
    text = (DEPLOY / "chanmux.service").read_text()
    assert "[database]" in text and "/var/lib/chanmux" in text  # the read-only /etc note


def test_systemd_analyze_verifies_the_unit(tmp_path):
    """`systemd-analyze verify` of the unit, with ExecStart naming this environment's chanmux
    (verify needs the binary to exist): everything else exactly as shipped."""
    analyze = shutil.which("systemd-analyze")
    unit = (DEPLOY / "chanmux.service").read_text()
    assert "ExecStart=chanmux run" in unit
    if analyze is None:  # what can be checked without systemd was checked above
        assert unit_keys(unit)["Type"] == ["notify"]
        return
    copy = tmp_path / "chanmux.service"
    copy.write_text(unit.replace("ExecStart=chanmux run", f"ExecStart={CHANMUX_COMMAND} run"))
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                         timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if str(copy) in line or "chanmux.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_the_containerfile_names_files_of_this_checkout():
    text = (DEPLOY / "Containerfile").read_text()
    copied = [line.split()[1:] for line in text.splitlines() if line.startswith("COPY ")]
    assert copied, text
    for words in copied:
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
    for package in ("core", "plugins/sync", "plugins/forward", "plugins/plugs_irc",
                    "plugins/plugs_matrix"):
        assert f"./{package}" in text or f" {package}" in text, package
    assert re.search(r"^USER\s+(?!root\b|0\b)\S+", text, re.M)
    assert re.search(r'^VOLUME\s+\[?"?/data', text, re.M)
    assert "chanmux" in re.search(r"^(?:ENTRYPOINT|CMD)\s+(.+)$", text, re.M).group(1)


def test_the_logrotate_snippet_sends_sighup_after_rotating():
    text = (DEPLOY / "logrotate").read_text()
    directives = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    assert "copytruncate" not in directives and "nocreate" in directives
    post = directives[directives.index("postrotate") + 1:directives.index("endscript")]
    assert "systemctl reload chanmux.service >/dev/null 2>&1 || true" in post
