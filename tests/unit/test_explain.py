"""Explanations: additivity on every model input, the mapping back to original features, reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from xgboost import DMatrix

from pipeline.config import Dataset, Model
from pipeline.explain import (
    Explanations,
    Reason,
    chain_through_pca,
    explain,
    feature_origins,
    global_importance,
    reason_text,
    score_and_explain,
    to_arrow,
    tree_contributions,
)
from pipeline.model import ModelInput, ScoringModel, build_preprocess, classifier_input, fit_model
from tests.conftest import FAST_PARAMS, SAMPLE, repo_config_document, tiny_dataset_section

INPUTS: tuple[ModelInput, ...] = ("features", "embedding", "both")


def tiny_model(frame: pd.DataFrame, dataset: Dataset, model_input: ModelInput) -> ScoringModel:
    settings = Model(embedding_size=3, input=model_input, threshold=0.4, params=FAST_PARAMS)
    target = (frame["outcome"] == "yes").to_numpy(dtype=int)
    return fit_model(frame, target, dataset, settings, version="v1", seed=3)


def margin(model: ScoringModel, frame: pd.DataFrame) -> np.ndarray:
    """The booster's own margin for `frame`, from the same classifier input as `score`."""
    x, _ = classifier_input(model.embedding, frame[model.feature_names], model.model_input)
    return np.asarray(model.classifier.get_booster().predict(DMatrix(x), output_margin=True), dtype=np.float64)


@pytest.fixture(scope="module")
def tiny_models(synthetic: pd.DataFrame, tiny_dataset: Dataset) -> dict[str, ScoringModel]:
    return {model_input: tiny_model(synthetic, tiny_dataset, model_input) for model_input in INPUTS}


@pytest.fixture(scope="module")
def sample_dataset() -> Dataset:
    return Dataset(**repo_config_document()["dataset"])


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """A few hundred rows of the bundled sample: the first 600 to fit on, the next 300 to explain."""
    return pd.read_csv(SAMPLE, nrows=900)


@pytest.fixture(scope="module")
def sample_models(sample: pd.DataFrame, sample_dataset: Dataset) -> dict[str, ScoringModel]:
    train = sample.iloc[:600]
    target = (train[sample_dataset.target_column] == sample_dataset.positive_class).to_numpy(dtype=int)
    models = {}
    for model_input in INPUTS:
        settings = Model(embedding_size=8, input=model_input, threshold=0.1, params=FAST_PARAMS)
        models[model_input] = fit_model(train, target, sample_dataset, settings, version="v1", seed=1)
    return models


# -------------------------------------------------------------------------------------- additivity


@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
@pytest.mark.parametrize("model_input", INPUTS)
def test_contributions_and_base_value_give_the_margin(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame, model_input: str, approximate: bool
) -> None:
    model = tiny_models[model_input]
    explanations = explain(model, synthetic, approximate=approximate)

    assert explanations.contributions.shape == (len(synthetic), 3)
    np.testing.assert_allclose(
        explanations.contributions.sum(axis=1) + explanations.base_value, margin(model, synthetic), atol=1e-4
    )
    # and the margin is the score's: the probability is its logistic
    probability = 1 / (1 + np.exp(-(explanations.contributions.sum(axis=1) + explanations.base_value)))
    np.testing.assert_allclose(probability, model.score(synthetic)[0], atol=1e-5)


@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
@pytest.mark.parametrize("model_input", INPUTS)
def test_contributions_give_the_margin_on_the_sample(
    sample_models: dict[str, ScoringModel], sample: pd.DataFrame, model_input: str, approximate: bool
) -> None:
    model, rows = sample_models[model_input], sample.iloc[600:]
    explanations = explain(model, rows, approximate=approximate)

    assert explanations.feature_names == model.feature_names
    assert explanations.contributions.shape == (len(rows), len(model.feature_names))
    np.testing.assert_allclose(
        explanations.contributions.sum(axis=1) + explanations.base_value, margin(model, rows), atol=1e-4
    )


