"""Readers during writes (invariant 4): four reader processes query the catalog read-only, following it from
file to file, while a hundred batches are committed (the catalog rebuilt after each, as the flows publish it),
the table is compacted and then vacuumed with the default retention. No reader errors, counts only grow, and
every batch a reader sees is whole: the batches seen are always exactly the first k committed, each with all
of its rows. A session that kept the catalog of before the compaction still answers after the vacuum.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from tests.flows.conftest import make_project
from tests.reliability import _reader
from warehouse.catalog import build_catalog, catalog_path
from warehouse.maintenance import compact, vacuum
from warehouse.store import batch_id

READERS = 4
BATCHES = 100
COMPACT_AFTER = 60  # batches committed before the compaction
VACUUM_AFTER = 80  # ... and before the vacuum
DEFAULT_RETENTION_HOURS = 7 * 24


def size(number: int) -> int:
    """Batches of different sizes (1 to 37 rows), so a partial batch could not pass for a whole one."""
    return 1 + (number * 7) % 37


def batch(number: int) -> pa.Table:
    n = size(number)
    return pa.table(
        {
            "record_id": [f"b{number:03d}-{i:03d}" for i in range(n)],
            "model_version": ["v1"] * n,
            "score": [float(number)] * n,
            "label": ["good"] * n,
            "threshold": [0.5] * n,
            "embedding": pa.array([[0.1 * number, 0.2, 0.3]] * n, pa.list_(pa.float32())),
            "scored_at": pa.array([datetime(2026, 11, 21, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def whole(batches: int) -> list[tuple[int, int]]:
    return [(number, size(number)) for number in range(batches)]


def test_four_readers_following_the_catalog_see_only_whole_batches_through_commits_compaction_and_vacuum(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project")
    store = project.store()
    catalog = catalog_path(store)
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    readers = [
        context.Process(target=_reader.read_until_stopped, args=(str(catalog), ready, stop, results))
        for _ in range(READERS)
    ]
    for reader in readers:
        reader.start()
    held: duckdb.DuckDBPyConnection | None = None
    try:
        for _ in readers:
            ready.get(timeout=120)  # every reader has read the catalog once before the first commit
        started = time.monotonic()
        for number in range(BATCHES):
            day = f"2026-11-{20 + number % 3}"
            assert store.commit("predictions", batch_id("readers", number), batch(number), partition=day)
            build_catalog(store)  # what flows.runtime.publish does after a flow's commits
            if number + 1 == COMPACT_AFTER:
                held = _reader.attach(str(catalog))  # a session that keeps the catalog of before the compaction
                replaced = store.files("predictions")
                upkeep = compact(store, "predictions", target_mb=64)
                assert upkeep.files_after == 1 < upkeep.files_before == COMPACT_AFTER
                build_catalog(store)
            if number + 1 == VACUUM_AFTER:
                assert vacuum(store, "predictions", DEFAULT_RETENTION_HOURS) == 0
                assert all(Path(f).is_file() for f in replaced), "vacuum deleted files an older catalog lists"
        writing = time.monotonic() - started
        stop.set()
        answers = [results.get(timeout=120) for _ in readers]
        assert held is not None
        assert held.execute(_reader.QUERY).fetchall() == whole(COMPACT_AFTER)  # still whole, still readable
    finally:
        stop.set()
        if held is not None:
            held.close()
        for reader in readers:
            reader.join(timeout=30)
            if reader.is_alive():
                reader.kill()
    assert all(reader.exitcode == 0 for reader in readers)

    seen_growing = 0
    for observations, errors, files_opened in answers:
        assert errors == [], errors[:3]
        assert len(observations) >= 10, f"a reader answered only {len(observations)} times in {writing:.1f} s"
        committed = [len(o) for o in observations]
        assert committed == sorted(committed), "counts only grow"
        for observation in observations:
            assert observation == whole(len(observation))  # exactly the first k batches, each whole
        assert committed[-1] == BATCHES
        assert files_opened > 2, "the reader followed the catalog from file to file"
        seen_growing += sum(1 for k in set(committed) if 0 < k < BATCHES)
    assert seen_growing >= READERS, "the readers should have seen the table grow, not only its end"
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone() == (sum(map(size, range(BATCHES))),)
