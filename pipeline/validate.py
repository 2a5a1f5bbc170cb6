"""Reading incoming files and checking each row against the dataset contract.

Every row of a readable file ends up in exactly one of `Validated.good` or `Validated.bad`; a bad row
carries the column, the rule, the offending value and a sentence saying what to fix. A file that
cannot be read raises `UnreadableFile` with the reason. A CSV line that cannot be split into the
header's fields, or holds bytes that are not UTF-8, is one bad row (its line number and raw text
kept); the rest of the file is read as usual.

Files are opened without following links and only when they are regular files: a drop folder is
writable by others, and a link in it must not make the pipeline read what it points to.

The checks run on Arrow columns with `pyarrow.compute`: a million rows take about a second, where
the same checks on pandas text columns took a minute.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.config import Dataset, Feature

SUPPORTED_SUFFIXES = (".csv", ".parquet")
MISSING_TOKENS = ["nan", "na", "null", "none"]
BAD_COLUMNS = ["record_id", "row_number", "column_name", "rule", "value", "reason", "raw"]
_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError)

# Hidden columns of a CSV block: for a line that could not be read as a row, the column at fault, the rule,
# the sentence and the line as it arrived. They never reach a table: `validate_rows` turns them into bad rows.
_HIDDEN = "__scorehouse_"
PROBLEM_COLUMN, PROBLEM_RULE, PROBLEM, RAW_LINE = (f"{_HIDDEN}{n}" for n in ("column", "rule", "problem", "raw"))
_PROBLEM_COLUMNS = (PROBLEM_COLUMN, PROBLEM_RULE, PROBLEM, RAW_LINE)


class UnreadableFile(ValueError):
    """The whole file (or the rest of it) is refused: it cannot be parsed, is empty, or lacks the id column."""


@dataclass(frozen=True)
class Validated:
    good: pa.Table  # record_id, [event_time], typed features, row_number, row_hash
    bad: pd.DataFrame  # BAD_COLUMNS

    @property
    def rows_in(self) -> int:
        return self.good.num_rows + len(self.bad)


def read_incoming(path: Path) -> pa.Table:
    """A whole file as one table (for small files: the reference set, label files)."""
    blocks = list(read_blocks(path, block_rows=1 << 62))
    return pa.concat_tables(blocks, promote_options="default") if len(blocks) > 1 else blocks[0]


def read_blocks(path: Path, block_rows: int) -> Iterator[pa.Table]:
    """The file's rows in blocks of about `block_rows`, so that memory does not grow with the file.

    CSV values arrive as text (a bad cell keeps its original text for the quarantine); Parquet keeps
    its types. Raises UnreadableFile before the first block, or at the block where reading fails.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(f"unsupported file type {suffix!r}: drop CSV or Parquet files")
    with open_regular(path) as handle:
        try:
            blocks = _csv_blocks(handle, block_rows) if suffix == ".csv" else _parquet_blocks(handle, block_rows)
            yield from blocks
        except _READ_ERRORS as error:
            raise UnreadableFile(f"cannot be read as {suffix[1:].upper()}: {error}") from None


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file, never through a link (O_NOFOLLOW).

    O_NONBLOCK keeps a FIFO from blocking the open; the type is checked on the opened file itself, so a
    file swapped for something else after it was listed is refused too.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise  # gone since it was listed (a concurrent run took it): nothing to refuse
    except OSError as error:
        if os.path.islink(path):
            raise UnreadableFile("a symbolic link: links are never followed; drop the file itself") from None
        raise UnreadableFile(f"cannot be opened ({error.strerror or error}): check its permissions") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnreadableFile("not a regular file: only regular files are read; drop the file itself")
    return os.fdopen(fd, "rb")


def _parquet_blocks(handle: BinaryIO, block_rows: int) -> Iterator[pa.Table]:
    source = pq.ParquetFile(handle)
    names = _header(source.schema_arrow.names)
    if source.metadata.num_rows == 0:
        yield source.schema_arrow.empty_table().rename_columns(names)
        return
    for batch in source.iter_batches(batch_size=min(block_rows, 1 << 30)):
        yield pa.Table.from_batches([batch]).rename_columns(names)