def test_exact_and_approximate_share_the_base_value_but_not_the_split(
    sample_models: dict[str, ScoringModel], sample: pd.DataFrame
) -> None:
    rows = sample.iloc[600:]
    exact = explain(sample_models["features"], rows)
    approximate = explain(sample_models["features"], rows, approximate=True)
    assert exact.base_value == pytest.approx(approximate.base_value, abs=1e-6)
    assert not np.allclose(exact.contributions, approximate.contributions)


def test_an_empty_chunk_gets_empty_explanations_and_the_base_value(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame
) -> None:
    model = tiny_models["both"]
    empty = explain(model, synthetic.iloc[:0])
    assert empty.contributions.shape == (0, 3)
    assert empty.reason_features.shape == (0, 4)
    assert empty.base_value == pytest.approx(explain(model, synthetic.iloc[:5]).base_value)
    assert all(len(column) == 0 for column in to_arrow(empty).values())


# ----------------------------------------------------------------------------- original features


def test_one_hot_columns_sum_into_their_categorical_feature(
    sample_models: dict[str, ScoringModel], sample: pd.DataFrame, sample_dataset: Dataset
) -> None:
    model, rows = sample_models["features"], sample.iloc[600:]
    x, _ = classifier_input(model.embedding, rows[model.feature_names], "features")
    raw = tree_contributions(model.classifier, x)[:, :-1]
    names = list(model.embedding.preprocess.get_feature_names_out())
    encoder = model.embedding.preprocess.named_transformers_["categorical"][-1]
    explanations = explain(model, rows)

    for feature, categories in zip(sample_dataset.categorical, encoder.categories_, strict=True):
        columns = [names.index(f"categorical__{feature}_{category}") for category in categories]
        assert len(columns) > 1
        np.testing.assert_allclose(
            explanations.contributions[:, model.feature_names.index(feature)], raw[:, columns].sum(axis=1), atol=1e-6
        )
    for feature in sample_dataset.numeric:
        np.testing.assert_allclose(
            explanations.contributions[:, model.feature_names.index(feature)],
            raw[:, names.index(f"numeric__{feature}")],
            atol=1e-6,
        )


def test_feature_origins_read_the_layout_not_the_names() -> None:
    # "a" with category "b_c" and "a_b" with category "c" both give the column name "a_b_c"
    dataset = Dataset(
        id_column="id",
        target_column="y",
        classes=("n", "p"),
        features=[
            {"name": "a", "kind": "categorical"},
            {"name": "num_x", "kind": "numeric"},
            {"name": "a_b", "kind": "categorical"},
            {"name": "empty", "kind": "numeric"},
        ],
    )
    frame = pd.DataFrame(
        {"a": ["b_c", "x", "b_c"], "num_x": [1.0, 2.0, 3.0], "a_b": ["c", "c", "d_e"], "empty": [np.nan] * 3}
    )
    with pytest.warns(UserWarning, match="without any observed values"):  # the all-missing column is dropped
        preprocess = build_preprocess(dataset).fit(frame)

    origins = feature_origins(preprocess, dataset.feature_names)

    # numeric first (num_x; empty has no column), then the one-hots of a (2) and a_b (2)
    assert [dataset.feature_names[i] for i in origins] == ["num_x", "a", "a", "a_b", "a_b"]


def test_a_constant_feature_gets_zero(synthetic: pd.DataFrame) -> None:
    section = tiny_dataset_section()
    section["features"] = [*section["features"], {"name": "flat", "kind": "numeric"}]
    dataset = Dataset(**section)
    frame = synthetic.assign(flat=7.0)
    for model_input in INPUTS:
        model = tiny_model(frame, dataset, model_input)
        explanations = explain(model, frame)
        flat = explanations.contributions[:, dataset.feature_names.index("flat")]
        assert np.abs(flat).max() == 0.0, model_input
        assert np.abs(explanations.contributions).sum(axis=0).min() == 0.0  # the others do matter
        assert np.count_nonzero(np.abs(explanations.contributions).sum(axis=0)) == 3


# ------------------------------------------------------------------------------------ PCA chaining


