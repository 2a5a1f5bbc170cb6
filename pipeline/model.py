"""The embedding (impute, scale, one-hot, PCA), the XGBoost classifier, and how both are fitted and applied.

A `ScoringModel` is everything a model version needs at scoring time; the scorer takes one and
never loads anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from xgboost import XGBClassifier

from pipeline.config import ConfigError, Dataset, Model

ModelInput = Literal["embedding", "features", "both"]


def build_preprocess(dataset: Dataset) -> ColumnTransformer:
    """Median-impute and scale numerics; impute and one-hot categoricals (unknown values become all zeros)."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, dataset.numeric), ("categorical", categorical, dataset.categorical)],
        sparse_threshold=0.0,
    )


@dataclass(frozen=True)
class Embedding:
    """The fitted preprocessing and PCA; `transform` gives the embedding vector of each row."""

    preprocess: ColumnTransformer
    pca: PCA

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.preprocess.transform(frame), dtype=np.float32)

    def project(self, features: np.ndarray) -> np.ndarray:
        """PCA's projection (never whitened here), computed in float64 and rounded to float32.

        A float32 product's last bits depend on how BLAS cuts the batch (its size, the position of the row,
        the threads): measured, 8 of 429 rows got other float32 embeddings when scored in other units on
        Dask workers. The float64 product's variations are far below float32's precision, so the rounded
        vector is the same whichever batch, process or machine scores the row.
        """
        centred = np.asarray(features, dtype=np.float64) - self.pca.mean_
        return np.asarray(centred @ self.pca.components_.T.astype(np.float64), dtype=np.float32)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.project(self.features(frame))


def fit_embedding(frame: pd.DataFrame, dataset: Dataset, size: int, seed: int) -> Embedding:
    preprocess = build_preprocess(dataset)
    features = np.asarray(preprocess.fit_transform(frame[dataset.feature_names]), dtype=np.float32)
    if size > features.shape[1]:
        raise ConfigError(
            f"model.embedding_size is {size} but the preprocessed features have only {features.shape[1]} columns "
            f"(numeric features plus the one-hot columns of the categorical ones): set model.embedding_size to at "
            f"most {features.shape[1]}"
        )
    pca = PCA(n_components=size, random_state=seed).fit(features)
    return Embedding(preprocess=preprocess, pca=pca)


def classifier_input(
    embedding: Embedding, frame: pd.DataFrame, model_input: ModelInput
) -> tuple[np.ndarray, np.ndarray]:
    """What the classifier sees for `frame`, and the embedding (always computed: it is stored)."""
    features = embedding.features(frame)
    vectors = embedding.project(features)
    if model_input == "embedding":
        return vectors, vectors
    if model_input == "features":
        return features, vectors
    return np.hstack([features, vectors]), vectors


def fit_classifier(
    x: np.ndarray, y: np.ndarray, params: dict[str, float | int | str | bool], seed: int
) -> XGBClassifier:
    settings: dict[str, float | int | str | bool] = {"random_state": seed, "n_jobs": 2, "eval_metric": "auc"}
    settings.update(params)
    return XGBClassifier(**settings).fit(x, y)


@dataclass(frozen=True)
class ScoringModel:
    """A model version as scoring uses it."""

    version: str
    embedding: Embedding
    classifier: XGBClassifier
    model_input: ModelInput
    threshold: float
    classes: tuple[str, str]  # negative, positive
    feature_names: list[str]

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probability of the positive class, the label at the threshold, and the embedding, per row."""
        x, vectors = classifier_input(self.embedding, frame[self.feature_names], self.model_input)
        scores = self.classifier.predict_proba(x)[:, 1].astype(np.float64)
        labels = np.where(scores >= self.threshold, self.classes[1], self.classes[0])
        return scores, labels, vectors


def fit_model(
    train: pd.DataFrame, target: np.ndarray, dataset: Dataset, model: Model, *, version: str, seed: int
) -> ScoringModel:
    """Fit the embedding and the classifier on `train`; `target` is 1 for the positive class."""
    embedding = fit_embedding(train, dataset, model.embedding_size, seed)
    x, _ = classifier_input(embedding, train[dataset.feature_names], model.input)
    classifier = fit_classifier(x, target, model.params, seed)
    return ScoringModel(
        version=version,
        embedding=embedding,
        classifier=classifier,
        model_input=model.input,
        threshold=model.threshold,
        classes=dataset.classes,
        feature_names=dataset.feature_names,
    )
