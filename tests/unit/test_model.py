"""The embedding and the classifier on a small synthetic frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError, Dataset, Model, load_settings
from pipeline.metrics import classification_metrics
from pipeline.model import ScoringModel, fit_embedding, fit_model
from pipeline.training import binary_target, reference_set, reference_slice, train_and_evaluate
from tests.conftest import tiny_config_document, write_toml
from tests.unit.conftest import synthetic_frame


def test_embedding_has_embedding_size_columns(synthetic: pd.DataFrame, tiny_dataset: Dataset) -> None:
    for size in (1, 3, 5):
        embedding = fit_embedding(synthetic, tiny_dataset, size, seed=0)
        vectors = embedding.transform(synthetic[tiny_dataset.feature_names])
        assert vectors.shape == (len(synthetic), size)
        assert vectors.dtype == np.float32
        assert np.isfinite(vectors).all()


def test_embedding_larger_than_the_features_is_refused(synthetic: pd.DataFrame, tiny_dataset: Dataset) -> None:
    # 2 numeric + 3 one-hot colours = 5 preprocessed columns
    with pytest.raises(ConfigError, match="embedding_size is 6 but the preprocessed features have only 5") as refused:
        fit_embedding(synthetic, tiny_dataset, 6, seed=0)
    assert "set model.embedding_size to at most 5" in str(refused.value)  # what to do, in the one line


def test_scores_are_probabilities_and_labels_follow_the_threshold(
    fitted: ScoringModel, synthetic: pd.DataFrame
) -> None:
    scores, labels, vectors = fitted.score(synthetic)

    assert scores.shape == labels.shape == (len(synthetic),)
    assert vectors.shape == (len(synthetic), 3)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert set(labels) <= {"no", "yes"}
    assert (labels == np.where(scores >= 0.4, "yes", "no")).all()
    metrics = classification_metrics((synthetic["outcome"] == "yes").to_numpy(dtype=int), scores, 0.4)
    assert metrics["roc_auc"] > 0.7  # it learned something from a learnable target


def test_same_input_gives_the_same_output(fitted: ScoringModel, synthetic: pd.DataFrame) -> None:
    first = fitted.score(synthetic)
    second = fitted.score(synthetic.copy())
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)


def test_scoring_a_row_alone_or_in_a_batch_gives_the_same_result(fitted: ScoringModel, synthetic: pd.DataFrame) -> None:
    whole_scores, _, whole_vectors = fitted.score(synthetic)
    part_scores, _, part_vectors = fitted.score(synthetic.iloc[[7]])
    np.testing.assert_allclose(part_scores, whole_scores[[7]], rtol=1e-6)
    np.testing.assert_allclose(part_vectors, whole_vectors[[7]], rtol=1e-5, atol=1e-6)


def test_a_rows_embedding_is_the_same_to_the_bit_in_any_batch() -> None:
    """Units of different sizes (other workers, other engines) must store the same vector for a row: a
    float32 matrix product does not guarantee it (checked below on the same data), the projection does."""
    from sklearn.decomposition import PCA

    from pipeline.model import Embedding

    rows = np.random.default_rng(0).normal(size=(3000, 60)).astype(np.float32)
    embedding = Embedding(preprocess=None, pca=PCA(8, random_state=1).fit(rows))  # type: ignore[arg-type]
    in_batches = np.vstack([embedding.project(rows[i : i + 37]) for i in range(0, len(rows), 37)])

    assert np.array_equal(embedding.project(rows), in_batches)
    assert np.allclose(embedding.project(rows), embedding.pca.transform(rows), atol=1e-5)


def test_the_same_seed_fits_the_same_model(
    synthetic: pd.DataFrame, tiny_dataset: Dataset, tiny_model_settings: Model, fitted: ScoringModel
) -> None:
    target = (synthetic["outcome"] == "yes").to_numpy(dtype=int)
    again = fit_model(synthetic, target, tiny_dataset, tiny_model_settings, version="v1", seed=3)
    assert np.array_equal(again.score(synthetic)[0], fitted.score(synthetic)[0])


def test_unknown_category_and_missing_values_do_not_crash(fitted: ScoringModel, synthetic: pd.DataFrame) -> None:
    odd = pd.DataFrame(
        {
            "record_id": ["x1", "x2", "x3"],
            "amount": [10.0, np.nan, 1e6],
            "rate": [np.nan, 3.0, -50.0],
            "colour": ["purple", None, "red"],
        }
    )
    scores, labels, vectors = fitted.score(odd)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.isfinite(vectors).all()
    assert len(labels) == 3


def test_extra_columns_and_column_order_do_not_matter(fitted: ScoringModel, synthetic: pd.DataFrame) -> None:
    shuffled = synthetic[["colour", "outcome", "rate", "record_id", "amount"]].assign(extra=1)
    assert np.array_equal(fitted.score(shuffled)[0], fitted.score(synthetic)[0])


@pytest.mark.parametrize("model_input", ["embedding", "features", "both"])
def test_every_model_input_scores(
    synthetic: pd.DataFrame, tiny_dataset: Dataset, tiny_model_settings: Model, model_input: str
) -> None:
    settings = Model(**{**tiny_model_settings.model_dump(), "input": model_input})
    target = (synthetic["outcome"] == "yes").to_numpy(dtype=int)
    model = fit_model(synthetic, target, tiny_dataset, settings, version="v1", seed=0)
    scores, _, vectors = model.score(synthetic)
    assert vectors.shape[1] == 3
    expected_width = {"embedding": 3, "features": 5, "both": 8}[model_input]
    assert model.classifier.n_features_in_ == expected_width
    assert ((scores >= 0) & (scores <= 1)).all()


def test_train_and_evaluate_holds_out_a_stratified_share(tmp_path: Path, tiny_dataset: Dataset) -> None:
    settings = load_settings(write_toml(tmp_path / "scorehouse.toml", tiny_config_document()))
    reference = synthetic_frame(400, seed=1)

    result = train_and_evaluate(reference, settings, version="v7")

    assert len(result.train) + len(result.holdout) == 400
    assert len(result.holdout) == 100  # holdout_fraction 0.25
    assert set(result.train["record_id"]).isdisjoint(result.holdout["record_id"])
    assert result.model.version == "v7"
    assert 0 <= result.metrics["roc_auc"] <= 1
    assert result.metrics["rows"] == 100
    assert result.baselines == {}  # only the configured input is fitted unless model.compare_inputs
    share = (reference["outcome"] == "yes").mean()
    assert abs((result.holdout["outcome"] == "yes").mean() - share) < 0.03

    ref = reference_set(result.model, result.train, result.holdout, tiny_dataset)
    assert len(ref) == 400
    assert ref["split"].value_counts().to_dict() == {"train": 300, "holdout": 100}
    assert ref["embedding"].map(len).eq(3).all()


def fits_counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model input of every model `train_and_evaluate` fits (the real fit, recorded)."""
    from pipeline import training

    inputs: list[str] = []
    real = training.fit_model

    def fit(*args: Any, **kwargs: Any) -> ScoringModel:
        model = real(*args, **kwargs)
        inputs.append(model.model_input)
        return model

    monkeypatch.setattr(training, "fit_model", fit)
    return inputs