def test_chaining_splits_each_component_over_the_columns_that_moved_the_record() -> None:
    components = np.array([[0.5, 0.25, 0.0], [0.0, 0.0, 1.0]])
    displacement = np.array(
        [
            [1.0, 1.0, 0.0],  # both columns push component 0 up, by 0.5 and 0.25
            [2.0, -1.0, 0.0],  # z_0 = 0.75 > 0: only column 0 pushed it there
            [1.0, -2.0, 0.0],  # z_0 = 0: the + side, column 0 again
            [0.0, 0.0, 0.0],  # at the mean: shares are the squared loadings, 0.8 and 0.2
        ]
    )
    phi = np.array([[1.5, 0.5], [1.0, -0.3], [2.0, 0.0], [1.0, 0.25]])

    out = chain_through_pca(phi, displacement, components)

    np.testing.assert_allclose(out.sum(axis=1), phi.sum(axis=1))
    np.testing.assert_allclose(out[0], [1.0, 0.5, 0.5])  # component 1: the record is at its mean, W² = [0, 0, 1]
    np.testing.assert_allclose(out[1], [1.0, 0.0, -0.3])
    np.testing.assert_allclose(out[2], [2.0, 0.0, 0.0])
    np.testing.assert_allclose(out[3], [0.8, 0.2, 0.25])


def test_chaining_of_random_values_is_additive_and_bounded() -> None:
    rng = np.random.default_rng(0)
    displacement, components, phi = rng.normal(size=(200, 9)), rng.normal(size=(4, 9)), rng.normal(size=(200, 4))
    out = chain_through_pca(phi, displacement, components)
    np.testing.assert_allclose(out.sum(axis=1), phi.sum(axis=1), atol=1e-12)
    assert (np.abs(out).sum(axis=1) <= np.abs(phi).sum(axis=1) + 1e-12).all()  # shares in [0, 1]


# ------------------------------------------------------------------------------------------ reasons


@pytest.mark.parametrize("model_input", INPUTS)
def test_the_top_reason_of_a_record_pushed_to_an_extreme_is_that_feature(
    tiny_models: dict[str, ScoringModel], model_input: str
) -> None:
    # amount raises the risk in the synthetic target; the rest of the record is ordinary
    record = pd.DataFrame({"record_id": ["r"], "amount": [100.0], "rate": [5.0], "colour": ["red"]})
    reasons = explain(tiny_models[model_input], record).reasons(0)
    assert reasons[0].feature == "amount"
    assert reasons[0].value == "100"


@pytest.mark.parametrize("model_input", INPUTS)
def test_on_the_sample_a_pushed_interest_rate_is_the_top_reason(
    sample_models: dict[str, ScoringModel], sample: pd.DataFrame, sample_dataset: Dataset, model_input: str
) -> None:
    record = sample.iloc[[0]].copy()
    for feature in sample_dataset.numeric:
        record[feature] = sample[feature].median()
    record["int_rate"] = sample["int_rate"].quantile(0.999)
    top = explain(sample_models[model_input], record).reasons(0)[0]
    assert top.feature == "int_rate"
    assert top.contribution > 0


@pytest.mark.parametrize("top_k", [0, 1, 2, 4, 10])
def test_top_k_is_respected_and_holds_the_largest_positive_contributions(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame, top_k: int
) -> None:
    explanations = explain(tiny_models["features"], synthetic, top_k=top_k)
    assert explanations.top_k == top_k
    assert explanations.reason_features.shape == (len(synthetic), top_k)
    for row, contributions in enumerate(explanations.contributions):
        positive = sorted((c for c in contributions if c > 0), reverse=True)[:top_k]
        reasons = explanations.reasons(row)
        assert [r.contribution for r in reasons] == pytest.approx(positive)
        names = [explanations.feature_names[int(np.flatnonzero(contributions == c)[0])] for c in positive]
        assert [r.feature for r in reasons] == names


def test_a_row_with_fewer_positive_contributions_than_k_leaves_slots_empty(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame
) -> None:
    explanations = explain(tiny_models["features"], synthetic, top_k=3)
    positives = (explanations.contributions > 0).sum(axis=1)
    assert (positives < 3).any()  # the frame has such rows
    filled = explanations.reason_features >= 0
    assert (filled.sum(axis=1) == positives).all()
    assert np.isnan(explanations.reason_contributions[~filled]).all()
    assert len(explanations.reason_values) == filled.sum()  # a value for each filled slot only
    assert (filled[:, :-1] >= filled[:, 1:]).all()  # filled slots come first


