"""Immutable Parquet batches with atomic, idempotent commits.

A table is a folder of Hive-style partitions (`<table>/<key>=<value>/<batch_id>.parquet`). A batch
is one file, written under `_staging/` (outside every view's glob), fsynced, then renamed into place
with `os.replace`: a reader sees the whole batch or none of it. Batch ids are derived from the
batch's inputs, so committing the same batch again is a no-op, and a run killed at any point is
finished by the next run. Each table also holds a zero-row `_schema.parquet` so its view exists (and
has its columns typed) before the first batch lands.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STAGING = "_staging"
SCHEMA_FILE = "_schema.parquet"


class CommitError(RuntimeError):
    """A batch could not be written; nothing of it is visible."""


@dataclass(frozen=True, kw_only=True)
class Table:
    """A table's name, its partition column (a string column inside every file) and its schema."""

    name: str
    partition_by: str
    schema: pa.Schema

    def glob(self, root: Path) -> str:
        return f"{_glob_literal(str(root / self.name))}/**/*.parquet"


def repeat(value: object, n: int, type_: pa.DataType) -> pa.Array:
    """`value` n times, built in Arrow (a Python list of a million items costs a tenth of a second)."""
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int32)))


def _glob_literal(path: str) -> str:
    """`path` with glob characters escaped, so a folder named `copy [1]` matches only itself."""
    return re.sub(r"([\[\]*?])", r"[\1]", path)


def batch_id(*parts: object) -> str:
    """A deterministic id for a batch, from what defines it (a file's content hash, a model version...)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode())
    return digest.hexdigest()[:20]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Warehouse:
    """The storage root: one folder per table, written only through `commit`."""

    def __init__(self, root: Path, tables: list[Table], views: dict[str, str] | None = None) -> None:
        self.root = root.resolve()
        self.tables = {t.name: t for t in tables}
        self.views = dict(views or {})  # name -> SQL over the tables, for people and for the flows

    def definitions(self) -> list[tuple[str, str]]:
        """Every view, in creation order: one per table, then the derived ones."""
        tables = [(name, f"SELECT * FROM {self.scan_sql(name)}") for name in self.tables]
        return tables + list(self.views.items())

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r}; known tables: {sorted(self.tables)}") from None

    def init(self) -> None:
        """Create the table folders and their schema files; safe to run again."""
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        for table in self.tables.values():
            folder = self.root / table.name
            folder.mkdir(parents=True, exist_ok=True)
            schema_file = folder / SCHEMA_FILE
            empty = table.schema.empty_table()
            if not schema_file.exists() or not pq.read_schema(schema_file).equals(table.schema):
                self._write_atomically(empty, schema_file)

    def has_batch(self, table: str, batch: str) -> bool:
        return any((self.root / table).glob(f"*/{batch}.parquet"))

    def batch_path(self, table: str, batch: str, partition: str) -> Path:
        t = self.table(table)
        return self.root / t.name / f"{t.partition_by}={partition}" / f"{batch}.parquet"

    def commit(self, table: str, batch: str, rows: pa.Table, *, partition: str) -> bool:
        """Write `rows` as batch `batch` of `table` in `partition`, atomically.

        Returns False, writing nothing, when that batch is already committed. The partition and
        batch-id columns are filled here; every other column of the schema must be in `rows`.
        An empty batch is committed too: it records that the input was handled.
        """
        t = self.table(table)
        if self.has_batch(t.name, batch):
            return False
        for name, value in ((t.partition_by, partition), ("batch_id", batch)):
            if name in t.schema.names:
                column = repeat(value, rows.num_rows, pa.string())
                index = rows.schema.get_field_index(name)
                rows = rows.set_column(index, name, column) if index >= 0 else rows.append_column(name, column)
        missing = [name for name in t.schema.names if name not in rows.schema.names]
        if missing:
            raise CommitError(f"batch {batch} of {table} lacks columns {missing}")
        rows = rows.select(t.schema.names).cast(t.schema)
        self._write_atomically(rows, self.batch_path(t.name, batch, partition))
        return True

    def _write_atomically(self, rows: pa.Table, final: Path) -> None:
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        temporary = staging / f"{final.stem}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as sink:
                pq.write_table(rows, sink, compression="zstd")
                sink.flush()
                os.fsync(sink.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)
            _fsync_dir(final.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise CommitError(
                f"could not write {final.relative_to(self.root)} under {self.root}: {error.strerror or error}. "
                "Nothing of this batch is visible; free disk space or fix the folder's permissions and run again."
            ) from error

    def clean_staging(self, older_than_s: float = 3600) -> int:
        """Remove temporary files left by killed runs (never visible); returns how many.

        Only files older than `older_than_s`: a younger one may belong to a run writing right now.
        """
        cutoff = time.time() - older_than_s
        leftovers = [p for p in (self.root / STAGING).glob("*.tmp") if p.stat().st_mtime <= cutoff]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def scan_sql(self, table: str) -> str:
        """SQL for every committed row of `table` (the schema file contributes columns, no rows)."""
        glob = self.table(table).glob(self.root).replace("'", "''")
        return f"read_parquet('{glob}', union_by_name = true, hive_partitioning = false)"

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB session with the catalog's views: how the flows read what they wrote."""
        con = duckdb.connect(config=FLOW_DUCKDB_CONFIG)
        try:
            for name, sql in self.definitions():
                con.execute(f"CREATE VIEW {name} AS {sql}")
            yield con
        finally:
            con.close()


# Nothing may reach for the network: extensions are never installed or loaded on the fly.
SAFE_DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
# The flows stream large results (scoring reads every pending record): no ordering they do not ask for
# (ordered streaming buffers whatever runs ahead of the consumer) and a cap on DuckDB's own memory.
FLOW_DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    **SAFE_DUCKDB_CONFIG,
    "preserve_insertion_order": False,
    "memory_limit": "2GB",
}
