"""What a reader of the warehouse may see, checked the way a reader sees it: through the read-only catalog.

- every view answers, and every file a table's snapshot lists is a whole Parquet file;
- each batch holds exactly the rows its writer meant to commit (never part of one, never twice);
- no natural key appears twice (no duplicate);
- `predictions_current` holds the latest prediction of every scored record, and nothing else;
- a batch that marks work as done comes after the batches it depends on (a records batch after its
  quarantine batch, labels after their rejects, a registry decision after its model files and reference set).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipeline.artifacts import verify_version
from tests.flows.conftest import Project
from warehouse.catalog import catalog_path
from warehouse.store import SAFE_DUCKDB_CONFIG, Warehouse

# Columns that identify a row: a value seen twice is a duplicate (no version is promoted twice in these tests).
NATURAL_KEYS: dict[str, str] = {
    "records": "record_id",
    "quarantine": "batch_id, coalesce(row_number, -1)",
    "predictions": "record_id, model_version",
    "predictions_current": "record_id",
    "models": "model_version, event",
    "reference": "model_version, record_id, split",
    "challenger_rows": "model_version, record_id",
    "feedback": "batch_id, row_number",
    "feedback_rejects": "batch_id, coalesce(row_number, -1)",
    "monitoring": "report_id, metric, coalesce(column_name, '')",
}


@dataclass
class Snapshot:
    """Rows per table and per batch, as read through the catalog."""

    counts: dict[str, int]
    batches: dict[str, dict[str, int]] = field(default_factory=dict)

    def without(self, *tables: str) -> dict[str, dict[str, int]]:
        return {t: b for t, b in self.batches.items() if t not in tables}


@contextmanager
def read_only(store: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    """The read-only catalog; for a warehouse on object storage (no catalog without DuckDB's httpfs), a
    session over the tables' snapshots, as the flows read them."""
    if store.remote:
        with store.connect() as con:
            yield con
        return
    with duckdb.connect(str(catalog_path(store)), read_only=True, config=SAFE_DUCKDB_CONFIG) as con:
        yield con


def snapshot(project: Project) -> Snapshot:
    store = project.store()
    counts: dict[str, int] = {}
    batches: dict[str, dict[str, int]] = {}
    with read_only(store) as con:
        for table in store.tables:
            rows = con.execute(f"SELECT batch_id, count(*) FROM {table} GROUP BY batch_id").fetchall()
            batches[table] = {str(b): int(n) for b, n in rows}
            counts[table] = sum(batches[table].values())
    return Snapshot(counts=counts, batches=batches)


def journal_events(*paths: Path) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for path in paths:
        if path.exists():
            events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def intended(*journals: Path) -> dict[tuple[str, str], set[int]]:
    """(table, batch id) -> the row counts the driver meant to commit under that id."""
    meant: dict[tuple[str, str], set[int]] = defaultdict(set)
    for event in journal_events(*journals):
        if event["e"] == "commit":
            meant[(str(event["table"]), str(event["batch"]))].add(int(event["rows"]))  # type: ignore[call-overload]
    return meant


def visible_files(store: Warehouse) -> dict[str, list[str]]:
    """Per table, the files of its current snapshot (what the catalog's view lists)."""
    return {table: store.files(table) for table in store.tables}


def assert_consistent(
    project: Project, before: Snapshot, journals: tuple[Path, ...] | None = (), *, settled: bool = False
) -> Snapshot:
    """Everything a reader can see is whole and unique; returns what it sees.

    `before` is what the project held before the runs of `journals`: its batches need no intent.
    `journals=None`: runs that kept no journal (the real flows) wrote since; their batches are not checked
    against an intent (the caller compares them with an uninterrupted run instead). `settled`: the last run
    finished, so `predictions_current` must be up to date (a killed score run may leave it behind).
    """
    store = project.store()
    now = snapshot(project)  # every view answers through the read-only catalog
    meant = intended(*journals) if journals is not None else None
    files = visible_files(store)
    for table in store.tables:
        for f in files[table]:
            pq.read_metadata(f)  # a whole Parquet file, footer included
        for batch, rows in now.batches[table].items():
            if table == "predictions_current":
                continue  # its rows carry the batch of the prediction they copy: checked against `predictions` below
            if batch in before.batches.get(table, {}):
                assert rows == before.batches[table][batch], f"{table}: batch {batch} changed"
                continue
            if meant is None:
                continue
            assert (table, batch) in meant, f"{table}: batch {batch} was never meant to be committed"
            assert rows in meant[(table, batch)], (
                f"{table}: batch {batch} shows {rows} rows; the writer committed {sorted(meant[(table, batch)])}"
            )
    # A batch that marks work done lands after the batches it depends on (they may be empty: found in the log).
    orphans = sorted(b for b in now.batches["records"] if not store.has_batch("quarantine", b))
    assert not orphans, f"records batches without their quarantine batch: {orphans}"
    orphans = sorted(b for b in now.batches["feedback"] if not store.has_batch("feedback_rejects", b))
    assert not orphans, f"label batches without their rejects batch: {orphans}"
    with read_only(store) as con:
        for table, key in NATURAL_KEYS.items():
            if table not in store.tables:
                continue
            dup = con.execute(
                f"SELECT {key}, count(*) FROM {table} GROUP BY ALL HAVING count(*) > 1 LIMIT 5"
            ).fetchall()
            assert not dup, f"duplicates in {table} ({key}): {dup}"
        stale = con.execute(
            """
            WITH latest AS (
                SELECT * FROM predictions
                QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC, model_version DESC) = 1
            )
            SELECT count(*) FROM latest l FULL JOIN predictions_current c USING (record_id)
            WHERE c.record_id IS NULL OR l.record_id IS NULL OR l.model_version <> c.model_version
               OR l.score <> c.score
            """
        ).fetchone()
        trained = con.execute(
            "SELECT model_version, artifact_dir, artifact_sha256 FROM models WHERE event = 'trained'"
        ).fetchall()
        # A version's training rows: its reference set, or (a rejected challenger) only its own rows.
        with_rows = {
            str(r[0])
            for r in con.execute(
                "SELECT model_version FROM reference UNION SELECT model_version FROM challenger_rows"
            ).fetchall()
        }
    for version, folder, hashes in trained:
        assert version in with_rows, f"{version} is registered without its training rows"
        verify_version(project.model_folder(folder), json.loads(hashes))  # a registered version is whole on disk
    assert stale == (0,) or not settled, f"predictions_current differs from the latest predictions in {stale} records"
    return now
