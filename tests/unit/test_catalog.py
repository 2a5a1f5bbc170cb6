"""The people's DuckDB catalog: only views, each listing one snapshot's files; swapped whole, never edited.

A reader opens the file read-only from anywhere; a rebuild writes a new file and renames it over the old
one, so a reader that holds the old file keeps answering from its snapshot; `as_of` builds the catalog of
a past moment.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from warehouse.catalog import build_catalog, catalog_path
from warehouse.layout import VIEWS, open_warehouse
from warehouse.store import Warehouse

FEATURES = {"amount": "numeric", "colour": "categorical"}
TS = pa.timestamp("us", tz="UTC")


def store_at(root: Path) -> Warehouse:
    store = open_warehouse(root, FEATURES, event_time=False)  # type: ignore[arg-type]
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
            "row_number": pa.array(range(1, n + 1), pa.int64()),
            "row_hash": pa.array([0] * n, pa.int64()),
            "ingested_at": pa.array([datetime(2026, 11, 21, tzinfo=UTC)] * n, TS),
        }
    )
    assert store.commit("records", batch, rows, partition="2026-11-21", read_version=store.version("records"))


def attach(path: Path) -> duckdb.DuckDBPyConnection:
    """A private read-only session on the catalog file as it is on disk now (DuckDB shares one instance per path
    within a process; a private in-memory host with the file attached does not)."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS catalog (READ_ONLY)")
    con.execute("USE catalog")
    return con


