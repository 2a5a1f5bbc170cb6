"""The deployed stack end to end, with real components on loopback: a Prefect server with a temporary
database, the deployments of `prefect.yaml`, a process worker, and the flows writing a temporary project.

Run it alone with `uv run pytest -m integration`; it is part of `make test`. It takes about two minutes
(a Prefect server, `prefect deploy`, and four flow-run processes that each import the scientific stack).

It also guards the server's pins (pyproject.toml): with sqlalchemy 2.1 the scheduler fails and a cron
schedule creates no runs, which fails the schedule checks below.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from pipeline.config import load_settings
from tests.conftest import SAMPLE, repo_config_document, write_toml
from tests.integration.conftest import TERMINAL, Stack, wait_until

pytestmark = pytest.mark.integration

POOL = "scorehouse"
# Deployment -> its cron (prefect.yaml); the schedules the scheduler must turn into runs.
SCHEDULED = {
    "scoring_cycle/scorehouse": "*/15 * * * *",
    "collect_feedback/scorehouse": "7 * * * *",
    "monitor/scorehouse": "40 5 * * *",
    "maintain/scorehouse": "20 3 * * *",
}
ON_DEMAND = ["retrain/scorehouse", "train/scorehouse"]
# What the runs link to: distinct from the defaults, to prove the links come from the stack's environment.
DASHBOARD_URL = "http://127.0.0.1:18501"
REPORTS_URL = "http://127.0.0.1:18000"
ARRIVALS = 300  # sample rows after the reference slice, arriving with their labels in the same cycle


def make_project(folder: Path) -> Path:
    """A private project: the repo's dataset contract, a small model, every folder inside `folder`, and a
    retrain trigger that the arrivals' labels fire."""
    document = repo_config_document(chunk_rows=500)
    document["retrain"] = {"every_new_labels": 50}
    return write_toml(folder / "scorehouse.toml", document)


def drop_files(config: Path) -> pd.DataFrame:
    """One records file (the arrivals plus one malformed row) and one label file for the arrivals."""
    settings = load_settings(config)
    sample = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    arrivals = sample.iloc[4000 : 4000 + ARRIVALS]
    bad = arrivals.iloc[[0]].assign(loan_id="IT-NEGATIVE", funded_amnt="-5")
    records = pd.concat([arrivals, bad]).drop(columns=["Class"])
    labels = pd.DataFrame({"loan_id": arrivals["loan_id"], "label": arrivals["Class"], "labelled_at": "2026-11-20"})
    for folder, name, frame in (
        (settings.incoming_dir, "it-records.csv", records),
        (settings.feedback_dir, "it-labels.csv", labels),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / name, index=False)
    return arrivals


