"""Readers during writes (invariant 4): four reader processes hold the catalog open read-only and query it
continuously while a hundred batches are committed. No reader errors, counts only grow, and every
batch a reader sees is whole: the batches seen are always exactly the first k committed, each with all
of its rows.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from tests.flows.conftest import make_project
from tests.reliability import _reader
from warehouse.catalog import catalog_path
from warehouse.store import batch_id

READERS = 4
BATCHES = 100


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


def test_four_read_only_readers_see_only_whole_batches_while_a_hundred_are_committed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    store = project.store()
    catalog = str(catalog_path(store))
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    readers = [
        context.Process(target=_reader.read_until_stopped, args=(catalog, ready, stop, results)) for _ in range(READERS)
    ]
    for reader in readers:
        reader.start()
    try:
        for _ in readers:
            ready.get(timeout=120)  # every reader holds the catalog open before the first commit
        started = time.monotonic()
        for number in range(BATCHES):
            day = f"2026-11-{20 + number % 3}"  # new partition folders appear while readers read
            assert store.commit("predictions", batch_id("readers", number), batch(number), partition=day)
            time.sleep(0.01)
        writing = time.monotonic() - started
        stop.set()
        answers = [results.get(timeout=120) for _ in readers]
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
            if reader.is_alive():
                reader.kill()
    assert all(reader.exitcode == 0 for reader in readers)

    seen_partial = 0
    for observations, errors in answers:
        assert errors == [], errors[:3]
        assert len(observations) >= 10, f"a reader answered only {len(observations)} times in {writing:.1f} s"
        committed = [len(o) for o in observations]
        assert committed == sorted(committed), "counts only grow"
        for observation in observations:
            # Exactly the first k batches, each whole.
            assert observation == [(number, size(number)) for number in range(len(observation))]
        assert committed[-1] == BATCHES
        seen_partial += sum(1 for k in set(committed) if 0 < k < BATCHES)
    assert seen_partial >= READERS, "the readers should have seen the table grow, not only its end"
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone() == (sum(map(size, range(BATCHES))),)
