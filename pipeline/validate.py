"""Reading incoming files and checking each row against the dataset contract.

Every row of a readable file ends up in exactly one of `Validated.good` or `Validated.bad`; a bad row
carries the column, the rule, the offending value and a sentence saying what to fix. A file that
cannot be read at all raises `UnreadableFile` with the reason.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.config import Dataset, Feature

SUPPORTED_SUFFIXES = (".csv", ".parquet")
MISSING_TOKENS = ["nan", "na", "null", "none"]
BAD_COLUMNS = ["record_id", "row_number", "column_name", "rule", "value", "reason", "raw"]


class UnreadableFile(ValueError):
    """The whole file is refused: it cannot be parsed, is empty, or lacks the id column."""


@dataclass(frozen=True)
class Validated:
    good: pd.DataFrame  # record_id, [event_time], typed features, row_number, row_hash
    bad: pd.DataFrame  # BAD_COLUMNS

    @property
    def rows_in(self) -> int:
        return len(self.good) + len(self.bad)


def read_incoming(path: Path) -> pd.DataFrame:
    """The file's rows, every value as text (or None when empty), with the header as given.

    Reading everything as text keeps the original value of a bad cell for the quarantine, instead of
    letting the parser coerce it.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(f"unsupported file type {suffix!r}: drop CSV or Parquet files")
    try:
        table = _read_csv_as_text(path) if suffix == ".csv" else pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as error:
        raise UnreadableFile(f"cannot be read as {suffix[1:].upper()}: {error}") from None
    if table.num_columns == 0:
        raise UnreadableFile("the file is empty (no header)")
    frame = table.to_pandas()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_csv_as_text(path: Path) -> pa.Table:
    with open(path, "rb") as handle:
        header = handle.readline()
    if not header.strip():
        raise UnreadableFile("the file is empty (no header)")
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile("the header is not UTF-8 text: save the file as UTF-8 and drop it again") from None
    names = next(csv.reader([header.decode("utf-8-sig")]))
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            null_values=[""],
        ),
    )


def validate_rows(raw: pd.DataFrame, dataset: Dataset, stored_ids: Collection[str] = ()) -> Validated:
    """Split `raw` (as `read_incoming` returns it) into good typed rows and bad rows with reasons.

    `stored_ids` are ids of this file already in the warehouse from other files: such rows are
    duplicates. The first occurrence of an id in the file wins; later ones are quarantined.
    """
    if dataset.id_column not in raw.columns:
        raise UnreadableFile(
            f"the id column {dataset.id_column!r} is missing (columns found: {list(raw.columns)[:12]}); "
            "check the delimiter and the header"
        )
    raw = raw.reset_index(drop=True)
    problems = Problems(raw)
    ids = as_text(raw[dataset.id_column])
    problems.flag(ids.isna(), dataset.id_column, "required", "the id is missing")
    seen_before = ids.duplicated(keep="first") & ids.notna()
    problems.flag(seen_before, dataset.id_column, "unique", "the id appears earlier in this file")
    problems.flag(
        ids.isin(list(stored_ids)), dataset.id_column, "unique", "the id is already stored from an earlier file"
    )

    good = pd.DataFrame({"record_id": ids})
    if dataset.event_time_column:
        good["event_time"] = _check_time(raw, dataset.event_time_column, problems)
    for feature in dataset.features:
        good[feature.name] = _check_feature(raw, feature, problems)

    bad_mask = problems.any()
    good["row_number"] = np.arange(1, len(raw) + 1, dtype="int64")
    good["row_hash"] = pd.util.hash_pandas_object(raw, index=False).map("{:016x}".format)
    return Validated(good=good[~bad_mask].reset_index(drop=True), bad=problems.table(ids))


def as_text(column: pd.Series) -> pd.Series:
    """Values as stripped text, None for missing."""
    text = column.astype("string").str.strip()
    present = (text.notna() & (text != "")).fillna(False).astype(bool)
    return text.astype(object).where(present, None)


