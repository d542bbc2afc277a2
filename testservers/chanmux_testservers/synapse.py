"""A real Synapse Matrix homeserver on loopback, owned by the test process.

Synapse lives in its own virtual environment, made by ``scripts/install-synapse.sh``
(default ``~/.cache/chanmux/synapse-venv``, or ``$CHANMUX_SYNAPSE_VENV``). The
harness writes a homeserver config into a temporary directory (SQLite database,
media store, signing key, log), starts ``synapse.app.homeserver`` as a child
process listening on a free 127.0.0.1 port (client + admin API only, no
federation listener), and waits until ``/_matrix/client/versions`` answers.

Rate limits are lifted by default; ``Synapse(rate_limited=True)`` keeps them lifted
except ``rc_message`` (0.5/s, burst 2), so a normal user's burst of sends gets a
429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.

The API is synchronous (subprocess + ``httpx.Client``). From async code use the
``async_*`` variants, which run the blocking parts in a worker thread so the
event loop keeps running (e.g. while a bridge under test notices an outage)::

    with Synapse() as hs:
        user_id, token, device_id = hs.register("alice")
        hs.restart()            # same port, same data
"""

from __future__ import annotations

import atexit
import base64
import glob
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import anyio
import httpx

#: The matrix-synapse version scripts/install-synapse.sh installs (keep in step).
SYNAPSE_VERSION = "1.163.2"

#: Where the Synapse virtual environment is expected.
DEFAULT_VENV = Path(
    os.environ.get("CHANMUX_SYNAPSE_VENV")
    or Path.home() / ".cache" / "chanmux" / "synapse-venv"
)

_INSTALL_HINT = "run scripts/install-synapse.sh (from the chanmux repository root) first"

# A limit nobody reaches in a test: effectively "no rate limit".
_UNLIMITED = {"per_second": 100000, "burst_count": 1000000}

#: The rc_* settings written when rate limits are lifted (Synapse 1.163 keys).
LIFTED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 100000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 1000,
    },
}

#: ``rc_message`` in ``rate_limited`` mode: two sends in a burst, then one per 2 s.
LOW_MESSAGE_RATE_LIMIT = {"per_second": 0.5, "burst_count": 2}


