"""The `scorehouse` command line: JSON status, clear errors without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest
from tests.conftest import dump_toml, repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals

runner = CliRunner()


def test_status_prints_json_counts(project: Project) -> None:
    rows = arrivals(12)
    rows.loc[0, "int_rate"] = "abc"
    project.drop_csv(rows, "a.csv")
    ingest(project.config)

    result = runner.invoke(app, ["status", "--config", project.config])

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["records"] == 11
    assert status["quarantined_rows"] == 1
    assert status["predictions"] == 0
    assert status["records_without_current_prediction"] == 11
    assert status["champion"] is None
    assert status["last_ingest"]["file"] == "a.csv"


def test_status_of_an_empty_warehouse(project: Project) -> None:
    result = runner.invoke(app, ["status", "-c", project.config])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["records"], status["predictions"], status["champion"]) == (0, 0, None)


def test_ingest_command_reports_each_file(project: Project) -> None:
    rows = arrivals(5)
    rows.loc[1, "term"] = "term_99"
    project.drop_csv(rows, "a.csv")
    result = runner.invoke(app, ["ingest", "--config", project.config])
    assert result.exit_code == 0, result.output
    assert "a.csv: 5 in, 4 stored, 1 quarantined" in result.stdout


def _assert_clear_failure(result: object, *words: str) -> None:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert exit_code == 1, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # type: ignore[attr-defined]
    assert "Traceback" not in output
    assert "error:" in output
    for word in words:
        assert word in output, output


def _bad_config(tmp_path: Path) -> Path:
    document = repo_config_document()
    document["model"]["threshold"] = 3
    return write_toml(tmp_path / "bad.toml", document)


@pytest.mark.parametrize("command", ["status", "init"])
def test_a_bad_config_gives_a_clear_error_and_exit_code_1(tmp_path: Path, command: str) -> None:
    result = runner.invoke(app, [command, "--config", str(_bad_config(tmp_path))])
    _assert_clear_failure(result, "model.threshold", "bad.toml")


def test_a_bad_config_stops_a_flow_command_with_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "--config", str(_bad_config(tmp_path))])
    _assert_clear_failure(result, "model.threshold")


def test_a_missing_config_gives_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--config", str(tmp_path / "nope.toml")])
    _assert_clear_failure(result, "does not exist", "nope.toml")


def test_a_config_that_is_not_toml_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(dump_toml(repo_config_document()) + "\n[[[ not toml\n")
    result = runner.invoke(app, ["status", "--config", str(path)])
    _assert_clear_failure(result, "broken.toml")
