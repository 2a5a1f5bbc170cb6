"""Checking label files (id, label, labelled_at) before their labels join the predictions.

Every row ends up in `good` or in `bad` with a reason, as for incoming records.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Dataset
from pipeline.validate import Problems, UnreadableFile, Validated, as_text

LABEL_COLUMN = "label"
TIME_COLUMN = "labelled_at"


def id_column_of(raw: pa.Table, dataset: Dataset) -> str:
    """Label files name the id like the records do (or `record_id`)."""
    for name in (dataset.id_column, "record_id"):
        if name in raw.column_names:
            return name
    raise UnreadableFile(
        f"no id column: expected {dataset.id_column!r} (or 'record_id') beside {LABEL_COLUMN!r} and {TIME_COLUMN!r}; "
        f"found {raw.column_names[:12]}"
    )


def validate_labels(raw: pa.Table, dataset: Dataset, known_ids: Collection[str]) -> Validated:
    """Split a label file into good rows (record_id, label, labelled_at, row_number) and rejected rows.

    `known_ids` are the ids among the file's that were ingested: a label for any other id is rejected,
    since there is no prediction it could be compared with.
    """
    id_name = id_column_of(raw, dataset)
    missing = [c for c in (LABEL_COLUMN, TIME_COLUMN) if c not in raw.column_names]
    if missing:
        raise UnreadableFile(f"label file lacks column(s) {missing}: it needs {id_name}, {LABEL_COLUMN}, {TIME_COLUMN}")
    problems = Problems(raw)
    problems.flag_unreadable_lines()
    ids = as_text(raw, id_name)
    labels = as_text(raw, LABEL_COLUMN)
    times_text = as_text(raw, TIME_COLUMN)
    times = pd.to_datetime(
        pd.Series(times_text.to_numpy(zero_copy_only=False)), errors="coerce", utc=True, format="mixed"
    )

    def null(values: pa.ChunkedArray) -> np.ndarray:
        return np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)

    def among(values: pa.ChunkedArray, allowed: Collection[str]) -> np.ndarray:
        found = pc.is_in(values, value_set=pa.array(list(allowed), pa.string()))
        return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)

    no_id, no_label, no_time = null(ids), null(labels), null(times_text)
    problems.flag(no_id, id_name, "required", "the id is missing")
    problems.flag(
        ~no_id & ~among(ids, known_ids),
        id_name,
        "known",
        "no record with this id was ingested; send the label again once the record is in",
    )
    problems.flag(no_label, LABEL_COLUMN, "required", "the label is missing")
    problems.flag(
        ~no_label & ~among(labels, dataset.classes),
        LABEL_COLUMN,
        "allowed",
        f"not one of the target's classes {list(dataset.classes)}",
    )
    problems.flag(no_time, TIME_COLUMN, "required", "the label time is missing")
    problems.flag(~no_time & times.isna().to_numpy(), TIME_COLUMN, "timestamp", "not a date/time (use ISO 8601)")
    keys = pd.DataFrame(
        {"id": ids.to_numpy(zero_copy_only=False), "label": labels.to_numpy(zero_copy_only=False), "at": times}
    )
    repeated = keys.duplicated(keep="first").to_numpy() & ~no_id
    problems.flag(repeated, id_name, "unique", "the same label for this id and time appears earlier in this file")

    good = pa.table(
        {
            "record_id": ids,
            "label": labels,
            "labelled_at": pa.array(times.astype("datetime64[us, UTC]"), pa.timestamp("us", tz="UTC")),
            "row_number": pa.array(np.arange(1, raw.num_rows + 1, dtype=np.int64)),
        }
    )
    return Validated(good=good.filter(pa.array(~problems.any())), bad=problems.table(ids))
