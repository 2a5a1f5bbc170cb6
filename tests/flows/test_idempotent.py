"""Invariant 2: running any flow again on the same inputs adds no rows; a re-dropped file does nothing."""

from __future__ import annotations

from flows.cycle import scoring_cycle
from flows.ingest import ingest
from flows.score import score
from flows.train import train
from tests.flows.conftest import Project, arrivals


def test_running_every_flow_again_adds_nothing(project: Project) -> None:
    assert train(project.config) == "v1"
    good_and_bad = arrivals(40)
    good_and_bad.loc[3, "int_rate"] = "abc"
    project.drop_csv(good_and_bad, "a.csv")
    project.drop_parquet(arrivals(30, start=4100), "b.parquet")
    project.drop_bytes(b"PAR1 cut off", "c.parquet")

    result = scoring_cycle(project.config)

    assert (result.scored.model_version, result.scored.scored) == ("v1", 39 + 30)
    before = project.counts()
    assert before["records"] == 69 and before["quarantine"] == 2 and before["predictions"] == 69
    files = project.warehouse_files()
    catalog = project.settings.warehouse_dir / "warehouse.duckdb"
    catalog_stat = catalog.stat()

    assert train(project.config) == "v1"  # same data, same settings: the same version, not a new one
    assert ingest(project.config) == []
    assert score(project.config).scored == 0
    again = scoring_cycle(project.config)
    assert (again.files, again.scored.scored, again.scored.chunks, again.labels) == (0, 0, 0, 0)

    assert project.counts() == before
    assert project.warehouse_files() == files  # not even an empty batch more
    assert (catalog.stat().st_ino, catalog.stat().st_mtime_ns) == (catalog_stat.st_ino, catalog_stat.st_mtime_ns)


def test_a_file_dropped_again_under_another_name_adds_nothing(project: Project) -> None:
    rows = arrivals(25)
    rows.loc[0, "term"] = "term_99"
    first = project.drop_csv(rows, "day-1.csv")
    content = first.read_bytes()
    ingest(project.config)
    before = project.counts()
    files = project.warehouse_files()

    renamed = project.drop_bytes(content, "day-1-resent.csv")
    same_name = project.drop_bytes(content, "day-1.csv")
    reports = ingest(project.config)

    assert sorted((r.name, r.skipped, r.stored, r.quarantined) for r in reports) == [
        ("day-1-resent.csv", True, 0, 0),
        ("day-1.csv", True, 0, 0),
    ]
    assert project.counts() == before
    assert project.warehouse_files() == files
    assert not renamed.exists() and not same_name.exists()  # moved aside, not left to be retried forever
    processed = sorted(p.name for p in project.settings.processed_dir.rglob("*.csv"))
    assert len(processed) == 3 and "day-1-resent.csv" in processed


def test_the_same_records_in_a_different_file_are_quarantined_as_duplicates(project: Project) -> None:
    rows = arrivals(10)
    project.drop_csv(rows, "a.csv")
    ingest(project.config)

    project.drop_parquet(rows, "a-as-parquet.parquet")  # other bytes, same ids
    (report,) = ingest(project.config)

    assert (report.stored, report.quarantined) == (0, 10)
    assert project.counts()["records"] == 10
    reasons = project.query("SELECT DISTINCT rule, column_name FROM quarantine")
    assert reasons.values.tolist() == [["unique", "loan_id"]]
