"""A version's training rows are stored once: a rejected challenger keeps only its own rows, not a copy of
its champion's reference set, and every reader still gets what it needs (the Models page, a promotion by
hand, monitoring's leakage exclusion, erasure).

One project through the real flows (module scope), each test one promise on it, in order.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.maintain import forget
from flows.monitor import monitor
from flows.retrain import RetrainDecision, promote, retrain
from flows.score import score
from flows.train import train
from pipeline import simulate
from pipeline.artifacts import load_version
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, sample
from warehouse import queries

LABELLED = 600  # of the 800 arrivals


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = tmp_path_factory.mktemp("training-rows")
    document = repo_config_document(chunk_rows=1000)
    document["retrain"] = {"min_improvement": 1.0}  # no challenger can clear it: each one is rejected
    project = Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))
    train(project.config)
    project.drop_csv(arrivals(800), "day-1.csv")
    ingest(project.config)
    score(project.config)
    labels = simulate.labels_file(
        sample().iloc[4000 : 4000 + LABELLED], project.settings.dataset, pd.Timestamp("2026-11-20").date()
    )
    project.settings.feedback_dir.mkdir(parents=True, exist_ok=True)
    labels.to_csv(project.settings.feedback_dir / "labels.csv", index=False)
    collect_feedback(project.config)
    return project


@pytest.fixture(scope="module")
def rejected(project: Project) -> tuple[RetrainDecision, dict[str, int]]:
    before = project.counts()
    decision = retrain(project.config, trigger="test")
    return decision, before


def test_a_rejected_challenger_adds_no_row_to_reference_only_its_own_rows(
    project: Project, rejected: tuple[RetrainDecision, dict[str, int]]
) -> None:
    decision, before = rejected
    assert decision.challenger == "v2" and not decision.promoted
    assert project.counts()["reference"] == before["reference"] == 3943  # v1's set, and nothing more
    assert project.scalar("SELECT count(*) FROM reference WHERE model_version = 'v2'") == 0
    own = project.query("SELECT * FROM challenger_rows WHERE model_version = 'v2'")
    assert len(own) == LABELLED and own["record_id"].is_unique
    assert set(own["champion_version"]) == {"v1"}
    assert not set(own["record_id"]) & set(project.query("SELECT record_id FROM reference")["record_id"])
    row = project.query("SELECT * FROM models WHERE model_version = 'v2' AND event IN ('trained', 'rejected')")
    trained, decided = row[row.event == "trained"].iloc[0], row[row.event == "rejected"].iloc[0]
    # The registry's counts still describe everything it trained and was compared on.
    assert (own["split"] == "holdout").sum() == trained["holdout_rows"] == decided["decision_rows"]
    assert (own["split"] == "train").sum() + 3943 == trained["train_rows"]
    labels = project.query("SELECT record_id, label FROM feedback_current")
    assert own.merge(labels, on="record_id").eval("target == label").all()


def test_the_models_page_still_shows_what_drives_the_rejected_challenger(
    project: Project, rejected: tuple[RetrainDecision, dict[str, int]]
) -> None:
    with project.store().connect() as con:
        table = queries.global_importance(con)
    features = project.settings.dataset.feature_names
    for version in ("v1", "v2"):
        rows = table[table["model_version"] == version]
        assert sorted(rows["feature"]) == sorted(features), version
        assert (rows["importance"] >= 0).all() and rows["importance"].sum() > 0, version
    v2 = table[table["model_version"] == "v2"].set_index("feature")
    v1 = table[table["model_version"] == "v1"].set_index("feature")
    np.testing.assert_allclose(v2["change"], (v2["importance"] - v1["importance"]).loc[v2.index], atol=1e-9)


def test_promoting_the_rejected_challenger_by_hand_builds_its_reference_set(
    project: Project, rejected: tuple[RetrainDecision, dict[str, int]]
) -> None:
    own = project.query("SELECT record_id, split FROM challenger_rows WHERE model_version = 'v2'")
    v1 = project.query("SELECT record_id FROM reference WHERE model_version = 'v1'")
    promote("v2", reason="test", actor="pytest", config=project.config)
    reference = project.query("SELECT * FROM reference WHERE model_version = 'v2' ORDER BY record_id")
    assert set(reference["record_id"]) == set(v1["record_id"]) | set(own["record_id"])
    assert reference["record_id"].is_unique
    held = set(own.loc[own["split"] == "holdout", "record_id"])
    assert set(reference.loc[reference["split"] == "holdout", "record_id"]) == held  # its comparison rows
    # Embedded, scored and explained by v2's own files (the same transform everywhere).
    folder, hashes = project.query(
        "SELECT artifact_dir, artifact_sha256 FROM models WHERE event = 'trained' AND model_version = 'v2'"
    ).iloc[0]
    scores, _, vectors = load_version(project.model_folder(folder), json.loads(hashes)).score(reference)
    np.testing.assert_allclose(reference["score"].to_numpy(), scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.stack(reference["embedding"].to_numpy()), vectors, rtol=1e-5, atol=1e-5)
    assert reference["contributions"].notna().all()
    assert project.scalar("SELECT model_version FROM champion") == "v2"


def test_monitoring_the_new_champion_leaves_out_every_row_it_trained_on(
    project: Project, rejected: tuple[RetrainDecision, dict[str, int]]
) -> None:
    score(project.config)  # v2 scores the 800 records
    outcome = monitor(project.config)
    rows = project.query("SELECT metric, value, model_version FROM monitoring WHERE report_id = ?", [outcome.report_id])
    assert set(rows["model_version"]) == {"v2"}
    left_out = rows.loc[rows["metric"] == "rows_left_out", "value"].iloc[0]
    assert left_out == LABELLED  # the 600 labelled arrivals are v2's training or comparison rows


def test_forget_erases_a_record_from_the_challengers_rows_too(
    project: Project, rejected: tuple[RetrainDecision, dict[str, int]]
) -> None:
    gone = str(project.scalar("SELECT min(record_id) FROM challenger_rows"))
    erasure = forget([gone], reason="request 7", actor="pytest", config=project.config)
    assert erasure.rows["challenger_rows"] == 1 and erasure.rows["reference"] == 1  # v2's set holds it now
    for table in ("records", "challenger_rows", "reference", "feedback", "predictions"):
        # Every id read back (a filter on the id is pushed into the rewritten files' scan, which delta-rs
        # wrote as string_view: pyarrow cannot compare that with a string parameter).
        assert gone not in set(project.query(f"SELECT record_id FROM {table}")["record_id"]), table