def scheduled_runs(stack: Stack, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    runs = stack.flow_runs(deployment_id={"any_": [deployment["id"]]}, state={"type": {"any_": ["SCHEDULED"]}})
    return [run for run in runs if run["auto_scheduled"]]  # created by the scheduler, not by hand


def matches_cron(cron: str, at: datetime) -> bool:
    """Enough of cron for the three schedules above (minute and hour fields)."""
    minute, hour = cron.split()[:2]
    minute_ok = at.minute % int(minute[2:]) == 0 if minute.startswith("*/") else at.minute == int(minute)
    return minute_ok and (hour == "*" or at.hour == int(hour))


def assert_scheduler_creates_runs(stack: Stack, deployments: dict[str, dict[str, Any]], timeout: float) -> None:
    """Every scheduled deployment gets future runs at the times its cron names."""
    for name, cron in SCHEDULED.items():
        runs = wait_until(
            lambda d=deployments[name]: scheduled_runs(stack, d),
            timeout,
            f"the scheduler to create runs for {name} ({cron}); server log:\n{stack.tail('server')}",
        )
        for run in runs:
            at = datetime.fromisoformat(run["expected_start_time"])
            assert at > datetime.now(UTC) - timedelta(minutes=1), f"{name}: run scheduled in the past: {at}"
            assert matches_cron(cron, at.astimezone(UTC)), f"{name}: {at} does not match {cron}"


def set_schedules_active(stack: Stack, deployments: dict[str, dict[str, Any]], active: bool) -> None:
    for name in SCHEDULED:
        deployment = deployments[name]
        for schedule in deployment["schedules"]:
            response = stack.request(
                "PATCH", f"/deployments/{deployment['id']}/schedules/{schedule['id']}", json={"active": active}
            )
            assert response.status_code == 204, response.text


def all_ended(stack: Stack, run_ids: list[str]) -> list[dict[str, Any]] | None:
    runs = [stack.flow_run(run_id) for run_id in run_ids]
    return runs if all(run["state_type"] in TERMINAL for run in runs) else None


def by_key(artifacts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["key"]: a for a in artifacts if a["key"]}


class Laps:
    """Seconds spent in each phase, printed at the end (`pytest -s`) to see where the time goes."""

    def __init__(self) -> None:
        self.last = self.start = time.monotonic()
        self.laps: list[str] = []

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{name} {now - self.last:.0f} s")
        self.last = now

    def __str__(self) -> str:
        return f"{', '.join(self.laps)}; total {time.monotonic() - self.start:.0f} s"


def test_deployed_stack_schedules_runs_and_publishes(stack: Stack, tmp_path: Path) -> None:
    lap = Laps()
    config = make_project(tmp_path / "project")
    settings = load_settings(config)

    # --- deploy from prefect.yaml, as `make deploy` does
    stack.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    stack.prefect("deploy", "--all")
    deployments = {name: stack.deployment(name) for name in [*SCHEDULED, *ON_DEMAND]}
    for name, deployment in deployments.items():
        assert deployment["work_pool_name"] == POOL, name
        assert deployment["pull_steps"] == [{"flows.deployed.project_directory": {}}], name
        assert deployment["global_concurrency_limit"]["limit"] == 1, name
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW", name
        assert deployment["enforce_parameter_schema"], name
        assert "config" in deployment["parameter_openapi_schema"]["properties"], name
    for name, cron in SCHEDULED.items():
        assert [(s["schedule"]["cron"], s["active"]) for s in deployments[name]["schedules"]] == [(cron, True)]
    for name in ON_DEMAND:
        assert deployments[name]["schedules"] == [], name
    # Typed parameters: a value of the wrong type is refused when the run is created, not when it runs.
    refused = stack.request(
        "POST",
        f"/deployments/{deployments['retrain/scorehouse']['id']}/create_flow_run",
        json={"parameters": {"force": "perhaps"}},
    )
    assert refused.status_code >= 400 and "force" in refused.text, refused.text

    lap("deploy")
    # --- the scheduler turns every cron schedule into runs (right after deploy)
    assert_scheduler_creates_runs(stack, deployments, timeout=60)
    # No slot may fire into the rest of this test: pausing a schedule deletes its future runs.
    set_schedules_active(stack, deployments, active=False)
    wait_until(lambda: not any(scheduled_runs(stack, deployments[n]) for n in SCHEDULED), 30, "paused schedules' runs")

    lap("schedules")
    # --- a worker started outside the checkout: the pull step finds the code
    worker_env = stack.env | {
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "SCOREHOUSE_CONFIG": str(config),  # a run left with config=null still writes only the temporary project
        "SCOREHOUSE_DASHBOARD_URL": DASHBOARD_URL,
        "SCOREHOUSE_REPORTS_URL": REPORTS_URL,
    }
    worker = ("worker", "start", "--pool", POOL, "--type", "process", "--name", "integration")
    stack.start("worker", *worker, cwd=tmp_path, env=worker_env)

    # --- the first champion, through the train deployment
    train = stack.run_deployment("train/scorehouse", parameters={"config": str(config)})
    train = stack.wait_for_run(train["id"], timeout=180)
    assert train["name"].startswith("train ") and train["name"].endswith(" v1 champion"), train["name"]

    lap("train run")
    # --- a new incoming file and its labels; scoring_cycle triggered through the API
    arrivals = drop_files(config)
    cycle = stack.run_deployment("scoring_cycle/scorehouse", parameters={"config": str(config)})
    cycle = stack.wait_for_run(cycle["id"], timeout=240)
    assert cycle["name"].startswith("cycle ") and cycle["name"].endswith(" v1"), cycle["name"]

    subflows = stack.flow_runs(parent_flow_run_id={"any_": [cycle["id"]]})
    verbs = sorted(run["name"].split()[0] for run in subflows)
    assert verbs == ["feedback", "ingest", "monitor", "score"], verbs  # retrain is not inline when deployed
    assert all(run["state_type"] == "COMPLETED" for run in subflows)
    assert any(run["name"].startswith("score ") and run["name"].endswith(" v1") for run in subflows)

    artifacts = by_key(stack.artifacts([cycle["id"], *(run["id"] for run in subflows)]))
    expected = {
        "cycle-summary": "markdown",
        "dashboard": "markdown",  # Prefect stores a link artifact as markdown: [text](url)
        "ingest-summary": "markdown",
        "score-summary": "markdown",
        "feedback-summary": "markdown",
        "monitor-summary": "markdown",
        "monitor-metrics": "table",
        "monitor-report": "markdown",  # a link too
    }
    assert {key: artifacts[key]["type"] for key in expected if key in artifacts} == expected
    summary = artifacts["cycle-summary"]["data"]
    for text in (
        f"{ARRIVALS + 1} rows in, {ARRIVALS} stored, 1 quarantined",
        f"{ARRIVALS} records scored by **v1**",
        f"{ARRIVALS} labels stored",
        "funded_amnt",  # why the row was quarantined
        "retrain deployment run",
        DASHBOARD_URL,
        f"{REPORTS_URL}/projects/",
    ):
        assert text in summary, f"{text!r} not in the cycle summary:\n{summary}"
    assert artifacts["dashboard"]["data"].endswith(f"]({DASHBOARD_URL})"), artifacts["dashboard"]["data"]
    link = re.fullmatch(r"\[.+\]\((.+)\)", artifacts["monitor-report"]["data"])
    assert link, artifacts["monitor-report"]["data"]
    report_link = link.group(1)
    assert report_link.startswith(f"{REPORTS_URL}/projects/"), report_link
    _, project_id, _, snapshot_id = report_link.removeprefix(REPORTS_URL + "/").split("/")
    # ... and the link's snapshot is in the workspace that `evidently ui` serves
    assert (settings.reports_dir / "evidently" / project_id / "snapshots" / f"{snapshot_id}.json").is_file()

    lap("scoring_cycle run")
    # --- the predictions landed, read as an analyst would
    catalog = settings.warehouse_dir / "warehouse.duckdb"
    with duckdb.connect(str(catalog), read_only=True) as con:
        con.register("arrivals", arrivals[["loan_id"]])
        scored = con.execute(
            "SELECT count(*) FROM predictions_current p JOIN arrivals a ON a.loan_id = p.record_id "
            "WHERE p.model_version = 'v1'"
        ).fetchone()
        quarantined = con.execute("SELECT count(*) FROM quarantine WHERE column_name = 'funded_amnt'").fetchone()
    assert scored == (ARRIVALS,)
    assert quarantined == (1,)

    # --- monitor found retraining due and started the retrain deployment (not inline)
    retrains = stack.flow_runs(deployment_id={"any_": [deployments["retrain/scorehouse"]["id"]]})
    assert len(retrains) == 1, [r["name"] for r in retrains]
    assert "triggered" in retrains[0]["tags"]
    assert "new labels" in retrains[0]["parameters"]["trigger"]

    # --- meanwhile, a backlog of late runs (an outage of the worker) does not replay every missed slot
    now = datetime.now(UTC)
    late = [
        stack.run_deployment(
            "collect_feedback/scorehouse",
            parameters={"config": str(config)},
            state={"type": "SCHEDULED", "state_details": {"scheduled_time": (now - timedelta(hours=h)).isoformat()}},
        )["id"]
        for h in (3, 2, 1)
    ]

    retrain = stack.wait_for_run(retrains[0]["id"], timeout=180)
    assert retrain["name"].startswith("retrain ") and retrain["name"].endswith(("promoted", "rejected"))
    decision = by_key(stack.artifacts([retrain["id"]]))["retrain-decision"]["data"]
    assert "| champion v1 |" in decision and "| challenger v2 |" in decision, decision  # both sets of metrics

    ended = wait_until(lambda: all_ended(stack, late), 120, "the late collect_feedback runs to end", interval=1)
    outcomes = sorted((run["state_type"], run["state"]["message"] or "") for run in ended)
    assert [state for state, _ in outcomes] == ["CANCELLED", "CANCELLED", "COMPLETED"], outcomes
    assert {message for state, message in outcomes if state == "CANCELLED"} == {"Deployment concurrency limit reached."}

    lap("retrain run + backlog")
    # --- the worker stops by its PID; with the schedules on again, the scheduler's own loop (not the one
    # that reacts to a new deployment) creates the runs again
    stack.stop("worker")
    set_schedules_active(stack, deployments, active=True)
    assert_scheduler_creates_runs(stack, deployments, timeout=60)

    lap("scheduler loop")
    print(f"\nintegration test phases (after the server started): {lap}")
