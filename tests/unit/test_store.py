"""Atomic, idempotent batch commits: a batch is visible whole or not at all, and only once."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.store import SCHEMA_FILE, STAGING, CommitError, Table, Warehouse, batch_id

SCHEMA = pa.schema(
    [("id", pa.string()), ("value", pa.float64()), ("day", pa.string()), ("batch_id", pa.string())],
)


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "wh", [Table(name="things", partition_by="day", schema=SCHEMA)])
    warehouse.init()
    return warehouse


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(start, start + n)], "value": [float(i) for i in range(n)]})


def batch_files(store: Warehouse, table: str = "things") -> list[Path]:
    return sorted(p for p in (store.root / table).rglob("*.parquet") if p.name != SCHEMA_FILE)


def count(store: Warehouse, table: str = "things") -> int:
    with store.connect() as con:
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_init_creates_typed_empty_tables_and_is_safe_to_repeat(store: Warehouse) -> None:
    schema_file = store.root / "things" / SCHEMA_FILE
    assert pq.read_schema(schema_file).equals(SCHEMA)
    before = schema_file.stat().st_mtime_ns
    store.init()
    assert schema_file.stat().st_mtime_ns == before
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM things").fetchone() == (0,)
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE things)").fetchall())
    assert types == {"id": "VARCHAR", "value": "DOUBLE", "day": "VARCHAR", "batch_id": "VARCHAR"}


def test_batch_id_is_deterministic_and_depends_on_every_part() -> None:
    assert batch_id("ingest", "abc") == batch_id("ingest", "abc")
    assert batch_id("ingest", "abc") != batch_id("ingest", "abd")
    assert batch_id("a", "bc") != batch_id("ab", "c")


def test_commit_writes_one_file_in_its_partition_and_fills_partition_and_batch(store: Warehouse) -> None:
    assert store.commit("things", "b1", rows(3), partition="2026-01-02") is True

    path = store.batch_path("things", "b1", "2026-01-02")
    assert path == store.root / "things" / "day=2026-01-02" / "b1.parquet"
    assert batch_files(store) == [path]
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    assert table.column("day").to_pylist() == ["2026-01-02"] * 3
    assert table.column("batch_id").to_pylist() == ["b1"] * 3
    assert store.has_batch("things", "b1")
    assert not store.has_batch("things", "b2")
    assert count(store) == 3


def test_commit_overwrites_stale_partition_and_batch_columns(store: Warehouse) -> None:
    given = rows(2).append_column("day", pa.array(["wrong", "wrong"])).append_column("batch_id", pa.array(["x", "x"]))
    store.commit("things", "b1", given, partition="2026-01-02")
    with store.connect() as con:
        assert con.execute("SELECT DISTINCT day, batch_id FROM things").fetchall() == [("2026-01-02", "b1")]


def test_second_commit_of_the_same_batch_is_a_no_op(store: Warehouse) -> None:
    assert store.commit("things", "b1", rows(3), partition="2026-01-02")
    files = batch_files(store)
    content = files[0].read_bytes()

    assert store.commit("things", "b1", rows(5, start=100), partition="2026-01-02") is False
    assert store.commit("things", "b1", rows(5, start=100), partition="2026-01-03") is False  # another day too

    assert batch_files(store) == files
    assert files[0].read_bytes() == content
    assert count(store) == 3


def test_no_file_is_left_in_staging(store: Warehouse) -> None:
    for i in range(3):
        store.commit("things", f"b{i}", rows(2, start=10 * i), partition="2026-01-02")
    assert list((store.root / STAGING).iterdir()) == []
    assert count(store) == 6


def test_an_empty_batch_is_committed_and_marks_the_input_as_handled(store: Warehouse) -> None:
    assert store.commit("things", "empty", SCHEMA.empty_table(), partition="2026-01-02")
    assert store.has_batch("things", "empty")
    assert count(store) == 0


def test_commit_refuses_a_batch_missing_a_column(store: Warehouse) -> None:
    with pytest.raises(CommitError, match=r"lacks columns \['value'\]"):
        store.commit("things", "b1", pa.table({"id": ["a"]}), partition="2026-01-02")
    assert batch_files(store) == []


def test_commit_to_an_unknown_table_names_the_known_ones(store: Warehouse) -> None:
    with pytest.raises(KeyError, match="things"):
        store.commit("nothing", "b1", rows(1), partition="2026-01-02")


def _assert_nothing_visible(store: Warehouse) -> None:
    assert batch_files(store) == []
    assert not store.has_batch("things", "b1")
    assert list((store.root / STAGING).iterdir()) == []
    assert count(store) == 0


def test_disk_full_while_writing_raises_commit_error_and_leaves_nothing(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(CommitError) as caught:
        store.commit("things", "b1", rows(3), partition="2026-01-02")
    monkeypatch.undo()

    message = str(caught.value)
    assert "No space left on device" in message
    assert "things/day=2026-01-02/b1.parquet" in message
    assert "Nothing of this batch is visible" in message
    _assert_nothing_visible(store)
    # the next attempt succeeds: a failed commit did not mark the batch as done
    assert store.commit("things", "b1", rows(3), partition="2026-01-02")
    assert count(store) == 3


def test_failed_rename_raises_commit_error_and_leaves_nothing(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CommitError, match="Permission denied") as caught:
        store.commit("things", "b1", rows(3), partition="2026-01-02")
    monkeypatch.undo()

    assert "permissions" in str(caught.value)
    _assert_nothing_visible(store)


def test_clean_staging_removes_leftovers_of_killed_runs(store: Warehouse) -> None:
    store.commit("things", "b1", rows(2), partition="2026-01-02")
    staging = store.root / STAGING
    (staging / "b2.0123.tmp").write_bytes(b"PAR1 half a file")
    (staging / "b3.4567.tmp").write_bytes(b"")

    assert count(store) == 2  # leftovers are outside every table's glob: readers never see them
    assert store.clean_staging() == 0  # young files may belong to a run writing right now
    assert store.clean_staging(older_than_s=0) == 2
    assert list(staging.iterdir()) == []
    assert store.clean_staging(older_than_s=0) == 0
    assert count(store) == 2


def test_readers_see_batches_of_several_partitions(store: Warehouse) -> None:
    store.commit("things", "b1", rows(2), partition="2026-01-01")
    store.commit("things", "b2", rows(3, start=2), partition="2026-01-02")
    with store.connect() as con:
        assert con.execute("SELECT day, count(*) FROM things GROUP BY day ORDER BY day").fetchall() == [
            ("2026-01-01", 2),
            ("2026-01-02", 3),
        ]


@pytest.mark.parametrize("folder", ["it's here", "with space", "copy [1]"])
def test_a_warehouse_under_any_folder_name_is_readable(tmp_path: Path, folder: str) -> None:
    """Folder names are data, not glob patterns: `[1]` in a path must not hide every file from the views."""
    store = Warehouse(tmp_path / folder / "wh", [Table(name="things", partition_by="day", schema=SCHEMA)])
    store.init()
    store.commit("things", "b1", rows(2), partition="2026-01-02")
    assert count(store) == 2