def parquet_block(path: Path, number: int, block_rows: int) -> pa.Table:
    """Block `number` of a Parquet file as `read_blocks` yields it (its rows from `number * block_rows` on),
    read without the blocks before it: only the row groups that hold it are decoded. This is how a worker
    of a cluster reads the block it validates."""
    first = number * block_rows
    with open_regular(path) as handle:
        try:
            source = pq.ParquetFile(handle)
            names = _header(source.schema_arrow.names)
            groups: list[int] = []
            skip = start = 0
            for group in range(source.metadata.num_row_groups):
                rows = source.metadata.row_group(group).num_rows
                if start + rows > first and start < first + block_rows:
                    skip = skip if groups else first - start
                    groups.append(group)
                start += rows
            taken: list[pa.RecordBatch] = []
            wanted = block_rows
            for batch in source.iter_batches(batch_size=min(block_rows, 1 << 30), row_groups=groups):
                if skip >= batch.num_rows:  # rows of the row group before the block
                    skip -= batch.num_rows
                    continue
                taken.append(batch.slice(skip, wanted))
                skip, wanted = 0, wanted - taken[-1].num_rows
                if not wanted:
                    break
            block = pa.Table.from_batches(taken, schema=source.schema_arrow).combine_chunks()
        except _READ_ERRORS as error:
            raise UnreadableFile(f"cannot be read as PARQUET: {error}") from None
    return block.rename_columns(names)


def id_windows(path: Path, id_column: str, window_rows: int) -> Iterator[pa.ChunkedArray]:
    """The ids of a Parquet file `window_rows` rows at a time, from the id column alone, as `as_text` gives
    them in the blocks of `read_blocks`: what a writer checks against the stored ids ahead of the blocks.
    Nothing for other files, or when the ids cannot be read so (the blocks then say what is wrong)."""
    if path.suffix.lower() != ".parquet":
        return
    try:
        with open_regular(path) as handle:
            source = pq.ParquetFile(handle)
            names = [str(n).strip() for n in source.schema_arrow.names]
            if names.count(id_column) != 1:
                return
            column = source.schema_arrow.names[names.index(id_column)]
            for batch in source.iter_batches(batch_size=window_rows, columns=[column]):
                yield as_text(pa.table({id_column: batch.column(0)}), id_column)
    except (UnreadableFile, *_READ_ERRORS):
        return


def _csv_blocks(handle: BinaryIO, block_rows: int) -> Iterator[pa.Table]:
    header = handle.readline()
    if not header.strip():
        raise UnreadableFile("the file is empty (no header)")
    try:
        names = _header(next(csv.reader([header.decode("utf-8-sig")])))
    except UnicodeDecodeError:
        raise UnreadableFile("the header is not UTF-8 text: save the file as UTF-8 and drop it again") from None
    handle.seek(0)
    ragged: list[tuple[int | None, str, int]] = []

    def set_aside(row: pacsv.InvalidRow) -> str:
        ragged.append((row.number, row.text, row.actual_columns))
        return "skip"

    # Read as bytes: text is checked column by column, so one bad byte costs its row, not the file. One
    # thread, so that the parser knows each set-aside line's number; values may span lines when quoted.
    reader = pacsv.open_csv(
        handle,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=set_aside, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.binary()), strings_can_be_null=True, null_values=[""]
        ),
    )
    yield from _rebatch(
        _text_blocks(reader, ragged, names),
        block_rows,
        _as_text_block(_with_ragged_lines(_empty_bytes(names), [], 1, names)),
    )


def _text_blocks(
    reader: pacsv.CSVStreamingReader, ragged: list[tuple[int | None, str, int]], names: list[str]
) -> Iterator[pa.Table]:
    """Each parsed block as text, with the lines the parser set aside while parsing it put back in place."""
    next_row = 1
    for batch in reader:
        block = _with_ragged_lines(pa.Table.from_batches([batch]), ragged, next_row, names)
        ragged.clear()
        next_row += block.num_rows
        yield _as_text_block(block)
    if ragged:  # lines set aside after the last block of rows
        yield _as_text_block(_with_ragged_lines(_empty_bytes(names), ragged, next_row, names))


def _empty_bytes(names: list[str]) -> pa.Table:
    return pa.schema([(n, pa.binary()) for n in names]).empty_table()


