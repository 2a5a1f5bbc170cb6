"""`StoredKeys` answers, at every version, exactly what a lookup in the whole snapshot answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from warehouse.keys import StoredKeys, held_keys
from warehouse.maintenance import compact
from warehouse.store import Table, Warehouse

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("id", pa.string()), ("at", TS), ("day", pa.string()), ("batch_id", pa.string())])
KEYED = Table(name="keyed", partition_by="day", schema=SCHEMA, key="id", stats_columns=("at",))
DAY = "2026-11-29"


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "wh", [KEYED])
    warehouse.init()
    return warehouse


def add(store: Warehouse, batch: str, ids: list[str]) -> int:
    """Commit `ids` as another writer would; returns the version it created."""
    at = pa.array([datetime(2026, 11, 29, tzinfo=UTC)] * len(ids), TS)
    store.commit("keyed", batch, pa.table({"id": pa.array(ids, pa.string()), "at": at}), partition=DAY,
                 read_version=store.version("keyed"))  # fmt: skip
    return store.version("keyed")


def truth(store: Warehouse, ids: list[str | None], version: int) -> set[str]:
    wanted = pa.array(sorted({i for i in ids if i is not None}), pa.string())
    return set(held_keys(store.dataset("keyed", version), "id", wanted).to_pylist())


def test_every_answer_is_the_whole_snapshots_through_commits_compaction_and_erasure(store: Warehouse) -> None:
    add(store, "old", ["a", "b", "x"])
    window: list[str | None] = ["a", "c", None, "d", "e", "c", "f", "g", "b", "h"]  # rows 1..10
    keys = StoredKeys(store, "keyed")
    keys.expect(pa.array(window), 1, store.version("keyed"))
    block1, block2, block3 = window[0:4], window[4:7], window[7:10]

    version = store.version("keyed")
    assert keys.among(pa.array(block1), 1, version) == truth(store, block1, version) == {"a"}

    # this writer's own commit of rows 2 and 4 (c, d), then another writer's commit of e and h
    mine = add(store, "mine", ["c", "d"])
    keys.committed(np.array([2, 4]), mine)
    assert keys.among(pa.array(block2), 5, mine) == truth(store, block2, mine) == {"c"}
    other = add(store, "other", ["e", "h"])
    assert keys.among(pa.array(block2), 5, other) == truth(store, block2, other) == {"c", "e"}
    assert keys.among(pa.array(block3), 8, other) == truth(store, block3, other) == {"b", "h"}

    # compaction rewrites every file; erasure removes b: the answers follow
    compact(store, "keyed", target_mb=64)
    store.erase("keyed", "id", ["b"])
    latest = store.version("keyed")
    assert keys.among(pa.array(block3), 8, latest) == truth(store, block3, latest) == {"h"}
    assert keys.among(pa.array(block1), 1, latest) == truth(store, block1, latest) == {"a", "c", "d"}


def test_rows_outside_the_window_or_with_other_keys_are_looked_up_in_the_whole_snapshot(store: Warehouse) -> None:
    add(store, "old", ["a", "z"])
    keys = StoredKeys(store, "keyed")
    keys.expect(pa.array(["a", "b"]), 1, store.version("keyed"))
    version = store.version("keyed")

    assert keys.among(pa.array(["z", "b"]), 1, version) == {"z"}  # not the window's keys for rows 1-2
    assert keys.among(pa.array(["b", "z"]), 2, version) == {"z"}  # rows 2-3: past the window's end
    assert keys.among(pa.array(["a"]), 1, version - 1) == set()  # an older snapshot than the window's


def test_a_commit_that_does_not_directly_follow_the_last_answer_is_read_from_its_files(store: Warehouse) -> None:
    keys = StoredKeys(store, "keyed")
    keys.expect(pa.array(["a", "b", "c"]), 1, store.version("keyed"))
    add(store, "other", ["c"])
    mine = add(store, "mine", ["a"])
    keys.committed(np.array([1]), mine)  # two versions after the last answer: ignored, the files say it

    assert keys.among(pa.array(["b", "c"]), 2, mine) == {"c"}
    assert keys.among(pa.array(["a", "b", "c"]), 1, mine) == {"a", "c"}


def test_a_table_without_a_key_is_refused(tmp_path: Path) -> None:
    plain = Table(name="plain", partition_by="day", schema=SCHEMA)
    with pytest.raises(ValueError, match="no key"):
        StoredKeys(Warehouse(tmp_path / "wh", [plain]), "plain")
