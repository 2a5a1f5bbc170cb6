"""Which rows of a label file are still to be collected.

The first time a content arrives, every row. A label for a record that was not ingested yet is rejected
with the advice to drop the same file again once the record is in; when that content arrives again, only
the rows that waited are checked again, under a new batch (`attempt N`), so nothing is stored twice and
a re-run or a kill finds the same attempt. Dropped again with nothing new to store, it is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from warehouse.store import Warehouse, batch_id

WAITING_RULE = "known"  # the rule of a label whose record had not been ingested


@dataclass(frozen=True)
class Attempt:
    batch: str
    waiting: frozenset[int] | None  # the row numbers to check again; None: every row (the first attempt)


def first_batch(digest: str) -> str:
    return batch_id("feedback", digest)


def next_attempt(store: Warehouse, digest: str) -> Attempt | None:
    """The attempt to make for this content, or None when none of its rows waits for a record."""
    previous = first_batch(digest)
    if not store.has_batch("feedback", previous):
        return Attempt(previous, None)
    for number in count(1):
        batch = batch_id("feedback", digest, "attempt", number)
        if not store.has_batch("feedback", batch):
            break
        previous = batch
    waiting = rows_waiting(store, previous)
    return Attempt(batch, frozenset(waiting)) if waiting else None


def rows_waiting(store: Warehouse, batch: str) -> set[int]:
    """Rows of `batch` (and of its resumed refusals) rejected because their record had not arrived."""
    with store.connect() as con:
        rows = con.execute(
            "SELECT row_number FROM feedback_rejects WHERE batch_id IN (?, ?) AND rule = ? AND row_number IS NOT NULL",
            [batch, batch_id(batch, "resumed"), WAITING_RULE],
        ).fetchall()
    return {int(row[0]) for row in rows}
