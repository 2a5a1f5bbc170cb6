"""The DuckDB catalog: a database file that holds only views over the Parquet tables.

Flows never write it. It is rebuilt only when its views must change (or the warehouse moved), into
a temporary file that then replaces the old one atomically, so readers holding the old file open
keep working. Views use absolute paths: a reader gets answers from any working directory.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import duckdb

from warehouse.store import SAFE_DUCKDB_CONFIG, Warehouse

CATALOG_FILE = "warehouse.duckdb"


def _fingerprint(definitions: list[tuple[str, str]]) -> str:
    return hashlib.sha256(repr(definitions).encode()).hexdigest()[:16]


def catalog_path(store: Warehouse) -> Path:
    return store.root / CATALOG_FILE


def _fingerprint_path(store: Warehouse) -> Path:
    return store.root / f".{CATALOG_FILE}.fingerprint"


def catalog_is_current(store: Warehouse) -> bool:
    """Whether the catalog holds today's views. Read from a side file, not by opening the catalog:
    DuckDB refuses a second connection with other settings to a file this process already has open."""
    marker = _fingerprint_path(store)
    if not catalog_path(store).exists() or not marker.exists():
        return False
    return marker.read_text().strip() == _fingerprint(store.definitions())


def build_catalog(store: Warehouse) -> Path:
    """Write the catalog if its views changed; an unchanged catalog is left alone. Returns its path."""
    path = catalog_path(store)
    if catalog_is_current(store):
        return path
    definitions = store.definitions()
    temporary = store.root / f".{CATALOG_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        # Written in the oldest storage format that holds views, so DuckDB 1.x CLIs can open it too.
        with duckdb.connect(
            str(temporary), config={**SAFE_DUCKDB_CONFIG, "storage_compatibility_version": "v1.0.0"}
        ) as con:
            for name, sql in definitions:
                con.execute(f"CREATE VIEW {name} AS {sql}")
            con.execute("CHECKPOINT")
        os.replace(temporary, path)
        _fingerprint_path(store).write_text(_fingerprint(definitions))
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return path
