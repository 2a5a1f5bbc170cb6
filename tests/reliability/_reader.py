"""A reader process for the readers-during-writes test: it queries the catalog read-only until told to stop,
following the file when a rebuild swaps a new one in. Imports only DuckDB, so a spawned process starts quickly.

It follows the catalog as the dashboard's `CatalogReader` (warehouse/queries.py) does: when the file's inode,
mtime or size changed, the next query comes from a fresh private DuckDB instance with the new file attached
(DuckDB shares one instance per path within a process, which would keep serving the replaced file).
"""

from __future__ import annotations

import os
import time
from typing import Any

import duckdb

# One statement, so one view of the files: per batch (its `score` holds the batch's number) its row count.
QUERY = "SELECT CAST(score AS INTEGER) AS batch, count(*) AS n FROM predictions GROUP BY ALL ORDER BY batch"
# Between two queries: enough for four readers not to starve the writer on two cores.
PAUSE_S = 0.01


def identity(path: str) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def attach(path: str) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB with the catalog file attached read-only as the default database."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    quoted = path.replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS catalog (READ_ONLY)")
    con.execute("USE catalog")
    return con


def read_until_stopped(catalog: str, ready: Any, stop: Any, results: Any) -> None:
    """Record every answer (or error) while the writer commits; send them back, with how many catalog files were
    opened, when `stop` is set."""
    observations: list[list[tuple[int, int]]] = []
    errors: list[str] = []
    opened: tuple[int, int, int] | None = None
    con: duckdb.DuckDBPyConnection | None = None
    files_opened = 0
    announced = False
    while True:
        stopping = stop.is_set()  # one more read after the last commit
        try:
            now = identity(catalog)
            if con is None or now != opened:
                if con is not None:
                    con.close()
                con, opened = attach(catalog), now
                files_opened += 1
            observations.append([(int(b), int(n)) for b, n in con.execute(QUERY).fetchall()])
        except Exception as error:  # every error is a failure of the test: keep it to report
            errors.append(f"{type(error).__name__}: {error}")
        if not announced:
            ready.put(catalog)  # the writer starts once every reader has read once
            announced = True
        if stopping:
            break
        time.sleep(PAUSE_S)
    if con is not None:
        con.close()
    results.put((observations, errors, files_opened))
