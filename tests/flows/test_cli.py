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
    # One notion of alert, with the drifted columns apart; no monitoring yet, so none of either.
    assert (status["reports_with_alerts"], status["alert_episodes"], status["open_alerts"]) == (0, 0, [])
    assert status["drifted_columns_in_latest_report"] == 0 and "alerts" not in status


def test_status_reads_the_catalog_without_the_pipeline_libraries(project: Project) -> None:
    """`scorehouse status` answers in about a second: it loads neither Prefect nor the model or Delta stack."""
    import subprocess
    import sys

    project.store()  # the catalog exists, as after any flow
    heavy = ("prefect", "sklearn", "xgboost", "deltalake", "pandas", "evidently")
    script = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from flows.cli import app\n"
        f"result = CliRunner().invoke(app, ['status', '--config', {project.config!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == []


def test_status_before_any_warehouse_says_what_to_run_and_creates_nothing(project: Project) -> None:
    result = runner.invoke(app, ["status", "-c", project.config])
    _assert_clear_failure(result, "no warehouse catalog", "make demo", "scorehouse init")
    assert not project.settings.catalog_path.exists()


def test_status_of_an_empty_warehouse(project: Project) -> None:
    assert runner.invoke(app, ["init", "-c", project.config]).exit_code == 0
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


# ------------------------------------------------------------------ expected failures: one line, exit 1


def test_a_tampered_model_stops_score_with_one_line_and_no_traceback(
    project: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    from flows.train import train

    version = train(project.config)
    model_file = next(p for p in (project.settings.models_dir / version).iterdir() if p.suffix == ".joblib")
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    project.drop_csv(arrivals(3), "a.csv")
    ingest(project.config)
    capfd.readouterr()

    result = runner.invoke(app, ["score", "--config", project.config])

    _assert_clear_failure(result, "sha256")
    logged = capfd.readouterr()
    assert "Traceback" not in logged.out + logged.err
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [result.output.strip()]


@pytest.mark.parametrize("value", ["{not json", "[1, 2"])
def test_an_override_that_is_not_json_gives_one_clear_line(
    project: Project, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SCOREHOUSE_MODEL__PARAMS", value)
    result = runner.invoke(app, ["status", "--config", project.config])
    _assert_clear_failure(result, "SCOREHOUSE_MODEL__PARAMS", "JSON")
    assert len(result.output.strip().splitlines()) == 1


def test_a_config_pointing_a_drop_folder_at_etc_is_refused_before_anything_moves(tmp_path: Path) -> None:
    document = repo_config_document()
    document["paths"] = {"incoming": "/etc"}
    result = runner.invoke(app, ["ingest", "--config", str(write_toml(tmp_path / "etc.toml", document))])
    _assert_clear_failure(result, "paths.incoming", "/etc", "system")


def test_demo_refuses_to_wipe_a_warehouse_it_did_not_create(project: Project) -> None:
    project.drop_csv(arrivals(3), "a.csv")
    ingest(project.config)
    before = project.counts()

    result = runner.invoke(app, ["demo", "--config", project.config, "--days", "1"])

    _assert_clear_failure(result, "--yes", "did not create")
    assert len(result.output.strip().splitlines()) == 1
    assert project.counts() == before
    assert any(project.settings.processed_dir.rglob("a.csv"))


def test_demo_reset_empties_its_own_warehouse_and_asks_about_anything_else(project: Project) -> None:
    from flows.demo import MARKER, ResetRefused, reset

    project.drop_csv(arrivals(3), "a.csv")
    with pytest.raises(ResetRefused):
        reset(project.settings)
    questions: list[str] = []
    reset(project.settings, confirm=lambda question: questions.append(question) or True)
    assert len(questions) == 1 and not (project.settings.incoming_dir / "a.csv").exists()
    assert (project.settings.warehouse_dir / MARKER).is_file()
    project.drop_csv(arrivals(3), "b.csv")
    reset(project.settings)  # the demo's own warehouse: no question
    assert not (project.settings.incoming_dir / "b.csv").exists()


def test_promote_records_a_name_even_without_a_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    from flows.cli import _who

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert _who(None).startswith("uid ") and _who("ops") == "ops"


def test_the_demo_summary_prints_commands_that_work_from_any_directory() -> None:
    from flows.cli import _where_to_look
    from pipeline.config import REPO_ROOT

    status = {
        "champion": {"version": "v3"},
        "records": 10,
        "quarantined_rows": 1,
        "predictions": 12,
        "labels": 5,
        "reports_with_alerts": 3,
        "alert_episodes": 2,
        "open_alerts": ["drift"],
    }
    summary = {
        "status": status,
        "catalog": "/abs/warehouse.duckdb",
        "decisions": [("v2", "rejected", "no gain"), ("v3", "promoted", "gain")],
        "reports": ["/abs/r1.html", "/abs/r2.html"],
        "first_champion": "v1",
        "config": "/abs/my.toml",
    }
    shown = _where_to_look(summary)
    assert "reports:         2 (3 with alerts)" in shown and "alert episodes:  2 (open now: drift)" in shown
    commands = [line.strip() for line in shown.split("Look at it")[1].splitlines()[1:] if line.strip()]
    assert commands and all(
        c.startswith(
            ("uvx --from duckdb-cli duckdb -readonly /abs/warehouse.duckdb ", f"uv run --project {REPO_ROOT} ")
        )
        or c == f"make -C {REPO_ROOT} dashboard"
        for c in commands
    ), commands
    assert f"uv run --project {REPO_ROOT} scorehouse status --config /abs/my.toml" in commands
