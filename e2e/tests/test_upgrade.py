"""A database written by the 0.1.0 release is upgraded by HEAD, and its messages still map.

The 0.1.0 release of chanmux and chanmux-sync (commit 6f5b26f in releases.toml) is taken out of
this repository's history with `git archive` and run in a child process whose PYTHONPATH puts
it before the installed (HEAD) packages. Its sync plugin is registered from there too: the
installed entry points are HEAD's, which 0.1.0's core refuses. Two memory plugs relay a few
messages through a sync hook into a SQLite file, which then has 0.1.0's tables and no schema
version. HEAD's host starts on that file, upgrades it, and a reply and an edit to the old
messages reach the right copies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from chanmux import Receipt
from chanmux.testing import run_host

pytestmark = pytest.mark.anyio

RELEASE = "6f5b26f"
REPO = Path(__file__).resolve().parents[2]

OLD_RUN = textwrap.dedent('''
    import json, sys
    import anyio, chanmux, chanmux_sync
    import chanmux_sync.plugin
    import chanmux.testing.plugin
    from chanmux.testing import run_host

    print("imported", json.dumps([chanmux.__file__, chanmux_sync.__file__]), flush=True)
    config = json.loads(sys.argv[1])

    async def main():
        # The installed entry points are HEAD's: 0.1.0's core refuses HEAD's chanmux-sync (it
        # needs a newer core) and cannot import HEAD's name for its own test kit's module
        # (chanmux.testing.entrypoint, which 0.1.0 called chanmux.testing.plugin); both are
        # registered from the unpacked release instead.
        modules = [("chanmux-sync", chanmux_sync.plugin), ("chanmux-testing", chanmux.testing.plugin)]
        async with run_host(config, modules=modules) as host:
            a, b = host.plugs["a"], host.plugs["b"]
            for i in range(3):
                await a.inject("#a", f"old {i}", id=f"old-a-{i}", user=a.user("alice", "Alice"))
            await b.wait_for(lambda: len(b.texts("#b")) == 3)
            await host.wait_idle()  # sync has recorded every copy
            for writer in host.store.writers:
                await writer.flush()
            print("copies", json.dumps([e.receipt.id for e in b.sent]), flush=True)

    anyio.run(main, backend=sys.argv[2])
''')


def config(db: Path) -> dict:
    return {
        "database": {"url": f"sqlite:///{db}"},
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"a": {"plug": "a", "source": "#a"}, "b": {"plug": "b", "source": "#b"}},
        "hooks": {"sync": {"type": "sync", "channels": {"main": ["a", "b"]}}},
    }


def release_code(tmp_path: Path) -> Path:
    """The 0.1.0 release's core, sync and forward packages, extracted into tmp_path/old."""
    if not (REPO / ".git").exists():
        pytest.fail(f"{REPO} has no git history: the upgrade test builds chanmux {RELEASE} from "
                    "it (run it in a clone, not an sdist)")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", RELEASE, "core", "plugins/sync", "plugins/forward"],
        capture_output=True)
    if archive.returncode != 0:
        pytest.fail(f"git archive {RELEASE} failed in {REPO} (is the history there? a shallow "
                    f"clone lacks it): {archive.stderr.decode().strip()}")
    archive_file = tmp_path / "old.tar"
    archive_file.write_bytes(archive.stdout)
    with tarfile.open(archive_file) as tar:
        tar.extractall(old, filter="data")
    return old


def run_old(old: Path, db: Path, backend: str) -> list[str]:
    """Relay three messages a -> b with the 0.1.0 code; the copies' ids on b."""
    paths = [old / "core", old / "plugins" / "sync", old / "plugins" / "forward"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    out = subprocess.run([sys.executable, "-c", OLD_RUN, json.dumps(config(db)), backend],
                         capture_output=True, text=True, env=env, timeout=120, cwd=old)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    imported = json.loads(lines["imported"])
    assert all(Path(f).is_relative_to(old) for f in imported), (
        f"the child imported HEAD's code, not {RELEASE}'s: {imported}")
    return json.loads(lines["copies"])


def tables(db: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    return found


def backrefs(db: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT count(*) FROM sync_backref").scalar()
    engine.dispose()
    return found


def schema_diff(db: Path, md: sa.MetaData) -> list:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), md)
    engine.dispose()
    return [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table")]


async def test_a_0_1_0_database_is_upgraded_and_replies_and_edits_still_map(tmp_path, anyio_backend):
    old = release_code(tmp_path)
    db = tmp_path / "bridge.sqlite"
    copies = run_old(old, db, anyio_backend)
    assert len(copies) == 3
    assert tables(db) == {"chanmux_state", "sync_backref"}, "0.1.0 keeps no schema version"
    assert backrefs(db) == 6, "0.1.0 recorded both copies of each message"

    async with run_host(config(db), path=tmp_path / "bridge.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await b.inject("#b", "an answer", id="new-b-1",
                       reply_to=Receipt(id=copies[1], channel=b.channel("#b")))
        await a.wait_for(lambda: a.sent)
        reply = a.sent[0].msg
        assert reply.text.plain == "an answer"
        assert reply.reply_to.id == "old-a-1" and reply.reply_to.channel == a.channel("#a")
        assert reply.reply_to.text.plain == "old 1"
        await a.inject("#a", "old 2, edited", id="old-a-2", edited=True)
        await b.wait_for(lambda: b.edits)
        assert b.edits[0].receipt.id == copies[2]
        assert b.edits[0].msg.text.plain == "old 2, edited"

    assert {"chanmux_schema_chanmux", "chanmux_schema_chanmux_sync", "chanmux_journal"} <= tables(db)


@pytest.mark.parametrize("package", ["chanmux", "chanmux_sync", "chanmux_forward", "chanmux_irc"])
async def test_each_package_migrations_make_the_tables_it_declares(tmp_path, package):
    """A first-party package whose tables change without a revision fails here."""
    from chanmux import Store

    store_module = __import__(f"{package}.store", fromlist=["metadata"])
    store = Store(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    store.create([store_module.metadata])
    store.dispose()
    assert schema_diff(tmp_path / "fresh.sqlite", store_module.metadata) == []
