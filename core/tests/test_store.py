"""The host database: tables made at start, batched writes, state kept across restarts.
Every test runs on a SQLite file and on a real PostgreSQL server."""

import logging
import uuid

import anyio
import pytest
import sqlalchemy as sa

import chanmux.store
from chanmux import Store, insert_new
from chanmux.store import DatabaseUnusable

pytestmark = pytest.mark.anyio

md = sa.MetaData()
rows = sa.Table("test_rows", md, sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("text", sa.String(100), nullable=False))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    server = request.getfixturevalue("postgres_url")
    name = f"store_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    request.addfinalizer(lambda: drop_database(admin, name))
    return sa.make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(admin, name):
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def count(conn):
    return conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar()


async def test_tables_are_created_and_state_survives_a_restart(db_url):
    store = Store(db_url)
    await store.run(store.create, [md])
    assert await store.get_state("matrix", "since") is None
    await store.set_state("matrix", "since", {"token": "s1"})
    await store.set_state("matrix", "since", {"token": "s2"})
    store.dispose()
    again = Store(db_url)
    await again.run(again.create, [md])
    assert await again.get_state("matrix", "since") == {"token": "s2"}
    assert await again.get_state("irc", "since", "none") == "none"
    again.dispose()


async def test_batch_writer_writes_many_rows_per_transaction(db_url):
    store = Store(db_url)
    await store.run(store.create, [md])

    def write(conn, batch):
        conn.execute(rows.insert(), [{"id": i, "text": f"row {i}"} for i in batch])

    writer = store.writer("rows", write)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for i in range(2000):
            writer.add(i)
            if i % 500 == 0:
                await anyio.lowlevel.checkpoint()
        await writer.flush()
        tg.cancel_scope.cancel()
    assert await store.transaction(count) == 2000
    assert writer.batches < 100
    store.dispose()


@pytest.mark.parametrize("per_statement", [None, 100])
async def test_insert_new_stores_a_batch_larger_than_one_statement_and_skips_rows_it_has(
        db_url, per_statement, monkeypatch):
    # SQLite gets statements of many rows each (4,000, or 100 here to cut the batch in many):
    # rows stored before and rows repeated within the batch included, each row is stored once
    if per_statement is not None:
        monkeypatch.setattr(chanmux.store, "SQLITE_ROWS_PER_INSERT", per_statement)
    store = Store(db_url)
    await store.run(store.create, [md])
    await store.transaction(lambda conn: insert_new(conn, rows, ("id", "text"),
                                                    [(7, "kept"), (1500, "kept too")]))
    batch = [(i, f"row {i}") for i in range(4345)] + [(3, "again"), (4344, "again")]
    await store.transaction(lambda conn: insert_new(conn, rows, ("id", "text"), batch))

    def stored(conn):
        return dict(conn.execute(sa.select(rows.c.id, rows.c.text)).all())

    found = await store.transaction(stored)
    assert len(found) == 4345
    assert found[7] == "kept" and found[1500] == "kept too"  # what was there stays
    assert found[3] == "row 3" and found[4344] == "row 4344"  # the first of a repeat wins
    assert found[0] == "row 0" and found[2000] == "row 2000"
    store.dispose()


async def test_a_failing_write_is_retried_and_nothing_is_lost(db_url):
    store = Store(db_url)
    await store.run(store.create, [md])
    attempts = []

    def write(conn, batch):
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        conn.execute(rows.insert(), [{"id": i, "text": "x"} for i in batch])

    writer = store.writer("rows", write)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.add_many(range(10))
        await writer.flush()
        tg.cancel_scope.cancel()
    assert writer.failures == 1
    assert await store.transaction(count) == 10
    store.dispose()


async def test_pending_rows_are_written_when_the_writer_stops(db_url):
    store = Store(db_url)
    await store.run(store.create, [md])
    writer = store.writer("rows", lambda conn, b: conn.execute(rows.insert(), [{"id": i, "text": "x"} for i in b]))
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.add_many(range(5))
        tg.cancel_scope.cancel()
    assert await store.transaction(count) == 5
    store.dispose()