def _with_ragged_lines(
    rows: pa.Table, ragged: list[tuple[int | None, str, int]], first_row: int, names: list[str]
) -> pa.Table:
    """`rows` (parsed from one block) with the block's set-aside lines put back where they were, as rows
    whose values are empty and whose hidden columns say what is wrong, so every row keeps its number."""
    problems = {name: pa.nulls(rows.num_rows, pa.string()) for name in _PROBLEM_COLUMNS}
    rows = rows.append_column(PROBLEM_COLUMN, problems[PROBLEM_COLUMN])
    for name in _PROBLEM_COLUMNS[1:]:
        rows = rows.append_column(name, problems[name])
    if not ragged:
        return rows
    total = rows.num_rows + len(ragged)
    # The parser numbers lines from the header (1); a line it could not number goes last in its block.
    positions = [min(max((n - 1 if n else total) - first_row, 0), total - 1) for n, _, _ in ragged]
    aside = np.zeros(total, dtype=bool)
    aside[positions] = True
    if aside.sum() != len(ragged):  # two lines at one position: keep every line, in arrival order, at the end
        positions = list(range(rows.num_rows, total))
        aside[:] = False
        aside[positions] = True
    columns, rules, messages = zip(*(_ragged_problem(n, k, names) for n, _, k in ragged), strict=True)
    extra = {name: pa.nulls(len(ragged), pa.binary()) for name in names}
    extra |= {PROBLEM_COLUMN: pa.array(columns, pa.string()), PROBLEM_RULE: pa.array(rules, pa.string())}
    extra |= {PROBLEM: pa.array(messages, pa.string()), RAW_LINE: pa.array([t for _, t, _ in ragged], pa.string())}
    combined = pa.concat_tables([rows, pa.table(extra, schema=rows.schema)])
    order = np.empty(total, dtype=np.int64)
    order[~aside] = np.arange(rows.num_rows)
    order[np.flatnonzero(aside)] = rows.num_rows + np.argsort(np.argsort(positions))
    return combined.take(pa.array(order))


def _ragged_problem(number: int | None, found: int, names: list[str]) -> tuple[str, str, str]:
    """The column, rule and sentence for a line with `found` fields where the header has `len(names)`."""
    line = f"row {number - 1} (line {number} of the file)" if number else "a row"
    expected = len(names)
    if found < expected:
        return (
            names[found],
            "fields",
            f"{line} has {found} field(s) where the header has {expected}: the values from {names[found]!r} on "
            "are missing (a cut or truncated line?); fix the line and drop it in a new file",
        )
    return (
        names[-1],
        "fields",
        f"{line} has {found} fields where the header has {expected}: {found - expected} more after the last "
        f"column {names[-1]!r} (a delimiter inside an unquoted value?); quote the value and drop it in a new file",
    )


def _as_text_block(block: pa.Table) -> pa.Table:
    """Byte columns as UTF-8 text; a cell that is not UTF-8 becomes empty and its row bad, naming the column."""
    columns = {}
    for name in block.column_names:
        column = block.column(name)
        if not pa.types.is_binary(column.type):
            columns[name] = column
            continue
        try:
            columns[name] = pc.cast(column, pa.string())
        except pa.ArrowInvalid:
            columns[name], block = _decode_cells(block, name)
    if block.column(PROBLEM).null_count == block.num_rows:  # every line read: no hidden columns to carry
        return pa.table({name: column for name, column in columns.items() if name not in _PROBLEM_COLUMNS})
    for name in _PROBLEM_COLUMNS:
        columns[name] = block.column(name)
    return pa.table(columns)


def _decode_cells(block: pa.Table, name: str) -> tuple[pa.Array, pa.Table]:
    """Column `name` decoded value by value; rows with bytes that are not UTF-8 get a problem (the first
    problem of a row stands) and keep their raw text with the bytes escaped."""
    values = block.column(name).to_pylist()
    texts, bad = [], []
    for index, value in enumerate(values):
        try:
            texts.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError as error:
            texts.append(None)
            bad.append((index, error.object[error.start : error.start + 1].hex()))
    problem_column = block.column(PROBLEM_COLUMN).to_pylist()
    rule, problem, raw = (block.column(c).to_pylist() for c in (PROBLEM_RULE, PROBLEM, RAW_LINE))
    for index, byte in bad:
        if problem_column[index] is not None:
            continue
        problem_column[index], rule[index] = name, "utf8"
        problem[index] = (
            f"the value holds byte 0x{byte}, which is not UTF-8 text: save the file as UTF-8 and drop it again"
        )
        raw[index] = _escaped_row(block, index)
    for column, values_ in (
        (PROBLEM_COLUMN, problem_column),
        (PROBLEM_RULE, rule),
        (PROBLEM, problem),
        (RAW_LINE, raw),
    ):
        block = block.set_column(block.schema.get_field_index(column), column, pa.array(values_, pa.string()))
    return pa.array(texts, pa.string()), block