class SynapseError(RuntimeError):
    """Synapse could not be found, started or talked to."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now (SO_REUSEADDR, as Twisted does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _installed_version(venv: Path) -> str | None:
    """The matrix-synapse version in ``venv``, read from its dist-info (no subprocess)."""
    hits = glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "matrix_synapse-*.dist-info"))
    if not hits:
        return None
    return Path(hits[0]).name[len("matrix_synapse-") : -len(".dist-info")]


# Instances still running when the interpreter exits get killed, so a crashed
# test run leaves no Synapse behind.
_live: weakref.WeakSet[Synapse] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for hs in list(_live):
        try:
            hs.stop(kill=True)
        except Exception:  # noqa: BLE001 - at exit: one failing to stop does not keep the rest
            pass


class Synapse:
    """One Synapse homeserver on 127.0.0.1, with its data in a temporary directory.

    Args:
        server_name: the Matrix server name (user IDs are ``@name:<server_name>``).
        rate_limited: keep ``rc_message`` low (see ``LOW_MESSAGE_RATE_LIMIT``).
        venv: the Synapse virtual environment (default ``DEFAULT_VENV``).
        port: the port to listen on (default: a free one, kept across restarts).
        start_timeout: seconds to wait for the client API to answer.
        extra_config: top-level homeserver.yaml keys to add or override.
        keep_data: leave the temporary directory behind on ``close()``.
    """

    def __init__(
        self,
        server_name: str = "chanmux.test",
        *,
        rate_limited: bool = False,
        venv: str | os.PathLike[str] | None = None,
        port: int | None = None,
        start_timeout: float = 60.0,
        extra_config: dict[str, Any] | None = None,
        keep_data: bool = False,
    ) -> None:
        self.server_name = server_name
        self.rate_limited = rate_limited
        self.venv = Path(venv) if venv is not None else DEFAULT_VENV
        self.start_timeout = start_timeout
        self.keep_data = keep_data
        self.shared_secret = secrets.token_hex(24)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self._extra_config = dict(extra_config or {})
        self.data_dir = Path(tempfile.mkdtemp(prefix="chanmux-synapse-"))
        self.config_path = self.data_dir / "homeserver.yaml"
        self.log_path = self.data_dir / "homeserver.log"
        self._macaroon_secret = secrets.token_hex(32)
        self._form_secret = secrets.token_hex(32)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._ever_started = False
        #: Seconds the last successful start() took (process launch to API answering).
        self.last_start_seconds: float | None = None

    # -- properties -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The client-server API base, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the Synapse process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The Synapse process id while running."""
        return self._proc.pid if self.running else None

    def user_id(self, localpart: str) -> str:
        """The full Matrix ID for ``localpart`` on this server."""
        return f"@{localpart}:{self.server_name}"

    # -- configuration --------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        d = self.data_dir
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(d / "homeserver.db")},
            },
            "media_store_path": str(d / "media_store"),
            "max_upload_size": "50M",
            "signing_key_path": str(d / "signing.key"),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "report_stats": False,
            "enable_metrics": False,
            "enable_registration": False,
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": self._macaroon_secret,
            "form_secret": self._form_secret,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
        }
        config.update(LIFTED_RATE_LIMITS)
        if self.rate_limited:
            config["rc_message"] = dict(LOW_MESSAGE_RATE_LIMIT)
        config.update(self._extra_config)
        return config

    def _write_files(self) -> None:
        """Write homeserver.yaml (JSON is valid YAML) and, once, the signing key."""
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            # Synapse's signing-key file: "ed25519 <key version> <unpadded base64 seed>".
            seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            key_path.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        (self.data_dir / "media_store").mkdir(exist_ok=True)
        self.config_path.write_text(json.dumps(self._config(), indent=2))

    # -- lifecycle ------------------------------------------------------------

    def _check_venv(self) -> Path:
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise SynapseError(f"no Synapse virtual environment at {self.venv}; {_INSTALL_HINT}")
        have = _installed_version(self.venv)
        if have != SYNAPSE_VERSION:
            raise SynapseError(
                f"{self.venv} has matrix-synapse {have or 'missing'}, "
                f"expected {SYNAPSE_VERSION}; {_INSTALL_HINT}"
            )
        return python

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the Synapse log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start Synapse and wait until its client API answers.

        Raises ``SynapseError`` (with the log tail) if it exits or does not answer
        within ``start_timeout`` seconds. On the first start only, a lost race for
        the chosen free port is retried on another port.
        """
        if self.running:
            raise SynapseError("Synapse is already running")
        python = self._check_venv()
        if not _port_is_free(self.port):
            # Never mistake another server on our port for this one.
            if self._fixed_port or self._ever_started:
                raise SynapseError(f"port {self.port} on 127.0.0.1 is taken by another process")
            self.port = free_port()
        for attempt in range(3):
            try:
                self._start_once(python)
                return
            except SynapseError as e:
                port_lost = "Address already in use" in self.log_tail(200)
                if port_lost and not self._fixed_port and not self._ever_started and attempt < 2:
                    self.port = free_port()
                    continue
                raise e

    def _start_once(self, python: Path) -> None:
        self._write_files()
        self._log_file = open(self.log_path, "ab")
        began = time.monotonic()
        self._proc = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        _live.add(self)
        deadline = began + self.start_timeout
        delay = 0.05
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    r = client.get(self.base_url + "/_matrix/client/versions")
                    if r.status_code == 200:
                        self.last_start_seconds = time.monotonic() - began
                        self._ever_started = True
                        return
                except httpx.TransportError:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._abort()
                    raise SynapseError(
                        f"Synapse did not answer on {self.base_url} within "
                        f"{self.start_timeout:.0f}s; log tail:\n{self.log_tail()}"
                    )
                # Back off by waiting on the process itself: returns early if it dies.
                try:
                    code = self._proc.wait(timeout=min(delay, remaining))
                except subprocess.TimeoutExpired:
                    delay = min(delay * 1.5, 0.5)
                    continue
                self._abort()
                raise SynapseError(
                    f"Synapse exited with code {code} while starting; log tail:\n{self.log_tail()}"
                )

    def _abort(self) -> None:
        self.stop(kill=True)

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop Synapse: SIGTERM and wait (SIGKILL after ``timeout``), or SIGKILL at once."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._proc = None
        _live.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self, kill: bool = False) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop Synapse and remove its data directory (unless ``keep_data``)."""
        self.stop()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Synapse:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Async variants: the blocking work runs in a worker thread.

    async def async_start(self) -> None:
        """``start()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.start)

    async def async_stop(self, kill: bool = False) -> None:
        """``stop()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(lambda: self.stop(kill=kill))

    async def async_restart(self, kill: bool = False) -> None:
        """``restart()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(lambda: self.restart(kill=kill))

    # -- users ----------------------------------------------------------------

    def _registration_body(
        self, nonce: str, username: str, password: str, admin: bool
    ) -> dict[str, Any]:
        # Synapse's shared-secret registration: HMAC-SHA1 keyed with the shared
        # secret over nonce, user, password and admin flag, NUL-separated.
        msg = b"\x00".join(
            [
                nonce.encode(),
                username.encode(),
                password.encode(),
                b"admin" if admin else b"notadmin",
            ]
        )
        mac = hmac.new(self.shared_secret.encode(), msg, hashlib.sha1).hexdigest()
        return {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": mac,
        }

    @staticmethod
    def _check(r: httpx.Response, what: str) -> dict[str, Any]:
        if r.status_code != 200:
            raise SynapseError(f"{what} failed: HTTP {r.status_code} {r.text}")
        return r.json()

    def register(
        self, username: str, password: str | None = None, admin: bool = False
    ) -> tuple[str, str, str]:
        """Create a user via the shared-secret admin API; returns (user_id, access_token, device_id).

        ``username`` is the localpart. Without ``password`` a random one is used.
        """
        password = password or secrets.token_urlsafe(16)
        url = self.base_url + "/_synapse/admin/v1/register"
        with httpx.Client(timeout=30.0) as client:
            nonce = self._check(client.get(url), "registration nonce")["nonce"]
            body = self._registration_body(nonce, username, password, admin)
            data = self._check(client.post(url, json=body), f"registering {username}")
        return data["user_id"], data["access_token"], data["device_id"]

    async def async_register(
        self, username: str, password: str | None = None, admin: bool = False
    ) -> tuple[str, str, str]:
        """``register()`` with ``httpx.AsyncClient`` (asyncio or trio)."""
        password = password or secrets.token_urlsafe(16)
        url = self.base_url + "/_synapse/admin/v1/register"
        async with httpx.AsyncClient(timeout=30.0) as client:
            nonce = self._check(await client.get(url), "registration nonce")["nonce"]
            body = self._registration_body(nonce, username, password, admin)
            data = self._check(await client.post(url, json=body), f"registering {username}")
        return data["user_id"], data["access_token"], data["device_id"]

    def login(self, username: str, password: str) -> tuple[str, str, str]:
        """Password login (a new device); returns (user_id, access_token, device_id)."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
        }
        with httpx.Client(timeout=30.0) as client:
            r = client.post(self.base_url + "/_matrix/client/v3/login", json=body)
            data = self._check(r, f"login of {username}")
        return data["user_id"], data["access_token"], data["device_id"]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Synapse {self.server_name} {self.base_url} {state}>"