def count(con: duckdb.DuckDBPyConnection, view: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {view}").fetchone()
    assert row is not None
    return int(row[0])


def listed_files(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    row = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [view]).fetchone()
    assert row is not None, view
    return sorted(re.findall(r"'([^']+\.parquet)'", str(row[0])))


def test_the_catalog_holds_only_views_one_per_table_and_the_derived_ones(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    assert path == catalog_path(store) and path.is_file()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == set(store.tables) | set(VIEWS)


def test_the_catalog_answers_read_only_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Views hold absolute paths: an analyst opening the file from elsewhere gets answers, and cannot write."""
    store = store_at(tmp_path / "wh")
    commit_records(store, "b1", ["a", "b", "c"])
    path = build_catalog(store)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    with duckdb.connect(str(path), read_only=True) as con:
        assert count(con, "records") == 3
        assert count(con, "ingest_batches") == 1
        assert count(con, "predictions_current") == 0
        assert count(con, "champion") == 0
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE x AS SELECT 1")


def test_each_table_view_lists_its_snapshot_files_and_a_commit_shows_only_after_a_rebuild(tmp_path: Path) -> None:
    """A view is the file list of the snapshot it was built from: a later commit is invisible in it (no half
    batch, no glob) until the catalog is rebuilt, which lists the new snapshot's files exactly."""
    store = store_at(tmp_path / "wh")
    commit_records(store, "b1", ["a", "b"])
    path = build_catalog(store)
    with attach(path) as con:
        assert listed_files(con, "records") == sorted(store.files("records"))
    commit_records(store, "b2", ["c"])
    with attach(path) as con:
        assert count(con, "records") == 2  # the catalog still shows the snapshot it lists

    build_catalog(store)
    with attach(path) as con:
        assert listed_files(con, "records") == sorted(store.files("records"))
        assert len(listed_files(con, "records")) == 2
        assert count(con, "records") == 3


def test_an_unchanged_warehouse_does_not_rewrite_the_catalog(tmp_path: Path) -> None:
    """Rebuilding with nothing committed (from this or another process's view of the warehouse) keeps the same
    file: same inode, same mtime, and no temporary file left."""
    store = store_at(tmp_path / "wh")
    commit_records(store, "b1", ["a"])
    path = build_catalog(store)
    before = path.stat()
    assert build_catalog(store) == path
    assert build_catalog(store_at(tmp_path / "wh")) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [p.name for p in store.root.iterdir() if p.name.endswith((".tmp", ".tmp.wal"))]


def test_a_reader_holding_the_old_catalog_keeps_reading_its_snapshot_after_a_rebuild(tmp_path: Path) -> None:
    """The rebuild renames a new file over the old one: a session that opened the old file goes on answering from
    the old snapshot without an error, and a new session sees the new one."""
    store = store_at(tmp_path / "wh")
    commit_records(store, "b1", ["a", "b", "c"])
    path = build_catalog(store)
    old = attach(path)
    try:
        assert count(old, "records") == 3
        inode = path.stat().st_ino
        commit_records(store, "b2", ["d", "e"])
        build_catalog(store)
        assert path.stat().st_ino != inode  # a new file, swapped in
        assert count(old, "records") == 3
        assert count(old, "ingest_batches") == 1
        with attach(path) as new:
            assert count(new, "records") == 5
    finally:
        old.close()


def commit_time(store: Warehouse, table: str, version: int) -> float:
    """The commit time (ms since the epoch) the log records for `version` of `table`."""
    for entry in store.delta(table).history():
        if int(entry["version"]) == version:
            return float(entry["timestamp"])
    raise AssertionError(f"no version {version} of {table}")


def test_a_catalog_as_of_a_past_time_shows_the_tables_as_they_were(tmp_path: Path) -> None:
    """`build_catalog(store, path, as_of=t)` writes a separate file whose views show each table's snapshot at t;
    the warehouse's own catalog is not touched."""
    store = store_at(tmp_path / "wh")
    commit_records(store, "b1", ["a", "b", "c"])
    first = commit_time(store, "records", store.version("records"))
    time.sleep(0.05)  # two commits a clear instant apart, so that a moment lies between them
    commit_records(store, "b2", ["d"])
    second = commit_time(store, "records", store.version("records"))
    assert second > first
    current = build_catalog(store)
    stamp = current.stat()

    between = datetime.fromtimestamp((first + second) / 2000, UTC)
    past = build_catalog(store, tmp_path / "audit" / "past.duckdb", as_of=between)

    assert past == tmp_path / "audit" / "past.duckdb"
    with attach(past) as con:
        assert count(con, "records") == 3
        assert sorted(r[0] for r in con.execute("SELECT record_id FROM records").fetchall()) == ["a", "b", "c"]
        assert listed_files(con, "records") == sorted(store.files("records", 1))
    with attach(current) as con:
        assert count(con, "records") == 4
    assert (current.stat().st_ino, current.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)


def test_an_empty_tables_view_exists_and_is_typed(tmp_path: Path) -> None:
    """Before any commit every table has a view with no rows and the schema's types (a view over no file)."""
    store = store_at(tmp_path / "wh")
    path = build_catalog(store)
    with attach(path) as con:
        for table in store.tables:
            assert count(con, table) == 0, table
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE predictions)").fetchall())
        records = [row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE records)").fetchall()]
    assert types["record_id"] == "VARCHAR"
    assert types["score"] == "DOUBLE"
    assert types["embedding"] == "FLOAT[]"
    assert types["scored_at"] == "TIMESTAMP WITH TIME ZONE"
    assert records == store.table("records").schema.names


def test_prediction_reasons_has_one_row_per_prediction_and_reason_in_rank_order(tmp_path: Path) -> None:
    store = store_at(tmp_path / "wh")
    reason = pa.struct([("feature", pa.string()), ("contribution", pa.float64()), ("value", pa.string())])
    at = datetime(2026, 11, 21, tzinfo=UTC)
    explained = pa.table(
        {
            "record_id": ["a", "b", "c"],
            "model_version": ["v1"] * 3,
            "score": [0.9, 0.2, 0.5],
            "label": ["yes", "no", "yes"],
            "threshold": [0.5] * 3,
            "embedding": pa.array([[0.0]] * 3, pa.list_(pa.float32())),
            "scored_at": pa.array([at] * 3, TS),
            "base_value": [-1.0] * 3,
            "contributions": pa.array([[2.5, 0.7], [-0.2, -1.0], [0.0, 0.0]], pa.list_(pa.float32())),
            "reasons": pa.array(
                [
                    [
                        {"feature": "amount", "contribution": 2.5, "value": "900"},
                        {"feature": "colour", "contribution": 0.7, "value": "red"},
                    ],
                    [],  # nothing raised its score
                    None,  # scored before explanations
                ],
                pa.list_(reason),
            ),
        }
    )
    assert store.commit("predictions", "p1", explained, partition="2026-11-21")
    build_catalog(store)

    with attach(catalog_path(store)) as con:
        got = con.execute(
            "SELECT record_id, rank, feature, contribution, value FROM prediction_reasons ORDER BY record_id, rank"
        ).fetchall()

    assert got == [("a", 1, "amount", 2.5, "900"), ("a", 2, "colour", 0.7, "red")]


def test_a_warehouse_written_before_a_column_was_added_keeps_its_catalog(tmp_path: Path) -> None:
    """Predictions stored before the explanation and backfill columns existed: opening the warehouse with the
    layout that has them adds them, and the catalog (its views and the derived ones) reads the old rows with nulls."""
    explanations = ("base_value", "contributions", "reasons", "backfill")
    current = {t.name: t for t in open_warehouse(tmp_path / "wh", FEATURES, event_time=False).tables.values()}  # type: ignore[arg-type]
    before = current["predictions"].schema
    kept = pa.schema([f for f in before if f.name not in explanations])
    older = replace(current["predictions"], schema=kept, optional=())
    old_store = Warehouse(tmp_path / "wh", [*(t for n, t in current.items() if n != "predictions"), older], VIEWS)
    old_store.init()
    at = datetime(2026, 11, 21, tzinfo=UTC)
    scored = pa.table(
        {
            "record_id": ["a", "b"],
            "model_version": ["v1"] * 2,
            "score": [0.9, 0.2],
            "label": ["yes", "no"],
            "threshold": [0.5] * 2,
            "embedding": pa.array([[0.0]] * 2, pa.list_(pa.float32())),
            "scored_at": pa.array([at] * 2, TS),
        }
    )
    assert old_store.commit("predictions", "old", scored, partition="2026-11-21")

    store = store_at(tmp_path / "wh")  # the layout of now: adds the columns in one commit
    with attach(build_catalog(store)) as con:
        rows = con.execute("SELECT record_id, base_value, reasons FROM predictions ORDER BY record_id").fetchall()
        assert rows == [("a", None, None), ("b", None, None)]
        assert count(con, "prediction_reasons") == 0
        columns = [row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE predictions)").fetchall()]
    assert columns == before.names
