"""What operators really put into the drop folders (invariant 1, and "a link is never followed").

A file still being written, a file written to while it is read, links to secrets and to outside data,
a file the process cannot open, sub-folders, FIFOs, hidden names, a header without rows: each ends up
stored, refused with a reason, or left in the folder and listed by the run; none blocks the files after
it, nothing is read through a link, and nothing is moved aside before all of it was read.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import flows.ingest
from flows.feedback import collect_feedback
from flows.ingest import ingest
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, make_project

SECRET = "root:x:0:0:TOP-SECRET-LINE:/root:/bin/bash"


def settling_project(folder: Path, settle_seconds: float) -> Project:
    document = repo_config_document(chunk_rows=500)
    document["drop"] = {"settle_seconds": settle_seconds}
    folder.mkdir(parents=True, exist_ok=True)
    return Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", chunk_rows=500)


def _csv_lines(rows: pd.DataFrame) -> tuple[str, list[str]]:
    header, *lines = rows.to_csv(index=False).splitlines()
    return header, lines


def _moved(folder: Path, name: str) -> Path:
    """Where `name` went below `folder` (walked without following links: pathlib's glob skips dangling ones)."""
    for parent, dirs, files in os.walk(folder):
        if name in files or name in dirs:
            return Path(parent) / name
    raise AssertionError(f"{name} is not below {folder}: {sorted(str(p) for p in folder.rglob('*'))}")


def _ids(project: Project) -> list[str]:
    return project.query("SELECT record_id FROM records ORDER BY record_id")["record_id"].tolist()


def test_a_file_still_being_written_is_taken_only_once_whole(tmp_path: Path) -> None:
    """A writer appends rows while ingest runs again and again: nothing is taken early, nothing is lost."""
    project = settling_project(tmp_path / "project", settle_seconds=1.5)
    rows = arrivals(60)
    header, lines = _csv_lines(rows)
    path = project.settings.incoming_dir / "growing.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = threading.Event()

    def write_slowly() -> None:
        with open(path, "w") as handle:  # written in place, no .partial name: the settling window protects it
            handle.write(header + "\n")
            for line in lines:
                handle.write(line + "\n")
                handle.flush()
                time.sleep(0.05)
        done.set()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    early = []
    while not done.is_set():
        early += ingest(project.config)
    writer.join()

    assert all(r.left and "settling" in r.left for r in early), [(r.name, r.left, r.stored) for r in early]
    assert _ids(project) == []
    time.sleep(1.6)
    (report,) = ingest(project.config)
    assert (report.rows_in, report.stored) == (60, 60)
    assert _ids(project) == sorted(rows["loan_id"])
    assert list(project.settings.incoming_dir.iterdir()) == []


def test_a_partial_name_is_left_alone_and_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    partial = project.drop_csv(arrivals(5), ".a.csv.partial")

    (report,) = ingest(project.config)

    assert report.name == ".a.csv.partial" and report.left and "being written" in report.left
    assert partial.exists() and _ids(project) == []
    partial.rename(partial.with_name("a.csv"))
    (report,) = ingest(project.config)
    assert report.stored == 5


def test_a_file_written_to_while_it_is_read_is_not_moved_aside(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer appends a row after the reader finished the file and before it is moved: the row is not lost."""
    rows = arrivals(12)
    path = project.drop_csv(rows.iloc[:10], "a.csv")
    late_line = _csv_lines(rows.iloc[10:])[1]
    validate = flows.ingest.validate_rows
    appended = []

    def validate_then_append(*args: Any, **kwargs: Any) -> Any:
        checked = validate(*args, **kwargs)
        if not appended:
            with open(path, "a") as handle:
                handle.write("\n".join(late_line) + "\n")
            appended.append(True)
        return checked

    monkeypatch.setattr(flows.ingest, "validate_rows", validate_then_append)
    (first,) = ingest(project.config)

    assert first.left and "changed" in first.left
    assert path.exists(), "a file that changed while it was read must stay for the next run"
    monkeypatch.setattr(flows.ingest, "validate_rows", validate)
    (second,) = ingest(project.config)
    assert second.left is None and not path.exists()
    assert _ids(project) == sorted(rows["loan_id"])  # the late rows too, each id once


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_links_are_refused_and_never_read_through(
    project: Project, tmp_path: Path, caplog_all: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "passwd"
    secret.write_text(SECRET + "\n")
    outside = tmp_path / "outside.csv"
    arrivals(7).to_csv(outside, index=False)
    incoming = project.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "passwd.csv").symlink_to(secret)
    (incoming / "outside.csv").symlink_to(outside)
    (incoming / "dangling.csv").symlink_to(tmp_path / "nothing-here.csv")
    project.drop_csv(arrivals(3, start=4100), "z_good.csv")

    reports = {r.name: r for r in ingest(project.config)}

    assert reports["z_good.csv"].stored == 3
    assert _ids(project) == sorted(arrivals(3, start=4100)["loan_id"])  # nothing of the outside CSV
    for name in ("passwd.csv", "outside.csv", "dangling.csv"):
        assert reports[name].refused and "symbolic link" in reports[name].refused
        moved = _moved(project.settings.rejected_dir, name)
        assert moved.is_symlink(), "the link itself is moved aside, never a copy of what it points to"
    quarantine = project.query("SELECT * FROM quarantine")
    assert not quarantine.astype(str).apply(lambda c: c.str.contains("TOP-SECRET")).any().any()
    assert "TOP-SECRET" not in caplog_all.text
    assert secret.read_text() == SECRET + "\n" and outside.exists()  # targets untouched
    assert list(incoming.iterdir()) == []


def test_links_in_the_feedback_folder_are_refused_too(project: Project, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"loan_id": ["x"], "label": ["bad"], "labelled_at": ["2026-11-20"]}).to_csv(labels, index=False)
    feedback = project.settings.feedback_dir
    feedback.mkdir(parents=True, exist_ok=True)
    (feedback / "labels.csv").symlink_to(labels)

    (report,) = collect_feedback(project.config)

    assert report.refused and "symbolic link" in report.refused
    assert project.scalar("SELECT count(*) FROM feedback_rejects WHERE rule = 'readable'") == 1
    assert _moved(project.settings.rejected_dir, "labels.csv").is_symlink()


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Paths this process cannot open. Permission bits do not stop root (the tests may run as root), so
    opening those paths is refused here the way the kernel refuses it to an unprivileged user."""
    denied: set[str] = set()
    real_os_open, real_open = os.open, builtins.open

    def os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, *args, **kwargs)

    def open_(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str | Path) and str(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    yield denied


def test_an_unreadable_file_is_refused_whole_and_the_files_after_it_are_ingested(
    project: Project, unreadable: set[str]
) -> None:
    locked = project.drop_csv(arrivals(4), "a_locked.csv")
    locked.chmod(0)
    unreadable.add(str(locked))
    project.drop_csv(arrivals(3, start=4100), "b_good.csv")

    state = ingest(project.config, return_state=True)

    assert state.is_completed(), state.message
    reports = {r.name: r for r in state.result()}
    assert reports["b_good.csv"].stored == 3
    assert reports["a_locked.csv"].refused and "Permission denied" in reports["a_locked.csv"].refused
    row = project.query("SELECT * FROM quarantine WHERE source_file = 'a_locked.csv'")
    assert row[["column_name", "rule"]].values.tolist() == [["(file)", "readable"]]
    assert "permissions" in row["reason"].iloc[0] or "readable" in row["reason"].iloc[0]
    assert list(project.settings.incoming_dir.iterdir()) == []  # it does not block the folder
    assert ingest(project.config) == []


def test_every_entry_of_the_folder_is_accounted_for(project: Project) -> None:
    incoming = project.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "a_folder").mkdir()
    arrivals(2).to_csv(incoming / "a_folder" / "inside.csv", index=False)
    os.mkfifo(incoming / "b_pipe.csv")
    project.drop_csv(arrivals(2, start=4100), ".hidden.csv")
    project.drop_csv(arrivals(2, start=4110), "_underscore.csv")
    project.drop_csv(arrivals(0), "c_header_only.csv")
    project.drop_csv(arrivals(2, start=4120), "d_good.csv")
    (incoming / ".gitkeep").touch()

    reports = {r.name: r for r in ingest(project.config)}

    assert set(reports) == {
        "a_folder",
        "b_pipe.csv",
        ".hidden.csv",
        "_underscore.csv",
        "c_header_only.csv",
        "d_good.csv",
    }
    assert "folder" in (reports["a_folder"].refused or "")
    assert "FIFO" in (reports["b_pipe.csv"].refused or "")
    for name in (".hidden.csv", "_underscore.csv"):
        assert reports[name].left and "never taken" in reports[name].left
    assert reports["d_good.csv"].stored == 2
    listed = project.query("SELECT source_file, rule FROM quarantine WHERE row_number IS NULL ORDER BY 1")
    assert listed.values.tolist() == [
        ["a_folder", "readable"],
        ["b_pipe.csv", "readable"],
        ["c_header_only.csv", "empty"],
    ]
    batches = set(project.query("SELECT source_file FROM ingest_batches")["source_file"])
    assert batches == {"a_folder", "b_pipe.csv", "c_header_only.csv", "d_good.csv"}
    assert sorted(p.name for p in incoming.iterdir()) == [".gitkeep", ".hidden.csv", "_underscore.csv"]
    assert (
        project.settings.rejected_dir / pd.Timestamp.now("UTC").date().isoformat() / "a_folder" / "inside.csv"
    ).exists()