async def test_sqlite_uses_wal_mode(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wal.sqlite'}")
    mode = await store.transaction(lambda c: c.exec_driver_sql("PRAGMA journal_mode").scalar())
    assert mode == "wal"
    store.dispose()


async def test_passwords_are_hidden_when_the_url_is_shown(db_url):
    store = Store("postgresql+psycopg://bridge:hunter22@db.invalid/chanmux")
    assert "hunter22" not in store.describe()


async def test_rows_of_a_batch_cancelled_before_it_was_written_are_kept(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'cancel.sqlite'}")
    await store.run(store.create, [md])
    writer = store.writer("rows", lambda conn, b: conn.execute(rows.insert(), [{"id": i, "text": "x"} for i in b]))
    release = anyio.Event()

    async def busy(*, task_status=anyio.TASK_STATUS_IGNORED):
        async with store.limiter:  # the database is busy: the writer waits for its turn
            task_status.started()
            await release.wait()

    async with anyio.create_task_group() as outer:
        await outer.start(busy)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            writer.add_many(range(7))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # shutdown while the batch waits for the database
            release.set()
    assert await store.transaction(count) == 7
    store.dispose()


# -- databases that cannot be used: refused at start in one line ---------------------------

async def test_a_file_that_is_not_a_database_is_refused_in_one_line(tmp_path):
    db = tmp_path / "garbage.sqlite"
    db.write_bytes(b"\x00\xffnot sqlite" * 500)
    store = Store(f"sqlite:///{db}")
    with pytest.raises(DatabaseUnusable) as err:
        await store.run(store.create, [md])
    assert str(err.value) == f"{db} is not a SQLite database (file is not a database)"
    store.dispose()


def truncate(db):
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 3)


async def test_a_truncated_database_is_refused_in_one_line(tmp_path):
    db = tmp_path / "cut.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.run(store.create, [md])
    await store.transaction(lambda c: c.execute(rows.insert(), [{"id": i, "text": "x" * 90}
                                                               for i in range(5000)]))
    store.dispose()
    await anyio.to_thread.run_sync(truncate, db)
    again = Store(f"sqlite:///{db}")
    with pytest.raises(DatabaseUnusable) as err:
        await again.run(again.create, [md])
    assert str(err.value) == f"{db} is damaged or truncated (database disk image is malformed)"
    again.dispose()


async def test_a_read_only_sqlite_file_is_refused_at_start(tmp_path):
    db = tmp_path / "ro.sqlite"
    store = Store(f"sqlite:///{db}")
    await store.run(store.create, [md])
    store.dispose()
    await anyio.run_process(["chattr", "+i", str(db)])  # read-only even for root
    try:
        again = Store(f"sqlite:///{db}")
        with pytest.raises(DatabaseUnusable, match="is read-only"):
            await again.run(again.create, [md])
        again.dispose()
    finally:
        await anyio.run_process(["chattr", "-i", str(db)])


# -- a database that stops taking writes while the bridge runs -----------------------------
# A real read-only condition that holds for root: PostgreSQL's default_transaction_read_only
# (what a server switched to read-only, or a failover onto a standby, does to new sessions);
# ending the store's sessions makes its pool reconnect into it.


@pytest.fixture
def own_database(postgres_url):
    """A database of its own on the test server, and a way to make it read-only and back."""
    name = f"ro_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")

    def read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} SET default_transaction_read_only = "
                                 f"{'on' if on else 'off'}")
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")

    yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False), read_only
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


