"""Real IRC servers on loopback for tests: ngircd, InspIRCd and Anope services.

Each server runs in the foreground (no fork) as a child process of this
harness, in its own directory holding generated configs, TLS material and
logs.  It listens on free ``127.0.0.1`` ports only: one plaintext port and one
TLS port whose certificate is issued by a throwaway test CA (``ca_file``).

Typical use from a conftest::

    @pytest.fixture(scope="session")
    def inspircd(tmp_path_factory):
        with start_inspircd(tmp_path_factory.mktemp("irc")) as server:
            yield server

The servers come from Debian packages; ``scripts/install-test-servers.sh``
installs them.  Start-up waits until the server answers a real registration
(``001``), and for InspIRCd with services until NickServ answers.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .ircclient import Line, irc_lower

__all__ = [
    "AccountError",
    "AnopeServices",
    "ClientCert",
    "IRCServer",
    "InspIRCdServer",
    "LOOPBACK",
    "NgircdServer",
    "ServerStartError",
    "TestCA",
    "cert_fingerprint",
    "free_ports",
    "inspircd_available",
    "ngircd_available",
    "start_inspircd",
    "start_ngircd",
]

LOOPBACK = "127.0.0.1"

NGIRCD_BIN = "/usr/sbin/ngircd"
INSPIRCD_BIN = "/usr/sbin/inspircd"
INSPIRCD_MODULE_DIR = Path("/usr/lib/inspircd/modules")
ANOPE_BIN = "/usr/sbin/anope"
ANOPE_MODULE_DIR = "/usr/lib/anope"
ANOPE_LOCALE_DIR = "/usr/share/anope/locale"

DEFAULT_START_TIMEOUT = 20.0
NICKLEN = 30

# InspIRCd modules we load when the Debian build has them (checked at config time).
INSPIRCD_MODULES = (
    "cap", "ircv3", "ircv3_capnotify", "ircv3_echomessage", "ircv3_servertime",
    "ircv3_msgid", "ircv3_batch", "ircv3_labeledresponse", "ircv3_accounttag",
    "ircv3_ctctags", "ircv3_chghost", "ircv3_invitenotify", "ircv3_setname",
    "namesx", "uhnames", "monitor", "setname", "sasl", "services_account",
    "spanningtree", "sslinfo", "svshold", "chghost", "chgident", "chgname",
    "hidechans", "sajoin", "sapart", "sanick", "samode", "topiclock",
)


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its logs."""


class AccountError(RuntimeError):
    """NickServ refused a registration or certificate command."""


