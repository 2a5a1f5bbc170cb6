"""What a reader of the warehouse may see, checked the way a reader sees it: through the read-only catalog.

- every view answers (a half-written Parquet file inside a view's glob would break it);
- no temporary file matches any view's glob;
- each batch is one file, and holds exactly the rows its writer meant to commit (never part of one);
- no natural key appears twice (no duplicate);
- a batch that marks work as done comes after the batches it depends on (a records batch after its
  quarantine batch, labels after their rejects, a registry decision after its model files and reference set).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipeline.artifacts import verify_version
from tests.flows.conftest import Project
from warehouse.catalog import catalog_path
from warehouse.store import SAFE_DUCKDB_CONFIG, SCHEMA_FILE, Warehouse

# Columns that identify a row: a value seen twice is a duplicate (no version is promoted twice in these tests).
NATURAL_KEYS: dict[str, str] = {
    "records": "record_id",
    "quarantine": "batch_id, coalesce(row_number, -1)",
    "predictions": "record_id, model_version",
    "models": "model_version, event",
    "reference": "model_version, record_id, split",
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


def read_only(store: Warehouse) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(catalog_path(store)), read_only=True, config=SAFE_DUCKDB_CONFIG)


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
    """Per table, the files its view reads, as DuckDB expands the view's own glob."""
    with duckdb.connect(config=SAFE_DUCKDB_CONFIG) as con:
        return {
            table: [
                str(r[0])
                for r in con.execute("SELECT file FROM glob(?)", [store.table(table).glob(store.root)]).fetchall()
            ]
            for table in store.tables
        }


def assert_consistent(project: Project, before: Snapshot, journals: tuple[Path, ...] | None = ()) -> Snapshot:
    """Everything a reader can see is whole and unique; returns what it sees.

    `before` is what the project held before the runs of `journals`: its batches need no intent.
    `journals=None`: runs that kept no journal (the real flows) wrote since; their batches are not checked
    against an intent (the caller compares them with an uninterrupted run instead).
    """
    store = project.store()
    now = snapshot(project)  # every view answers through the read-only catalog
    meant = intended(*journals) if journals is not None else None
    files = visible_files(store)
    batches = {table: {Path(f).stem for f in names if Path(f).name != SCHEMA_FILE} for table, names in files.items()}
    for table in store.tables:
        temporary = [f for f in files[table] if f.endswith(".tmp") or "/_staging/" in f]
        assert not temporary, f"temporary files visible through the {table} view: {temporary}"
        stems = [Path(f).stem for f in files[table] if Path(f).name != SCHEMA_FILE]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        assert not twice, f"{table}: batch(es) {twice} committed more than once"
        for f in files[table]:
            pq.read_metadata(f)  # a whole Parquet file, footer included
        for batch, rows in now.batches[table].items():
            assert batch in batches[table], f"{table}: rows of batch {batch} are not in a file of that name"
            if batch in before.batches.get(table, {}):
                assert rows == before.batches[table][batch], f"{table}: batch {batch} changed"
                continue
            if meant is None:
                continue
            assert (table, batch) in meant, f"{table}: batch {batch} was never meant to be committed"
            assert rows in meant[(table, batch)], (
                f"{table}: batch {batch} shows {rows} rows; the writer committed {sorted(meant[(table, batch)])}"
            )
    # A batch that marks work done lands after the batches it depends on (they may be empty: no rows, one file).
    orphans = sorted(batches["records"] - batches["quarantine"])
    assert not orphans, f"records batches without their quarantine batch: {orphans}"
    orphans = sorted(batches["feedback"] - batches["feedback_rejects"])
    assert not orphans, f"label batches without their rejects batch: {orphans}"
    with read_only(store) as con:
        for table, key in NATURAL_KEYS.items():
            if table not in store.tables:
                continue
            dup = con.execute(
                f"SELECT {key}, count(*) FROM {table} GROUP BY ALL HAVING count(*) > 1 LIMIT 5"
            ).fetchall()
            assert not dup, f"duplicates in {table} ({key}): {dup}"
        trained = con.execute(
            "SELECT model_version, artifact_dir, artifact_sha256 FROM models WHERE event = 'trained'"
        ).fetchall()
        with_reference = {str(r[0]) for r in con.execute("SELECT DISTINCT model_version FROM reference").fetchall()}
    for version, folder, hashes in trained:
        assert version in with_reference, f"{version} is registered without its reference set"
        verify_version(Path(folder), json.loads(hashes))  # a registered version is whole on disk
    return now