class Lines(logging.Handler):
    """The store's log lines, and a way to wait for one."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.changed = anyio.Event()

    def emit(self, record):
        self.records.append(record)
        self.changed.set()

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]

    async def wait_for(self, level, text, timeout=20):
        with anyio.fail_after(timeout):
            while not any(text in m for m in self.at(level)):
                self.changed = anyio.Event()
                await self.changed.wait()


@pytest.fixture
def store_log():
    lines = Lines()
    logger = logging.getLogger("chanmux.store")
    old = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(lines)
    logger.setLevel(old)


def insert(conn, batch):
    conn.execute(rows.insert(), [{"id": i, "text": "x"} for i in batch])


async def test_rows_are_kept_while_the_database_refuses_writes_and_written_after(own_database, store_log):
    url, read_only = own_database
    store = Store(url)
    await store.run(store.create, [md])
    writer = store.writer("rows", insert)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.add_many(range(10))
        await writer.flush()
        await anyio.to_thread.run_sync(read_only, True)
        writer.add_many(range(10, 20))
        await store_log.wait_for(logging.ERROR, "cannot be written")
        writer.add_many(range(20, 30))  # while it refuses: kept with the others
        assert writer.pending >= 10 and store.unwritable is not None
        await anyio.to_thread.run_sync(read_only, False)
        await writer.flush(timeout=30)
        await store_log.wait_for(logging.INFO, "writable again")
        tg.cancel_scope.cancel()
    assert await store.transaction(count) == 30
    (error,) = store_log.at(logging.ERROR)
    assert "cannot execute INSERT in a read-only transaction" in error
    assert f"at most {store.kept_limit} per writer" in error
    (info,) = store_log.at(logging.INFO)
    assert info.startswith(f"database {store.describe()} is writable again (rows: wrote ")
    assert writer.dropped == 0 and writer.pending == 0
    store.dispose()


def cancelling(conn, batch):
    """Like the host's inbox: a row -n takes back the row n (a message kept, then done), and
    a batch where every row is taken back writes nothing."""
    gone = {-i for i in batch if i < 0}
    left = [i for i in batch if i > 0 and i not in gone]
    if left:
        insert(conn, left)


async def test_writable_again_is_said_even_when_the_kept_rows_cancel_out(own_database, store_log):
    """While the database refused writes the kept rows all cancelled out (every message kept
    in the inbox was done meanwhile): the first batch after it writes nothing, and the store
    still finds out, and says, that the database takes writes again."""
    url, read_only = own_database
    store = Store(url)
    await store.run(store.create, [md])
    writer = store.writer("inbox", cancelling)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await anyio.to_thread.run_sync(read_only, True)
        writer.add(5)
        await store_log.wait_for(logging.ERROR, "cannot be written")
        writer.add(-5)
        await anyio.to_thread.run_sync(read_only, False)
        await writer.flush(timeout=30)
        await store_log.wait_for(logging.INFO, "writable again")
        tg.cancel_scope.cancel()
    assert await store.transaction(count) == 0 and store.unwritable is None
    store.dispose()


async def test_past_the_limit_the_oldest_kept_rows_are_dropped_and_counted(own_database, store_log):
    url, read_only = own_database
    store = Store(url)
    store.kept_limit = 25
    await store.run(store.create, [md])
    await anyio.to_thread.run_sync(read_only, True)
    writer = store.writer("rows", insert)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.add_many(range(20))
        await store_log.wait_for(logging.ERROR, "cannot be written")
        writer.add_many(range(20, 40))
        assert writer.pending == 25 and writer.dropped == 15
        await anyio.to_thread.run_sync(read_only, False)
        await writer.flush(timeout=30)
        tg.cancel_scope.cancel()
    ids = await store.transaction(lambda c: [r[0] for r in c.execute(sa.select(rows.c.id).order_by(rows.c.id))])
    assert ids == list(range(15, 40))
    (warning,) = store_log.at(logging.WARNING)
    assert warning == ("rows: the database cannot be written; dropped the 15 oldest unwritten rows "
                       "to keep at most 25 in memory (15 dropped in all)")
    store.dispose()


async def test_a_stop_while_the_database_refuses_writes_does_not_wait_for_it(own_database, store_log):
    url, read_only = own_database
    store = Store(url)
    await store.run(store.create, [md])
    await anyio.to_thread.run_sync(read_only, True)
    writer = store.writer("rows", insert)
    with anyio.fail_after(20):  # a hang fails here; the old writer retried for 30 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            writer.add_many(range(5))
            await store_log.wait_for(logging.ERROR, "cannot be written")
            tg.cancel_scope.cancel()
        await writer.write_pending()  # as the host's shutdown does: one attempt, no wait
    assert writer.pending == 5  # still there, for the host's warning that counts them
    assert len(store_log.at(logging.ERROR)) == 1
    store.dispose()