def test_reason_values_are_the_records_values_as_text(tiny_models: dict[str, ScoringModel]) -> None:
    records = pd.DataFrame(
        {"record_id": ["a", "b"], "amount": [99.5, 100.0], "rate": [np.nan, 12.25], "colour": ["blue", "blue"]}
    )
    explanations = explain(tiny_models["features"], records, top_k=3)
    values = {(row, r.feature): r.value for row in range(2) for r in explanations.reasons(row)}
    expected = {(0, "amount"): "99.5", (0, "rate"): None, (0, "colour"): "blue"}
    expected |= {(1, "amount"): "100", (1, "rate"): "12.25", (1, "colour"): "blue"}
    assert values and all(expected[key] == value for key, value in values.items())


def test_reason_text_names_the_feature_and_its_value() -> None:
    assert reason_text(Reason("int_rate", 0.8, "24.1"), 0) == "int_rate = 24.1 raised the risk most"
    assert reason_text(Reason("term", 0.2, "term_60"), 1) == "term = term_60 raised the risk"
    assert reason_text(Reason("emp_length", 0.1, None), 2) == "emp_length = missing raised the risk"


# ------------------------------------------------------------------------------------------- outputs


def test_to_arrow_gives_columns_aligned_with_the_rows(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame
) -> None:
    explanations = explain(tiny_models["both"], synthetic, top_k=2)
    columns = to_arrow(explanations)

    assert set(columns) == {"base_value", "contributions", "reasons"}
    assert all(len(column) == len(synthetic) for column in columns.values())
    assert columns["base_value"].type == pa.float64()
    assert columns["contributions"].type == pa.list_(pa.float32())
    reason = pa.struct([("feature", pa.string()), ("contribution", pa.float64()), ("value", pa.string())])
    assert columns["reasons"].type == pa.list_(reason)
    table = pa.table(columns)  # appendable to a chunk as is
    assert table.column("base_value").to_pylist() == [explanations.base_value] * len(synthetic)
    np.testing.assert_allclose(
        np.array(table.column("contributions").to_pylist()), explanations.contributions, rtol=1e-6, atol=1e-7
    )
    for row in (0, 1, 17, len(synthetic) - 1):
        stored = table.column("reasons")[row].as_py()
        assert stored == [
            {"feature": r.feature, "contribution": r.contribution, "value": r.value} for r in explanations.reasons(row)
        ]


def test_explanations_are_the_same_alone_or_in_a_chunk(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame
) -> None:
    whole = explain(tiny_models["embedding"], synthetic)
    alone = explain(tiny_models["embedding"], synthetic.iloc[[7]])
    np.testing.assert_allclose(alone.contributions, whole.contributions[[7]], atol=1e-5)
    assert isinstance(alone, Explanations) and alone.reasons(0)[0].feature == whole.reasons(7)[0].feature


def test_global_importance_is_the_mean_absolute_contribution(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame
) -> None:
    model = tiny_models["both"]
    importance = global_importance(model, synthetic, chunk_rows=70)  # 5 chunks, the last one short

    assert list(importance.index) == model.feature_names
    expected = np.abs(explain(model, synthetic).contributions).mean(axis=0)
    np.testing.assert_allclose(importance.to_numpy(), expected, rtol=1e-6)
    assert importance.idxmax() == "amount"
    with pytest.raises(ValueError, match="at least one row"):
        global_importance(model, synthetic.iloc[:0])


@pytest.mark.parametrize("model_input", INPUTS)
def test_score_and_explain_gives_what_score_and_explain_give_apart(
    tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame, model_input: str
) -> None:
    model = tiny_models[model_input]
    scores, labels, vectors, explanations = score_and_explain(model, synthetic, top_k=2)
    for together, apart in zip((scores, labels, vectors), model.score(synthetic), strict=True):
        assert np.array_equal(together, apart)
    alone = explain(model, synthetic, top_k=2)
    assert np.array_equal(explanations.contributions, alone.contributions)
    assert np.array_equal(explanations.reason_features, alone.reason_features)


def test_a_negative_top_k_is_refused(tiny_models: dict[str, ScoringModel], synthetic: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="top_k"):
        explain(tiny_models["features"], synthetic, top_k=-1)
