"""The warehouse on object storage: the real flows against a real S3 server (SeaweedFS) on loopback.

One project whose `paths.warehouse` is `s3://scorehouse/<prefix>` goes through train → ingest → score →
collect_feedback → maintain → forget, with re-runs and a killed scoring run; every count must be exact,
nothing duplicated, and after `forget` and a vacuum no object of the warehouse holds the erased id.
"""

from __future__ import annotations

import multiprocessing
import signal
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from streamlit.testing.v1 import AppTest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.maintain import forget, maintain
from flows.score import score
from flows.train import train
from pipeline import simulate
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, sample
from tests.reliability import _driver
from tests.reliability._invariants import assert_consistent, journal_events, snapshot
from tests.s3server import S3Server

# One S3 server at a time on this machine (its ports are fixed): with `make test`'s two workers, this
# module's first test may wait for the other S3 module to finish (tests/s3server.py).
pytestmark = pytest.mark.timeout(1800)

PREFIX = "project-on-s3"


@pytest.fixture(scope="module")
def project(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = tmp_path_factory.mktemp("s3-project")
    document = repo_config_document(chunk_rows=100)
    document["paths"] = {"warehouse": f"s3://{s3.bucket}/{PREFIX}"}
    document["maintenance"] = {"retention_days": 0}
    return Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))


def objects(s3: S3Server) -> dict[str, bytes]:
    """Every object under the warehouse's prefix, with its bytes."""
    fs = pafs.S3FileSystem(
        access_key=s3.environment()["AWS_ACCESS_KEY_ID"],
        secret_key=s3.environment()["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=s3.endpoint.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )
    listed = fs.get_file_info(pafs.FileSelector(f"{s3.bucket}/{PREFIX}", recursive=True))
    out = {}
    for info in listed:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as stream:
                out[info.path] = stream.read()
    return out


def test_the_tables_live_on_s3_not_on_disk(project: Project, s3: S3Server) -> None:
    train(project.config)
    assert project.store().remote
    assert any(name.endswith(".json") and "/models/_delta_log/" in name for name in objects(s3))
    assert not (project.folder / "data" / "warehouse" / "models").exists()


def test_ingest_and_score_on_s3_store_every_row_once(project: Project) -> None:
    rows = arrivals(250)
    rows.loc[3, "int_rate"] = "abc"
    rows.loc[200, "loan_id"] = rows.loc[10, "loan_id"]
    project.drop_csv(rows, "a.csv")
    ingest(project.config)
    report = score(project.config)

    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (248, 2)
    assert report.scored == counts["predictions"] == counts["predictions_current"] == 248
    again = snapshot(project).counts
    ingest(project.config)
    score(project.config)
    assert project.counts() == again, "running the flows again adds nothing"


def test_a_scoring_run_killed_on_s3_is_finished_exactly_by_the_next(project: Project, tmp_path: Path) -> None:
    project.drop_csv(arrivals(300, start=4300), "b.csv")
    ingest(project.config)
    before = snapshot(project)
    journal = tmp_path / "kill.jsonl"
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_driver.run, args=("score", project.config, str(journal), "commit:2:before"))
    process.start()
    process.join(timeout=300)
    assert process.exitcode == -signal.SIGKILL, journal.read_text()[-2000:]
    assert journal_events(journal)[-1]["e"] == "kill"
    assert_consistent(project, before, (journal,))

    score(project.config)

    counts = project.counts()
    assert counts["predictions"] == counts["records"] == 548
    assert_consistent(project, before, None, settled=True)


def test_labels_maintenance_and_erasure_on_s3(project: Project, s3: S3Server) -> None:
    labelled = sample().iloc[4050:4150]  # records stored by the tests above
    folder = project.settings.feedback_dir
    folder.mkdir(parents=True, exist_ok=True)
    simulate.labels_file(labelled, project.settings.dataset, pd.Timestamp("2026-11-20").date()).to_csv(
        folder / "labels.csv", index=False
    )
    collect_feedback(project.config)
    assert project.counts()["feedback"] == 100
    records = project.counts()["records"]
    past = datetime.now(UTC)

    gone = str(labelled["loan_id"].iloc[0])
    erasure = forget([gone], reason="test", actor="pytest", config=project.config)
    with project.store().connect(as_of=past) as con:  # time travel, until the vacuum: the table as it was
        assert con.execute("SELECT count(*) FROM records").fetchone() == (records,)
    report = maintain(project.config)

    assert erasure.rows["records"] == 1 and erasure.rows["feedback"] == 1 and erasure.rows["predictions"] == 1
    assert all(t.files_after <= max(t.files_before, 1) for t in report.tables)
    assert project.scalar("SELECT count(*) FROM records WHERE record_id = ?", [gone]) == 0
    leaking = [name for name, data in objects(s3).items() if gone.encode() in data]
    assert leaking == [], f"objects still holding the erased id: {leaking}"
    assert project.scalar("SELECT count(*) FROM erasures") == 1


def test_the_dashboard_reads_the_warehouse_on_s3_without_a_catalog(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB reads S3 only through httpfs, which is never downloaded here: the pages read the tables'
    snapshots through Arrow instead, and show the same counts as the flows' own session."""
    monkeypatch.delenv("SCOREHOUSE_CATALOG", raising=False)
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(project.config_path))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"), default_timeout=60)
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    shown = {m.label: m.value for m in app.metric}
    assert shown["Records"] == f"{project.counts()['records']:,}"
    assert shown["Predictions"] == f"{project.counts()['predictions']:,}"
    assert any(f"s3://{PREFIX}" in c.value or PREFIX in c.value for c in app.sidebar.caption)
