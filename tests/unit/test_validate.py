"""Reading incoming files and checking rows against the contract: every row is good or bad with a reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Dataset
from pipeline.validate import BAD_COLUMNS, UnreadableFile, parquet_block, read_blocks, read_incoming, validate_rows
from tests.conftest import tiny_dataset_section


@pytest.fixture
def dataset() -> Dataset:
    # amount: numeric 0..100, required; rate: numeric, optional; colour: red|green|blue, required
    return Dataset(**tiny_dataset_section())


def frame(rows: list[dict[str, object]], columns: tuple[str, ...] = ("id", "amount", "rate", "colour")) -> pa.Table:
    """Rows as `read_incoming` gives them for a CSV file: every value text or null."""
    return pa.table({c: pa.array([row.get(c) for row in rows], pa.string()) for c in columns})


def as_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return table.to_pandas() if isinstance(table, pa.Table) else table


GOOD = {"id": "g1", "amount": "10", "rate": "0.5", "colour": "red"}


def only_bad_row(dataset: Dataset, row: dict[str, object], stored: tuple[str, ...] = ()) -> pd.Series:
    """Validate one good row plus `row`; return `row`'s quarantine entry (and check the good one passed)."""
    checked = validate_rows(frame([GOOD, row]), dataset, stored)
    assert as_frame(checked.good)["record_id"].tolist() == ["g1"]
    assert len(checked.bad) == 1
    assert list(checked.bad.columns) == BAD_COLUMNS
    bad = checked.bad.iloc[0]
    assert bad["row_number"] == 2
    assert json.loads(bad["raw"])["id"] == row.get("id")
    return bad


@pytest.mark.parametrize(
    ("row", "column", "rule", "value", "words"),
    [
        pytest.param(
            {"id": None, "amount": "1", "colour": "red"}, "id", "required", "nothing", ["id is missing"], id="no-id"
        ),
        pytest.param(
            {"id": "  ", "amount": "1", "colour": "red"}, "id", "required", "'  '", ["id is missing"], id="blank-id"
        ),
        pytest.param(
            {"id": "r2", "amount": "ten", "colour": "red"}, "amount", "numeric", "'ten'", ["not a number"], id="text"
        ),
        pytest.param(
            {"id": "r2", "amount": "inf", "colour": "red"}, "amount", "finite", "'inf'", ["not a finite"], id="inf"
        ),
        pytest.param(
            {"id": "r2", "rate": "-inf", "amount": "1", "colour": "red"},
            "rate",
            "finite",
            "'-inf'",
            ["not a finite"],
            id="minus-inf-in-optional",
        ),
        pytest.param(
            {"id": "r2", "amount": "-0.5", "colour": "red"},
            "amount",
            "min",
            "'-0.5'",
            ["below the minimum 0"],
            id="min",
        ),
        pytest.param(
            {"id": "r2", "amount": "100.01", "colour": "red"},
            "amount",
            "max",
            "'100.01'",
            ["above the maximum 100"],
            id="max",
        ),
        pytest.param(
            {"id": "r2", "amount": "1", "colour": "purple"},
            "colour",
            "allowed",
            "'purple'",
            ["not one of the allowed values", "red"],
            id="unknown-category",
        ),
        pytest.param(
            {"id": "r2", "amount": "1", "colour": "Red"},
            "colour",
            "allowed",
            "'Red'",
            ["allowed"],
            id="category-is-case-sensitive",
        ),
        pytest.param(
            {"id": "r2", "amount": None, "colour": "red"}, "amount", "required", "nothing", ["required"], id="no-amount"
        ),
        pytest.param(
            {"id": "r2", "amount": "NaN", "colour": "red"}, "amount", "required", "'NaN'", ["required"], id="nan-text"
        ),
        pytest.param(
            {"id": "r2", "amount": "1", "colour": None}, "colour", "required", "nothing", ["required"], id="no-colour"
        ),
    ],
)
def test_each_rule_quarantines_with_column_rule_value_and_reason(
    dataset: Dataset, row: dict[str, object], column: str, rule: str, value: str, words: list[str]
) -> None:
    bad = only_bad_row(dataset, row)

    assert (bad["column_name"], bad["rule"]) == (column, rule)
    assert bad["value"] == value or (value == "nothing" and bad["value"] is None), bad["value"]
    reason = bad["reason"]
    assert reason.startswith(f"{column}: "), reason
    assert f"(got {value})" in reason
    for word in words:
        assert word in reason


