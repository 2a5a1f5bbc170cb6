"""Label files: every row is stored or rejected with a reason a person can act on."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import feedback
from pipeline.config import Dataset
from pipeline.feedback import only_rows
from pipeline.validate import UnreadableFile, Validated
from tests.conftest import tiny_dataset_section


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(**tiny_dataset_section())


NOW = pd.Timestamp("2026-11-29T08:00:00Z")


def validate_labels(raw: pa.Table, dataset: Dataset, known: set[str], now: pd.Timestamp = NOW) -> Validated:
    return feedback.validate_labels(raw, dataset, known, now=now)


def labels(rows: list[tuple[str | None, str | None, str | None]], id_name: str = "id") -> pa.Table:
    ids, values, times = zip(*rows, strict=True)
    return pa.table(
        {
            id_name: pa.array(ids, pa.string()),
            "label": pa.array(values, pa.string()),
            "labelled_at": pa.array(times, pa.string()),
        }
    )


def test_good_labels_are_typed(dataset: Dataset) -> None:
    checked = validate_labels(
        labels([("a", "yes", "2026-11-01T10:00:00Z"), ("b", "no", "2026-11-02")]), dataset, {"a", "b"}
    )
    assert checked.good.column("record_id").to_pylist() == ["a", "b"]
    assert checked.good.column("label").to_pylist() == ["yes", "no"]
    assert str(checked.good.schema.field("labelled_at").type) == "timestamp[us, tz=UTC]"
    assert checked.bad.empty


@pytest.mark.parametrize(
    ("row", "column", "rule", "words"),
    [
        (("ghost", "yes", "2026-11-01"), "id", "known", "no record with this id was ingested"),
        ((None, "yes", "2026-11-01"), "id", "required", "the id is missing"),
        (("a", "maybe", "2026-11-01"), "label", "allowed", "not one of the target's classes"),
        (("a", None, "2026-11-01"), "label", "required", "the label is missing"),
        (("a", "yes", None), "labelled_at", "required", "the label time is missing"),
        (("a", "yes", "yesterday"), "labelled_at", "timestamp", "not a date/time"),
        (("a", "yes", "21 Nov 2026"), "labelled_at", "timestamp", "ISO 8601"),
        (("a", "yes", "12/01/2026"), "labelled_at", "ambiguous", "either way"),
        (("a", "yes", "3.4.26"), "labelled_at", "ambiguous", "either way"),
        (("a", "yes", "2099-01-01T00:00:00Z"), "labelled_at", "future", "later than now"),
        (("a", "yes", "2026-11-29T09:00:00+00:00"), "labelled_at", "future", "later than now"),
    ],
)
def test_each_bad_label_is_rejected_with_a_reason(
    dataset: Dataset, row: tuple[str | None, str | None, str | None], column: str, rule: str, words: str
) -> None:
    checked = validate_labels(labels([row, ("b", "no", "2026-11-01")]), dataset, {"a", "b"})
    assert checked.good.column("record_id").to_pylist() == ["b"]
    assert checked.rows_in == 2
    bad = checked.bad.iloc[0]
    assert (bad["column_name"], bad["rule"], bad["row_number"]) == (column, rule, 1)
    assert words in bad["reason"]


def test_a_repeated_label_in_one_file_is_rejected_but_a_correction_is_kept(dataset: Dataset) -> None:
    rows = [("a", "yes", "2026-11-01"), ("a", "yes", "2026-11-01"), ("a", "no", "2026-11-03")]
    checked = validate_labels(labels(rows), dataset, {"a"})
    assert checked.good.column("label").to_pylist() == ["yes", "no"]
    assert checked.bad["rule"].tolist() == ["unique"]


def test_record_id_is_accepted_as_the_id_column(dataset: Dataset) -> None:
    checked = validate_labels(labels([("a", "yes", "2026-11-01")], id_name="record_id"), dataset, {"a"})
    assert checked.good.num_rows == 1


def test_a_file_without_the_label_columns_is_refused(dataset: Dataset) -> None:
    with pytest.raises(UnreadableFile, match="lacks column"):
        validate_labels(pa.table({"id": ["a"], "label": ["yes"]}), dataset, {"a"})
    with pytest.raises(UnreadableFile, match="no id column"):
        validate_labels(pa.table({"who": ["a"], "label": ["yes"], "labelled_at": ["2026-11-01"]}), dataset, {"a"})


def test_a_label_a_little_ahead_of_this_clock_is_accepted(dataset: Dataset) -> None:
    checked = validate_labels(labels([("a", "yes", "2026-11-29T08:04:00Z")]), dataset, {"a"})
    assert checked.good.num_rows == 1


def test_contradictory_labels_in_one_file_are_all_rejected(dataset: Dataset) -> None:
    rows = [
        ("a", "yes", "2026-11-01T10:00:00Z"),
        ("b", "no", "2026-11-01"),
        ("a", "no", "2026-11-01T11:00:00+01:00"),  # the same instant as the first row
        ("a", "yes", "2026-11-02"),  # a later time: a correction, kept
    ]
    checked = validate_labels(labels(rows), dataset, {"a", "b"})
    assert checked.good.column("row_number").to_pylist() == [2, 4]
    bad = checked.bad
    assert bad["row_number"].tolist() == [1, 3] and set(bad["rule"]) == {"consistent"}
    assert all("none is stored" in reason for reason in bad["reason"])


def test_typed_label_times_are_used_as_they_are(dataset: Dataset) -> None:
    raw = pa.table(
        {
            "id": ["a", "b"],
            "label": ["yes", "no"],
            "labelled_at": pa.array([pd.Timestamp("2026-11-01T10:00Z"), pd.Timestamp("2099-01-01T00:00Z")]),
        }
    )
    checked = validate_labels(raw, dataset, {"a", "b"})
    assert checked.good.column("record_id").to_pylist() == ["a"]
    assert checked.bad["rule"].tolist() == ["future"]


def test_only_rows_keeps_the_verdicts_on_the_rows_asked_for(dataset: Dataset) -> None:
    rows = [("a", "yes", "2026-11-01"), ("ghost", "no", "2026-11-01"), ("b", "maybe", "2026-11-01")]
    checked = only_rows(validate_labels(labels(rows), dataset, {"a", "b"}), {2, 3})
    assert checked.good.num_rows == 0 and checked.bad["row_number"].tolist() == [2, 3]