def test_train_fits_only_the_configured_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write_toml(tmp_path / "scorehouse.toml", tiny_config_document()))
    fitted = fits_counted(monkeypatch)
    result = train_and_evaluate(synthetic_frame(300, seed=2), settings, version="v1")
    assert fitted == ["both"] == [result.model.model_input]  # one model: the configured input
    assert result.baselines == {}


def test_compare_inputs_fits_the_other_inputs_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = tiny_config_document()
    document["model"]["compare_inputs"] = True
    settings = load_settings(write_toml(tmp_path / "scorehouse.toml", document))
    fitted = fits_counted(monkeypatch)
    result = train_and_evaluate(synthetic_frame(300, seed=2), settings, version="v1")
    assert set(result.baselines) == {"embedding", "features"}  # the configured input is "both"
    assert sorted(fitted) == ["both", "embedding", "features"]


def test_event_time_column_orders_the_reference_and_trains(tmp_path: Path) -> None:
    """The validated rows call the event-time column `event_time`; training used to look for the file's name."""
    from pipeline.validate import read_incoming, validate_rows

    document = tiny_config_document()
    document["dataset"]["event_time_column"] = "issued_at"
    settings = load_settings(write_toml(tmp_path / "scorehouse.toml", document))
    frame = synthetic_frame(200, seed=3)
    days = pd.date_range("2026-01-01", periods=200, freq="D", tz="UTC")
    frame["issued_at"] = days[::-1].strftime("%Y-%m-%dT%H:%M:%SZ")  # the file lists the newest first
    path = tmp_path / "reference.csv"
    frame.drop(columns=["outcome"]).rename(columns={"record_id": settings.dataset.id_column}).to_csv(path, index=False)
    checked = validate_rows(read_incoming(path), settings.dataset)
    validated = checked.good.to_pandas().assign(outcome=frame["outcome"].to_numpy())
    assert "event_time" in validated.columns and "issued_at" not in validated.columns
    leading = reference_slice(validated, 0.25, settings.dataset)
    assert leading["record_id"].tolist() == frame["record_id"].iloc[::-1].head(50).tolist()  # the oldest quarter
    assert 0 <= train_and_evaluate(leading, settings, version="v1").metrics["roc_auc"] <= 1


def test_binary_target_names_unknown_values(tiny_dataset: Dataset) -> None:
    assert binary_target(pd.Series(["no", "yes", "yes"]), tiny_dataset).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="maybe"):
        binary_target(pd.Series(["no", "maybe"]), tiny_dataset)
    with pytest.raises(ValueError, match="missing values"):
        binary_target(pd.Series(["no", None]), tiny_dataset)


def test_reference_slice_keeps_the_leading_share(tiny_dataset: Dataset) -> None:
    frame = synthetic_frame(10)
    assert reference_slice(frame, 0.4, tiny_dataset)["record_id"].tolist() == frame["record_id"].head(4).tolist()


def test_metrics_on_one_class_are_undefined_not_zero() -> None:
    metrics = classification_metrics(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.9]), 0.5)
    assert np.isnan(metrics["roc_auc"]) and np.isnan(metrics["balanced_accuracy"])
    assert metrics["rows"] == 3 and metrics["positives"] == 0