def test_duplicate_id_in_the_file_keeps_the_first(dataset: Dataset) -> None:
    rows = [GOOD, {"id": "r2", "amount": "1", "colour": "red"}, {"id": "r2", "amount": "2", "colour": "blue"}]
    checked = validate_rows(frame(rows), dataset)

    good = as_frame(checked.good)
    assert good["record_id"].tolist() == ["g1", "r2"]
    assert good.loc[1, "amount"] == 1.0
    bad = checked.bad.iloc[0]
    assert (bad["record_id"], bad["row_number"], bad["column_name"], bad["rule"]) == ("r2", 3, "id", "unique")
    assert "appears earlier in this file" in bad["reason"] and "'r2'" in bad["reason"]


def test_ids_are_compared_after_stripping_spaces(dataset: Dataset) -> None:
    rows = [GOOD, {"id": " g1 ", "amount": "1", "colour": "red"}]
    checked = validate_rows(frame(rows), dataset)
    assert checked.bad["rule"].tolist() == ["unique"]


def test_id_already_stored_from_an_earlier_file(dataset: Dataset) -> None:
    bad = only_bad_row(dataset, {"id": "old", "amount": "1", "colour": "red"}, stored=("old", "other"))

    assert (bad["column_name"], bad["rule"], bad["value"]) == ("id", "unique", "'old'")
    assert "already stored" in bad["reason"]


def test_missing_column_quarantines_every_row_naming_the_column(dataset: Dataset) -> None:
    raw = frame([GOOD, {"id": "r2", "amount": "1", "colour": "red"}], columns=("id", "amount", "colour"))
    checked = validate_rows(raw, dataset)

    assert as_frame(checked.good).empty
    assert checked.bad["column_name"].tolist() == ["rate", "rate"]
    assert checked.bad["rule"].tolist() == ["present", "present"]
    assert all("'rate' is missing from the file" in r for r in checked.bad["reason"])


def test_missing_id_column_refuses_the_whole_file(dataset: Dataset) -> None:
    raw = frame([GOOD], columns=("key", "amount", "rate", "colour"))
    with pytest.raises(UnreadableFile, match="id column 'id' is missing"):
        validate_rows(raw, dataset)


def test_several_problems_in_a_row_report_the_first_and_count_the_rest(dataset: Dataset) -> None:
    bad = only_bad_row(dataset, {"id": "r2", "amount": "x", "rate": "y", "colour": "purple"})
    assert bad["column_name"] == "amount"
    assert bad["reason"].endswith("and 2 more problem(s) in this row")


def test_good_rows_are_typed_and_every_row_is_counted_once(dataset: Dataset) -> None:
    rows = [
        {"id": "a", "amount": "1", "rate": "0.25", "colour": "red"},
        {"id": "b", "amount": " 2.5 ", "rate": None, "colour": " green "},
        {"id": "c", "amount": "0", "rate": "", "colour": "blue"},
        {"id": "d", "amount": "100", "rate": "nan", "colour": "red"},
        {"id": "a", "amount": "1", "rate": "1", "colour": "red"},  # duplicate
        {"id": "e", "amount": "-1", "rate": "1", "colour": "red"},  # below min
        {"id": "f", "amount": "1", "rate": "1", "colour": "pink"},  # unknown
    ]
    checked = validate_rows(frame(rows), dataset)

    good = as_frame(checked.good)
    assert checked.rows_in == len(rows) == len(good) + len(checked.bad)
    assert sorted(good["row_number"].tolist() + checked.bad["row_number"].tolist()) == list(range(1, 8))
    assert good["record_id"].tolist() == ["a", "b", "c", "d"]
    assert good["amount"].dtype == np.float64 and good["rate"].dtype == np.float64
    assert good["amount"].tolist() == [1.0, 2.5, 0.0, 100.0]
    assert good["rate"].iloc[0] == 0.25 and good["rate"].iloc[1:].isna().all()
    assert good["colour"].tolist() == ["red", "green", "blue", "red"]
    assert good["row_number"].tolist() == [1, 2, 3, 4]
    assert good["row_hash"].notna().all() and good["row_hash"].is_unique


def test_a_file_of_good_rows_has_no_bad_rows(dataset: Dataset) -> None:
    checked = validate_rows(frame([GOOD]), dataset)
    assert checked.bad.empty and list(checked.bad.columns) == BAD_COLUMNS
    assert checked.rows_in == 1


def test_zero_rows(dataset: Dataset) -> None:
    checked = validate_rows(frame([]), dataset)
    assert checked.rows_in == 0 and as_frame(checked.good).empty and checked.bad.empty


