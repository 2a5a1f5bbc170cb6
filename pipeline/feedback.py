"""Checking label files (id, label, labelled_at) before their labels join the predictions.

Every row ends up in `good` or in `bad` with a reason, as for incoming records.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

from pipeline.config import Dataset
from pipeline.validate import Problems, UnreadableFile, Validated, as_text

LABEL_COLUMN = "label"
TIME_COLUMN = "labelled_at"


def id_column_of(raw: pd.DataFrame, dataset: Dataset) -> str:
    """Label files name the id like the records do (or `record_id`)."""
    for name in (dataset.id_column, "record_id"):
        if name in raw.columns:
            return name
    raise UnreadableFile(
        f"no id column: expected {dataset.id_column!r} (or 'record_id') beside {LABEL_COLUMN!r} and {TIME_COLUMN!r}; "
        f"found {list(raw.columns)[:12]}"
    )


def validate_labels(raw: pd.DataFrame, dataset: Dataset, known_ids: Collection[str]) -> Validated:
    """Split a label file into good rows (record_id, label, labelled_at, row_number) and rejected rows.

    `known_ids` are the ids among the file's that were ingested: a label for any other id is rejected,
    since there is no prediction it could be compared with.
    """
    id_name = id_column_of(raw, dataset)
    missing = [c for c in (LABEL_COLUMN, TIME_COLUMN) if c not in raw.columns]
    if missing:
        raise UnreadableFile(f"label file lacks column(s) {missing}: it needs {id_name}, {LABEL_COLUMN}, {TIME_COLUMN}")
    raw = raw.reset_index(drop=True)
    problems = Problems(raw)
    ids = as_text(raw[id_name])
    labels = as_text(raw[LABEL_COLUMN])
    times_text = as_text(raw[TIME_COLUMN])
    times = pd.to_datetime(times_text, errors="coerce", utc=True, format="mixed")

    problems.flag(ids.isna(), id_name, "required", "the id is missing")
    problems.flag(
        ids.notna() & ~ids.isin(list(known_ids)),
        id_name,
        "known",
        "no record with this id was ingested; send the label again once the record is in",
    )
    problems.flag(labels.isna(), LABEL_COLUMN, "required", "the label is missing")
    problems.flag(
        labels.notna() & ~labels.isin(list(dataset.classes)),
        LABEL_COLUMN,
        "allowed",
        f"not one of the target's classes {list(dataset.classes)}",
    )
    problems.flag(times_text.isna(), TIME_COLUMN, "required", "the label time is missing")
    problems.flag(times_text.notna() & times.isna(), TIME_COLUMN, "timestamp", "not a date/time (use ISO 8601)")
    repeated = pd.DataFrame({"i": ids, "l": labels, "t": times}).duplicated(keep="first") & ids.notna()
    problems.flag(repeated, id_name, "unique", "the same label for this id and time appears earlier in this file")

    good = pd.DataFrame({"record_id": ids, "label": labels, "labelled_at": times})
    good["row_number"] = range(1, len(raw) + 1)
    return Validated(good=good[~problems.any()].reset_index(drop=True), bad=problems.table(ids))
