"""Maintenance: compaction keeps every row and every mark, vacuum removes what no snapshot uses, and `forget`
erases a record from every table and, after the next vacuum, from every file of the warehouse."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse import scoring
from warehouse.catalog import build_catalog
from warehouse.layout import open_warehouse
from warehouse.maintenance import ERASABLE, Retention, compact, forget, retain, vacuum
from warehouse.store import Warehouse

FEATURES = {"amount": "numeric", "colour": "categorical"}
AT = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
DAY = "2026-11-21"
FORGOTTEN = "ERASE-ME-5J9K"
KEPT = ["KEEP-0001", "KEEP-0002", "KEEP-0003"]


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse_ = open_warehouse(tmp_path / "wh", FEATURES, event_time=False)  # type: ignore[arg-type]
    warehouse_.init()
    return warehouse_


def value_for(field: pa.Field, record_id: str, row: int) -> Any:
    """A plausible value of `field` for one row about `record_id` (raw rows carry the id, as they arrived)."""
    if field.name == "record_id":
        return record_id
    if field.name == "raw":
        return json.dumps({"loan_id": record_id, "amount": "12.5", "colour": "red"})
    if field.name == "value":
        return record_id  # e.g. the duplicate id a quarantined row was refused for
    if field.name in ("model_version", "split", "label", "target"):
        return {"model_version": "v1", "split": "train", "label": "yes", "target": "no"}[field.name]
    if pa.types.is_timestamp(field.type):
        return AT
    if pa.types.is_boolean(field.type):
        return None  # e.g. `backfill`: null, as the champion's scoring leaves it
    if pa.types.is_floating(field.type):
        return 0.25 + row
    if pa.types.is_integer(field.type):
        return row + 1
    if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):  # reason codes
        return [{"feature": "amount", "contribution": 0.5, "value": record_id}]  # a value erasure must remove
    if pa.types.is_list(field.type):
        return [0.5, 0.25]
    return f"{field.name}-{row}"


def rows_about(store: Warehouse, table: str, ids: list[str]) -> pa.Table:
    """Rows of `table` (every column but the day and the batch, which the commit fills) about `ids`."""
    t = store.table(table)
    fields = [f for f in t.schema if f.name not in (t.partition_by, "batch_id")]
    return pa.Table.from_pylist(
        [{f.name: value_for(f, record_id, row) for f in fields} for row, record_id in enumerate(ids)],
        schema=pa.schema(fields),
    )


def commit(store: Warehouse, table: str, batch: str, ids: list[str], **kwargs: Any) -> None:
    version = store.version(table) if store.table(table).key else None
    assert store.commit(table, batch, rows_about(store, table, ids), partition=DAY, read_version=version, **kwargs)


def count(store: Warehouse, table: str, where: str = "true") -> int:
    with store.connect() as con:
        row = con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------------------------- compaction


def fill_predictions(store: Warehouse, batches: int) -> list[str]:
    """`batches` small commits of predictions, the last one advancing a watermark; returns the batch ids."""
    names = [f"p{n:02d}" for n in range(batches)]
    for n, name in enumerate(names):
        marks = [(scoring.watermark_app("v1"), 7)] if n == batches - 1 else []
        commit(store, "predictions", name, [f"r{n:02d}-{i}" for i in range(3)], marks=marks)
    return names


def test_compaction_merges_many_small_commits_into_one_file_and_keeps_every_row_batch_and_mark(
    store: Warehouse,
) -> None:
    names = fill_predictions(store, 30)
    before = store.dataset("predictions").to_table().sort_by("record_id")
    assert len(store.files("predictions")) == 30

    upkeep = compact(store, "predictions", target_mb=64)

    assert (upkeep.files_before, upkeep.files_after, upkeep.compacted) == (30, 1, 30)
    assert len(store.files("predictions")) == 1
    assert store.dataset("predictions").to_table().sort_by("record_id").equals(before)
    assert all(store.has_batch("predictions", name) for name in names)  # re-runs still find their batches
    assert store.watermark("predictions", scoring.watermark_app("v1")) == 7
    assert not store.commit("predictions", names[0], rows_about(store, "predictions", ["again"]), partition=DAY)


def test_compaction_of_a_table_with_one_file_changes_nothing(store: Warehouse) -> None:
    commit(store, "predictions", "only", ["a", "b"])
    files = store.files("predictions")
    upkeep = compact(store, "predictions", target_mb=64)
    assert upkeep.compacted == 0 and store.files("predictions") == files


def test_after_compaction_the_score_watermark_finds_no_work_then_exactly_the_new_records(store: Warehouse) -> None:
    """Compaction commits no data change: records already scored up to the watermark are not pending again; a
    records commit after it is pending, whole, and nothing else."""
    for n in range(6):
        commit(store, "records", f"r{n}", [f"rec-{n}-{i}" for i in range(4)])
    scored_upto = store.version("records")
    commit(store, "predictions", "scored", [f"rec-{n}-{i}" for n in range(6) for i in range(4)],
           marks=[(scoring.watermark_app("v1"), scored_upto)])  # fmt: skip
    compact(store, "records", target_mb=64)
    assert len(store.files("records")) == 1

    pending = list(scoring.pending_units(store, "v1", list(FEATURES), chunk_rows=100))
    assert sum(unit.rows.num_rows for unit in pending) == 0

    commit(store, "records", "late", ["late-1", "late-2"])
    pending = list(scoring.pending_units(store, "v1", list(FEATURES), chunk_rows=100))
    ids = sorted(i for unit in pending for i in unit.rows.column("record_id").to_pylist())
    assert ids == ["late-1", "late-2"]
    assert pending[-1].watermark == store.version("records")


# ------------------------------------------------------------------------------------------------- vacuum


def test_vacuum_with_no_retention_deletes_the_replaced_files_and_the_rebuilt_catalog_still_answers(
    store: Warehouse,
) -> None:
    fill_predictions(store, 12)
    replaced = store.files("predictions")
    compact(store, "predictions", target_mb=64)
    catalog = build_catalog(store)  # repointed at the compacted file before the old ones go

    assert vacuum(store, "predictions", retention_hours=24 * 7) == 0  # within the retention: nothing goes
    assert all(Path(f).is_file() for f in replaced)
    removed = vacuum(store, "predictions", retention_hours=0)

    assert removed == len(replaced)
    assert not any(Path(f).exists() for f in replaced)
    assert all(Path(f).is_file() for f in store.files("predictions"))
    assert count(store, "predictions") == 36
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone() == (36,)


def test_the_change_feed_of_vacuumed_versions_raises_lookup_error(store: Warehouse) -> None:
    """`inserted` over versions whose files were vacuumed says so with LookupError (the documented signal for
    callers to compare whole tables instead)."""
    fill_predictions(store, 4)
    compact(store, "predictions", target_mb=64)
    vacuum(store, "predictions", retention_hours=0)
    with pytest.raises(LookupError):
        store.inserted("predictions", 0, 3)


# ------------------------------------------------------------------------------------------------- forget


def fill_every_table(store: Warehouse) -> dict[str, int]:
    """The forgotten id and three kept ones in every table that holds record ids, over two commits each."""
    for table in ERASABLE:
        commit(store, table, f"{table}-1", [FORGOTTEN, KEPT[0], KEPT[2]])  # two kept: a file's stats cannot answer
        commit(store, table, f"{table}-2", [KEPT[1]])
    return {table: count(store, table) for table in ERASABLE}


def holders(root: Path, needle: str) -> dict[str, str]:
    """Every file under `root` holding `needle`: in its raw bytes, or in its decoded values (Parquet compresses
    text, so bytes alone could miss an id)."""
    found: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        where = str(path.relative_to(root))
        if needle.encode() in path.read_bytes():
            found[where] = "bytes"
        elif path.name.endswith(".parquet") and needle in str(pq.read_table(path).to_pylist()):
            found[where] = "values"
    return found


def test_forget_removes_the_id_from_every_table_that_holds_it_and_keeps_the_rest(store: Warehouse) -> None:
    before = fill_every_table(store)

    erasure = forget(store, [FORGOTTEN, FORGOTTEN], actor="dpo@example.org", reason="request 42", now=AT)

    assert erasure.ids == 1
    assert erasure.rows == dict.fromkeys(ERASABLE, 1)
    for table in ERASABLE:
        assert count(store, table, f"record_id = '{FORGOTTEN}'") == 0, table
        assert count(store, table) == before[table] - 1, table
        assert count(store, table, f"record_id IN ('{KEPT[0]}', '{KEPT[1]}')") == 2, table
        with store.connect(tables=[table]) as con:  # a filtered read through pyarrow, as the S3 dashboard's
            assert con.execute(f"SELECT count(*) FROM {table} WHERE record_id = ?", [KEPT[0]]).fetchall() == [(1,)]


def test_forget_records_the_erasure_without_the_ids_in_clear(store: Warehouse) -> None:
    fill_every_table(store)
    erasure = forget(store, [FORGOTTEN], actor="dpo@example.org", reason="request 42", now=AT)
    with store.connect() as con:
        rows = con.execute("SELECT * FROM erasures").df()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["erasure_id"], row["actor"], row["reason"], row["ids"]) == (
        erasure.erasure_id,
        "dpo@example.org",
        "request 42",
        1,
    )
    assert row["ids_sha256"] == hashlib.sha256(FORGOTTEN.encode()).hexdigest()
    assert json.loads(row["rows_json"]) == dict.fromkeys(ERASABLE, 1)
    assert FORGOTTEN not in rows.to_csv()


def test_after_forget_compaction_and_vacuum_no_file_of_the_warehouse_holds_the_id(store: Warehouse) -> None:
    """Data files, `_delta_log` (commits, checkpoints), `_change_data` and the catalog: once the forgotten rows'
    files are compacted away and vacuumed with no retention, the id's bytes are nowhere under the root."""
    fill_every_table(store)
    build_catalog(store)
    assert holders(store.root, FORGOTTEN), "the search finds the id before it is forgotten"

    forget(store, [FORGOTTEN], actor="dpo@example.org", reason="request 42", now=AT)
    for table in store.tables:
        compact(store, table, target_mb=64)
        vacuum(store, table, retention_hours=0)
    build_catalog(store)

    assert holders(store.root, FORGOTTEN) == {}
    assert count(store, "records") == len(KEPT)
    kinds = {part for p in store.root.rglob("*") for part in p.parts if part.startswith("_")}
    assert "_delta_log" in kinds