# ------------------------------------------------------------------------------------------- reading


CSV_TEXT = "id,amount,rate,colour\nr1,10,0.5,red\nr2,,1e-3,blue\nr3,abc,2,green\n"


def test_read_csv_keeps_every_value_as_text(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(CSV_TEXT)
    raw = as_frame(read_incoming(path))

    assert list(raw.columns) == ["id", "amount", "rate", "colour"]
    assert raw["amount"].tolist() == ["10", None, "abc"]
    assert raw["rate"].tolist() == ["0.5", "1e-3", "2"]


def test_read_csv_and_parquet_validate_alike(tmp_path: Path, dataset: Dataset) -> None:
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(CSV_TEXT)
    parquet_path = tmp_path / "in.parquet"
    typed = pd.DataFrame(
        {
            "id": ["r1", "r2", "r3"],
            "amount": [10.0, np.nan, 500.0],
            "rate": [0.5, 0.001, 2.0],
            "colour": ["red", "blue", "green"],
        }
    )
    typed.to_parquet(parquet_path, index=False)

    from_csv = validate_rows(read_incoming(csv_path), dataset)
    from_parquet = validate_rows(read_incoming(parquet_path), dataset)

    csv_good, parquet_good = as_frame(from_csv.good), as_frame(from_parquet.good)
    assert csv_good["record_id"].tolist() == parquet_good["record_id"].tolist() == ["r1"]
    assert csv_good["amount"].tolist() == parquet_good["amount"].tolist() == [10.0]
    assert from_csv.bad["rule"].tolist() == ["required", "numeric"]
    assert from_parquet.bad["rule"].tolist() == ["required", "max"]


@pytest.mark.parametrize("row_group_rows", [7, 300, 1000, 5000])
@pytest.mark.parametrize("block_rows", [250, 999, 5000])
def test_a_parquet_block_read_alone_is_the_block_read_in_turn(
    tmp_path: Path, row_group_rows: int, block_rows: int
) -> None:
    """What a cluster's worker reads (the rows of one block, from the row groups holding it) is exactly
    what the flow reads going through the file."""
    rows = pa.table({" id ": [f"r{i}" for i in range(2_345)], "x": np.arange(2_345, dtype=np.float64)})
    path = tmp_path / "f.parquet"
    pq.write_table(rows, path, row_group_size=row_group_rows)

    blocks = list(read_blocks(path, block_rows))

    assert len(blocks) == -(-2_345 // block_rows)
    for number, block in enumerate(blocks):
        assert parquet_block(path, number, block_rows).equals(block)
    assert parquet_block(path, 0, block_rows).column_names == ["id", "x"]


def test_read_csv_with_utf8_bom_and_padded_header(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid, amount ,rate,colour\nr1,1,2,red\n".encode())
    assert list(as_frame(read_incoming(path)).columns) == ["id", "amount", "rate", "colour"]


def test_header_only_csv_is_a_file_with_no_rows(tmp_path: Path, dataset: Dataset) -> None:
    path = tmp_path / "header.csv"
    path.write_text("id,amount,rate,colour\n")
    raw = read_incoming(path)
    assert len(raw) == 0 and list(as_frame(raw).columns) == ["id", "amount", "rate", "colour"]
    assert validate_rows(raw, dataset).rows_in == 0


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        pytest.param("empty.csv", b"", ["empty"], id="empty-csv"),
        pytest.param("blank.csv", b"\n\n", ["empty"], id="blank-lines-csv"),
        pytest.param("latin1.csv", "id,amount,rate,colour\xe9\nr1,1,2,red\n".encode("latin-1"), ["UTF-8"], id="latin1"),
        pytest.param("cut.parquet", b"PAR1 cut off in transit", ["PARQUET"], id="truncated-parquet"),
        pytest.param("empty.parquet", b"", ["PARQUET"], id="empty-parquet"),
        pytest.param("notes.txt", b"id\n1\n", ["unsupported file type", "'.txt'"], id="unsupported"),
    ],
)
def test_unreadable_files_are_refused_with_a_clear_message(
    tmp_path: Path, name: str, content: bytes, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFile) as caught:
        read_incoming(path)
    for word in words:
        assert word in str(caught.value)


def test_half_of_a_real_parquet_file_is_refused(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(1000)], "amount": np.arange(1000.0)}), whole)
    cut = tmp_path / "cut.parquet"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(UnreadableFile, match="cannot be read as PARQUET"):
        read_incoming(cut)


