"""Keeping the warehouse small for a year: compaction, checkpoints, vacuum, and erasure.

Every step is a Delta operation, atomic and checked against concurrent writers, so it is safe while
flows write and readers read: compaction commits new files that replace small ones without changing a
row (`dataChange = false`; the change feed and the score watermark ignore it), and a reader of an older
snapshot keeps its files until the vacuum retention has passed. A losing compaction (a writer replaced
the same files first) is simply tried again at the next run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from warehouse.store import Warehouse, batch_id

# Tables that hold a record's id (and, in `quarantine` and `feedback_rejects`, its raw row).
ERASABLE = (
    "records",
    "quarantine",
    "predictions",
    "predictions_current",
    "feedback",
    "feedback_rejects",
    "reference",
    "challenger_rows",
)


@dataclass
class TableUpkeep:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    compacted: int = 0  # files replaced by compaction
    retyped: int = 0  # rows of files rewritten in the table's own column types
    vacuumed: int = 0  # files deleted for good
    skipped: str | None = None  # why compaction was not done this time


@dataclass
class Erasure:
    """What `forget` removed: rows per table, and the request's identity without the ids in clear."""

    erasure_id: str
    ids: int
    ids_sha256: str
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Retention:
    """How long a table keeps what it no longer needs: replaced files and log entries (the reach of time
    travel), and the ids of published batches (the window in which a batch published again is recognised)."""

    files_hours: float
    batch_ids_hours: float

    def properties(self) -> dict[str, str]:
        files = f"interval {round(self.files_hours * 3600)} seconds"
        return {
            # Log entries and the tombstones a checkpoint carries go with the files they describe: a version
            # whose files were vacuumed cannot be read anyway, and a longer log only slows every refresh.
            "delta.logRetentionDuration": files,
            "delta.deletedFileRetentionDuration": files,
            "delta.setTransactionRetentionDuration": f"interval {round(self.batch_ids_hours * 3600)} seconds",
        }


def retain(store: Warehouse, name: str, retention: Retention) -> bool:
    """Set the table's retention properties, in one commit and only when they differ. Returns whether it did.

    They take effect at the next checkpoint (`compact`): without them the log and the batch ids a snapshot
    loads would grow with the table's whole history.
    """
    table = store.delta(name)
    wanted = retention.properties()
    current = table.metadata().configuration
    if all(current.get(key) == value for key, value in wanted.items()):
        return False
    try:
        table.alter.set_table_properties(wanted)
    except CommitFailedError:  # another writer committed first; the next run sets them
        return False
    return True


def compact(store: Warehouse, name: str, target_mb: int) -> TableUpkeep:
    """Merge the table's small files and retype foreign ones; then write a checkpoint and drop expired log files."""
    table = store.delta(name)
    before = len(table.file_uris())
    upkeep = TableUpkeep(table=name, files_before=before, files_after=before)
    upkeep.retyped = store.retype(name)  # files an older version's deletes wrote in view types
    try:
        metrics = table.optimize.compact(target_size=target_mb * 1024 * 1024)
        upkeep.compacted = int(metrics.get("numFilesRemoved", 0))
    except CommitFailedError as error:  # a writer replaced some of the same files first; next time
        upkeep.skipped = str(error).splitlines()[0]
    table = store.delta(name)
    table.create_checkpoint()
    table.cleanup_metadata()  # log files older than the log retention (`retain`), now covered by a checkpoint
    upkeep.files_after = len(store.delta(name).file_uris())
    return upkeep


def vacuum(store: Warehouse, name: str, retention_hours: float) -> int:
    """Delete the files no snapshot within the retention uses (replaced by compaction or erasure)."""
    # `full`: also the files no commit ever referenced (what a writer killed before its commit left).
    removed = store.delta(name).vacuum(
        retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False, full=True
    )
    return len(removed)


def forget(store: Warehouse, ids: list[str], *, actor: str, reason: str, now: datetime) -> Erasure:
    """Delete every row of these record ids from each table that holds them, then record the erasure.

    Each table's files holding the ids are written again without them (`Warehouse.erase`), so the log's
    commit information names batches, never the ids; the log holds no statistics of id columns either
    (`Table.stats_columns`). The files that held the rows stay until the next vacuum deletes them for good.
    """
    unique = sorted(set(ids))
    digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()
    erasure = Erasure(erasure_id=batch_id("forget", digest, now.isoformat()), ids=len(unique), ids_sha256=digest)
    for name in ERASABLE:
        erasure.rows[name] = store.erase(name, "record_id", unique)
    store.commit(
        "erasures",
        erasure.erasure_id,
        pa.table(
            {
                "erasure_id": [erasure.erasure_id],
                "requested_at": pa.array([now], pa.timestamp("us", tz="UTC")),
                "actor": [actor],
                "reason": [reason],
                "ids": pa.array([erasure.ids], pa.int64()),
                "ids_sha256": [digest],
                "rows_json": [json.dumps(erasure.rows, sort_keys=True)],
            }
        ),
        partition=now.date().isoformat(),
    )
    return erasure
