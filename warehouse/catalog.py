"""The DuckDB catalog: a database file that holds only views over the Delta tables' current files.

DuckDB 2.x bundles no Delta reader and nothing may be downloaded at run time, so each table's view
lists the files of one snapshot explicitly (`read_parquet([...])`, absolute paths or URIs: a reader
gets answers from any working directory). Flows never open the catalog for writing; it is rebuilt when
a commit changed a table's files, into a temporary file that then replaces the old one atomically. A
reader holding the old file keeps a consistent snapshot until the vacuum retention removes its files,
which is why the retention must outlast any reader.

`as_of` builds the same views over the snapshots of a past moment (time travel, within the retention):
the catalog an auditor opens to see what was published then.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import datetime
from pathlib import Path

import duckdb

from warehouse.store import SAFE_DUCKDB_CONFIG, Warehouse, table_sql

CATALOG_FILE = "warehouse.duckdb"


def definitions(store: Warehouse, as_of: datetime | None = None) -> list[tuple[str, str]]:
    """Every view, in creation order: one per table over its snapshot's files, then the derived ones."""
    tables = [(name, table_sql(store.files(name, as_of), table.schema)) for name, table in store.tables.items()]
    return tables + list(store.views.items())


def _fingerprint(views: list[tuple[str, str]]) -> str:
    return hashlib.sha256(repr(views).encode()).hexdigest()[:16]


def catalog_path(store: Warehouse) -> Path:
    """Where the warehouse's catalog is kept (`paths.catalog`; by default beside the tables)."""
    return store.catalog


def _fingerprint_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.fingerprint")


def build_catalog(store: Warehouse, path: Path | None = None, as_of: datetime | None = None) -> Path:
    """Write the catalog (at `path`, by default the warehouse's) if its views changed; an unchanged catalog
    is left alone. Returns its path."""
    path = path or store.catalog
    views = definitions(store, as_of)
    marker = _fingerprint_path(path)
    fingerprint = _fingerprint(views)
    if path.exists() and marker.exists() and marker.read_text().strip() == fingerprint:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # Written in the oldest storage format that holds views, so DuckDB 1.x CLIs can open it too.
        with duckdb.connect(
            str(temporary), config={**SAFE_DUCKDB_CONFIG, "storage_compatibility_version": "v1.0.0"}
        ) as con:
            for name, sql in views:
                con.execute(f"CREATE VIEW {name} AS {sql}")
            con.execute("CHECKPOINT")
        os.replace(temporary, path)
        marker.write_text(fingerprint)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return path
