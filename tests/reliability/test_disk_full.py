"""Disk full or a read-only folder during a commit: the run fails with a clear message, nothing is half
committed, and the next run (with room again) finishes the work exactly.

The failures are injected into the write calls of this process (a loop-mounted small disk needs
privileges CI does not have, and a permission-restricted folder does not stop root, as here): a Delta
write runs out of space, a Delta write into a read-only folder fails, a model file cannot be written.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import warehouse.store
from flows.ingest import ingest
from flows.score import score
from flows.train import train
from pipeline import artifacts
from tests.flows.conftest import arrivals
from tests.reliability._invariants import assert_consistent, snapshot
from tests.reliability._projects import quick_project
from warehouse.store import CommitError


def _fails_at(n: int, error: OSError, call: Callable[..., Any], table: str | None = None) -> Callable[..., Any]:
    """`call`, except that its `n`th call (counting only writes to `table`, when given) fails with `error`."""
    calls = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        target = getattr(args[0], "table_uri", "")
        if table is None or target.rstrip("/").endswith(f"/{table}"):
            calls += 1
            if calls == n:
                raise error
        return call(*args, **kwargs)

    return failing


def _failed_with(state: Any, *words: str) -> str:
    """The run failed, and both its exception and the message operators see on the run name the cause."""
    assert state.is_failed(), state
    with pytest.raises(Exception) as caught:
        state.result()
    message = str(caught.value)
    for word in words:
        assert word in message, message
        assert word in (state.message or ""), state.message
    return message


def test_a_full_disk_half_way_through_an_ingest_leaves_whole_blocks_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = quick_project(tmp_path / "project", chunk_rows=40)
    rows = arrivals(100)
    rows.loc[50, "int_rate"] = "abc"
    path = project.drop_csv(rows, "a.csv")
    before = snapshot(project)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real = warehouse.store.write_deltalake
    monkeypatch.setattr(warehouse.store, "write_deltalake", _fails_at(4, full, real))  # block 2's records

    state = ingest(project.config, return_state=True)

    message = _failed_with(state, "No space left on device", "free disk space", "of records")
    assert isinstance(state.result(raise_on_failure=False), CommitError)
    assert "Nothing of it is visible" in message
    seen = assert_consistent(project, before, None)
    # Block 1 whole; of block 2 only its quarantine batch (row 51), which lands before its records batch.
    assert (seen.counts["records"], seen.counts["quarantine"]) == (40, 1)
    assert path.exists()  # the file waits for the next run

    monkeypatch.undo()
    (report,) = ingest(project.config)

    assert report.stored == 59  # the blocks left: 60 rows, row 51 quarantined by the failed run
    counts = assert_consistent(project, before, None).counts
    assert (counts["records"], counts["quarantine"]) == (99, 1)
    assert not path.exists()


def test_a_read_only_folder_during_scoring_fails_clearly_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = quick_project(tmp_path / "project", chunk_rows=40)
    train(project.config)
    project.drop_csv(arrivals(100), "a.csv")
    ingest(project.config)
    before = snapshot(project)
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), str(project.settings.warehouse_dir / "predictions"))
    real = warehouse.store.write_deltalake
    monkeypatch.setattr(warehouse.store, "write_deltalake", _fails_at(2, read_only, real, table="predictions"))

    state = score(project.config, return_state=True)

    _failed_with(state, "Read-only file system", "fix the storage's permissions", "of predictions")
    seen = assert_consistent(project, before, None)
    assert seen.counts["predictions"] == 40  # unit 1 whole, nothing of unit 2

    monkeypatch.undo()
    report = score(project.config)

    assert report.scored == 60
    counts = assert_consistent(project, before, None).counts
    assert counts["predictions"] == counts["records"] == 100


def test_a_full_disk_during_a_model_save_leaves_no_version_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = quick_project(tmp_path / "project", chunk_rows=40)
    before = snapshot(project)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(artifacts.joblib, "dump", _fails_at(2, full, artifacts.joblib.dump))  # the classifier

    state = train(project.config, return_state=True)

    _failed_with(state, "No space left on device")
    assert not list(project.settings.models_dir.rglob("*.joblib"))  # no model file, whole or half
    assert not list(project.settings.models_dir.glob(".*.tmp"))  # no temporary folder
    assert assert_consistent(project, before, None).counts == before.counts  # nothing registered

    monkeypatch.undo()
    assert train(project.config) == "v1"
    counts = assert_consistent(project, before, None).counts
    assert counts["models"] == 2 and counts["reference"] > 0
