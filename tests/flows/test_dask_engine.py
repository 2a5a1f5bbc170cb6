"""`[compute] engine = "dask"`: score's units and a large file's validation on a real Dask cluster, against a
real S3 server.

A LocalCluster of 2 worker processes and SeaweedFS on loopback. The same input goes through
train → ingest → score → ingest → score → monitor once with the local engine and once on the cluster
(two warehouses on the same S3 server); every table must hold the same rows, scores to the last bit, and
the same quarantine.
Then a worker process is SIGKILLed while it scores a unit: the run finishes on the remaining worker (and
the one its nanny restarts), and the counts are exact, with no duplicate.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from flows import engine
from flows.backfill import backfill
from flows.engine import ClusterError
from flows.ingest import FileReport, ingest
from flows.monitor import monitor
from flows.runtime import simulated_time
from flows.score import ScoreReport, score
from flows.train import train
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, synthetic_arrivals
from tests.flows.test_backfill import second_version
from tests.s3server import S3Server

# One S3 server at a time on this machine (its ports are fixed): with `make test`'s two workers, this
# module's first test may wait for the other S3 module to finish (tests/s3server.py).
pytestmark = pytest.mark.timeout(1800)

UNIT_ROWS = 100  # small units: several per run, so ordering and commits between units are exercised


@pytest.fixture(scope="module")
def cluster(s3: S3Server) -> Iterator[str]:
    """A real cluster: a scheduler and 2 worker processes (started after the AWS_* variables are set: the
    workers inherit them, as workers of a real cluster are given them)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield str(local.scheduler_address)


def s3_project(folder: Path, s3: S3Server, prefix: str, **compute: Any) -> Project:
    document = repo_config_document(chunk_rows=UNIT_ROWS)
    document["paths"] = {"warehouse": f"s3://{s3.bucket}/{prefix}"}
    if compute:
        document["compute"] = compute
    folder.mkdir(parents=True, exist_ok=True)
    return Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))


# Columns that hold when or where a run happened, not what it computed: times, days, batch ids (the local
# full pass cuts units in DuckDB's streaming order), the monitor's report id and file, and the Prefect flow
# run that wrote a row.
RUN_COLUMNS = ("batch_id", "report_id", "report_path", "flow_run_id")


def comparable(project: Project, table: str) -> pd.DataFrame:
    """The table's rows without run-time columns, in one order; nested values (embeddings, contributions,
    reason codes) as JSON text, which keeps every float's exact value (`repr` round-trips)."""
    frame = project.store().dataset(table).to_table()
    keep = [
        f.name
        for f in frame.schema
        if not pa.types.is_timestamp(f.type) and not f.name.endswith("_on") and f.name not in RUN_COLUMNS
    ]
    rows = [
        {
            name: json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
            for name, value in row.items()
        }
        for row in frame.select(keep).to_pylist()
    ]
    out = pd.DataFrame(rows, columns=keep)
    return out.sort_values(keep).reset_index(drop=True)


def large_file(stored_id: str) -> pd.DataFrame:
    """A Parquet export of 4 blocks (UNIT_ROWS each) that exercises every way a block is validated: block 0
    has a bad value and an id twice; block 1 is clean; block 2 repeats an id of block 0 and block 3 an id
    stored by an earlier file (the stored-id rule, which only the flow can apply in order)."""
    rows = synthetic_arrivals(4 * UNIT_ROWS, "P")
    rows.loc[5, "int_rate"] = "abc"
    rows.loc[9, "loan_id"] = rows.loc[8, "loan_id"]
    rows.loc[2 * UNIT_ROWS + 7, "loan_id"] = rows.loc[11, "loan_id"]
    rows.loc[3 * UNIT_ROWS + 1, "loan_id"] = stored_id
    return rows


def cycle(project: Project) -> tuple[list[ScoreReport], list[FileReport]]:
    first = arrivals(250)
    first.loc[3, "int_rate"] = "abc"  # quarantined, the same way by both
    project.drop_csv(first, "a.csv")
    train(project.config)
    ingest(project.config)
    reports = [score(project.config)]  # a new champion: the full pass
    project.drop_csv(arrivals(180, start=4250), "b.csv")
    path = project.settings.incoming_dir / "c.parquet"
    pq.write_table(
        pa.Table.from_pandas(large_file(first.loc[0, "loan_id"]), preserve_index=False), path, row_group_size=150
    )
    files = ingest(project.config)
    reports.append(score(project.config))  # from the watermark: the new records' commits
    monitor(project.config)
    return reports, files


def test_dask_engine_builds_the_same_warehouse_as_the_local_engine(s3: S3Server, cluster: str, tmp_path: Path) -> None:
    here = s3_project(tmp_path / "local", s3, "same-local")
    there = s3_project(tmp_path / "dask", s3, "same-dask", engine="dask", address=cluster, ingest_min_rows=UNIT_ROWS)

    local_reports, local_files = cycle(here)
    dask_reports, dask_files = cycle(there)

    assert [r.scored for r in dask_reports] == [r.scored for r in local_reports] == [249, 180 + 396]
    [large] = [f for f in dask_files if f.name == "c.parquet"]
    assert (large.stored, large.quarantined, large.on_cluster) == (396, 4, 2), (
        "blocks 0 and 1 as the workers wrote them"
    )
    assert [f.on_cluster for f in local_files] == [0, 0]
    with Client(cluster) as client:
        ran = set(client.run_on_scheduler(task_prefixes))
    assert {"run_unit", "validate_block", "column_statistics"} <= ran, "score, ingest and monitor used the cluster"
    assert dask_reports[0].chunks >= 2, "the full pass ran as several units (one per group of records files)"
    assert [r.positives for r in dask_reports] == [r.positives for r in local_reports]
    store = here.store()
    for table in store.tables:
        expected, actual = comparable(here, table), comparable(there, table)
        assert len(actual) == len(expected), table
        pd.testing.assert_frame_equal(actual, expected, check_exact=True, obj=table)
    assert len(comparable(there, "predictions")) == 825
    assert there.scalar("SELECT count(DISTINCT record_id) FROM predictions") == 825