def _check_required(feature: Feature, missing: pd.Series, problems: Problems) -> None:
    if not feature.nullable:
        problems.flag(missing, feature.name, "required", "a value is required")


def _check_time(raw: pd.DataFrame, name: str, problems: Problems) -> pd.Series:
    if name not in raw.columns:
        problems.flag(
            pd.Series(True, index=raw.index), name, "present", "the event-time column is missing from the file"
        )
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    text = as_text(raw[name])
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    problems.flag(text.isna(), name, "required", "the event time is missing")
    problems.flag(text.notna() & parsed.isna(), name, "timestamp", "not a date/time (use ISO 8601)")
    return parsed


def _check_feature(raw: pd.DataFrame, feature: Feature, problems: Problems) -> pd.Series:
    name = feature.name
    if name not in raw.columns:
        problems.flag(
            pd.Series(True, index=raw.index), name, "present", f"the column {name!r} is missing from the file"
        )
        return pd.Series(np.nan if feature.kind == "numeric" else None, index=raw.index)
    text = as_text(raw[name])
    if feature.kind == "categorical":
        missing = text.isna()
        _check_required(feature, missing, problems)
        if feature.allowed is not None:
            unknown = ~missing & ~text.isin(feature.allowed)
            shown = ", ".join(feature.allowed[:8]) + (", ..." if len(feature.allowed) > 8 else "")
            problems.flag(unknown, name, "allowed", f"not one of the allowed values ({shown})")
        return text
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    # "nan" parses as a number: count it as missing, like an empty cell.
    missing = text.isna() | text.str.lower().isin(MISSING_TOKENS).fillna(False).astype(bool)
    _check_required(feature, missing, problems)
    problems.flag(~missing & numbers.isna(), name, "numeric", "not a number")
    problems.flag(np.isinf(numbers), name, "finite", "not a finite number")
    if feature.min is not None:
        problems.flag(numbers < feature.min, name, "min", f"below the minimum {feature.min:g}")
    if feature.max is not None:
        problems.flag(numbers > feature.max, name, "max", f"above the maximum {feature.max:g}")
    return numbers.where(~missing & np.isfinite(numbers))


class Problems:
    """The first problem found for each row (column, rule, value, message), plus a count of the others."""

    def __init__(self, raw: pd.DataFrame) -> None:
        self.raw = raw
        self.first: pd.DataFrame = pd.DataFrame(
            {"column_name": None, "rule": None, "value": None, "reason": None}, index=raw.index, dtype=object
        )
        self.count = pd.Series(0, index=raw.index, dtype="int64")

    def flag(self, mask: pd.Series, column: str, rule: str, message: str) -> None:
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        new = mask & (self.count == 0)
        if new.any():
            values = self.raw[column][new] if column in self.raw.columns else pd.Series(None, index=new[new].index)
            self.first.loc[new, "column_name"] = column
            self.first.loc[new, "rule"] = rule
            self.first.loc[new, "value"] = values.map(_show).to_numpy()
            self.first.loc[new, "reason"] = [f"{column}: {message} (got {_show(v)})" for v in values]
        self.count += mask.astype("int64")

    def any(self) -> pd.Series:
        return self.count > 0

    def table(self, ids: pd.Series) -> pd.DataFrame:
        bad = self.any()
        out = self.first[bad].copy()
        more = self.count[bad] - 1
        out["reason"] = [
            r if m == 0 else f"{r}; and {m} more problem(s) in this row"
            for r, m in zip(out["reason"], more, strict=False)
        ]
        out["record_id"] = ids[bad]
        out["row_number"] = (np.flatnonzero(bad.to_numpy()) + 1).astype("int64")
        out["raw"] = [json.dumps(row, default=str, ensure_ascii=False) for row in self.raw[bad].to_dict("records")]
        return out[BAD_COLUMNS].reset_index(drop=True)


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "nothing"
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")