def _require_binary(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        raise ServerStartError(
            f"{path} not found: install the Debian package '{package}' "
            f"(run scripts/install-test-servers.sh as root)"
        )
    if shutil.which("openssl") is None:
        raise ServerStartError("openssl not found: run scripts/install-test-servers.sh as root")


def ngircd_available() -> bool:
    """True when the ngircd binary is installed."""
    return os.access(NGIRCD_BIN, os.X_OK)


def inspircd_available(services: bool = True) -> bool:
    """True when InspIRCd (and, if asked, Anope) are installed."""
    ok = os.access(INSPIRCD_BIN, os.X_OK)
    return ok and (not services or os.access(ANOPE_BIN, os.X_OK))


# ---------------------------------------------------------------------------
# Ports and child processes
# ---------------------------------------------------------------------------


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on ``host``."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for proc in leftovers:
        proc.stop(kill=True)


atexit.register(_kill_leftovers)


def _child_setup(die_with_parent: bool) -> Callable[[], None]:
    """preexec_fn: no core files; optionally die when the starting thread dies."""

    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if die_with_parent:
            try:
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except (OSError, AttributeError):  # no prctl (not Linux): the daemon may outlive us
                pass

    return setup


class ManagedProcess:
    """One foreground child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_file: Path, cwd: Path, *, gid: int | None = None):
        self.name = name
        self.argv = argv
        self.log_file = log_file
        self.cwd = cwd
        self.gid = gid
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._exit_logged = True

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        """Spawn the process (its stdout/stderr are appended to ``log_file``)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== harness: start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            # PDEATHSIG follows the *thread* that forked, so only use it from the main thread.
            die_with_parent = threading.current_thread() is threading.main_thread()
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_child_setup(die_with_parent), group=self.gid,
            )
        self._exit_logged = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``), or SIGKILL at once if ``kill``."""
        proc = self.popen
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if proc is not None and not self._exit_logged:
            self._exit_logged = True
            with open(self.log_file, "ab") as log:
                log.write(f"=== harness: {self.name} exited with status {proc.returncode}\n".encode())
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data[-lines:])


# ---------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class ClientCert:
    """A client certificate issued by :class:`TestCA` (for SASL EXTERNAL)."""

    cert_file: Path
    key_file: Path
    fingerprint_sha256: str  # lowercase hex, no colons (InspIRCd/Anope format)


class TestCA:
    """A throwaway certificate authority made with the ``openssl`` command."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key_file = self.directory / "ca.key"
        self.ca_file = self.directory / "ca.pem"
        if not self.ca_file.exists():
            self._new_key(self.key_file)
            _openssl(
                "req", "-x509", "-new", "-key", str(self.key_file), "-out", str(self.ca_file),
                "-days", "30", "-subj", "/CN=chanmux test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=self.directory,
            )

    def _new_key(self, path: Path) -> None:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(path), cwd=self.directory)
        path.chmod(0o600)

    def _issue(self, name: str, subject_cn: str, extensions: list[str]) -> tuple[Path, Path]:
        key = self.directory / f"{name}.key"
        cert = self.directory / f"{name}.pem"
        csr = self.directory / f"{name}.csr"
        ext = self.directory / f"{name}.ext"
        self._new_key(key)
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={subject_cn}", "-out", str(csr),
                 cwd=self.directory)
        ext.write_text("\n".join(extensions + [
            "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer",
        ]) + "\n")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey", str(self.key_file),
            "-set_serial", str(secrets.randbits(63)), "-days", "30", "-out", str(cert),
            "-extfile", str(ext), cwd=self.directory,
        )
        csr.unlink()
        ext.unlink()
        return cert, key

    def issue_server_cert(self, name: str = "server") -> tuple[Path, Path]:
        """Server certificate for ``localhost`` and ``127.0.0.1``; returns (cert, key)."""
        return self._issue(name, "localhost", [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])

    def issue_client_cert(self, name: str) -> ClientCert:
        """Client certificate (CN=name) usable for SASL EXTERNAL."""
        cert, key = self._issue(f"client-{name}", name, [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=clientAuth",
        ])
        return ClientCert(cert, key, cert_fingerprint(cert))

    def write_dh_params(self, path: Path) -> Path:
        """RFC 7919 ffdhe2048 parameters (instant; avoids GnuTLS generating its own)."""
        if not path.exists():
            _openssl("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                     "-out", str(path), cwd=self.directory)
        return path


def cert_fingerprint(cert_file: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate as lowercase hex without colons."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert_file).read_text())
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------
# A tiny blocking IRC client for probes and NickServ chores
# ---------------------------------------------------------------------------


class _SyncClient:
    """Blocking line-based IRC connection used by the harness itself."""

    def __init__(self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None = None):
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buffer = b""
        self.lines: list[Line] = []

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read_until(self, predicate: Callable[[Line], bool], deadline: float) -> Line:
        """Read lines (answering PING) until one matches; TimeoutError at ``deadline``."""
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                raw = raw.rstrip(b"\r")
                if not raw:
                    continue
                line = Line.parse(raw.decode(errors="replace"))
                self.lines.append(line)
                if line.command == "PING":
                    self.send("PONG :" + line.text)
                if predicate(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for a line; got:\n" + "\n".join(l.raw for l in self.lines[-15:]))
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("server closed the connection; got:\n"
                                      + "\n".join(l.raw for l in self.lines[-15:]))
            self.buffer += chunk

    def register(self, nick: str, deadline: float, *, cap_ls: bool = True) -> Line:
        """CAP LS 302 (optional), NICK/USER, CAP END; return the 001 line."""
        if cap_ls:
            self.send("CAP LS 302")
        self.send(f"NICK {nick}")
        self.send("USER probe 0 * :chanmux harness")
        if cap_ls:
            self.send("CAP END")
        line = self.read_until(lambda l: l.command in ("001", "ERROR", "432", "433", "465"), deadline)
        if line.command != "001":
            raise ConnectionError(f"registration failed: {line.raw}")
        return line

    def close(self) -> None:
        try:
            self.send("QUIT :harness done")
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> _SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_isupport(lines: list[Line]) -> dict[str, str | None]:
    tokens: dict[str, str | None] = {}
    for line in lines:
        if line.command == "005":
            for token in line.params[1:-1]:
                key, eq, value = token.partition("=")
                tokens[key] = value if eq else None
    return tokens


def _parse_caps(lines: list[Line]) -> dict[str, str | None]:
    caps: dict[str, str | None] = {}
    for line in lines:
        if line.command == "CAP" and len(line.params) >= 3 and line.params[1].upper() in ("LS", "NEW"):
            for cap in line.params[-1].split():
                name, eq, value = cap.partition("=")
                caps[name] = value if eq else None
    return caps


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class IRCServer:
    """Base class: one IRC daemon on loopback with a plaintext and a TLS port.

    After :meth:`start`, ``isupport`` and ``caps`` hold what the server really
    advertised to the readiness probe (005 tokens, ``CAP LS 302`` reply).
    """

    name = "ircd"
    #: Facts about the generated configuration (also visible in ``isupport``).
    nicklen = NICKLEN
    chantypes = "#"
    linelen = 512

    def __init__(self, directory: Path | str | None = None, *, network: str | None = None,
                 start_timeout: float = DEFAULT_START_TIMEOUT, ca: TestCA | None = None) -> None:
        self._check_installed()
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix=f"chanmux-{self.name}-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.network = network or self.default_network
        self.start_timeout = start_timeout
        self.ca = ca or TestCA(self.directory / "tls")
        self.ca_file = self.ca.ca_file
        self.cert_file, self.key_file = self.ca.issue_server_cert(f"{self.name}-{secrets.token_hex(4)}")
        self.dh_file = self.ca.write_dh_params(self.ca.directory / "dh-ffdhe2048.pem")
        self.port, self.tls_port = 0, 0
        self.isupport: dict[str, str | None] = {}
        self.caps: dict[str, str | None] = {}
        self.startup_seconds: float | None = None
        self.process: ManagedProcess | None = None
        self._closed = False

    default_network = "ChanmuxTest"

    # -- subclass hooks --------------------------------------------------------

    def _check_installed(self) -> None:
        """Raise ServerStartError naming the install script if a binary is missing."""

    def _allocate_ports(self) -> None:
        self.port, self.tls_port = free_ports(2)

    def _write_config(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server's log (stdout/stderr of the daemon)."""
        return _tail(self.log_file, lines)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def tls_address(self) -> tuple[str, int]:
        return self.host, self.tls_port

    def start(self) -> Self:
        """Start the server and wait until it registers a client (first start picks ports)."""
        if self.running:
            return self
        if self._closed:
            raise RuntimeError(f"{self.name} server was closed")
        began = time.monotonic()
        if self.port == 0:
            last_error: ServerStartError | None = None
            for _ in range(3):  # a port may be grabbed by someone else between probe and bind
                self._allocate_ports()
                self._write_config()
                try:
                    self._start_process()
                    break
                except ServerStartError as exc:
                    last_error = exc
                    if "in use" not in str(exc).lower():
                        raise
                    self._reset_ports()
            else:
                assert last_error is not None
                raise last_error
        else:
            self._start_process()
        self.startup_seconds = time.monotonic() - began
        return self

    def _reset_ports(self) -> None:
        self.port = self.tls_port = 0

    def _start_process(self) -> None:
        if self.process is None:
            self.process = ManagedProcess(self.name, self._argv(), self.log_file, self.directory)
        self.process.start()
        try:
            self._wait_ready(time.monotonic() + self.start_timeout)
        except BaseException:
            self.process.stop(kill=True)
            raise

    def _fail(self, why: str) -> ServerStartError:
        return ServerStartError(
            f"{self.name} on {self.host}:{self.port} (tls {self.tls_port}) did not start: {why}\n"
            f"--- tail of {self.log_file} ---\n{self.log_tail()}"
        )

    def _wait_ready(self, deadline: float) -> None:
        """Poll until a client registration gets 001, then check the TLS port."""
        backoff = 0.02
        attempt = 0
        while True:
            assert self.process is not None
            if not self.process.running:
                raise self._fail(f"process exited with status {self.process.returncode}")
            if time.monotonic() >= deadline:
                raise self._fail(f"no 001 within {self.start_timeout:.0f}s")
            attempt += 1
            try:
                with _SyncClient(self.host, self.port, timeout=2.0) as probe:
                    probe.register(f"probe{attempt}", min(deadline, time.monotonic() + 10))
                    # 376/422 (end of MOTD / no MOTD) close the welcome burst incl. all 005s.
                    probe.read_until(lambda l: l.command in ("376", "422"), deadline)
                    self.isupport = _parse_isupport(probe.lines)
                    self.caps = _parse_caps(probe.lines)
                    self._check_tls(deadline)
                    self._after_ready(probe, deadline)
                return
            except (ConnectionRefusedError, ConnectionResetError, ConnectionError, TimeoutError):
                time.sleep(backoff)  # backoff between connect attempts, not synchronisation
                backoff = min(backoff * 2, 0.25)

    def _after_ready(self, probe: _SyncClient, deadline: float) -> None:
        """Hook run with the registered probe still connected (services start here)."""

    def _check_tls(self, deadline: float) -> None:
        """A verified TLS handshake on the TLS port, using the test CA."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        while True:
            try:
                with socket.create_connection((self.host, self.tls_port), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname=self.host):
                        return
            except (TimeoutError, ConnectionRefusedError) as exc:
                if time.monotonic() >= deadline:
                    raise self._fail(f"TLS port not answering: {exc}") from exc
                time.sleep(0.05)
            except ssl.SSLError as exc:
                raise self._fail(f"TLS handshake failed: {exc}") from exc

    def stop(self, kill: bool = False) -> None:
        """Stop the daemon: SIGTERM and wait, or SIGKILL at once (``kill=True``)."""
        if self.process is not None:
            self.process.stop(kill=kill)

    def restart(self, kill: bool = False) -> Self:
        """Stop and start again on the same ports with the same config."""
        if self.port == 0:
            return self.start()
        self.stop(kill=kill)
        began = time.monotonic()
        self._start_process()
        self.startup_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        """Stop for good; remove the directory if the harness created it."""
        self.stop()
        self._closed = True
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} tls={self.tls_port} running={self.running}>"


class NgircdServer(IRCServer):
    """ngircd (Debian ``ngircd``) with generous limits and TLS."""

    name = "ngircd"
    default_network = "ChanmuxNgircd"
    chantypes = "#&+"
    linelen = 512  # ngircd's fixed COMMAND_LEN; ngircd does not advertise LINELEN
    server_name = "ngircd.chanmux.test"

    def _check_installed(self) -> None:
        _require_binary(NGIRCD_BIN, "ngircd")

    def _argv(self) -> list[str]:
        return [NGIRCD_BIN, "--nodaemon", "--config", str(self.directory / "ngircd.conf")]

    def _write_config(self) -> None:
        motd = self.directory / "ngircd.motd"
        motd.write_text("chanmux test ngircd\n")
        # Started as root, ngircd switches to "nobody" after binding and reading the TLS files.
        (self.directory / "ngircd.conf").write_text(f"""\
[Global]
	Name = {self.server_name}
	Info = chanmux test ngircd
	Network = {self.network}
	AdminInfo1 = chanmux test suite
	AdminInfo2 = loopback
	AdminEMail = chanmux@localhost
	Listen = {self.host}
	Ports = {self.port}
	MotdFile = {motd}
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = {self.nicklen}
	MaxListSize = 1000
	MaxPenaltyTime = 0
	PingTimeout = 300
	PongTimeout = 120
	ConnectRetry = 5
[Options]
	AllowedChannelTypes = {self.chantypes}
	DNS = no
	Ident = no
	PAM = no
	NoticeBeforeRegistration = no
	OperCanUseMode = yes
	ScrubCTCP = no
[SSL]
	CertFile = {self.cert_file}
	KeyFile = {self.key_file}
	DHFile = {self.dh_file}
	Ports = {self.tls_port}
""")


class AnopeServices:
    """Anope 2.0 services linked to an :class:`InspIRCdServer` over loopback."""

    server_name = "services.chanmux.test"

    def __init__(self, ircd: InspIRCdServer) -> None:
        self.ircd = ircd
        self.directory = ircd.directory / "anope"
        for sub in ("conf", "data", "logs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.process: ManagedProcess | None = None

    @property
    def log_file(self) -> Path:
        return self.directory / "anope.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def write_config(self) -> None:
        """Anope config: inspircd3 protocol, NickServ without email/delays, SASL."""
        conf = self.directory / "conf"
        (conf / "services.motd").write_text("chanmux test services\n")
        (conf / "services.conf").write_text(_ANOPE_CONF.format(
            link_port=self.ircd.link_port, link_password=self.ircd.link_password,
            name=self.server_name, network=self.ircd.network, nicklen=self.ircd.nicklen,
            seed=secrets.randbits(31),
        ))

    def _argv(self) -> list[str]:
        return [
            ANOPE_BIN, "--nofork", f"--confdir={self.directory / 'conf'}",
            f"--dbdir={self.directory / 'data'}", f"--logdir={self.directory / 'logs'}",
            f"--modulesdir={ANOPE_MODULE_DIR}", f"--localedir={ANOPE_LOCALE_DIR}",
        ]

    def start(self, probe: _SyncClient, deadline: float) -> None:
        """Start Anope (if not running) and wait until NickServ answers ``probe``."""
        if self.process is None:
            # Anope sleeps 3 s when started with uid 0 *and* gid 0; running as
            # root with gid "nogroup" avoids that without dropping file access.
            gid = 65534 if os.getuid() == 0 and os.getgid() == 0 else None
            self.process = ManagedProcess("anope", self._argv(), self.log_file, self.directory, gid=gid)
        if not self.process.running:
            self.process.start()
        self.wait_linked(probe, deadline)

    def _fail(self, why: str) -> ServerStartError:
        return self.ircd._fail(f"{why}\n--- tail of {self.log_file} ---\n{_tail(self.log_file)}")

    def wait_linked(self, probe: _SyncClient, deadline: float) -> None:
        """Poll ``PRIVMSG NickServ :HELP`` until NickServ answers; refresh the ircd's caps."""
        try:
            while True:
                if self.process is None or not self.process.running:
                    raise self._fail(f"anope exited with status {self.process and self.process.returncode}")
                probe.send("PRIVMSG NickServ :HELP")
                line = probe.read_until(
                    lambda l: (l.command == "NOTICE" and (l.nick or "").lower() == "nickserv") or l.command == "401",
                    deadline,
                )
                if line.command == "NOTICE":
                    break
                time.sleep(0.05)  # backoff between polls: services not linked yet
            # Once services are linked InspIRCd offers "sasl"; record the full cap list.
            mark = len(probe.lines)
            probe.send("CAP LS 302")
            probe.read_until(lambda l: l.command == "CAP" and len(l.params) >= 3
                             and l.params[1].upper() == "LS" and l.params[2] != "*", deadline)
            self.ircd.caps = _parse_caps(probe.lines[mark:])
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise self._fail(f"services did not link: {exc}") from None

    def stop(self, kill: bool = False) -> None:
        if self.process is not None:
            self.process.stop(kill=kill)


class InspIRCdServer(IRCServer):
    """InspIRCd 3 with IRCv3 modules, TLS, and (optionally) Anope services for SASL.

    Facts worth knowing in tests:

    * InspIRCd 3 finishes a client's registration on its once-a-second tick, so
      every connection takes about 1 s to get ``001`` (start-up too).
    * Debian's 3.15 build crashes (SIGSEGV) while unloading m_ssl_gnutls on
      SIGTERM; shutdown is otherwise complete, and core dumps are disabled.
    * ``caps`` is read after services linked, so it includes ``sasl``.
    """

    name = "inspircd"
    default_network = "ChanmuxInspIRCd"
    server_name = "inspircd.chanmux.test"
    linelen = 512

    def __init__(self, directory: Path | str | None = None, *, services: bool = True, network: str | None = None,
                 start_timeout: float = DEFAULT_START_TIMEOUT, ca: TestCA | None = None) -> None:
        if services:
            _require_binary(ANOPE_BIN, "anope")
        super().__init__(directory, network=network, start_timeout=start_timeout, ca=ca)
        self.link_port = 0
        self.link_password = secrets.token_hex(12)
        self.modules = [m for m in INSPIRCD_MODULES if (INSPIRCD_MODULE_DIR / f"m_{m}.so").exists()
                        and (services or m != "sasl")]  # m_sasl refuses to load without a target
        self.tls_module = next(
            (m for m in ("ssl_gnutls", "ssl_openssl") if (INSPIRCD_MODULE_DIR / f"m_{m}.so").exists()), None
        )
        if self.tls_module is None:
            raise ServerStartError("InspIRCd has neither m_ssl_gnutls nor m_ssl_openssl")
        self.services = AnopeServices(self) if services else None

    def _check_installed(self) -> None:
        _require_binary(INSPIRCD_BIN, "inspircd")

    def _allocate_ports(self) -> None:
        self.port, self.tls_port, self.link_port = free_ports(3)

    def _reset_ports(self) -> None:
        super()._reset_ports()
        self.link_port = 0

    def _argv(self) -> list[str]:
        argv = [INSPIRCD_BIN, f"--config={self.directory / 'inspircd.conf'}", "--nofork", "--nopid"]
        if os.geteuid() == 0:
            argv.append("--runasroot")
        return argv

    def _write_config(self) -> None:
        d = self.directory
        for sub in ("data", "logs"):
            (d / sub).mkdir(exist_ok=True)
        (d / "motd.txt").write_text("chanmux test InspIRCd\n")
        provider = self.tls_module.split("_", 1)[1]
        modules = "\n".join(f'<module name="{m}">' for m in [self.tls_module, *self.modules])
        services = ""
        if self.services is not None:
            services = f"""
<bind address="{self.host}" port="{self.link_port}" type="servers">
<link name="{AnopeServices.server_name}" ipaddr="{self.host}" port="{self.link_port}"
      allowmask="127.0.0.0/8" hidden="no" timeout="10s"
      sendpass="{self.link_password}" recvpass="{self.link_password}">
<uline server="{AnopeServices.server_name}" silent="yes">
<sasl target="{AnopeServices.server_name}" requiressl="no">
"""
        (d / "inspircd.conf").write_text(f"""\
<config format="xml">
<server name="{self.server_name}" description="chanmux test InspIRCd" network="{self.network}" id="0CM">
<admin name="chanmux test suite" nick="chanmux" email="chanmux@localhost">
<path configdir="{d}" datadir="{d / 'data'}" logdir="{d / 'logs'}" moduledir="{INSPIRCD_MODULE_DIR}">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{d / 'logs' / 'ircd.log'}">
<files motd="{d / 'motd.txt'}">
<bind address="{self.host}" port="{self.port}" type="clients">
<bind address="{self.host}" port="{self.tls_port}" type="clients" sslprofile="chanmux">
{modules}
<sslprofile name="chanmux" provider="{provider}" certfile="{self.cert_file}" keyfile="{self.key_file}"
            cafile="{self.ca_file}" dhfile="{self.dh_file}" hash="sha256" requestclientcert="yes">
<connect name="main" allow="*" timeout="60" pingfreq="300" hardsendq="16M" softsendq="1M" recvq="1M"
         threshold="1000000" commandrate="1000000" fakelag="no" localmax="100000" globalmax="100000"
         maxchans="1000" limit="100000" resolvehostnames="no" useident="no" maxconnwarn="no">
<channels users="1000" opers="1000">
<limits maxnick="{self.nicklen}" maxchan="64" maxident="10" maxhost="64" maxquit="300" maxtopic="330"
        maxkick="300" maxreal="130" maxaway="200" maxmodes="20">
<performance softlimit="10000" somaxconn="128" clonesonconnect="no" quietbursts="yes">
<dns timeout="1">
<options syntaxhints="yes" announcets="yes" hostintopic="yes" pingwarning="15" splitwhois="no">
<security announceinvites="dynamic" hideulines="no" flatlinks="no" hidesplits="no" hidebans="no" maxtargets="20">
<whowas groupsize="10" maxgroups="100000" maxkeep="3d">
<badnick nick="NickServ" reason="Reserved for services">
<badnick nick="ChanServ" reason="Reserved for services">
{services}""")
        if self.services is not None:
            self.services.write_config()

    def _after_ready(self, probe: _SyncClient, deadline: float) -> None:
        if self.services is not None:
            try:
                self.services.start(probe, deadline)
            except BaseException:
                self.services.stop(kill=True)
                raise

    def stop(self, kill: bool = False) -> None:
        """Stop services and the ircd (SIGTERM, or SIGKILL with ``kill=True``)."""
        if self.services is not None:
            self.services.stop(kill=kill)
        super().stop(kill=kill)

    def restart(self, kill: bool = False, *, restart_services: bool = False) -> Self:
        """Restart the ircd on the same ports; Anope keeps running and relinks.

        With ``restart_services=True`` Anope is restarted too (accounts survive in
        its flatfile database, which is saved every 2 seconds and on SIGTERM).
        """
        if self.port == 0:
            return self.start()
        if restart_services and self.services is not None:
            self.services.stop(kill=kill)
        IRCServer.stop(self, kill=kill)
        began = time.monotonic()
        self._start_process()
        self.startup_seconds = time.monotonic() - began
        return self

    # -- accounts ------------------------------------------------------------------

    def _nickserv_session(self, nick: str, timeout: float,
                          client_cert: ClientCert | None = None) -> tuple[_SyncClient, float]:
        """A registered blocking connection (over TLS with ``client_cert`` if given)."""
        if self.services is None:
            raise AccountError("this InspIRCd was started without services")
        deadline = time.monotonic() + timeout
        if client_cert is None:
            client = _SyncClient(self.host, self.port, timeout=timeout)
        else:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.load_cert_chain(str(client_cert.cert_file), str(client_cert.key_file))
            client = _SyncClient(self.host, self.tls_port, timeout=timeout, ssl_context=ctx)
        try:
            client.register(nick, deadline)
        except BaseException:
            client.sock.close()
            raise
        return client, deadline

    @staticmethod
    def _nickserv_notice(client: _SyncClient, deadline: float) -> str:
        """Wait for NickServ's next NOTICE and return its text without formatting codes."""
        line = client.read_until(
            lambda l: l.command == "NOTICE" and (l.nick or "").lower() == "nickserv", deadline
        )
        return _strip_formatting(line.text)

    @staticmethod
    def _wait_logged_in(client: _SyncClient, deadline: float, account: str) -> None:
        """Wait for 900 RPL_LOGGEDIN (Anope logs the user in right after its notice)."""
        client.read_until(lambda l: l.command == "900" and len(l.params) >= 3
                          and irc_lower(l.params[2]) == irc_lower(account), deadline)

    def register_account(self, account: str, password: str, email: str | None = None,
                         *, timeout: float = 15.0) -> str:
        """Register ``account`` with NickServ, connecting as that nick; return NickServ's reply.

        Blocking (call it via ``anyio.to_thread.run_sync`` from async tests).
        Raises :class:`AccountError` if NickServ does not confirm the registration.
        """
        client, deadline = self._nickserv_session(account, timeout)
        with client:
            client.send(f"PRIVMSG NickServ :REGISTER {password} {email or f'{account}@chanmux.test'}")
            text = self._nickserv_notice(client, deadline)
            # Success is "Nickname <account> registered." (registration = "none": no e-mail step).
            if not re.fullmatch(rf"Nickname {re.escape(account)} registered\.?", text, re.I):
                raise AccountError(f"NickServ did not register {account!r}: {text}")
            self._wait_logged_in(client, deadline, account)
            return text

    def add_certificate(self, account: str, password: str, cert: ClientCert, *, timeout: float = 15.0) -> str:
        """Add ``cert``'s fingerprint to ``account`` (for SASL EXTERNAL); return NickServ's reply.

        Connects over TLS presenting ``cert``, IDENTIFYs, then ``CERT ADD`` (Anope
        2.0 adds the fingerprint of the connection's own client certificate).
        """
        nick = f"{account[: self.nicklen - 5]}-cert"
        client, deadline = self._nickserv_session(nick, timeout, client_cert=cert)
        with client:
            client.send(f"PRIVMSG NickServ :IDENTIFY {account} {password}")
            text = self._nickserv_notice(client, deadline)
            if "accepted" not in text.lower():
                raise AccountError(f"NickServ IDENTIFY {account!r} failed: {text}")
            self._wait_logged_in(client, deadline, account)
            client.send("PRIVMSG NickServ :CERT ADD")
            text = self._nickserv_notice(client, deadline)
            if cert.fingerprint_sha256 not in text.lower() or "added" not in text.lower():
                raise AccountError(f"NickServ CERT ADD failed for {account!r}: {text}")
            return text


def _strip_formatting(text: str) -> str:
    return re.sub(r"[\x02\x0f\x16\x1d\x1f]|\x03\d{0,2}(,\d{1,2})?", "", text)


_ANOPE_CONF = """\
/* Generated by chanmux_testservers for one test InspIRCd. */
uplink
{{
	host = "127.0.0.1"
	ipv6 = no
	ssl = no
	port = {link_port}
	password = "{link_password}"
}}
serverinfo
{{
	name = "{name}"
	description = "chanmux test services"
	id = "0SV"
	pid = "services.pid"
	motd = "services.motd"
}}
module
{{
	name = "inspircd3"
	use_server_side_mlock = yes
	use_server_side_topiclock = yes
}}
networkinfo
{{
	networkname = "{network}"
	nicklen = {nicklen}
	userlen = 10
	hostlen = 64
	chanlen = 64
	modelistsize = 100
	vhost_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
	allow_undotted_vhosts = false
	disallow_start_or_end = ".-"
}}
options
{{
	casemap = "rfc1459"
	seed = {seed}
	strictpasswords = no
	badpasslimit = 1000
	badpasstimeout = 1s
	updatetimeout = 2s
	expiretimeout = 30m
	readtimeout = 1s
	warningtimeout = 4h
	timeoutcheck = 1s
	retrywait = 1s
	hideprivilegedcommands = yes
	hideregisteredcommands = yes
}}
log
{{
	target = "services.log"
	admin = "*"
	commands = "*"
	servers = "*"
	users = "connect disconnect nick"
	other = "*"
	rawio = no
	debug = no
}}
mail
{{
	usemail = no
}}
module
{{
	name = "db_flatfile"
	database = "anope.db"
	keepbackups = 0
	fork = no
}}
module {{ name = "enc_sha256" }}
service
{{
	nick = "NickServ"
	user = "services"
	host = "{name}"
	gecos = "Nickname Registration Service"
}}
module
{{
	name = "nickserv"
	client = "NickServ"
	forceemail = no
	confirmemailchanges = no
	defaults = "ns_secure memo_signon memo_receive"
	expire = 0
	secureadmins = yes
	modeonid = yes
	hidenetsplitquit = no
	killquick = 20s
	kill = 60s
	enforceruser = "enforcer"
	enforcerhost = "{name}"
	releasetimeout = 1m
	guestnickprefix = "Guest"
	nonicknameownership = no
	passlen = 64
}}
module {{ name = "help" }}
command {{ service = "NickServ"; name = "HELP"; command = "generic/help"; }}
module
{{
	name = "ns_register"
	registration = "none"
}}
command {{ service = "NickServ"; name = "CONFIRM"; command = "nickserv/confirm"; }}
command {{ service = "NickServ"; name = "REGISTER"; command = "nickserv/register"; }}
module {{ name = "ns_identify" }}
command {{ service = "NickServ"; name = "IDENTIFY"; command = "nickserv/identify"; }}
module {{ name = "ns_cert"; max = 10; }}
command {{ service = "NickServ"; name = "CERT"; command = "nickserv/cert"; }}
module {{ name = "ns_info" }}
command {{ service = "NickServ"; name = "INFO"; command = "nickserv/info"; }}
module {{ name = "ns_logout" }}
command {{ service = "NickServ"; name = "LOGOUT"; command = "nickserv/logout"; }}
module {{ name = "ns_drop" }}
command {{ service = "NickServ"; name = "DROP"; command = "nickserv/drop"; }}
module {{ name = "ns_group" }}
command {{ service = "NickServ"; name = "GROUP"; command = "nickserv/group"; }}
module {{ name = "m_sasl" }}
"""


# ---------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------


def start_ngircd(directory: Path | str | None = None, *, network: str | None = None,
                 start_timeout: float = DEFAULT_START_TIMEOUT, ca: TestCA | None = None) -> NgircdServer:
    """Create and start an ngircd in a fresh subdirectory of ``directory``.

    Returns the started server, which is also a context manager that closes it:
    ``with start_ngircd(tmp_path) as server: ...``.  With ``directory=None`` a
    temporary directory is used and removed on close.
    """
    sub = tempfile.mkdtemp(prefix="ngircd-", dir=directory) if directory is not None else None
    return NgircdServer(sub, network=network, start_timeout=start_timeout, ca=ca).start()


def start_inspircd(directory: Path | str | None = None, services: bool = True, *, network: str | None = None,
                   start_timeout: float = DEFAULT_START_TIMEOUT, ca: TestCA | None = None) -> InspIRCdServer:
    """Create and start an InspIRCd (plus Anope when ``services``) in a fresh subdirectory.

    Same conventions as :func:`start_ngircd`.  Without services there is no
    SASL (m_sasl needs a services target) and no NickServ.
    """
    sub = tempfile.mkdtemp(prefix="inspircd-", dir=directory) if directory is not None else None
    return InspIRCdServer(sub, services=services, network=network, start_timeout=start_timeout, ca=ca).start()
