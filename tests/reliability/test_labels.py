"""Labels as senders really send them (invariant 1 for labels): early, twice, contradictory, from the future.

A label whose record has not arrived is rejected with advice that works: dropping the same file again
once the record is in stores it (and only it). A future time never wins `feedback_current`; labels that
contradict each other resolve by the documented rule, whatever order the files come in.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from tests.flows.conftest import Project, arrivals, make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", chunk_rows=500)


def _labels(project: Project, rows: list[tuple[str, str, str]], name: str) -> None:
    folder = project.settings.feedback_dir
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["loan_id", "label", "labelled_at"])
    frame.to_csv(folder / name, index=False)


def _current(project: Project) -> dict[str, str]:
    rows = project.query("SELECT record_id, label FROM feedback_current")
    return dict(zip(rows["record_id"], rows["label"], strict=True))


def test_a_label_rejected_because_its_record_had_not_arrived_is_stored_when_the_same_file_comes_again(
    project: Project,
) -> None:
    early, late = arrivals(3), arrivals(2, start=4100)
    project.drop_csv(early, "records-1.csv")
    ingest(project.config)
    ids = [*early["loan_id"], *late["loan_id"]]
    rows = [(i, "good", "2026-11-20T10:00:00Z") for i in ids]
    _labels(project, rows, "labels.csv")
    content = (project.settings.feedback_dir / "labels.csv").read_bytes()

    (first,) = collect_feedback(project.config)
    assert (first.rows_in, first.stored, first.rejected) == (5, 3, 2)
    advice = project.query("SELECT reason FROM feedback_rejects WHERE rule = 'known'")["reason"]
    assert len(advice) == 2 and all("drop this same file again" in r for r in advice)

    # The same file again before the records arrived: nothing new, nothing added.
    (project.settings.feedback_dir / "labels.csv").write_bytes(content)
    (again,) = collect_feedback(project.config)
    assert again.skipped and project.counts()["feedback_rejects"] == 2

    # The records arrive; the advice is followed: the same bytes, dropped again.
    project.drop_csv(late, "records-2.csv")
    ingest(project.config)
    (project.settings.feedback_dir / "labels.csv").write_bytes(content)
    (retry,) = collect_feedback(project.config)
    assert (retry.rows_in, retry.stored, retry.rejected, retry.skipped) == (2, 2, 0, False)
    assert sorted(_current(project)) == sorted(ids)
    assert project.scalar("SELECT count(*) FROM feedback") == 5  # each label once

    # And once more: everything was collected, so it is skipped.
    (project.settings.feedback_dir / "labels.csv").write_bytes(content)
    (done,) = collect_feedback(project.config)
    assert done.skipped and project.scalar("SELECT count(*) FROM feedback") == 5


def test_a_future_label_is_rejected_and_never_wins_over_a_correction(project: Project) -> None:
    loan = arrivals(1)["loan_id"].iloc[0]
    project.drop_csv(arrivals(1), "records.csv")
    ingest(project.config)
    _labels(project, [(loan, "bad", "2099-01-01T00:00:00Z")], "a-future.csv")
    _labels(project, [(loan, "good", "2026-11-20T10:00:00Z")], "b-correction.csv")

    reports = {r.name: r for r in collect_feedback(project.config)}

    assert reports["a-future.csv"].rejected == 1
    reason = project.query("SELECT rule, reason FROM feedback_rejects").iloc[0]
    assert reason["rule"] == "future" and "later than now" in reason["reason"]
    assert _current(project) == {loan: "good"}


def test_an_ambiguous_date_is_rejected_not_guessed(project: Project) -> None:
    loan = arrivals(1)["loan_id"].iloc[0]
    project.drop_csv(arrivals(1), "records.csv")
    ingest(project.config)
    _labels(project, [(loan, "bad", "12/01/2026")], "labels.csv")

    (report,) = collect_feedback(project.config)

    assert report.stored == 0
    assert project.query("SELECT rule FROM feedback_rejects")["rule"].tolist() == ["ambiguous"]


def test_contradictions_resolve_by_the_documented_rule_in_either_order(project: Project) -> None:
    """In one file: none is stored. Across files, at the same time: the label received last wins."""
    loans = list(arrivals(3)["loan_id"])
    project.drop_csv(arrivals(3), "records.csv")
    ingest(project.config)
    at = "2026-11-20T10:00:00Z"
    _labels(project, [(loans[0], "good", at), (loans[0], "bad", at)], "a-one-file.csv")
    _labels(project, [(loans[1], "good", at), (loans[2], "bad", at)], "b-first.csv")
    _labels(project, [(loans[1], "bad", at), (loans[2], "good", at)], "c-second.csv")

    reports = {r.name: r for r in collect_feedback(project.config)}

    assert (reports["a-one-file.csv"].stored, reports["a-one-file.csv"].rejected) == (0, 2)
    rules = project.query("SELECT rule FROM feedback_rejects WHERE source_file = 'a-one-file.csv'")["rule"]
    assert set(rules) == {"consistent"}
    assert _current(project) == {loans[1]: "bad", loans[2]: "good"}  # c-second.csv was received last
    _labels(project, [(loans[1], "good", at)], "d-third.csv")
    collect_feedback(project.config)
    assert _current(project)[loans[1]] == "good"  # a later file corrects it again
