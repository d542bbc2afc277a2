"""The host's database: one SQLAlchemy engine, worker threads, batched writes, plug state.

Database work runs in worker threads (`anyio.to_thread`), so the host stays backend-neutral
(asyncio or trio). Writes on the hot path go through a BatchWriter: rows added while one
transaction is being written wait for the next, so a busy bridge writes many rows per
transaction and a quiet one writes each row at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

log = logging.getLogger("chanmux.store")
T = TypeVar("T")

metadata = sa.MetaData()

state_table = sa.Table(
    "chanmux_state",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, a busy timeout and thread-safe use."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, echo=echo, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


_insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}


def insert_new(conn: Connection, table: sa.Table, columns: tuple[str, ...],
               rows: list[tuple[Any, ...]]) -> None:
    """Insert row tuples (values in `columns` order) in one statement, leaving alone any row
    whose unique key is stored already (blocking: run it in a transaction or BatchWriter).

    SQLite gets the driver's executemany of INSERT OR IGNORE, with little Python work per
    row; PostgreSQL an INSERT ... ON CONFLICT DO NOTHING; other databases a row at a time."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql = _insert_sql.get((table.name, columns))
        if sql is None:
            sql = _insert_sql[(table.name, columns)] = (
                f"INSERT OR IGNORE INTO {table.name} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})")
        conn.exec_driver_sql(sql, rows)
        return
    dicts = [dict(zip(columns, row)) for row in rows]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), dicts)
        return
    for row in dicts:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), row)
        except sa.exc.IntegrityError:
            pass


class Store:
    """The host database. Plugins declare tables on their own MetaData; `create` makes them."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.limiter = anyio.CapacityLimiter(1 if self.is_sqlite else 8)
        self.writers: list[BatchWriter[Any]] = []

    def describe(self) -> str:
        """The URL with any password hidden, for logs."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def create(self, metadatas: Iterable[sa.MetaData]) -> None:
        """Create every table not yet in the database (blocking; run it in a thread)."""
        for md in [metadata, *metadatas]:
            md.create_all(self.engine)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking database work `fn(*args)` in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` in one transaction in a worker thread."""

        def work() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return await self.run(work)

    def writer(self, name: str, write: Callable[[Connection, list[T]], None]) -> BatchWriter[T]:
        """A batching writer: `add` rows without waiting; `write(conn, rows)` stores a batch
        in one transaction. The host runs its flusher while it runs."""
        w: BatchWriter[T] = BatchWriter(self, name, write)
        self.writers.append(w)
        return w

    async def get_state(self, owner: str, key: str, default: Any = None) -> Any:
        """A JSON value a plugin kept across restarts (a resume token, a device id)."""

        def read(conn: Connection) -> Any:
            row = conn.execute(sa.select(state_table.c.value).where(
                state_table.c.owner == owner, state_table.c.key == key)).first()
            return json.loads(row[0]) if row else default

        return await self.transaction(read)

    async def set_state(self, owner: str, key: str, value: Any) -> None:
        """Keep a JSON value for `owner` under `key`, replacing any earlier one."""
        encoded = json.dumps(value)

        def write(conn: Connection) -> None:
            updated = conn.execute(state_table.update().where(
                state_table.c.owner == owner, state_table.c.key == key).values(value=encoded))
            if updated.rowcount == 0:
                conn.execute(state_table.insert().values(owner=owner, key=key, value=encoded))

        await self.transaction(write)

    def dispose(self) -> None:
        self.engine.dispose()


class BatchWriter(Generic[T]):
    """Collects rows and writes them in as few transactions as the load allows."""

    def __init__(self, store: Store, name: str, write: Callable[[Connection, list[T]], None]) -> None:
        self.store = store
        self.name = name
        self._write = write
        self._pending: list[T] = []
        self._added = 0
        self._written = 0
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self.batches = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, row: T) -> None:
        """Queue a row; it is written by the flusher in the next transaction."""
        self._pending.append(row)
        self._added += 1
        self._wake.set()

    def add_many(self, rows: Iterable[T]) -> None:
        for row in rows:
            self._pending.append(row)
            self._added += 1
        self._wake.set()

    async def flush(self, timeout: float = 60.0) -> None:
        """Wait until every row added so far is written (or raise TimeoutError)."""
        target = self._added
        with anyio.fail_after(timeout):
            while self._written < target:
                self._wake.set()
                await self._progress.wait()

    async def _write_batch(self) -> None:
        batch, self._pending = self._pending, []
        delay = 0.05
        committed = False

        def work() -> None:
            nonlocal committed
            with self.store.engine.begin() as conn:
                self._write(conn, batch)
            committed = True

        while True:
            try:
                await self.store.run(work)
                break
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    if not committed:  # cancelled before the thread wrote them: keep the rows
                        self._pending[:0] = batch
                    raise
                self.failures += 1
                log.error("%s: writing %d rows failed (%s); retrying in %.1fs",
                          self.name, len(batch), exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.batches += 1
        self._written += len(batch)
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    async def run(self) -> None:
        """The flusher: write whatever is pending each time rows arrive, until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self._pending:
                    await self._write_batch()
        finally:
            with anyio.CancelScope(shield=True):
                await self.write_pending()

    async def write_pending(self, timeout: float = 30.0) -> None:
        """Write every row still pending now (the host calls it at shutdown, after the hooks
        and plugs closed, for rows they added while closing)."""
        with anyio.move_on_after(timeout):
            while self._pending:
                await self._write_batch()


__all__ = ["BatchWriter", "Store", "make_engine", "metadata", "state_table"]
