"""A database that stops taking writes while the bridge runs (PostgreSQL switched read-only, as
a failover onto a standby does): the bridge keeps relaying both ways, says so once, writes
what it kept once the database takes writes again, and a stop while it refuses them is quick
and says in one line what could not be saved.

asyncio only, as test_failures.py says why.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from chanmux_testservers.ircclient import HumanIRC
from chanmux_testservers.matrixclient import HumanMatrix

from e2e_helpers import Bridge, alias_of, create_room, fresh_database, register, uid, write_config
from streams import Stream, two_way_config

pytestmark = pytest.mark.anyio

#: What the bridge says while the database refuses writes (each at most once per outage).
REFUSED = (re.compile(r"ERROR +chanmux\.store: database .* cannot be written"),
           re.compile(r"ERROR +chanmux\.plug\.matrix: cannot save the resume point"),
           re.compile(r"ERROR +chanmux\.host: matrix: failed to save its state at shutdown"),
           re.compile(r"ERROR +chanmux\.(hook\.sync|delivery): sync: could not "),
           re.compile(r"WARNING +chanmux\.host: .*rows were not written before shutdown"))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def read_only(url: str, on: bool) -> None:
    """Switch the database at `url` read-only (or back) for new sessions and end the current
    ones, so the bridge's pool reconnects into the new setting."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                     f"{'on' if on else 'off'}")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


async def test_a_database_that_turns_read_only_holds_nothing_up(synapse, ngircd, postgres_url, tmp_path):
    hs, tag = synapse, f"ro{uid()}"
    alice = register(hs, f"{tag}a", "Alice M")
    bot = register(hs, f"{tag}bridge")
    room = create_room(hs, alice, tag)
    channel = f"#{tag}"
    url = fresh_database(postgres_url)
    config = two_way_config(ngircd, tag, hs, bot, channel, alias_of(hs, tag))
    config["database"] = {"url": url}
    path = write_config(tmp_path / "bridge.toml", config)
    bridge = Bridge(path, plugs=["irc", "matrix"], secrets=[bot.token])
    bridge.start()
    try:
        await bridge.ready()
        async with HumanMatrix(hs.base_url, alice.user_id, alice.token, timeline_limit=1000) as mx, \
                HumanIRC.connect(ngircd.host, ngircd.port, f"p{uid(7)}") as irc:
            s = Stream(mx, room, channel, tag, bot.user_id)
            s.irc = irc
            await irc.join(channel)
            await mx.catch_up()
            await s.batch()
            mark = bridge.mark()
            await anyio.to_thread.run_sync(read_only, url, True)
            for _ in range(3):
                await s.batch(timeout=60)
            await bridge.wait_log(REFUSED[0], since=mark)
            await bridge.wait_log(REFUSED[1], since=mark)
            assert bridge.find("disconnected", mark) is None, bridge.tail()
            await anyio.to_thread.run_sync(read_only, url, False)
            await s.batch(timeout=60)
            await bridge.wait_log("is writable again", since=mark, timeout=60)
            await bridge.wait_log("matrix: the resume point is saved again", since=mark, timeout=60)
            for pattern in REFUSED[:2]:
                assert len([line for line in bridge.lines[mark:] if pattern.search(line)]) == 1
            await anyio.to_thread.run_sync(read_only, url, True)
            await s.batch(timeout=60)
            began = time.monotonic()
            assert bridge.stop() == 0
            assert time.monotonic() - began < 20, "a stop waited on the database"
    finally:
        bridge.stop()
        await anyio.to_thread.run_sync(read_only, url, False)
    assert not any("Traceback" in line for line in bridge.lines), bridge.tail()
    bridge.check_clean(allow=REFUSED)
