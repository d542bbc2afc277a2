"""The host's database: one SQLAlchemy engine, worker threads, batched writes, plug state.

Database work runs in worker threads (`anyio.to_thread`), so the host stays backend-neutral
(asyncio or trio). Writes on the hot path go through a BatchWriter: rows added while one
transaction is being written wait for the next, so a busy bridge writes many rows per
transaction and a quiet one writes each row at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from . import migrations
from .errors import ActionRequired, describe
from .metrics import ROWS, SECONDS, Histogram

log = logging.getLogger("chanmux.store")
T = TypeVar("T")

#: Rows a BatchWriter keeps in memory while the database cannot be written, by default.
KEPT_ROWS = 100_000


class DatabaseUnusable(ActionRequired):
    """The database cannot be used as it is (not a database, damaged, read-only, missing
    folder); the message is one line naming it and the problem."""

#: Core's tables (chanmux_state here, chanmux_journal in journal.py); their schema history is
#: in chanmux.migrations.versions.
metadata = sa.MetaData(info={"migrations": "chanmux.migrations.versions"})

state_table = sa.Table(
    "chanmux_state",
    metadata,
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


SUPPORTED = ("SQLite (sqlite:///PATH/TO/FILE.sqlite) and PostgreSQL "
             "(postgresql+psycopg://USER:PASSWORD@HOST/DATABASE)")


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def check_url(url: str) -> str | None:
    """What is wrong with a database URL, found without connecting (it parses, names a
    supported database, its driver is installed); None if nothing."""
    if url.startswith("postgres://"):  # what libpq and hosting panels write; SQLAlchemy does not
        return ('"postgres://" is not a SQLAlchemy URL: write postgresql+psycopg:// instead '
                f'("{_hide_password(url)}")')
    try:
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        driver = parsed.get_driver_name()
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return (f'not a database URL: "{_hide_password(url)}" (chanmux supports {SUPPORTED})')
    if backend not in ("sqlite", "postgresql"):
        return f"{backend} is not supported: chanmux supports {SUPPORTED}"
    try:
        dialect = parsed.get_dialect()
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ImportError):
        return f'unknown {backend} driver "{driver}": chanmux supports {SUPPORTED}'
    if getattr(dialect, "is_async", False):
        return f'"{parsed.drivername}" is an asyncio driver: chanmux supports {SUPPORTED}'
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or driver
        if backend == "postgresql":
            if driver == "psycopg":
                return ('PostgreSQL needs psycopg, which is not installed: '
                        'pip install "chanmux[postgres]"')
            return (f'the PostgreSQL driver {missing} ("{parsed.drivername}") is not installed: '
                    f'write postgresql+psycopg:// and pip install "chanmux[postgres]"')
        return f"the {backend} driver {missing} is not installed ({exc})"
    return None


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another database."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and name.startswith("file:"):
        if "mode=memory" in name or parsed.query.get("mode") == "memory":
            return None
        name = name.removeprefix("file:").split("?", 1)[0]
    if name in ("", ":memory:"):
        return None
    return Path(name)


def folder_problem(folder: Path) -> str | None:
    """Why SQLite cannot create files in `folder` (the database, its -wal and -shm), if it can't."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".chanmux-check-")
    except OSError as exc:
        return f"folder {folder} is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_database(url: str) -> str | None:
    """What is wrong with the database at `url` that can be found without creating it or
    connecting to a server: the URL (`check_url`), and for SQLite that the folder exists and
    is writable, and that an existing file is an undamaged, writable SQLite database.
    None if nothing. Blocking."""
    problem = check_url(url)
    if problem:
        return problem
    path = sqlite_file(url)
    if path is None:
        return None
    parsed = sa.make_url(url)
    if parsed.query.get("mode") == "ro" or "mode=ro" in (parsed.database or ""):
        return f"the URL opens {path} read-only (mode=ro); chanmux must write to its database"
    folder = path.parent
    if not folder.exists():
        return f"folder {folder} does not exist (for the SQLite file {path.name})"
    if not folder.is_dir():
        return f"{folder} is not a folder (for the SQLite file {path.name})"
    if path.is_dir():
        return f"{path} is a folder, not a SQLite database file"
    if not path.exists():
        return folder_problem(folder)
    return _probe_sqlite(path)


def _probe_sqlite(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=1, isolation_level=None)
    except sqlite3.Error as exc:
        return _sqlite_problem(path, exc)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        try:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE chanmux_write_check (x INTEGER)")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None  # another connection is writing: it is writable
        return _sqlite_problem(path, exc)
    finally:
        conn.close()
    return None


