"""The DuckDB catalog: only views, readable from anywhere, rebuilt only when its views change."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from warehouse.catalog import build_catalog, catalog_is_current, catalog_path
from warehouse.layout import VIEWS, open_warehouse
from warehouse.store import Warehouse

FEATURES = {"amount": "numeric", "colour": "categorical"}
TABLES = {"records", "quarantine", "predictions", "models", "reference"}


def store_at(root: Path, views: dict[str, str] | None = None) -> Warehouse:
    store = open_warehouse(root, FEATURES, event_time=False)  # type: ignore[arg-type]
    if views is not None:
        store.views = views
    store.init()
    return store


def commit_records(store: Warehouse, batch: str, ids: list[str]) -> None:
    n = len(ids)
    rows = pa.table(
        {
            "record_id": ids,
            "amount": [1.0] * n,
            "colour": ["red"] * n,
            "source_file": ["f.csv"] * n,
            "row_number": list(range(1, n + 1)),
            "row_hash": ["0" * 16] * n,
            "ingested_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    store.commit("records", batch, rows, partition="2026-01-01")


def test_catalog_holds_only_views(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    assert path == catalog_path(store) and path.is_file()

    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views >= TABLES
    assert set(VIEWS) <= views
    assert views == set(store.tables) | set(VIEWS)


def test_catalog_answers_read_only_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    commit_records(store, "b1", ["a", "b", "c"])  # after the build: views read the files at query time
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM ingest_batches").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM predictions").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM predictions_current").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM champion").fetchone() == (0,)
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE x AS SELECT 1")


def test_build_is_a_no_op_when_the_catalog_is_current(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    before = path.stat()
    assert catalog_is_current(store)

    assert build_catalog(store_at(tmp_path / "wh")) == path  # another process opening the same warehouse

    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert not list(store.root.glob("*.tmp*"))


def test_build_rebuilds_when_the_views_change(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    before = path.stat()
    commit_records(store, "b1", ["a", "b"])

    changed = store_at(tmp_path / "wh", views={**VIEWS, "record_ids": "SELECT record_id FROM records"})
    assert not catalog_is_current(changed)
    assert build_catalog(changed) == path

    assert path.stat().st_ino != before.st_ino  # a new file, swapped in
    assert catalog_is_current(changed)
    assert not list(changed.root.glob("*.tmp*"))
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM record_ids").fetchone() == (2,)


def test_build_rebuilds_when_the_warehouse_moved(tmp_path: Path) -> None:
    first = store_at(tmp_path / "wh")
    build_catalog(first)
    (tmp_path / "wh").rename(tmp_path / "moved")
    moved = store_at(tmp_path / "moved")
    assert not catalog_is_current(moved)
    commit_records(moved, "b1", ["a"])
    with duckdb.connect(str(build_catalog(moved)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == (1,)


def test_a_damaged_catalog_is_rebuilt(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    path = catalog_path(store)
    path.write_bytes(b"not a database")
    assert not catalog_is_current(store)
    build_catalog(store)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == (0,)
