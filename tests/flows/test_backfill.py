"""`scorehouse score --version vN --since DATE` through the real flows: a backfill scores exactly the records
that arrived since DATE with vN, once; it changes neither `predictions_current` nor the champion's scoring;
what it refuses, it refuses in one line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from typer.testing import CliRunner

from flows.backfill import BackfillReport, backfill
from flows.cli import app
from flows.ingest import ingest
from flows.runtime import simulated_time
from flows.score import score
from flows.train import train
from tests.flows.conftest import Project, arrivals, make_project
from warehouse import scoring
from warehouse.store import Warehouse

UNIT = 100
OLD, NEW, LATER = 150, 120, 40  # records ingested three days ago, one day ago, and after the backfill
runner = CliRunner()


@dataclass
class Backfilled:
    project: Project
    since: datetime
    new_ids: list[str]
    current_before: pd.DataFrame
    watermark_before: int | None
    report: BackfillReport
    again: BackfillReport
    artifacts: dict[str, Any]


def current_predictions(project: Project) -> pd.DataFrame:
    return project.query(
        "SELECT * EXCLUDE (embedding, contributions, reasons) FROM predictions_current ORDER BY record_id"
    )


def champion_watermark(project: Project) -> int | None:
    return project.store().watermark("predictions", scoring.watermark_app("v1"))


def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in found if a.key}


def second_version(project: Project, monkeypatch: pytest.MonkeyPatch) -> str:
    """A version registered beside the champion, never promoted (other settings, the same reference)."""
    with monkeypatch.context() as env:
        env.setenv("SCOREHOUSE_MODEL__PARAMS", '{"n_estimators": 12, "max_depth": 2, "learning_rate": 0.3}')
        return train(project.config)


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    project = make_project(tmp_path_factory.mktemp("backfill") / "project", chunk_rows=UNIT)
    now = datetime.now(UTC)
    assert train(project.config) == "v1"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert second_version(project, monkeypatch) == "v2"
    with simulated_time(now - timedelta(days=3)):
        project.drop_csv(arrivals(OLD), "old.csv")
        ingest(project.config)
    with simulated_time(now - timedelta(days=1)):
        project.drop_csv(arrivals(NEW, start=4000 + OLD), "new.csv")
        ingest(project.config)
    score(project.config)
    since = now - timedelta(days=2)
    current_before, watermark_before = current_predictions(project), champion_watermark(project)

    state = backfill("v2", since, project.config, return_state=True)
    report = state.result()
    again = backfill("v2", since, project.config)
    return Backfilled(
        project=project,
        since=since,
        new_ids=arrivals(NEW, start=4000 + OLD)["loan_id"].tolist(),
        current_before=current_before,
        watermark_before=watermark_before,
        report=report,
        again=again,
        artifacts=artifacts_of(state.state_details.flow_run_id),
    )


def test_a_backfill_stores_the_versions_predictions_of_exactly_the_records_since_the_date(b: Backfilled) -> None:
    assert (b.report.model_version, b.report.scored, b.report.units) == ("v2", NEW, 2)
    v2 = b.project.query("SELECT record_id, backfill, model_version FROM predictions WHERE model_version = 'v2'")
    assert sorted(v2["record_id"]) == sorted(b.new_ids)
    assert v2["backfill"].all()
    assert b.project.scalar("SELECT count(*) FROM predictions WHERE model_version = 'v1'") == OLD + NEW
    assert b.project.scalar("SELECT count(*) FROM models WHERE event = 'promoted'") == 1, "v2 was not promoted"


def test_a_repeated_backfill_adds_nothing(b: Backfilled) -> None:
    assert (b.again.scored, b.again.units) == (0, 0)
    assert b.project.scalar("SELECT count(*) FROM predictions WHERE model_version = 'v2'") == NEW
    assert b.project.scalar("SELECT count(*) FROM (SELECT DISTINCT record_id, model_version FROM predictions)") == (
        OLD + NEW + NEW
    )


def test_a_backfill_changes_neither_the_current_predictions_nor_the_champions_watermark(b: Backfilled) -> None:
    pd.testing.assert_frame_equal(current_predictions(b.project), b.current_before)
    assert set(b.current_before["model_version"]) == {"v1"}
    assert champion_watermark(b.project) == b.watermark_before is not None


def test_the_run_summary_says_version_since_rows_and_units(b: Backfilled) -> None:
    summary = b.artifacts["backfill-summary"]
    assert "| v2 | " in summary.replace("\\", "")
    assert f"| {b.since:%Y-%m-%d %H:%M} | {NEW} | 2 | local |" in summary


def test_the_champions_next_score_is_unaffected(b: Backfilled) -> None:
    """Runs last in this module: it adds records."""
    b.project.drop_csv(arrivals(LATER, start=4000 + OLD + NEW), "later.csv")
    ingest(b.project.config)

    report = score(b.project.config)

    assert (report.model_version, report.scored, report.chunks) == ("v1", LATER, 1), "only the new records"
    current = current_predictions(b.project)
    assert len(current) == OLD + NEW + LATER and set(current["model_version"]) == {"v1"}
    assert b.project.scalar("SELECT count(*) FROM predictions WHERE model_version = 'v2'") == NEW


@pytest.fixture
def b(backfilled: Backfilled) -> Backfilled:
    return backfilled


def test_a_backfill_killed_between_units_is_finished_by_the_next_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(project.config)
    second_version(project, monkeypatch)
    project.drop_csv(arrivals(1200), "a.csv")
    ingest(project.config)
    real_commit = Warehouse.commit
    commits: list[str] = []

    def dies_on_the_second_unit(self: Warehouse, table: str, *args: object, **kwargs: object) -> bool:
        if table == "predictions":
            commits.append(table)
            if len(commits) == 2:
                raise RuntimeError("simulated kill during unit 2")
        return real_commit(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Warehouse, "commit", dies_on_the_second_unit)
    since = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(RuntimeError, match="simulated kill"):
        backfill("v2", since, project.config)
    monkeypatch.undo()
    assert project.counts()["predictions"] == 500  # one whole unit (chunk_rows 500), nothing of the second

    report = backfill("v2", since, project.config)

    assert (report.scored, report.units) == (700, 2)
    assert project.scalar("SELECT count(*) FROM predictions WHERE model_version = 'v2'") == 1200
    assert project.scalar("SELECT count(DISTINCT record_id) FROM predictions") == 1200
    assert project.counts()["predictions_current"] == 0, "the champion has scored nothing: no current prediction"


# ------------------------------------------------------------------ expected failures: one line, exit 1


def one_error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_what_a_backfill_refuses_it_refuses_in_one_line(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    train(project.config)
    second_version(project, monkeypatch)
    backfill_args = ["score", "--config", project.config, "--version"]

    assert "'v7' is not a registered model version (registered: v1, v2)" in one_error_line(
        [*backfill_args, "v7", "--since", "2026-01-01"]
    )
    assert "v1 is the champion" in one_error_line([*backfill_args, "v1", "--since", "2026-01-01"])
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert "is in the future" in one_error_line([*backfill_args, "v2", "--since", future])
    assert "write it like 2026-11-20" in one_error_line([*backfill_args, "v2", "--since", "last tuesday"])
    assert "needs both --version and --since" in one_error_line([*backfill_args, "v2"])

    model_file = next(p for p in (project.settings.models_dir / "v2").iterdir() if p.suffix == ".joblib")
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    line = one_error_line([*backfill_args, "v2", "--since", "2026-01-01"])
    assert "does not match the registry (sha256" in line and "restore the file" in line
    assert project.counts()["predictions"] == 0


def test_the_command_line_runs_a_backfill_and_says_what_it_did(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(project.config)
    second_version(project, monkeypatch)
    project.drop_csv(arrivals(30), "a.csv")
    ingest(project.config)
    today = datetime.now(UTC).date().isoformat()

    result = runner.invoke(app, ["score", "--config", project.config, "--version", "v2", "--since", today])

    assert result.exit_code == 0, result.output
    assert (
        f"backfill: 30 records ingested since {today} 00:00 UTC scored by v2 in 1 unit(s); not promoted"
        in result.output
    )
