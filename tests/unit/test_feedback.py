"""Label files: every row is stored or rejected with a reason a person can act on."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.config import Dataset
from pipeline.feedback import validate_labels
from pipeline.validate import UnreadableFile
from tests.conftest import tiny_dataset_section


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(**tiny_dataset_section())


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