def test_semicolon_csv_is_refused_because_the_id_column_is_missing(tmp_path: Path, dataset: Dataset) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("id;amount;rate;colour\nr1;1;2;red\n")
    raw = read_incoming(path)  # one column named "id;amount;rate;colour"

    with pytest.raises(UnreadableFile) as caught:
        validate_rows(raw, dataset)
    message = str(caught.value)
    assert "id column 'id' is missing" in message
    assert "delimiter" in message
    assert "id;amount;rate;colour" in message


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path, dataset: Dataset) -> None:
    """A column named twice cannot be checked (which one holds the value?): the file is refused, not a crash."""
    path = tmp_path / "twice.csv"
    path.write_text("id,amount,rate,amount,colour\nr1,1,2,3,red\n")
    with pytest.raises(UnreadableFile, match="amount"):
        validate_rows(read_incoming(path), dataset)


def test_a_parquet_column_of_lists_is_refused_or_quarantined_not_a_crash(tmp_path: Path, dataset: Dataset) -> None:
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": ["r1"], "amount": [[1.0, 2.0]], "rate": [1.0], "colour": ["red"]}), path)
    try:
        checked = validate_rows(read_incoming(path), dataset)
    except UnreadableFile as error:
        assert "amount" in str(error)
    else:
        assert as_frame(checked.good).empty and checked.bad["column_name"].tolist() == ["amount"]


# ------------------------------------------------------------------ lines that cannot be read as rows


def _bad_lines(tmp_path: Path, dataset: Dataset, body: bytes) -> tuple[list[int], pd.DataFrame]:
    path = tmp_path / "lines.csv"
    path.write_bytes(b"id,amount,rate,colour\n" + body)
    checked = validate_rows(read_incoming(path), dataset)
    return checked.good.column("row_number").to_pylist(), checked.bad


@pytest.mark.parametrize(
    ("line", "column", "words"),
    [
        pytest.param(b"r2,5,1,red,extra", "colour", ["5 fields", "header has 4", "1 more"], id="a-field-too-many"),
        pytest.param(b"r2,5", "rate", ["2 field(s)", "'rate' on are missing"], id="fields-missing"),
        pytest.param(b"r2,5,\xff1,red", "rate", ["0xff", "not UTF-8"], id="not-utf8"),
    ],
)
def test_one_bad_line_costs_its_row_only_with_its_number_raw_text_and_column(
    tmp_path: Path, dataset: Dataset, line: bytes, column: str, words: list[str]
) -> None:
    good, bad = _bad_lines(tmp_path, dataset, b"r1,5,1,red\n" + line + b"\nr3,5,1,blue\n")

    assert good == [1, 3]
    assert bad["row_number"].tolist() == [2] and bad["column_name"].tolist() == [column]
    reason = bad["reason"].iloc[0]
    assert reason.startswith(f"{column}: ") and "#" not in reason
    for word in words:
        assert word in reason, reason
    assert bad["raw"].iloc[0] == line.decode("utf-8", "backslashreplace")
    assert bad["record_id"].iloc[0] in ("r2", None)


def test_a_truncated_last_line_costs_that_row_only(tmp_path: Path, dataset: Dataset) -> None:
    good, bad = _bad_lines(tmp_path, dataset, b"r1,5,1,red\nr2,5,1,blue\nr3,5")  # cut in transit, no newline

    assert good == [1, 2]
    assert bad["row_number"].tolist() == [3] and "line 4 of the file" in bad["reason"].iloc[0]


def test_row_numbers_stay_right_around_bad_lines_and_values_spanning_lines(tmp_path: Path, dataset: Dataset) -> None:
    body = b'r1,5,1,red\n"r\n2",5,1,red\nr3,5\nr4,5,1,red\nr5,5,1,red,x\nr6,5,1,red\n'
    path = tmp_path / "lines.csv"
    path.write_bytes(b"id,amount,rate,colour\n" + body)
    blocks = list(read_blocks(path, block_rows=2))
    first, goods, bads = 1, [], []
    for block in blocks:
        checked = validate_rows(block, dataset, first_row=first)
        first += block.num_rows
        goods += checked.good.column("row_number").to_pylist()
        bads += checked.bad["row_number"].tolist()

    assert (goods, bads) == ([1, 2, 4, 6], [3, 5])


def test_a_link_is_never_read_through(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("id,amount,rate,colour\nsecret,1,2,red\n")
    link = tmp_path / "link.csv"
    link.symlink_to(secret)

    with pytest.raises(UnreadableFile, match="symbolic link") as caught:
        read_incoming(link)
    assert "secret" not in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_incoming(fifo)