def _escaped_row(block: pa.Table, index: int) -> str:
    """A row of byte values as one line of text, bytes that are not UTF-8 shown as \\xNN."""
    row = block.slice(index, 1).to_pylist()[0]
    cells = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else "" for k, v in row.items()
             if not k.startswith(_HIDDEN)]  # fmt: skip
    return ",".join(cells)


def _rebatch(blocks: Iterator[pa.Table], block_rows: int, empty: pa.Table) -> Iterator[pa.Table]:
    """Blocks of exactly `block_rows` rows (the last one shorter); one empty block for a file with no rows."""
    pending = empty
    yielded = False
    for block in blocks:
        pending = pa.concat_tables([pending, block], promote_options="default")
        while pending.num_rows >= block_rows:
            yield pending.slice(0, block_rows)
            pending, yielded = pending.slice(block_rows), True
    if pending.num_rows or not yielded:
        yield pending


def _header(names: list[str]) -> list[str]:
    """Column names, stripped; a name given twice makes the file ambiguous, so it is refused."""
    stripped = [str(n).strip() for n in names]
    if not any(stripped):
        raise UnreadableFile("the file is empty (no header)")
    reserved = [n for n in stripped if n.startswith(_HIDDEN)]
    if reserved:
        raise UnreadableFile(f"the header uses the reserved name {reserved[0]!r}: rename that column")
    twice = sorted({n for n in stripped if stripped.count(n) > 1})
    if twice:
        raise UnreadableFile(f"the header names {twice} more than once: which one holds the value is ambiguous")
    return stripped


def validate_rows(
    raw: pa.Table, dataset: Dataset, stored_ids: Collection[str] = (), *, first_row: int = 1
) -> Validated:
    """Split `raw` into good typed rows and bad rows with reasons.

    `stored_ids` are ids of these rows already stored by other batches: such rows are duplicates.
    The first occurrence of an id in `raw` wins; later ones are quarantined. `first_row` is the file
    row number of `raw`'s first row (blocks of one file carry on its numbering).
    """
    if dataset.id_column not in raw.column_names:
        raise UnreadableFile(
            f"the id column {dataset.id_column!r} is missing (columns found: {raw.column_names[:12]}); "
            "check the delimiter and the header"
        )
    problems = Problems(raw, first_row)
    problems.flag_unreadable_lines()
    ids = as_text(raw, dataset.id_column)
    encoded_ids = pc.dictionary_encode(ids.combine_chunks())  # hashed once: for duplicates and the row hash
    missing_id = _mask(pc.is_null(ids))
    problems.flag(missing_id, dataset.id_column, "required", "the id is missing")
    repeated = repeated_values(encoded_ids) & ~missing_id
    problems.flag(repeated, dataset.id_column, "unique", "the id appears earlier in this file")
    if stored_ids:
        stored = _mask(pc.is_in(ids, value_set=pa.array(list(stored_ids), pa.string())))
        problems.flag(stored, dataset.id_column, "unique", "the id is already stored")

    columns: dict[str, pa.ChunkedArray | pa.Array] = {"record_id": ids}
    if dataset.event_time_column:
        columns["event_time"] = _check_time(raw, dataset.event_time_column, problems)
    for feature in dataset.features:
        columns[feature.name] = _check_feature(raw, feature, problems)
    columns["row_number"] = pa.array(np.arange(first_row, first_row + raw.num_rows, dtype=np.int64))
    hashed = [encoded_ids, *list(columns.values())[1:-1]]  # every stored value but the row number
    columns["row_hash"] = pa.array(row_hash(hashed).view(np.int64))  # stored as int64
    keep = pa.array(~problems.any())
    return Validated(good=pa.table(columns).filter(keep), bad=problems.table(ids))


