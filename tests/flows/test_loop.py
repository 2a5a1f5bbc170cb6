"""The closed loop through the real flows: labels arrive, the monitor reports and alerts, retraining decides.

One project goes through the loop once (module scope: each monitor run costs seconds); each test
checks one promise on it, in order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.monitor import monitor
from flows.retrain import promote, retrain, rollback
from flows.score import score
from flows.train import train
from pipeline import simulate
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, sample

received: list[dict[str, Any]] = []


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts"
    server.shutdown()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, webhook: str) -> Project:
    folder = tmp_path_factory.mktemp("loop")
    document = repo_config_document(chunk_rows=1000)
    document["monitoring"] = {"webhook_url": webhook, "min_labels": 50}
    document["retrain"] = {"every_new_labels": 500}
    project = Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))
    train(project.config)
    project.drop_csv(arrivals(800), "day-1.csv")
    ingest(project.config)
    score(project.config)
    return project


def label_file(project: Project, rows: pd.DataFrame, name: str) -> Path:
    labels = simulate.labels_file(rows, project.settings.dataset, pd.Timestamp("2026-11-20").date())
    path = project.settings.feedback_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    labels.to_csv(path, index=False)
    return path


def test_labels_join_and_bad_labels_are_rejected_with_reasons(loop: Project) -> None:
    known = sample().iloc[4000:4600]
    ghosts = known.iloc[:3].assign(loan_id=["NOPE1", "NOPE2", "NOPE3"])
    wrong = known.iloc[3:5].assign(Class="maybe")
    label_file(loop, pd.concat([known.iloc[5:], ghosts, wrong]), "labels-1.csv")
    [report] = collect_feedback(loop.config)
    assert (report.rows_in, report.stored, report.rejected) == (600, 595, 5)
    rejects = loop.query("SELECT rule, reason FROM feedback_rejects ORDER BY row_number")
    assert rejects["rule"].tolist() == ["known"] * 3 + ["allowed"] * 2
    assert rejects["reason"].str.contains("no record with this id was ingested").sum() == 3
    assert loop.scalar("SELECT count(*) FROM labelled_predictions") == 595
    row = loop.query("SELECT target, predicted_label, model_version, score FROM labelled_predictions LIMIT 1")
    assert row["model_version"].iloc[0] == "v1" and 0 <= row["score"].iloc[0] <= 1


def test_a_corrected_label_is_kept_as_history_and_wins(loop: Project) -> None:
    first = sample().iloc[[4010]]
    flipped = first.assign(Class="bad" if first["Class"].iloc[0] == "good" else "good")
    labels = simulate.labels_file(flipped, loop.settings.dataset, pd.Timestamp("2026-11-25").date())
    path = loop.settings.feedback_dir / "correction.csv"
    labels.to_csv(path, index=False)
    collect_feedback(loop.config)
    history = loop.query("SELECT label FROM feedback WHERE record_id = 'LC04011' ORDER BY labelled_at")
    current = loop.scalar("SELECT label FROM feedback_current WHERE record_id = 'LC04011'")
    assert len(history) == 2 and current == history["label"].iloc[-1] == flipped["Class"].iloc[0]


def test_collecting_again_adds_nothing(loop: Project) -> None:
    before = loop.counts()
    label_file(loop, sample().iloc[4005:4600], "labels-1-again.csv")  # same content as labels-1 minus extras
    collect_feedback(loop.config)
    again = loop.counts()
    assert again["feedback"] > before["feedback"] or again == before  # a different file may add labels...
    collect_feedback(loop.config)
    assert loop.counts() == again  # ...but running the flow again adds nothing


def test_monitor_reports_every_number_and_is_idempotent(loop: Project) -> None:
    outcome = monitor(loop.config)
    assert outcome.new_report and outcome.report_path and Path(outcome.report_path).is_file()
    rows = loop.query("SELECT * FROM monitoring WHERE report_id = ?", [outcome.report_id])
    metrics = set(rows["metric"])
    for name in (
        "drift_share_features",
        "drift_share_embedding",
        "prediction_drift",
        "roc_auc",
        "f1",
        "balanced_accuracy",
        "estimated_f1",
        "estimated_f1_labelled",
        "retrain_due",
        "top_reason_share",
        "contribution_drift",
        "explanation_drift",
    ):
        assert name in metrics, name
    features = loop.settings.dataset.feature_names
    shares = rows[rows.metric == "top_reason_share"]
    assert sorted(shares["column_name"]) == sorted(features) and shares["value"].sum() <= 1 + 1e-9
    assert shares["sample_size"].iloc[0] == loop.scalar(
        "SELECT count(*) FROM predictions WHERE contributions IS NOT NULL"
    ) - int(rows[rows.metric == "rows_left_out"]["value"].iloc[0])
    assert 0 <= rows[rows.metric == "explanation_drift"]["value"].iloc[0] <= 1
    f1 = rows[(rows.metric == "f1") & rows.column_name.isna()].iloc[0]
    assert f1.sample_size == loop.scalar("SELECT count(*) FROM labelled_predictions")
    assert set(rows["status"]) <= {"ok", "alert", "info"} and rows["report_path"].nunique() == 1
    assert not rows["sampled"].any()
    before = loop.counts()["monitoring"]
    again = monitor(loop.config)
    assert not again.new_report and loop.counts()["monitoring"] == before


def test_quality_estimate_is_close_to_the_realised_value(loop: Project) -> None:
    rows = loop.query("SELECT metric, value FROM monitoring WHERE column_name IS NULL")
    value = dict(zip(rows.metric, rows.value, strict=False))
    # Stated tolerance on this data: the CBPE estimate of F1 within 0.1 of the realised F1.
    assert abs(value["estimated_f1_labelled"] - value["f1"]) < 0.1


def test_k_new_labels_make_retraining_due(loop: Project) -> None:
    # 595 new labels since v1 was trained, k = 500: the labels trigger fired in the report above.
    detail = loop.scalar("SELECT detail FROM monitoring WHERE metric = 'retrain_due' ORDER BY run_at LIMIT 1")
    assert "new labels since the last training (every 500)" in detail


def test_retrain_decides_by_the_comparison_and_records_both_metrics(loop: Project) -> None:
    decision = retrain(loop.config, trigger="test")
    assert decision.challenger == "v2"
    events = loop.query("SELECT event, reason, metrics_json FROM models WHERE model_version = 'v2' ORDER BY event")
    assert set(events["event"]) == {"trained", "promoted" if decision.promoted else "rejected"}
    comparison = json.loads(events["metrics_json"].iloc[0])["comparison"]
    assert comparison["champion"]["version"] == "v1" and "roc_auc" in comparison["challenger"]
    models = loop.counts()["models"]
    again = retrain(loop.config, trigger="test")  # same labels: no second challenger, no new registry row
    assert loop.counts()["models"] == models
    expected = "nothing to retrain on" if decision.promoted else "already trained"
    assert expected in again.reason


def test_promotion_changes_the_version_of_new_predictions_only(loop: Project) -> None:
    if loop.scalar("SELECT model_version FROM champion") != "v2":
        promote("v2", reason="test", actor="pytest", config=loop.config)
    old = loop.query("SELECT record_id, score FROM predictions WHERE model_version = 'v1' ORDER BY record_id")
    score(loop.config)
    assert loop.query("SELECT record_id, score FROM predictions WHERE model_version = 'v1' ORDER BY record_id").equals(
        old
    )
    assert loop.scalar("SELECT count(*) FROM predictions WHERE model_version = 'v2'") == 800
    assert set(loop.query("SELECT model_version FROM predictions_current")["model_version"]) == {"v2"}
    history = loop.query("SELECT model_version, champion_until FROM champion_history ORDER BY champion_from")
    assert history["model_version"].tolist() == ["v1", "v2"] and history["champion_until"].isna().tolist() == [
        False,
        True,
    ]


def test_rollback_returns_to_the_previous_champion_and_says_who(loop: Project) -> None:
    assert rollback("bad week", "pytest", loop.config) == "v1"
    row = loop.query("SELECT actor, reason FROM models WHERE event = 'promoted' ORDER BY event_at DESC LIMIT 1")
    assert row["actor"].iloc[0] == "pytest" and "rollback: bad week" in row["reason"].iloc[0]
    assert loop.scalar("SELECT model_version FROM champion") == "v1"


def test_a_shift_raises_an_alert_and_posts_the_webhook(loop: Project) -> None:
    reference = sample().iloc[:3943]
    shifted = simulate.shifted(arrivals(900, start=5000), loop.settings.dataset, reference, seed=0)
    loop.drop_csv(shifted, "shifted.csv")
    ingest(loop.config)
    score(loop.config)
    outcome = monitor(loop.config)
    assert outcome.alerts, "a one-sd shift of half the numeric features must alert"
    alerts = loop.query("SELECT metric FROM monitoring_alerts WHERE report_id = ?", [outcome.report_id])
    assert len(alerts) >= 1
    assert received and received[-1]["report_id"] == outcome.report_id and received[-1]["alerts"] == outcome.alerts
