"""A real PostgreSQL server on loopback for tests (Debian package `postgresql`).

Use it as a pytest plugin (`pytest_plugins = ["chanmux_testservers.postgres"]`) for the
session fixture `postgres_url`.

Set CHANMUX_TEST_POSTGRES_URL to use a server of your own instead. A missing server binary
fails the tests that need it with a message saying what to install; it is never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run scripts/install-test-servers.sh "
                    "(Debian package postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a throwaway PostgreSQL database on 127.0.0.1, server started for this session."""
    if url := os.environ.get("CHANMUX_TEST_POSTGRES_URL"):
        yield url
        return
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="chanmux-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for p in (base, sock):
            os.chown(p, user.pw_uid, user.pw_gid)
    port = _free_port()
    _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "chanmux", "--auth=trust",
                  "-E", "UTF8", "--no-sync"])
    log = base / "server.log"
    _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                  "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start"])
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        _as_postgres([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "chanmux",
                      "chanmux"])
        yield f"postgresql+psycopg://chanmux@127.0.0.1:{port}/chanmux"
    finally:
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(base, ignore_errors=True)