# --------------------------------------------------------------------------------------------- retention


def test_retention_bounds_the_log_and_forgets_old_batch_ids_but_never_a_watermark(tmp_path: Path) -> None:
    """After `retain` and a checkpoint, a batch published longer ago than the batch-id retention is no longer
    in the snapshot a reader loads, a recent one still is, the watermark (committed with the old batch) stays,
    and the log keeps no entry below the checkpoint when its retention is zero."""
    store = open_warehouse(tmp_path / "wh", FEATURES, event_time=False)  # type: ignore[arg-type]
    store.init()
    now = datetime.now(UTC)
    store.clock = lambda: now - timedelta(days=40)
    commit(store, "predictions", "old", ["a"], marks=[(scoring.watermark_app("v1"), 3)])
    store.clock = lambda: now - timedelta(days=2)
    commit(store, "predictions", "recent", ["b"])

    retention = Retention(files_hours=0, batch_ids_hours=30 * 24)
    assert retain(store, "predictions", retention)
    assert not retain(store, "predictions", retention)  # already set: no second commit
    compact(store, "predictions", target_mb=64)

    reopened = open_warehouse(tmp_path / "wh", FEATURES, event_time=False)  # type: ignore[arg-type]
    assert not reopened.has_batch("predictions", "old")
    assert reopened.has_batch("predictions", "recent")
    assert reopened.watermark("predictions", scoring.watermark_app("v1")) == 3
    assert count(reopened, "predictions") == 2  # forgetting an id removes no row
    log = tmp_path / "wh" / "predictions" / "_delta_log"
    checkpoint = int(json.loads((log / "_last_checkpoint").read_text())["version"])
    assert [p.name for p in log.glob("*.json") if int(p.stem) < checkpoint] == []


