"""Hostile input (invariants 1 and 7): a seeded corpus of malformed files and rows through the real flows.

Missing and extra columns, wrong types, NaN and infinities, text in numbers, unknown categories,
out-of-range values, duplicate ids (in a file and across files), an empty file, a truncated Parquet
file, a wrong delimiter, a Latin-1 byte in one row, UTF-16 text, a header-only file, a row with 3,000
fields, a row with fields missing and a last line cut in transit (those rows only are refused), a file
with 1,500 extra columns, 1 MB fields, ids with SQL, shell and path characters, a file name with glob
characters, nested Parquet columns. For every file: rows in = rows stored + rows quarantined, every
quarantined row says why, every good row is stored exactly as given, and the flow does not crash.
The same for label files, with label times in the future, ambiguous dates and contradictory labels.
"""

from __future__ import annotations

from collections import Counter

import pytest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from tests.flows.conftest import Project, make_project
from tests.reliability._corpus import Corpus, Expected
from tests.reliability._invariants import assert_consistent, snapshot

SEED = 7_2026


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Corpus, dict[str, object]]:
    """The corpus ingested, then its label files collected (chunk_rows 40: the larger files span blocks)."""
    project = make_project(tmp_path_factory.mktemp("hostile") / "project", chunk_rows=40)
    corpus = Corpus(project.settings.dataset, SEED)
    corpus.incoming(project.settings.incoming_dir)
    before = snapshot(project)
    reports: dict[str, object] = {r.name: r for r in ingest(project.config)}  # the flow must not raise
    stored = project.query("SELECT record_id FROM records")["record_id"].tolist()
    quarantined = project.query(
        "SELECT DISTINCT record_id FROM quarantine WHERE record_id IS NOT NULL "
        "AND record_id NOT IN (SELECT record_id FROM records)"
    )["record_id"].tolist()
    corpus.labels(project.settings.feedback_dir, stored, quarantined)
    reports |= {r.name: r for r in collect_feedback(project.config)}
    assert_consistent(project, before, None)
    return project, corpus, reports


def _per_file(project: Project, table: str, bad_table: str) -> dict[str, tuple[int, int]]:
    rows = project.query(
        f"""
        WITH s AS (SELECT source_file, count(*) AS n FROM {table} GROUP BY ALL),
             b AS (SELECT source_file, count(*) AS n FROM {bad_table} WHERE rule <> 'empty' GROUP BY ALL)
        SELECT source_file, coalesce(s.n, 0), coalesce(b.n, 0) FROM s FULL JOIN b USING (source_file)
        """
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows.itertuples(index=False)}


def _check_refused(project: Project, bad_table: str, expected: Expected, counts: tuple[int, int]) -> None:
    assert counts == (0, 1), f"{expected.name}: refused files leave one row saying why, nothing stored"
    row = project.query(f"SELECT * FROM {bad_table} WHERE source_file = ?", [expected.name]).iloc[0]
    assert (row["column_name"], row["rule"]) == ("(file)", "readable"), expected.name
    assert row["reason"].startswith("file refused: "), row["reason"]


def _check_rows(project: Project, bad_table: str, expected: Expected) -> None:
    bad = project.query(
        f"SELECT row_number, column_name, rule, reason FROM {bad_table} WHERE source_file = ? AND rule <> 'empty'",
        [expected.name],
    )
    assert sorted(bad["row_number"].tolist()) == sorted(expected.bad), expected.name
    for row in bad.itertuples(index=False):
        acceptable = expected.bad[int(row.row_number)]
        assert (row.column_name, row.rule) in acceptable, (expected.name, row.row_number, row.reason, acceptable)
        assert row.reason.startswith(f"{row.column_name}: ") and "(got " in row.reason, row.reason


