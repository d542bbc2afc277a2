"""How long a batch of sync rows takes to reach SQLite while the event loop's thread is busy.

The host writes in a worker thread (BatchWriter) while the event loop runs Python in the
main thread. pysqlite lets go of the GIL while it steps a statement and must take it back
after; while another thread runs Python, taking it back waits up to the switch interval
(5 ms). So what matters is how many statements a batch takes: `insert_new` puts up to
`SQLITE_ROWS_PER_INSERT` rows in one (`--per-statement 1` is a row per statement, the way
the driver's executemany steps, as core did before 0.2.5).

Writes `--rows` rows of the sync's table (3 per relayed message) in one transaction on a
fresh SQLite file, once with the main thread idle and once while it runs a Python loop, and
prints the seconds and rows/s of each.

Usage: python benchmarks/db_busy.py [--rows 60000] [--per-statement N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid

import anyio

import chanmux.store
from chanmux import Store, insert_new
from chanmux_sync.store import ROW_COLUMNS, backrefs, metadata


def rows(count: int) -> list[tuple[object, ...]]:
    made: list[tuple[object, ...]] = []
    for i in range(count // 3 + 1):
        key = uuid.uuid4().hex
        made.append(("sync", key, "c0", "#c0", f"c0-{i}", True, "Human", f"message {i}"))
        made.append(("sync", key, "c1", "#c1", f"c1-{i}", False, None, None))
        made.append(("sync", key, "c2", "#c2", f"c2-{i}", False, None, None))
    return made[:count]


async def write(path: str, batch: list[tuple[object, ...]], busy: bool) -> dict[str, object]:
    store = Store(f"sqlite:///{path}")
    await store.run(store.create, [metadata])
    stop = threading.Event()

    def spin() -> None:  # the event loop's thread at work: Python, holding the GIL
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    spinner = threading.Thread(target=spin) if busy else None
    try:
        if spinner is not None:
            spinner.start()
        started = time.perf_counter()
        await store.transaction(lambda conn: insert_new(conn, backrefs, ROW_COLUMNS, batch))
        took = time.perf_counter() - started
    finally:
        stop.set()
        if spinner is not None:
            spinner.join()
        store.dispose()
    return {"busy": busy, "rows": len(batch), "seconds": round(took, 3),
            "rows_per_s": round(len(batch) / took)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--per-statement", type=int, default=None,
                        help=f"rows per INSERT (default: core's, "
                             f"{chanmux.store.SQLITE_ROWS_PER_INSERT})")
    args = parser.parse_args()
    if args.per_statement is not None:
        chanmux.store.SQLITE_ROWS_PER_INSERT = args.per_statement
    batch = rows(args.rows)
    with tempfile.TemporaryDirectory(prefix="chanmux-db-busy-") as tmp:
        for run, busy in enumerate((False, True)):
            result = anyio.run(write, f"{tmp}/run{run}.sqlite", batch, busy)
            result["per_statement"] = chanmux.store.SQLITE_ROWS_PER_INSERT
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