def _sqlite_problem(path: Path, exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    if "file is not a database" in text:
        return f"{path} is not a SQLite database (file is not a database)"
    if "malformed" in text:
        return f"{path} is damaged or truncated (database disk image is malformed)"
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only ({text}); chanmux must write to its database"
    if "unable to open" in text:
        folder = folder_problem(path.parent)
        if folder:
            return f"cannot open {path}: {folder}; SQLite keeps {path.name}-wal and -shm there"
        return f"cannot open {path} ({text})"
    return f"{path}: {text}"


#: PostgreSQL's "cannot execute ... in a read-only transaction".
READ_ONLY_SQLSTATE = "25006"


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, a busy timeout and thread-safe use."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = sa.create_engine(url, echo=echo, pool_pre_ping=True)

        @sa.event.listens_for(engine, "handle_error")
        def _read_only_session(context: Any) -> None:
            # A session opened while the server refused writes (read-only, a standby) keeps
            # refusing them after the server takes writes again: drop that connection, so the
            # next attempt opens a session that sees the change.
            if getattr(context.original_exception, "sqlstate", None) == READ_ONLY_SQLSTATE:
                context.is_disconnect = True
                context.invalidate_pool_on_disconnect = False

        return engine
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


_insert_sql: dict[tuple[str, tuple[str, ...], int], str] = {}

#: Rows per INSERT statement on SQLite, at most (fewer where the library takes fewer
#: parameters). One statement of many rows, not the driver's executemany: pysqlite lets go of
#: the GIL while it steps a statement and must take it back after, and a thread that wants
#: the GIL back while the event loop is busy waits up to the switch interval (5 ms) for it.
#: A row at a time, a 60,000-row write took minutes against a busy thread; in statements of
#: 4,000 rows, under a second.
SQLITE_ROWS_PER_INSERT = 4000


def _sqlite_rows_per_insert(conn: Connection, width: int) -> int:
    """Rows of `width` parameters that fit one SQLite statement (32,766 parameters since
    SQLite 3.32, 999 before; Python >= 3.11 can ask the library)."""
    limit = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    dbapi = getattr(conn.connection, "dbapi_connection", None)
    getlimit = getattr(dbapi, "getlimit", None)
    if getlimit is not None:
        try:
            limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except (AttributeError, sqlite3.Error):
            pass
    return max(1, min(SQLITE_ROWS_PER_INSERT, limit // width))


def insert_new(conn: Connection, table: sa.Table, columns: tuple[str, ...],
               rows: list[tuple[Any, ...]]) -> None:
    """Insert row tuples (values in `columns` order) in as few statements as the database
    takes, leaving alone any row whose unique key is stored already (blocking: run it in a
    transaction or BatchWriter).

    SQLite gets INSERT OR IGNORE statements of many rows each (`SQLITE_ROWS_PER_INSERT`);
    PostgreSQL an INSERT ... ON CONFLICT DO NOTHING; other databases a row at a time."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        width = len(columns)
        step = _sqlite_rows_per_insert(conn, width)
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            key = (table.name, columns, len(part))
            sql = _insert_sql.get(key)
            if sql is None:
                one = f"({','.join('?' * width)})"
                sql = (f"INSERT OR IGNORE INTO {table.name} ({', '.join(columns)}) "
                       f"VALUES {','.join([one] * len(part))}")
                if len(part) in (1, step):  # (a batch's last part is made each time)
                    _insert_sql[key] = sql
            conn.exec_driver_sql(sql, tuple(value for row in part for value in row))
        return
    dicts = [dict(zip(columns, row, strict=True)) for row in rows]
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


#: The PostgreSQL advisory lock two hosts starting on one database take while they migrate it.
_SCHEMA_LOCK = 0x63686D78


@contextmanager
def _schema_transaction(conn: Connection) -> Iterator[None]:
    """One transaction around schema changes, committed at the end, rolled back on error.

    pysqlite commits before DDL unless told otherwise; here it runs in autocommit mode while
    the transaction is its own BEGIN IMMEDIATE, so CREATE and ALTER roll back with the rest
    (and a second host waits instead of migrating at the same time). PostgreSQL takes an
    advisory lock for the same reason."""
    raw = conn.connection.dbapi_connection
    sqlite = conn.dialect.name == "sqlite"
    level = raw.isolation_level if sqlite else None  # type: ignore[union-attr]
    if sqlite:
        raw.isolation_level = None  # type: ignore[union-attr]
    try:
        if sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    finally:
        if sqlite:
            raw.isolation_level = level  # type: ignore[union-attr]


class Store:
    """The host database. Plugins declare tables on their own MetaData; `create` makes them."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.limiter = anyio.CapacityLimiter(1 if self.is_sqlite else 8)
        self.writers: list[BatchWriter[Any]] = []
        #: Rows each BatchWriter keeps in memory while the database cannot be written; past
        #: it the oldest are dropped, with a warning counting them.
        self.kept_limit = KEPT_ROWS
        #: Why the last write failed, while writes fail; None while they pass.
        self.unwritable: str | None = None
        self._failing_writers: set[str] = set()  # the writers whose last write that did anything failed
        self._statements = threading.local()  # statements run, per worker thread
        sa.event.listen(self.engine, "after_cursor_execute", self._counted)

    def _counted(self, *_args: Any) -> None:
        self._statements.count = self.statements() + 1

    def statements(self) -> int:
        """Statements the calling thread has run: a write that ran none proves nothing."""
        return getattr(self._statements, "count", 0)

    def describe(self) -> str:
        """The URL with any password hidden, for logs."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def create(self, metadatas: Iterable[sa.MetaData]) -> None:
        """Bring every package's tables to its installed schema and check that the database
        can be written (blocking; run it in a thread). DatabaseUnusable (one line) if it
        cannot be used: among others a database newer than an installed package, or a
        migration that failed (the database is then left as it was).

        A MetaData whose ``info["migrations"]`` names Alembic revisions is upgraded through
        them (see chanmux.migrations); the tables of one that names none are created if
        missing, as in 0.1.0. All of it runs in one transaction."""
        problem = check_database(self.url)
        if problem:
            raise DatabaseUnusable(problem)
        try:
            histories, plain = migrations.histories([metadata, *metadatas])
        except migrations.MigrationProblem as exc:
            raise DatabaseUnusable(str(exc)) from None
        try:
            with self.engine.connect() as conn:
                with _schema_transaction(conn):
                    for history in histories:
                        migrations.upgrade(conn, history, self._name())
                    for md in plain:
                        md.create_all(conn)
                trans = conn.begin()
                try:
                    conn.execute(state_table.insert().values(
                        owner="chanmux", key=f"write-check-{uuid.uuid4().hex}", value="null"))
                finally:
                    trans.rollback()
        except migrations.MigrationProblem as exc:
            raise DatabaseUnusable(f"{self._name()}: {exc}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnusable(self._problem(exc)) from None

    def check_schema(self, metadatas: Iterable[sa.MetaData]) -> str | None:
        """Why the installed packages cannot use this database as it is, found without
        changing it (a package's tables at a revision it does not know, written by a newer
        release); None if nothing. A SQLite file that does not exist yet is fine. Blocking."""
        path = sqlite_file(self.url)
        if path is not None and not path.exists():
            return None
        try:
            histories, _ = migrations.histories([metadata, *metadatas])
        except migrations.MigrationProblem as exc:
            return str(exc)
        try:
            with self.engine.connect() as conn:
                if path is not None:  # a damage a schema read misses (pages the file's tail holds)
                    verdict = conn.exec_driver_sql("PRAGMA quick_check(1)").scalar()
                    if verdict != "ok":
                        return _sqlite_problem(path, sqlite3.DatabaseError(
                            f"database disk image is malformed: {verdict}"))
                for history in histories:
                    problem = migrations.newer_problem(conn, history)
                    if problem:
                        return f"{self._name()}: {problem}"
        except sa.exc.SQLAlchemyError as exc:
            return self._problem(exc)
        return None

    def _name(self) -> str:
        path = sqlite_file(self.url)
        return str(path) if path is not None else self.describe()

    def _problem(self, exc: BaseException) -> str:
        path = sqlite_file(self.url)
        if path is not None:
            return _sqlite_problem(path, exc)
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{self.describe()}: {text[0] if text else type(exc).__name__}"

    # -- whether writes pass, told once per outage -------------------------------------------

    def _write_failed(self, writer: str, exc: BaseException, kept: int) -> None:
        """One ERROR when writes start failing, however many writers fail after."""
        self._failing_writers.add(writer)
        if self.unwritable is None:
            self.unwritable = describe(exc)
            log.error("database %s cannot be written (%s: %s); keeping unwritten rows in "
                      "memory (at most %d per writer) and retrying", self.describe(), writer,
                      self._reason(exc), self.kept_limit)
        else:
            log.debug("%s: writing %d rows failed again (%s)", writer, kept, self._reason(exc))

    def _write_passed(self, writer: str, rows: int) -> None:
        """One INFO once every writer that failed has written again (a batch that ran no
        statement, its rows cancelling out, does not count)."""
        self._failing_writers.discard(writer)
        if self.unwritable is not None and not self._failing_writers:
            self.unwritable = None
            log.info("database %s is writable again (%s: wrote %d kept rows)",
                     self.describe(), writer, rows)

    def _reason(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None)
        text = str(orig if orig is not None else exc).strip().splitlines()
        return text[0] if text else type(exc).__name__

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
        await self.transaction(lambda conn: _put_state(conn, owner, key, encoded))

    def dispose(self) -> None:
        self.engine.dispose()


def _put_state(conn: Connection, owner: str, key: str, encoded: str) -> None:
    updated = conn.execute(state_table.update().where(
        state_table.c.owner == owner, state_table.c.key == key).values(value=encoded))
    if updated.rowcount == 0:
        conn.execute(state_table.insert().values(owner=owner, key=key, value=encoded))


class BatchWriter(Generic[T]):
    """Collects rows and writes them in as few transactions as the load allows.

    While the database cannot be written, the rows are kept in memory (at most
    `store.kept_limit`; past it the oldest are dropped with a warning that counts them) and
    retried with backoff; the store logs one ERROR when writes start failing and one INFO
    when they pass again. At a stop, `write_pending` tries once more and gives up at once if
    the database still refuses, so a stop never waits on it."""

    def __init__(self, store: Store, name: str, write: Callable[[Connection, list[T]], None]) -> None:
        self.store = store
        self.name = name
        self._write = write
        self._pending: list[T] = []
        self._added = 0
        self._done = 0
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._failing = False
        self.batches = 0
        self.failures = 0
        self.batch_rows = Histogram(ROWS)
        self.batch_seconds = Histogram(SECONDS)
        #: rows dropped because the database could not be written for too long
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Rows added and not yet written (kept in memory while the database refuses them)."""
        return len(self._pending)

    def add(self, row: T) -> None:
        """Queue a row; it is written by the flusher in the next transaction."""
        self._pending.append(row)
        self._added += 1
        if self._failing:
            self._bound()
        self._wake.set()

    def add_many(self, rows: Iterable[T]) -> None:
        for row in rows:
            self._pending.append(row)
            self._added += 1
        if self._failing:
            self._bound()
        self._wake.set()

    def _bound(self) -> None:
        excess = len(self._pending) - self.store.kept_limit
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            self._done += excess
            log.warning("%s: the database cannot be written; dropped the %d oldest unwritten "
                        "rows to keep at most %d in memory (%d dropped in all)", self.name,
                        excess, self.store.kept_limit, self.dropped)
            self._advance()

    async def flush(self, timeout: float = 60.0) -> None:
        """Wait until every row added so far is written (or raise TimeoutError)."""
        target = self._added
        with anyio.fail_after(timeout):
            while self._done < target:
                self._wake.set()
                await self._progress.wait()

    def _advance(self) -> None:
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    async def _attempt(self) -> bool:
        """Write everything pending in one transaction; False (rows kept) if it failed."""
        batch, self._pending = self._pending, []
        committed = False
        wrote = False
        probe = self._failing

        def work() -> None:
            nonlocal committed, wrote
            before = self.store.statements()
            with self.store.engine.begin() as conn:
                self._write(conn, batch)
            committed = True
            wrote = self.store.statements() != before
            if probe and not wrote:
                # after a failure, a batch whose rows cancel out (a message kept, then done)
                # proves nothing: one state row written on its own says whether the database
                # takes writes again (if not, the batch is done all the same)
                try:
                    with self.store.engine.begin() as conn:
                        _put_state(conn, "chanmux", "write-check", json.dumps(time.time()))
                except sa.exc.SQLAlchemyError:
                    return
                wrote = True

        started = time.monotonic()
        try:
            await self.store.run(work)
        except BaseException as exc:
            if committed:  # cancelled once the thread had written them
                self.batches += 1
                self._done += len(batch)
                self._advance()
            else:
                self._pending[:0] = batch
            if not isinstance(exc, Exception):
                raise
            self.failures += 1
            self._failing = True
            self.store._write_failed(self.name, exc, len(self._pending))
            self._bound()
            return False
        self.batches += 1
        self.batch_rows.observe(len(batch))
        self.batch_seconds.observe(time.monotonic() - started)
        self._done += len(batch)
        if self._failing and wrote:
            self._failing = False
            self.store._write_passed(self.name, len(batch))
        self._advance()
        return True

    async def _write_batch(self) -> None:
        """Write what is pending, retrying with backoff until it passes (rows added in the
        meantime join the retry)."""
        delay = 0.05
        while not await self._attempt():
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

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
        and plugs closed, for rows they added while closing). One attempt while the database
        refuses writes: the rows stay in `pending`, for the caller to report."""
        with anyio.move_on_after(timeout):
            while self._pending:
                if not await self._attempt():
                    return


__all__ = [
    "KEPT_ROWS",
    "BatchWriter",
    "DatabaseUnusable",
    "Store",
    "check_database",
    "check_url",
    "insert_new",
    "make_engine",
    "metadata",
    "sqlite_file",
    "state_table",
]
