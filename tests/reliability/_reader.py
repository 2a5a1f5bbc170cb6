"""A reader process for the readers-during-writes test: it holds the catalog open read-only and queries it
until told to stop. Imports only DuckDB, so a spawned process starts quickly."""

from __future__ import annotations

import time
from typing import Any

import duckdb

# One statement, so one view of the files: per batch (its `score` holds the batch's number) its row count.
QUERY = "SELECT CAST(score AS INTEGER) AS batch, count(*) AS n FROM predictions GROUP BY ALL ORDER BY batch"


def read_until_stopped(catalog: str, ready: Any, stop: Any, results: Any) -> None:
    """Record every answer (or error) while the writer commits; send them back when `stop` is set."""
    observations: list[list[tuple[int, int]]] = []
    errors: list[str] = []
    con = duckdb.connect(catalog, read_only=True, config={"autoinstall_known_extensions": False})
    ready.put(catalog)
    while True:
        stopping = stop.is_set()  # one more read after the last commit
        try:
            observations.append([(int(b), int(n)) for b, n in con.execute(QUERY).fetchall()])
        except Exception as error:  # every error is a failure of the test: keep it to report
            errors.append(f"{type(error).__name__}: {error}")
        if stopping:
            break
        time.sleep(0.001)
    con.close()
    results.put((observations, errors))
