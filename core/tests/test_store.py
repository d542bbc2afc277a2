"""The host database: tables made at start, batched writes, state kept across restarts.
Every test runs on a SQLite file and on a real PostgreSQL server."""

import anyio
import pytest
import sqlalchemy as sa

from chanmux import Store

pytestmark = pytest.mark.anyio

md = sa.MetaData()
rows = sa.Table("test_rows", md, sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("text", sa.String(100), nullable=False))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("test_rows", "chanmux_state"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
    return url


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
