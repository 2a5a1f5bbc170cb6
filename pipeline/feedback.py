"""Checking label files (id, label, labelled_at) before their labels join the predictions.

Every row ends up in `good` or in `bad` with a reason, as for incoming records.

How labels resolve (the README's "Your own data" says the same):
- A label time is ISO 8601 (`2026-11-21`, `2026-11-21T10:00:00Z`, an offset, or no offset meaning UTC).
  A day/month form such as `12/01/2026` is rejected as ambiguous, any other form as not a time.
- A label time later than now (plus `CLOCK_SKEW`) is rejected: nobody can know an outcome before it is given,
  and a future time would win over every later correction.
- In one file, one id with different labels at the same time is a contradiction: every such row is
  rejected. The same label repeated is stored once.
- Across files, the latest label time wins; at the same time, the label received last wins
  (`feedback_current`). Files of one run are collected in name order.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Dataset
from pipeline.validate import Problems, UnreadableFile, Validated, as_text

LABEL_COLUMN = "label"
TIME_COLUMN = "labelled_at"
CLOCK_SKEW = pd.Timedelta(minutes=5)  # how far ahead of this machine's clock a sender's clock may run
# Day and month in either order (12/01/2026, 1.2.26): which is which cannot be known from the text.
_DAY_MONTH = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})\b")


def id_column_of(raw: pa.Table, dataset: Dataset) -> str:
    """Label files name the id like the records do (or `record_id`)."""
    for name in (dataset.id_column, "record_id"):
        if name in raw.column_names:
            return name
    raise UnreadableFile(
        f"no id column: expected {dataset.id_column!r} (or 'record_id') beside {LABEL_COLUMN!r} and {TIME_COLUMN!r}; "
        f"found {raw.column_names[:12]}"
    )


def label_times(raw: pa.Table) -> tuple[pd.Series, np.ndarray]:
    """The label times in UTC (NaT where not ISO 8601) and which of the texts are ambiguous day/month dates."""
    column = raw.column(TIME_COLUMN)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):  # typed (Parquet): no text to read
        times = pd.to_datetime(pd.Series(column.to_pandas()), utc=True)
        return times, np.zeros(len(times), dtype=bool)
    text = pd.Series(as_text(raw, TIME_COLUMN).to_numpy(zero_copy_only=False), dtype=object)
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    ambiguous = np.array([isinstance(t, str) and _is_ambiguous(t) for t in text], dtype=bool)
    return times, ambiguous


def _is_ambiguous(text: str) -> bool:
    match = _DAY_MONTH.match(text)
    return bool(match) and int(match.group(1)) <= 12 and int(match.group(2)) <= 12  # type: ignore[union-attr]


def validate_labels(raw: pa.Table, dataset: Dataset, known_ids: Collection[str], *, now: pd.Timestamp) -> Validated:
    """Split a label file into good rows (record_id, label, labelled_at, row_number) and rejected rows.

    `known_ids` are the ids among the file's that were ingested: a label for any other id is rejected,
    since there is no prediction it could be compared with. `now` is the time the labels arrive.
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
    times, ambiguous = label_times(raw)

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
        "no record with this id was ingested yet; once it is, drop this same file again: "
        "only the labels that waited for their records are collected from it",
    )
    problems.flag(no_label, LABEL_COLUMN, "required", "the label is missing")
    problems.flag(
        ~no_label & ~among(labels, dataset.classes),
        LABEL_COLUMN,
        "allowed",
        f"not one of the target's classes {list(dataset.classes)}",
    )
    problems.flag(no_time, TIME_COLUMN, "required", "the label time is missing")
    problems.flag(
        ambiguous,
        TIME_COLUMN,
        "ambiguous",
        "day and month can be read either way: write the time as ISO 8601 (2026-01-12 or 2026-12-01)",
    )
    problems.flag(
        ~no_time & times.isna().to_numpy(),
        TIME_COLUMN,
        "timestamp",
        "not a date/time in ISO 8601 (e.g. 2026-11-21 or 2026-11-21T10:00:00Z)",
    )
    future = (times > now + CLOCK_SKEW).fillna(False).to_numpy(dtype=bool)
    problems.flag(
        future, TIME_COLUMN, "future", f"later than now ({now:%Y-%m-%d %H:%M} UTC): fix the date or the sender's clock"
    )
    keys = pd.DataFrame(
        {"id": ids.to_numpy(zero_copy_only=False), "label": labels.to_numpy(zero_copy_only=False), "at": times}
    )
    _flag_contradictions(keys, problems, id_name)
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


def _flag_contradictions(keys: pd.DataFrame, problems: Problems, id_name: str) -> None:
    """Every otherwise good row whose id and time carry more than one label in this file: which is right is
    unknown, so none is stored (a later file can send the right one)."""
    candidates = keys[~problems.any()]
    labels_per_key = candidates.groupby(["id", "at"], dropna=False)["label"].transform("nunique")
    contradicted = np.zeros(len(keys), dtype=bool)
    contradicted[labels_per_key.index[labels_per_key.to_numpy() > 1]] = True
    problems.flag(
        contradicted,
        LABEL_COLUMN,
        "consistent",
        "this file gives this id different labels at the same time: none is stored; send the right one again",
    )


def only_rows(checked: Validated, row_numbers: Collection[int]) -> Validated:
    """The verdicts on the given rows only (a file sent again: only its labels that waited for their records)."""
    wanted = pa.array(sorted(row_numbers), pa.int64())
    good = checked.good.filter(pc.is_in(checked.good.column("row_number"), value_set=wanted))
    bad = checked.bad[checked.bad["row_number"].isin(wanted.to_pylist())].reset_index(drop=True)
    return Validated(good=good, bad=bad)