def test_a_worker_killed_mid_score_loses_nothing_and_duplicates_nothing(
    s3: S3Server, cluster: str, tmp_path: Path
) -> None:
    project = s3_project(tmp_path / "kill", s3, "kill-dask", engine="dask", address=cluster)
    project.drop_csv(synthetic_arrivals(1500, "K"), "many.csv")
    train(project.config)
    ingest(project.config)
    records = project.counts()["records"]

    outcome: dict[str, Any] = {}
    run = threading.Thread(target=lambda: outcome.update(report=score(project.config)))
    run.start()
    killed = kill_a_busy_worker(cluster, deadline_s=240)
    run.join(timeout=600)

    assert killed, "no worker was seen scoring a unit"
    assert not run.is_alive() and "report" in outcome, "the score run did not finish on the remaining workers"
    counts = project.counts()
    assert counts["predictions"] == counts["predictions_current"] == records == 1500
    assert project.scalar("SELECT count(DISTINCT record_id) FROM predictions") == 1500
    score(project.config)
    assert project.counts()["predictions"] == 1500, "a run after the kill adds nothing"


def test_a_worker_killed_mid_ingest_loses_nothing_and_duplicates_nothing(
    s3: S3Server, cluster: str, tmp_path: Path
) -> None:
    project = s3_project(tmp_path / "kill-ingest", s3, "kill-ingest", engine="dask", address=cluster, ingest_min_rows=1)
    rows = synthetic_arrivals(3000, "I")
    rows.loc[17, "int_rate"] = "abc"
    project.drop_parquet(rows, "big.parquet")

    outcome: dict[str, Any] = {}
    run = threading.Thread(target=lambda: outcome.update(files=ingest(project.config)))
    run.start()
    killed = kill_a_busy_worker(cluster, deadline_s=240, task="validate_block")
    run.join(timeout=600)

    assert killed, "no worker was seen validating a block"
    assert not run.is_alive() and "files" in outcome, "the ingest run did not finish on the remaining workers"
    [report] = outcome["files"]
    assert (report.stored, report.quarantined, report.on_cluster) == (2999, 1, 30)
    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (2999, 1)
    assert project.scalar("SELECT count(DISTINCT record_id) FROM records") == 2999
    project.drop_parquet(rows, "again.parquet")
    assert [f.skipped for f in ingest(project.config)] == [True], "the same content again adds nothing"


def test_an_unreachable_scheduler_is_one_clear_error(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = s3_project(tmp_path / "nowhere", s3, "nowhere", engine="dask", address="tcp://127.0.0.1:9")
    train(project.config)
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(
        ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 .*compute\.address"
    ):
        score(project.config)


def test_a_backfill_on_the_cluster_scores_exactly_the_records_since_the_date_once(
    s3: S3Server, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = s3_project(tmp_path / "backfill", s3, "backfill-dask", engine="dask", address=cluster)
    now = datetime.now(UTC)
    train(project.config)
    assert second_version(project, monkeypatch) == "v2"
    with simulated_time(now - timedelta(days=3)):
        project.drop_csv(arrivals(150), "old.csv")
        ingest(project.config)
    with simulated_time(now - timedelta(days=1)):
        project.drop_csv(arrivals(250, start=4150), "new.csv")
        ingest(project.config)
    score(project.config)
    current = project.query("SELECT record_id, model_version, score FROM predictions_current ORDER BY record_id")

    report = backfill("v2", now - timedelta(days=2), project.config)
    again = backfill("v2", now - timedelta(days=2), project.config)

    assert (report.scored, report.engine, again.scored) == (250, "dask", 0)
    assert report.units >= 2, "several units (one per group of records files since the date)"
    v2 = project.query("SELECT record_id, backfill FROM predictions WHERE model_version = 'v2'")
    assert sorted(v2["record_id"]) == sorted(arrivals(250, start=4150)["loan_id"]) and v2["backfill"].all()
    after = project.query("SELECT record_id, model_version, score FROM predictions_current ORDER BY record_id")
    pd.testing.assert_frame_equal(after, current)


def task_prefixes(dask_scheduler: Any) -> list[str]:
    """The kinds of task the scheduler has run (a task's key starts with its function's name)."""
    return list(dask_scheduler.task_prefixes)


def kill_a_busy_worker(address: str, deadline_s: float, task: str = "run_unit") -> bool:
    """SIGKILL the process of a worker while it runs a `task` (a score unit by default); True once done."""
    with Client(address) as client:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            busy = [worker for worker, keys in client.processing().items() if any(task in str(k) for k in keys)]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                return True
            time.sleep(0.05)
    return False
