"""`score` through the real flow: bounded chunks (5), the same transform (6), verified artifacts (8), resume (3)."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.ingest import ingest
from flows.score import ScoreReport, score
from flows.train import train
from pipeline.artifacts import CLASSIFIER_FILE, ArtifactError, load_version
from tests.flows.conftest import Project, arrivals, make_project, synthetic_arrivals
from warehouse.registry import champion
from warehouse.store import Warehouse

CHUNK = 500


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, int, ScoreReport]:
    """A project with a champion and 1,234 records scored in chunks of 500 (shared: read-only checks)."""
    project = make_project(tmp_path_factory.mktemp("scored") / "project", chunk_rows=CHUNK)
    train(project.config)
    project.drop_csv(arrivals(1000), "a.csv")
    project.drop_parquet(arrivals(234, start=5000), "b.parquet")
    ingest(project.config)
    report = score(project.config)
    return project, 1234, report


def test_scoring_runs_in_chunks_of_at_most_chunk_rows(scored: tuple[Project, int, ScoreReport]) -> None:
    project, n, report = scored
    assert report.scored == n
    assert report.chunks == math.ceil(n / CHUNK)
    files = project.batch_files("predictions")
    assert len(files) == math.ceil(n / CHUNK)
    sizes = sorted(pq.read_metadata(f).num_rows for f in files)
    assert sizes == [n - CHUNK * (n // CHUNK), CHUNK, CHUNK]
    assert project.scalar("SELECT count(*) FROM predictions") == n
    assert project.scalar("SELECT count(DISTINCT record_id) FROM predictions") == n
    assert project.scalar("SELECT count(*) FROM records ANTI JOIN predictions USING (record_id)") == 0


def test_chunk_rows_from_the_environment_is_used(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    train(project.config)
    project.drop_csv(arrivals(250), "a.csv")
    ingest(project.config)
    monkeypatch.setenv("SCOREHOUSE_SCORING__CHUNK_ROWS", "100")

    report = score(project.config)

    assert (report.scored, report.chunks) == (250, 3)
    assert sorted(pq.read_metadata(f).num_rows for f in project.batch_files("predictions")) == [50, 100, 100]


def test_predictions_carry_the_champion_and_its_own_embedding(scored: tuple[Project, int, ScoreReport]) -> None:
    project, n, _ = scored
    store = project.store()
    with store.connect() as con:
        registered = champion(con)
    assert registered is not None
    model = load_version(project.model_folder(registered.artifact_dir), registered.sha256)

    rows = project.query(
        "SELECT r.*, p.model_version, p.score, p.label, p.threshold, p.embedding "
        "FROM predictions p JOIN records r USING (record_id) ORDER BY record_id"
    )
    assert len(rows) == n
    assert set(rows["model_version"]) == {registered.version} == {"v1"}
    assert project.query("SELECT DISTINCT model_version FROM predictions_current")["model_version"].tolist() == ["v1"]

    stored = np.stack(rows["embedding"].to_numpy()).astype(np.float32)
    assert stored.shape == (n, project.settings.model.embedding_size)
    expected = model.embedding.transform(rows[model.feature_names])
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-5)

    scores, labels, _ = model.score(rows)
    np.testing.assert_allclose(rows["score"].to_numpy(), scores, rtol=1e-6, atol=1e-7)
    assert (rows["label"].to_numpy() == labels).all()
    assert ((rows["score"] >= 0) & (rows["score"] <= 1)).all()
    assert (rows["threshold"] == model.threshold).all()
    assert set(rows["label"]) <= set(project.settings.dataset.classes)


def test_a_tampered_champion_is_refused_and_nothing_is_scored(project: Project) -> None:
    train(project.config)
    project.drop_csv(arrivals(50), "a.csv")
    ingest(project.config)
    with project.store().connect() as con:
        registered = champion(con)
    assert registered is not None
    path = project.model_folder(registered.artifact_dir) / CLASSIFIER_FILE
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))

    state = score(project.config, return_state=True)

    assert state.is_failed()
    with pytest.raises(ArtifactError) as caught:
        state.result()
    message = str(caught.value)
    assert str(path) in message
    assert "does not match the registry" in message
    assert project.counts()["predictions"] == 0
    assert project.batch_files("predictions") == []
    champion_now = project.query("SELECT model_version FROM champion")["model_version"].tolist()
    assert champion_now == ["v1"]  # the champion stays


def test_a_run_killed_between_chunks_is_finished_by_the_next_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(project.config)
    project.drop_csv(arrivals(1200), "a.csv")
    ingest(project.config)
    real_commit = Warehouse.commit
    commits: list[str] = []

    def dies_on_the_second_chunk(self: Warehouse, table: str, *args: object, **kwargs: object) -> bool:
        if table == "predictions":
            commits.append(table)
            if len(commits) == 2:
                raise RuntimeError("simulated kill during chunk 2")
        return real_commit(self, table, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Warehouse, "commit", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError, match="simulated kill"):
        score(project.config)
    monkeypatch.undo()
    assert project.counts()["predictions"] == CHUNK  # one whole chunk, nothing of the second

    report = score(project.config)

    assert (report.scored, report.chunks) == (1200 - CHUNK, 2)
    assert project.counts()["predictions"] == 1200
    assert project.scalar("SELECT count(DISTINCT record_id) FROM predictions") == 1200


def _peak_while_scoring(project: Project) -> tuple[int, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        report = score(project.config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report.scored, peak - base


def test_peak_memory_does_not_grow_with_the_input(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", chunk_rows=250)
    train(project.config)
    score(project.config)  # warm up: imports, the first flow run's client
    project.drop_csv(synthetic_arrivals(1000, "S"), "small.csv")
    ingest(project.config)
    small_rows, small_peak = _peak_while_scoring(project)
    project.drop_csv(synthetic_arrivals(4000, "L"), "large.csv")
    ingest(project.config)
    large_rows, large_peak = _peak_while_scoring(project)

    assert (small_rows, large_rows) == (1000, 4000)
    # Unbounded, 4x the rows would need about 4x the memory; streamed in chunks it stays about the same.
    assert large_peak < 2 * small_peak, f"peak {small_peak / 1e6:.1f} MB for 1k rows, {large_peak / 1e6:.1f} MB for 4k"


def test_every_prediction_carries_its_explanation_and_it_adds_up_to_the_score(
    scored: tuple[Project, int, ScoreReport],
) -> None:
    project, n, _ = scored
    features = project.settings.dataset.feature_names
    rows = project.query("SELECT record_id, score, base_value, contributions, reasons FROM predictions")
    assert len(rows) == n and rows["base_value"].notna().all()

    contributions = np.stack(rows["contributions"].to_numpy()).astype(np.float64)
    assert contributions.shape == (n, len(features))
    margin = np.log(rows["score"] / (1 - rows["score"]))
    np.testing.assert_allclose(rows["base_value"] + contributions.sum(axis=1), margin, atol=1e-4)

    for row, reasons in zip(contributions, rows["reasons"], strict=True):
        assert len(reasons) <= project.settings.explain.top_k
        values = [r["contribution"] for r in reasons]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        for reason in reasons:
            assert reason["contribution"] == pytest.approx(row[features.index(reason["feature"])], abs=1e-6)
        assert len(reasons) == min(project.settings.explain.top_k, int((row > 0).sum()))

    assert project.scalar("SELECT count(*) FROM prediction_reasons") == sum(len(r) for r in rows["reasons"])
    assert project.scalar("SELECT count(*) FROM predictions_current WHERE reasons IS NULL") == 0


def test_explanations_turned_off_leave_the_columns_null(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    train(project.config)
    project.drop_csv(arrivals(120), "a.csv")
    ingest(project.config)
    monkeypatch.setenv("SCOREHOUSE_EXPLAIN__ENABLED", "false")

    assert score(project.config).scored == 120

    assert project.scalar("SELECT count(*) FROM predictions WHERE base_value IS NULL AND reasons IS NULL") == 120
    assert project.scalar("SELECT count(*) FROM prediction_reasons") == 0
