"""`ingest` through the real flow: nothing lost (1), bad input gets a clear reason (7), crash-resume (3)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.ingest import ingest
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, make_project, synthetic_arrivals, typed
from warehouse.store import Warehouse

# row (0-based) of a.csv -> (column, broken value, rule)
BROKEN = {
    1: ("int_rate", "abc", "numeric"),
    2: ("term", "term_99", "allowed"),
    3: ("funded_amnt", "-5", "min"),
    4: ("int_rate", "150", "max"),
    5: ("sub_grade", "", "required"),
    6: ("loan_id", "", "required"),
    7: ("annual_inc", "inf", "finite"),
}


def file_a() -> pd.DataFrame:
    """30 arrivals with seven broken rows, plus row 10 again at the end (an id twice in one file)."""
    rows = arrivals(30)
    for index, (column, value, _) in BROKEN.items():
        rows.loc[index, column] = value
    return pd.concat([rows, rows.iloc[[10]]], ignore_index=True)


def file_b(project: Project) -> pd.DataFrame:
    """20 typed arrivals (Parquet), one with an empty optional value, plus a row whose id is already in a.csv."""
    rows = arrivals(20, start=4030)
    rows.loc[3, "annual_inc"] = ""
    again = arrivals(1).assign(funded_amnt="999")  # same id as a.csv's first row
    return typed(pd.concat([rows, again], ignore_index=True), project.settings)


def rows_in_file(path: Path) -> int:
    return len(pd.read_parquet(path)) if path.suffix == ".parquet" else len(pd.read_csv(path, dtype=str))


def per_file(project: Project) -> pd.DataFrame:
    return project.query(
        """
        WITH r AS (SELECT source_file, count(*) AS n FROM records GROUP BY ALL),
             q AS (SELECT source_file, count(*) AS n FROM quarantine WHERE rule <> 'empty' GROUP BY ALL)
        SELECT source_file, coalesce(r.n, 0) AS stored, coalesce(q.n, 0) AS quarantined
        FROM r FULL JOIN q USING (source_file) ORDER BY source_file
        """
    ).set_index("source_file")


def test_every_row_of_every_file_is_stored_or_quarantined(project: Project) -> None:
    settings = project.settings
    a = file_a()
    missing_column = arrivals(5, start=4060).drop(columns=["revol_util"])
    dropped = {
        "a.csv": project.drop_csv(a, "a.csv"),
        "b.parquet": project.drop_parquet(file_b(project), "b.parquet"),
        "c_missing_column.csv": project.drop_csv(missing_column, "c_missing_column.csv"),
        "d_cut.parquet": project.drop_bytes(b"PAR1 cut off in transit", "d_cut.parquet"),
        "e_semicolon.csv": project.drop_bytes(b"loan_id;funded_amnt\nX1;100\n", "e_semicolon.csv"),
        "f_header_only.csv": project.drop_csv(arrivals(0), "f_header_only.csv"),
    }
    expected_rows = {
        name: rows_in_file(p) for name, p in dropped.items() if name not in ("d_cut.parquet", "e_semicolon.csv")
    }
    assert expected_rows == {"a.csv": 31, "b.parquet": 21, "c_missing_column.csv": 5, "f_header_only.csv": 0}

    reports = {r.name: r for r in ingest(project.config)}

    # Invariant 1, per file: rows in == rows in records + rows in quarantine.
    counts = per_file(project)
    for name, n in expected_rows.items():
        stored = int(counts.loc[name, "stored"]) if name in counts.index else 0
        quarantined = int(counts.loc[name, "quarantined"]) if name in counts.index else 0
        assert stored + quarantined == n, name
        assert (reports[name].rows_in, reports[name].stored, reports[name].quarantined) == (n, stored, quarantined)
    assert counts.loc["a.csv"].tolist() == [30 - 7, 8]
    assert counts.loc["b.parquet"].tolist() == [20, 1]
    assert counts.loc["c_missing_column.csv"].tolist() == [0, 5]

    # A file refused as a whole is one quarantine row saying why, and nothing in records.
    for name in ("d_cut.parquet", "e_semicolon.csv"):
        assert reports[name].refused
        assert reports[name].rows_in is None
        assert counts.loc[name].tolist() == [0, 1]
    refused = project.query("SELECT * FROM quarantine WHERE rule = 'readable' ORDER BY source_file")
    assert refused["source_file"].tolist() == ["d_cut.parquet", "e_semicolon.csv"]
    assert refused["row_number"].isna().all()
    assert refused["rule"].tolist() == ["readable", "readable"]
    assert "PARQUET" in refused["reason"].iloc[0]
    assert "id column 'loan_id' is missing" in refused["reason"].iloc[1]

    # Every quarantine row has a reason; ids are unique in records.
    quarantine = project.query("SELECT * FROM quarantine")
    assert quarantine["reason"].notna().all() and (quarantine["reason"].str.strip() != "").all()
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    assert project.scalar("SELECT count(*) FROM records WHERE record_id IS NULL") == 0

    # Files leave the incoming folder: to processed/ or (refused whole) to rejected/.
    assert list(settings.incoming_dir.iterdir()) == []
    processed = {p.name for p in settings.processed_dir.rglob("*") if p.is_file()}
    rejected = {p.name for p in settings.rejected_dir.rglob("*") if p.is_file()}
    assert processed == {"a.csv", "b.parquet", "c_missing_column.csv", "f_header_only.csv"}
    assert rejected == {"d_cut.parquet", "e_semicolon.csv"}

    # Invariant 1, every file is accounted for: a file with a header and no rows leaves a note saying so, and
    # `ingest_batches` lists every file, stored rows or not.
    note = project.query("SELECT * FROM quarantine WHERE source_file = 'f_header_only.csv'")
    assert note[["column_name", "rule"]].values.tolist() == [["(file)", "empty"]]
    assert "no rows" in note["reason"].iloc[0] and note["row_number"].isna().all()
    batches = project.query(
        "SELECT source_file, sum(rows) AS rows, sum(quarantined) AS q FROM ingest_batches GROUP BY 1"
    )
    assert set(batches["source_file"]) == set(dropped)


def test_reasons_name_the_column_the_rule_and_the_value(project: Project) -> None:
    a = file_a()
    project.drop_csv(a, "a.csv")
    project.drop_parquet(file_b(project), "b.parquet")
    project.drop_csv(arrivals(2, start=4060).drop(columns=["revol_util"]), "c.csv")
    ingest(project.config)

    bad = project.query("SELECT * FROM quarantine WHERE source_file = 'a.csv' ORDER BY row_number")
    by_row = bad.set_index("row_number")
    for index, (column, value, rule) in BROKEN.items():
        row = by_row.loc[index + 1]  # row_number is 1-based
        assert (row["column_name"], row["rule"]) == (column, rule)
        assert row["reason"].startswith(f"{column}: "), row["reason"]
        shown = f"'{value}'" if value else "nothing"
        assert f"(got {shown})" in row["reason"], row["reason"]
        assert json.loads(row["raw"])[column] in (value, None)  # the row as it arrived
    duplicate = by_row.loc[31]
    assert (duplicate["column_name"], duplicate["rule"]) == ("loan_id", "unique")
    assert "appears earlier in this file" in duplicate["reason"]
    assert duplicate["record_id"] == a.loc[10, "loan_id"]

    across = project.query("SELECT * FROM quarantine WHERE source_file = 'b.parquet'")
    assert len(across) == 1
    assert across["record_id"].iloc[0] == a.loc[0, "loan_id"]
    assert "already stored" in across["reason"].iloc[0]
    assert json.loads(across["raw"].iloc[0])["funded_amnt"] in (999, 999.0, "999")

    missing = project.query("SELECT DISTINCT column_name, rule, reason FROM quarantine WHERE source_file = 'c.csv'")
    assert missing["column_name"].tolist() == ["revol_util"] and missing["rule"].tolist() == ["present"]
    assert "'revol_util' is missing from the file" in missing["reason"].iloc[0]

    summary = project.query("SELECT * FROM quarantine_reasons")
    assert summary["rows"].sum() == project.scalar("SELECT count(*) FROM quarantine")


def test_stored_records_hold_the_values_as_given(project: Project) -> None:
    rows = arrivals(5)
    rows.loc[2, "emp_length"] = ""  # an optional categorical left empty
    project.drop_csv(rows, "a.csv")
    ingest(project.config)

    stored = project.query("SELECT * FROM records ORDER BY row_number")
    assert stored["record_id"].tolist() == rows["loan_id"].tolist()
    assert stored["row_number"].tolist() == [1, 2, 3, 4, 5]
    assert stored["source_file"].unique().tolist() == ["a.csv"]
    for name in project.settings.dataset.numeric:
        assert stored[name].tolist() == pytest.approx(rows[name].astype(float).tolist()), name
    assert stored["term"].tolist() == rows["term"].tolist()
    assert stored["emp_length"].isna().tolist() == [False, False, True, False, False]
    assert stored["ingested_at"].notna().all()


def test_a_crash_between_the_quarantine_and_the_records_commit_is_finished_by_the_next_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project.drop_csv(file_a(), "a.csv")
    real_commit = Warehouse.commit

    def killed_before_records(self: Warehouse, table: str, *args: object, **kwargs: object) -> bool:
        if table == "records":
            raise RuntimeError("simulated kill before the records batch")
        return real_commit(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Warehouse, "commit", killed_before_records)
    with pytest.raises(RuntimeError, match="simulated kill"):
        ingest(project.config)
    monkeypatch.undo()

    assert project.counts()["quarantine"] == 8  # the quarantine batch landed whole
    assert project.counts()["records"] == 0
    assert path.exists()  # the file stays until its records batch is committed

    reports = ingest(project.config)

    assert [(r.stored, r.quarantined, r.skipped) for r in reports] == [(23, 8, False)]
    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (23, 8)
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    assert project.scalar("SELECT count(*) - count(DISTINCT row_number) FROM quarantine") == 0
    assert not path.exists()


def test_a_quarantine_batch_committed_before_a_kill_is_not_duplicated(project: Project, tmp_path: Path) -> None:
    """The kill is simulated by committing, through the warehouse directly, only the quarantine batch the flow
    would write for the file (taken from a twin project that ingested the same file), then running ingest."""
    twin = make_project(tmp_path / "twin", chunk_rows=500)
    twin.drop_csv(file_a(), "a.csv")
    ingest(twin.config)
    rows = twin.store().dataset("quarantine").to_table()
    (twin_batch,) = set(rows.column("batch_id").to_pylist())
    partition = rows.column("quarantined_on")[0].as_py()

    path = project.drop_csv(file_a(), "a.csv")
    store = project.store()
    assert store.commit("quarantine", twin_batch, rows, partition=partition)
    assert project.counts()["quarantine"] == 8
    assert project.counts()["records"] == 0

    ingest(project.config)

    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (23, 8)
    assert project.scalar("SELECT count(DISTINCT batch_id) FROM quarantine") == 1
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    assert not path.exists()


def test_a_large_file_killed_between_blocks_is_finished_exactly(project: Project, tmp_path: Path) -> None:
    """A file of several blocks (chunk_rows 500) with a duplicate id across blocks; killed after block 1."""
    rows = synthetic_arrivals(1300, "B")
    rows.loc[1100, "loan_id"] = rows.loc[10, "loan_id"]  # a duplicate of a row of the first block
    rows.loc[700, "int_rate"] = "abc"
    path = project.drop_csv(rows, "big.csv")
    real_commit = Warehouse.commit
    records_commits: list[str] = []

    def killed_during_block_2(self: Warehouse, table: str, *args: object, **kwargs: object) -> bool:
        if table == "records":
            records_commits.append(table)
            if len(records_commits) == 2:
                raise RuntimeError("simulated kill in block 2")
        return real_commit(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Warehouse, "commit", killed_during_block_2)
    try:
        with pytest.raises(RuntimeError, match="simulated kill"):
            ingest(project.config)
    finally:
        monkeypatch.undo()
    interrupted = project.counts()
    assert interrupted["records"] + interrupted["quarantine"] < 1300, "the kill in block 2 should stop midway"
    assert path.exists()

    ingest(project.config)

    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (1298, 2)
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    assert project.scalar("SELECT count(*) - count(DISTINCT row_number) FROM records") == 0
    bad = project.query("SELECT row_number, column_name, rule FROM quarantine ORDER BY row_number")
    assert bad.values.tolist() == [[701, "int_rate", "numeric"], [1101, "loan_id", "unique"]]
    assert not path.exists()


@pytest.mark.parametrize("lands", ["before the block's snapshot is read", "while the block is validated"])
def test_a_block_another_run_commits_meanwhile_is_left_to_it(
    project: Project, lands: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file in two incoming folders of one warehouse. While this run is at its first block, the other
    run ingests the whole file: its rows must not come back here as duplicates of themselves."""
    import flows.ingest

    rows = synthetic_arrivals(1300, "R")
    rows.loc[700, "int_rate"] = "abc"
    other = write_toml(
        project.folder / "other.toml", {**repo_config_document(chunk_rows=500), "paths": {"incoming": "data/in-2"}}
    )
    (project.folder / "data" / "in-2").mkdir(parents=True)
    rows.to_csv(project.folder / "data" / "in-2" / "r.csv", index=False)
    project.drop_csv(rows, "r.csv")
    state = {"other ran": False}

    def other_run_first() -> None:
        if not state["other ran"]:
            state["other ran"] = True
            ingest(str(other))

    if lands.startswith("before"):
        real_version = Warehouse.version

        def version(self: Warehouse, name: str) -> int:
            other_run_first()
            return real_version(self, name)

        monkeypatch.setattr(Warehouse, "version", version)
    else:
        real_validate = flows.ingest.validate_rows

        def validate(*args: object, **kwargs: object) -> object:
            checked = real_validate(*args, **kwargs)  # type: ignore[arg-type]
            other_run_first()
            return checked

        monkeypatch.setattr(flows.ingest, "validate_rows", validate)

    (report,) = ingest(project.config)

    assert state["other ran"]
    assert (report.stored, report.quarantined) == (0, 0), "every block was the other run's"
    assert report.skipped
    counts = project.counts()
    assert (counts["records"], counts["quarantine"]) == (1299, 1)
    assert project.scalar("SELECT rule FROM quarantine") == "numeric"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_stored_before_between_and_within_the_blocks_of_a_file_are_quarantined_in_place(
    project: Project, suffix: str
) -> None:
    """A 1300-row file (blocks of 500) whose ids repeat an earlier file's, its own earlier blocks', and an id
    another writer stores while the file is ingested (after its first block): each such row is quarantined
    with its row number, and every other row stored. CSV and Parquet (whose ids are looked up ahead of the
    blocks) give the same verdicts."""
    project.drop_csv(synthetic_arrivals(3, "E"), "earlier.csv")
    ingest(project.config)
    rows = synthetic_arrivals(1300, "B")
    rows.loc[40, "loan_id"] = "E0000001"  # stored by the earlier file
    rows.loc[1100, "loan_id"] = rows.loc[10, "loan_id"]  # stored by this file's first block
    rows.loc[1200, "loan_id"] = "W0000001"  # stored by another writer after the first block
    rows.loc[1250, "loan_id"] = rows.loc[600, "loan_id"]  # stored by this file's second block
    if suffix == ".csv":
        project.drop_csv(rows, "big.csv")
    else:
        project.drop_parquet(typed(rows, project.settings), "big.parquet")
    real_commit = Warehouse.commit

    def another_writer_after_block_1(self: Warehouse, table: str, batch: str, *args: object, **kwargs: object) -> bool:
        landed = real_commit(self, table, batch, *args, **kwargs)  # type: ignore[arg-type]
        if table == "records" and not self.has_batch("records", "another writer"):
            row = self.dataset("records").to_table().slice(0, 1)
            row = row.set_column(0, "record_id", pa.array(["W0000001"]))
            real_commit(
                self, "records", "another writer", row, partition="2026-11-29", read_version=self.version("records")
            )
        return landed

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Warehouse, "commit", another_writer_after_block_1)
    try:
        (report,) = ingest(project.config)
    finally:
        monkeypatch.undo()

    assert (report.rows_in, report.stored, report.quarantined) == (1300, 1296, 4)
    assert project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
    bad = project.query("SELECT row_number, column_name, rule, reason FROM quarantine ORDER BY row_number")
    assert bad[["row_number", "column_name", "rule"]].values.tolist() == [
        [41, "loan_id", "unique"],
        [1101, "loan_id", "unique"],
        [1201, "loan_id", "unique"],
        [1251, "loan_id", "unique"],
    ]
    assert all("already stored" in reason for reason in bad["reason"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_large_file_is_stored_in_blocks_of_chunk_rows(project: Project, suffix: str) -> None:
    """Ingest reads and commits a file block by block (`scoring.chunk_rows` rows, here 500): memory stays bounded."""
    rows = synthetic_arrivals(1300, "B")
    if suffix == ".csv":
        project.drop_csv(rows, "big.csv")
    else:
        project.drop_parquet(typed(rows, project.settings), "big.parquet")

    (report,) = ingest(project.config)

    assert (report.rows_in, report.stored, report.quarantined) == (1300, 1300, 0)
    sizes = sorted(pq.read_metadata(f).num_rows for f in project.batch_files("records"))
    assert sum(sizes) == 1300
    assert max(sizes) <= 500, f"records batches of {sizes} rows; chunk_rows is 500"


def test_leftovers_of_a_killed_write_are_invisible(project: Project) -> None:
    """A data file a killed writer left in the table's folder is in no commit: no reader sees it."""
    project.drop_csv(arrivals(3), "a.csv")
    ingest(project.config)
    leftover = project.settings.warehouse_dir / "records" / "part-00000-deadbeef-c000.snappy.parquet"
    leftover.write_bytes(b"PAR1 half a batch")

    assert project.counts()["records"] == 3
    assert ingest(project.config) == []  # nothing new; the leftover does not disturb the next run


def test_a_file_that_breaks_the_reader_does_not_block_the_files_after_it(project: Project) -> None:
    """Invariant 7: a malformed file is refused with a reason; the rest goes on (and it is not retried forever)."""
    header = ",".join(arrivals(0).columns)
    project.drop_bytes(f"{header},funded_amnt\n".encode(), "a_column_twice.csv")
    project.drop_csv(arrivals(5), "b_good.csv")

    state = ingest(project.config, return_state=True)

    assert state.is_completed(), state.message
    assert project.counts()["records"] == 5
    assert list(project.settings.incoming_dir.iterdir()) == []
    refused = project.query("SELECT reason FROM quarantine WHERE source_file = 'a_column_twice.csv'")
    assert len(refused) == 1 and "funded_amnt" in refused["reason"].iloc[0]
    assert [p.name for p in project.settings.rejected_dir.rglob("*.csv")] == ["a_column_twice.csv"]


def test_a_refused_file_dropped_again_goes_to_rejected_again(project: Project) -> None:
    project.drop_bytes(b"PAR1 cut off", "cut.parquet")
    ingest(project.config)
    before = project.counts()

    project.drop_bytes(b"PAR1 cut off", "cut-again.parquet")
    (report,) = ingest(project.config)

    assert report.stored == report.quarantined == 0
    assert project.counts() == before
    rejected = sorted(p.name for p in project.settings.rejected_dir.rglob("*.parquet"))
    processed = sorted(p.name for p in project.settings.processed_dir.rglob("*.parquet"))
    assert (rejected, processed) == (["cut-again.parquet", "cut.parquet"], [])