def as_text(raw: pa.Table, name: str) -> pa.ChunkedArray:
    """A column as stripped text; empty becomes null. Nested values (lists, structs) are refused."""
    column = raw.column(name)
    if pa.types.is_nested(column.type):
        raise UnreadableFile(f"column {name!r} holds {column.type} values, not single values")
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    text = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def repeated_values(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a value appeared in an earlier row (nulls count as repeated; callers mask them).

    Arrow's dictionary encoding numbers values in the order they first appear, so a row holds a value
    seen before exactly when its index is not above every index before it: one hash pass, no Python
    objects (pandas' `duplicated` on text made a Python string of every id).
    """
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    if not len(indices):
        return np.zeros(0, dtype=bool)
    highest_before = np.maximum.accumulate(np.concatenate(([-1], indices[:-1])))
    return np.asarray(indices <= highest_before)


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _everywhere(raw: pa.Table) -> np.ndarray:
    return np.ones(raw.num_rows, dtype=bool)


def _check_time(raw: pa.Table, name: str, problems: Problems) -> pa.Array:
    if name not in raw.column_names:
        problems.flag(_everywhere(raw), name, "present", "the event-time column is missing from the file")
        return pa.nulls(raw.num_rows, pa.timestamp("us", tz="UTC"))
    text = as_text(raw, name)
    parsed = pd.to_datetime(pd.Series(text.to_numpy(zero_copy_only=False)), errors="coerce", utc=True, format="mixed")
    missing = _mask(pc.is_null(text))
    problems.flag(missing, name, "required", "the event time is missing")
    problems.flag(~missing & parsed.isna().to_numpy(), name, "timestamp", "not a date/time (use ISO 8601)")
    return pa.array(parsed.astype("datetime64[us, UTC]"), pa.timestamp("us", tz="UTC"))


def _check_feature(raw: pa.Table, feature: Feature, problems: Problems) -> pa.ChunkedArray | pa.Array:
    name = feature.name
    if name not in raw.column_names:
        problems.flag(_everywhere(raw), name, "present", f"the column {name!r} is missing from the file")
        return pa.nulls(raw.num_rows, pa.float64() if feature.kind == "numeric" else pa.string())
    if feature.kind == "categorical":
        return _check_category(raw, feature, problems)
    return _check_number(raw, feature, problems)


def _check_category(raw: pa.Table, feature: Feature, problems: Problems) -> pa.ChunkedArray:
    text = as_text(raw, feature.name)
    missing = _mask(pc.is_null(text))
    if not feature.nullable:
        problems.flag(missing, feature.name, "required", "a value is required")
    if feature.allowed is not None:
        known = _mask(pc.is_in(text, value_set=pa.array(feature.allowed, pa.string())))
        shown = ", ".join(feature.allowed[:8]) + (", ..." if len(feature.allowed) > 8 else "")
        problems.flag(~missing & ~known, feature.name, "allowed", f"not one of the allowed values ({shown})")
    return text


def _check_number(raw: pa.Table, feature: Feature, problems: Problems) -> pa.ChunkedArray | pa.Array:
    name = feature.name
    column = raw.column(name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        values = _floats(pc.cast(column, pa.float64()))
        missing = np.isnan(values)  # null or NaN
        not_a_number = np.zeros(raw.num_rows, dtype=bool)
    else:
        text = as_text(raw, name)
        # "nan" would parse as a number: count it as missing, like an empty cell.
        missing = _mask(pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), pa.array(MISSING_TOKENS))))
        numbers = _parse_numbers(pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text))
        not_a_number = ~missing & _mask(pc.is_null(numbers))
        values = _floats(numbers)
    if not feature.nullable:
        problems.flag(missing, name, "required", "a value is required")
    problems.flag(not_a_number, name, "numeric", "not a number")
    problems.flag(np.isinf(values), name, "finite", "not a finite number")
    with np.errstate(invalid="ignore"):
        if feature.min is not None:
            problems.flag(values < feature.min, name, "min", f"below the minimum {feature.min:g}")
        if feature.max is not None:
            problems.flag(values > feature.max, name, "max", f"above the maximum {feature.max:g}")
    usable = ~missing & np.isfinite(values)
    if usable.all():
        return pa.array(values, pa.float64())
    return pa.array(np.where(usable, values, np.nan), pa.float64(), mask=~usable)


def _floats(numbers: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """float64 values as numpy, null as NaN."""
    return np.asarray(pc.fill_null(numbers, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _parse_numbers(text: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Text to float64, null where it is not a number. Arrow's cast is fast but all-or-nothing, so a
    column holding any bad cell is parsed again, value by value, by pandas."""
    try:
        return pc.cast(text, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_numeric(pd.Series(text.to_numpy(zero_copy_only=False)), errors="coerce")
        return pa.array(parsed.to_numpy(dtype=np.float64), pa.float64(), mask=parsed.isna().to_numpy())


def row_hash(columns: list[pa.ChunkedArray | pa.Array]) -> np.ndarray:
    """A 64-bit hash of each row's stored values: the same row always hashes the same. A text column may
    come dictionary-encoded already (its dictionary's values are hashed, as they would be otherwise)."""
    total = np.zeros(len(columns[0]), dtype=np.uint64)
    for column in columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_floating(array.type):
            hashed = pd.util.hash_array(pc.fill_null(array, np.nan).to_numpy(zero_copy_only=False))
        else:
            hashed = _hash_text(array)
        total *= np.uint64(1_000_003)  # in place: a block's columns one after another stay in the cache
        total ^= hashed
    return total


def _hash_text(array: pa.Array) -> np.ndarray:
    """A column's hash as text (`pd.util.hash_array` of its values as strings; null hashes as 0)."""
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(pc.cast(array, pa.string()))
    # The dictionary's values are distinct: categorizing them first (pandas' default) only costs.
    dictionary = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False).astype(object), categorize=False)
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    hashed = np.where(indices >= 0, dictionary[np.clip(indices, 0, None)] if len(dictionary) else 0, 0)
    return hashed.astype(np.uint64, copy=False)


class Problems:
    """The first problem found in each row (column, rule, message), and how many there were."""

    def __init__(self, raw: pa.Table, first_row: int = 1) -> None:
        self.raw = raw
        self.first_row = first_row
        n = raw.num_rows
        self.count = np.zeros(n, dtype=np.int64)
        self.column = np.full(n, None, dtype=object)
        self.rule = np.full(n, None, dtype=object)
        self.message = np.full(n, None, dtype=object)
        self.final = np.zeros(n, dtype=bool)  # rows whose problem is settled: no rule adds to it

    def flag(self, mask: np.ndarray, column: str, rule: str, message: str) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.final
        if not mask.any():
            return
        new = mask & (self.count == 0)
        self.column[new], self.rule[new], self.message[new] = column, rule, message
        self.count += mask

    def flag_unreadable_lines(self) -> None:
        """The CSV lines the reader could not split or decode (its hidden columns), each with its own sentence.
        They are flagged before any rule, so the line's own problem is the one reported."""
        if PROBLEM not in self.raw.column_names:
            return
        columns, rules, messages = (self.raw.column(c).to_pylist() for c in (PROBLEM_COLUMN, PROBLEM_RULE, PROBLEM))
        for index in np.flatnonzero(_mask(pc.is_valid(self.raw.column(PROBLEM)))):
            mask = np.zeros(self.raw.num_rows, dtype=bool)
            mask[index] = True
            self.flag(mask, columns[index], rules[index], messages[index])
            self.final[index] = True  # its values are empty, not wrong: the rules have nothing to say about them

    def any(self) -> np.ndarray:
        return self.count > 0

    def table(self, ids: pa.ChunkedArray) -> pd.DataFrame:
        """One row per bad row: where, which rule, the value as it arrived, a sentence, the raw row."""
        bad = np.flatnonzero(self.count > 0)
        raw_rows = self.raw.take(pa.array(bad, pa.int64())).to_pylist() if len(bad) else []
        lines = [row.pop(RAW_LINE, None) for row in raw_rows]  # a line that could not be read as a row
        for row in raw_rows:
            for name in _PROBLEM_COLUMNS:
                row.pop(name, None)
        values = [
            line if line is not None else row.get(column)
            for row, column, line in zip(raw_rows, self.column[bad], lines, strict=True)
        ]
        reasons = []
        for column, message, value, count in zip(
            self.column[bad], self.message[bad], values, self.count[bad], strict=True
        ):
            reason = f"{column}: {message} (got {_show(value)})"
            reasons.append(reason if count == 1 else f"{reason}; and {count - 1} more problem(s) in this row")
        return pd.DataFrame(
            {
                "record_id": ids.take(pa.array(bad, pa.int64())).to_pylist() if len(bad) else [],
                "row_number": (bad + self.first_row).astype("int64"),
                "column_name": self.column[bad],
                "rule": self.rule[bad],
                "value": [None if v is None else _show(v) for v in values],
                "reason": reasons,
                "raw": [
                    line if line is not None else json.dumps(row, default=str, ensure_ascii=False)
                    for row, line in zip(raw_rows, lines, strict=True)
                ],
            },
            columns=BAD_COLUMNS,
        )


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "nothing"
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")
