"""Score units by reference (warehouse/units.py) and files committed by another process than their writer
(`Warehouse.write_files` / `commit_files`): the pieces the Dask engine is made of, on a real Delta store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_store import KEYED, THINGS, ids_of, rows
from warehouse import units
from warehouse.scoring import NO_COMPLETE_PASS
from warehouse.store import Conflict, Warehouse


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse_ = Warehouse(tmp_path / "a folder" / "wh", [THINGS, KEYED])  # a space: paths are percent-encoded
    warehouse_.init()
    return warehouse_


def test_a_written_file_is_invisible_until_committed_and_committed_once(store: Warehouse) -> None:
    base = store.version("things")
    actions = store.write_files("things", "b1", rows(["a", "b", "c"]), partition="2026-11-21")

    assert ids_of(store, "things") == [], "an uncommitted file is not part of any snapshot"
    assert store.commit_files("things", "b1", actions, marks=[("score/v1", 7)], read_version=base)
    again = store.write_files("things", "b1", rows(["a", "b", "c"]), partition="2026-11-21")  # a unit run twice
    assert not store.commit_files("things", "b1", again, marks=[("score/v1", 7)], read_version=base)

    assert ids_of(store, "things") == ["a", "b", "c"]
    assert store.watermark("things", "score/v1") == 7
    assert store.committed_version("things") == base + 1
    stats = json.loads(actions[0].stats)
    assert stats["numRecords"] == 3 and set(stats["minValues"]) == {"at"}, "statistics only of the stats columns"


def test_a_commit_from_a_stale_snapshot_of_the_same_watermark_conflicts(store: Warehouse) -> None:
    base = store.version("things")
    first = store.write_files("things", "b1", rows(["a"]), partition="d")
    second = store.write_files("things", "b2", rows(["b"]), partition="d")
    store.commit_files("things", "b1", first, marks=[("score/v1", 1)], read_version=base)

    with pytest.raises(Conflict):
        store.commit_files("things", "b2", second, marks=[("score/v1", 2)], read_version=base)
    assert ids_of(store, "things") == ["a"]


def test_files_of_a_table_with_a_key_commit_only_from_the_snapshot_their_keys_were_checked_at(
    store: Warehouse,
) -> None:
    """Two writers that checked their keys against the same snapshot: the second conflicts and checks again,
    as with `commit`; an empty batch stores no key and needs no snapshot."""
    base = store.version("keyed")
    first = store.write_files("keyed", "b1", rows(["a"]), partition="d")
    second = store.write_files("keyed", "b2", rows(["b"]), partition="d")

    assert store.commit_files("keyed", "b1", first, read_version=base)
    with pytest.raises(Conflict):
        store.commit_files("keyed", "b2", second, read_version=base)
    assert store.commit_files("keyed", "b2", second, read_version=store.version("keyed"))
    with pytest.raises(ValueError, match="stores each id once"):
        store.commit_files("keyed", "b3", store.write_files("keyed", "b3", rows(["c"]), partition="d"))
    assert store.commit_files("keyed", "b4", [])
    assert ids_of(store, "keyed") == ["a", "b"]


def test_change_units_are_whole_commits_of_about_the_unit_size() -> None:
    planned = units.change_units([(4, 10), (5, 11), (6, 12)], after=3, chunk_rows=15)

    assert [(u.changes, u.watermark, u.planned_rows) for u in planned] == [((3, 5), 5, 21), ((5, 6), 6, 12)]
    assert units.change_units([], after=3, chunk_rows=15) == []


def test_file_units_record_the_snapshot_only_with_the_last(store: Warehouse) -> None:
    for n, ids in enumerate((["a", "b"], ["c"], ["d", "e", "f"])):
        store.commit("keyed", f"b{n}", rows(ids), partition="d", read_version=store.version("keyed"))
    files = units.record_files(store, store.version("keyed"), table="keyed")

    assert sorted(count for _, count in files) == [1, 2, 3]
    planned = units.file_units(files, upto=3, scored_at=0, chunk_rows=3)
    assert [u.watermark for u in planned][-1] == 3
    assert all(u.watermark == NO_COMPLETE_PASS for u in planned[:-1])
    assert sum(u.planned_rows for u in planned) == 6
    assert sorted(f for u in planned for f in u.files) == sorted(f for f, _ in files)
    empty = units.file_units([], upto=0, scored_at=0, chunk_rows=3)
    assert [(u.files, u.watermark) for u in empty] == [((), 0)], "nothing to score still records the watermark"


def test_a_units_batch_id_depends_on_its_ids_in_order_and_not_on_how_they_are_chunked() -> None:
    """A unit read on a worker comes in other chunks than on the driver: its batch id must not change."""
    import pyarrow as pa

    from flows.unit_work import ids_digest

    ids = pa.array([f"id-{i}" for i in range(1000)])
    digest = ids_digest(ids)
    assert ids_digest(pa.chunked_array([ids.slice(0, 333), ids.slice(333)])) == digest
    assert ids_digest(ids.slice(0)) == digest and ids_digest(ids.cast(pa.string_view())) == digest
    assert ids_digest(ids.slice(1)) != digest
    assert ids_digest(pa.array(["ab", "c"])) != ids_digest(pa.array(["a", "bc"]))  # the boundaries count
    assert ids_digest(pa.array(["b", "a"])) != ids_digest(pa.array(["a", "b"]))


class _Committing:
    """A log whose `predictions` gets a commit at every look, or never (`busy` False)."""

    def __init__(self, busy: bool) -> None:
        self.busy, self.looks = busy, 0

    def version(self, table: str) -> int:
        self.looks += 1
        return self.looks if self.busy else 0


@pytest.mark.parametrize("busy", [False, True])
def test_a_run_that_lost_a_race_waits_for_a_quiet_log_but_never_longer_than_its_limit(busy: bool) -> None:
    import time

    from warehouse.scoring import wait_until_quiet

    log = _Committing(busy)
    started = time.monotonic()
    wait_until_quiet(log, quiet_seconds=0.3 if not busy else 60, poll_seconds=0.01, longest=0.5)  # type: ignore[arg-type]
    waited = time.monotonic() - started
    assert (0.3 <= waited < 5) if not busy else (0.5 <= waited < 5), waited
    assert log.looks > 10  # it kept looking at the log


def test_the_worker_side_of_the_dask_engine_imports_no_prefect() -> None:
    """A Dask worker imports flows.unit_work to run a score unit, flows.ingest_work to validate a block and
    pipeline.drift for the monitor's statistics; Prefect's import would add seconds to its start."""
    import subprocess
    import sys

    modules = "flows.unit_work, flows.ingest_work, pipeline.drift"
    probe = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'prefect'}}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