# --------------------------------------------------------------------------------------------- current


def scored_by(store: Warehouse, ids: list[str], version: str, at: datetime) -> pa.Table:
    rows = rows_about(store, "predictions", ids)
    for name, value in (("model_version", version), ("scored_at", at)):
        column = rows.schema.get_field_index(name)
        rows = rows.set_column(
            column, rows.schema.field(column), pa.array([value] * len(ids), rows.schema.field(column).type)
        )
    return rows


def test_current_predictions_keep_one_row_per_record_through_a_new_champion_and_stay_readable_by_id(
    store: Warehouse,
) -> None:
    """New records are appended; a record scored again by a newer model replaces its row (the table is
    rebuilt, never merged: a merge writes files a filtered pyarrow read cannot compare ids in)."""
    later = datetime(2026, 11, 22, tzinfo=UTC)
    store.commit("predictions", "v1-a", scored_by(store, ["a", "b"], "v1", AT), partition=DAY)
    assert scoring.refresh_current(store) == 2
    store.commit("predictions", "v1-b", scored_by(store, ["c"], "v1", AT), partition=DAY)
    assert scoring.refresh_current(store) == 1  # appended: c had no current prediction
    store.commit("predictions", "v2-a", scored_by(store, ["a"], "v2", later), partition=DAY)
    scoring.refresh_current(store)

    with store.connect(tables=["predictions_current"]) as con:
        by_id = con.execute("SELECT model_version FROM predictions_current WHERE record_id = ?", ["a"]).fetchall()
        rows = con.execute("SELECT record_id, model_version FROM predictions_current ORDER BY record_id").fetchall()
    assert by_id == [("v2",)]
    assert rows == [("a", "v2"), ("b", "v1"), ("c", "v1")]
    assert {str(pq.read_schema(f).field("record_id").type) for f in store.files("predictions_current")} == {"string"}