def test_every_incoming_row_is_stored_or_quarantined_with_a_reason(hostile: tuple[Project, Corpus, dict]) -> None:
    project, corpus, reports = hostile
    incoming = corpus.expected
    counts = _per_file(project, "records", "quarantine")
    assert set(counts) == {name for name, e in incoming.items() if e.rows_in != 0}
    # A header without rows stores nothing and says so (one note), so the file is accounted for.
    empty = project.query("SELECT source_file, rule FROM quarantine WHERE rule = 'empty'")
    assert empty.values.tolist() == [["e_header_only.csv", "empty"]]
    for name, expected in incoming.items():
        stored, quarantined = counts.get(name, (0, 0))
        report = reports[name]
        if expected.rows_in is None:
            _check_refused(project, "quarantine", expected, (stored, quarantined))
            assert report.refused and report.rows_in is None, name  # type: ignore[attr-defined]
            continue
        # Invariant 1: rows in = rows stored + rows quarantined.
        assert stored + quarantined == expected.rows_in, name
        assert (report.rows_in, report.stored, report.quarantined) == (expected.rows_in, stored, quarantined), name  # type: ignore[attr-defined]
        # No good row lost, no bad row stored: exactly the planted good ids, values as given.
        ids = project.query("SELECT record_id FROM records WHERE source_file = ?", [name])["record_id"]
        assert Counter(ids) == Counter(expected.stored), name
        _check_rows(project, "quarantine", expected)

    reasons = project.query("SELECT reason, rule, column_name FROM quarantine")
    assert reasons.notna().all().all() and (reasons["reason"].str.strip() != "").all()
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    assert list(project.settings.incoming_dir.iterdir()) == []  # every file moved aside, none left to retry


def test_awkward_ids_and_huge_fields_are_stored_exactly(hostile: tuple[Project, Corpus, dict]) -> None:
    project, corpus, _ = hostile
    planted = [i for e in corpus.expected.values() for i in e.stored]
    awkward = [i for i in planted if not i.startswith("LC") and not i.isdigit()]
    assert len(awkward) >= 8, "the corpus should have planted ids with SQL, path and shell characters"
    found = project.query("SELECT record_id FROM records WHERE NOT starts_with(record_id, 'LC')")["record_id"]
    assert set(awkward) <= set(found)
    assert project.scalar("SELECT count(*) FROM records WHERE record_id = ?", ["x'); DROP TABLE records; --"]) == 1
    huge = project.query(
        "SELECT value, reason, length(raw) AS raw FROM quarantine WHERE source_file = 'l_huge_field.csv'"
    )
    assert len(huge) == 1 and len(huge["value"].iloc[0]) < 100 and huge["raw"].iloc[0] > 1_000_000  # kept, shown short
    odd = project.scalar("SELECT count(*) FROM records WHERE source_file = ?", ["m_odd [1] it's; *?.csv"])
    assert odd == len(corpus.expected["m_odd [1] it's; *?.csv"].stored)


def test_every_label_row_is_stored_or_rejected_with_a_reason(hostile: tuple[Project, Corpus, dict]) -> None:
    project, corpus, reports = hostile
    labels = corpus.expected_labels
    counts = _per_file(project, "feedback", "feedback_rejects")
    for name, expected in labels.items():
        stored, rejected = counts.get(name, (0, 0))
        report = reports[name]
        if expected.rows_in is None:
            _check_refused(project, "feedback_rejects", expected, (stored, rejected))
            assert report.refused, name  # type: ignore[attr-defined]
            continue
        assert stored + rejected == expected.rows_in, name
        assert (report.rows_in, report.stored, report.rejected) == (expected.rows_in, stored, rejected), name  # type: ignore[attr-defined]
        got = project.query("SELECT record_id, label FROM feedback WHERE source_file = ?", [name])
        assert Counter(map(tuple, got.values.tolist())) == Counter(expected.stored_labels), name
        _check_rows(project, "feedback_rejects", expected)
    rejects = project.query("SELECT reason FROM feedback_rejects")["reason"]
    assert rejects.notna().all() and (rejects.str.strip() != "").all()
    assert list(project.settings.feedback_dir.iterdir()) == []


def test_a_second_run_over_the_same_hostile_files_adds_nothing(hostile: tuple[Project, Corpus, dict]) -> None:
    project, _, _ = hostile
    settings = project.settings
    before = project.counts()
    for handled in (settings.processed_dir, settings.rejected_dir):
        for path in handled.rglob("*"):
            if path.is_file():
                labels = "labels" in path.relative_to(handled).parts
                folder = settings.feedback_dir if labels else settings.incoming_dir
                (folder / path.name).write_bytes(path.read_bytes())
    assert all(r.skipped or r.refused for r in ingest(project.config))
    assert all(r.skipped or r.refused for r in collect_feedback(project.config))
    assert project.counts() == before
