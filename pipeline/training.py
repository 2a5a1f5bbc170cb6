"""Training a model version on a labelled reference set and measuring it on a held-out slice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline.config import Dataset, Model, Settings
from pipeline.explain import Explainer
from pipeline.metrics import classification_metrics
from pipeline.model import ScoringModel, fit_model


@dataclass(frozen=True)
class TrainingResult:
    model: ScoringModel
    metrics: dict[str, float]  # on the hold-out, for the configured model input
    baselines: dict[str, dict[str, float]]  # the same classifier on each other input (model.compare_inputs only)
    train: pd.DataFrame
    holdout: pd.DataFrame


# Validation stores the configured event-time column under this one name (as `records` does).
EVENT_TIME = "event_time"


def reference_slice(frame: pd.DataFrame, fraction: float, dataset: Dataset) -> pd.DataFrame:
    """The leading `fraction` of the reference file (by event time when configured, else file order).

    Takes the validated rows, where the event-time column is called `event_time` whatever its name in
    the file; the file's own name is accepted too, for frames read straight from the file.
    """
    if dataset.event_time_column:
        column = EVENT_TIME if EVENT_TIME in frame.columns else dataset.event_time_column
        if column not in frame.columns:
            raise ValueError(
                f"dataset.event_time_column is {dataset.event_time_column!r} but the reference rows have no such "
                "column: add it to the reference file or remove the setting"
            )
        frame = frame.sort_values(column, kind="stable")
    return frame.head(round(len(frame) * fraction)).reset_index(drop=True)


def binary_target(labels: pd.Series, dataset: Dataset) -> np.ndarray:
    """1 for the positive class, 0 for the negative; anything else is an error naming the values."""
    unknown = sorted(set(labels.dropna().astype(str)) - set(dataset.classes))
    if unknown or labels.isna().any():
        raise ValueError(
            f"target column {dataset.target_column!r} must hold only {list(dataset.classes)}; "
            f"found {unknown[:5] or 'missing values'}"
        )
    return (labels.astype(str) == dataset.positive_class).to_numpy(dtype=int)


def train_and_evaluate(reference: pd.DataFrame, settings: Settings, *, version: str) -> TrainingResult:
    """Split `reference` (stratified, seeded), fit on one part, measure on the other.

    With `model.compare_inputs`, also fits the same classifier on the other model inputs, so the
    registry records what the embedding costs or gains against the raw preprocessed features; by
    default it fits only the configured one (the comparison tripled the cost of every `train`).
    """
    dataset, seed = settings.dataset, settings.training.seed
    y = binary_target(reference[dataset.target_column], dataset)
    train, holdout, y_train, y_holdout = train_test_split(
        reference, y, test_size=settings.training.holdout_fraction, random_state=seed, stratify=y
    )
    model = fit_model(train, y_train, dataset, settings.model, version=version, seed=seed)
    metrics = classification_metrics(y_holdout, model.score(holdout)[0], model.threshold)
    baselines: dict[str, dict[str, float]] = {}
    others = [i for i in ("embedding", "features", "both") if i != settings.model.input]
    for other in others if settings.model.compare_inputs else []:
        if other != settings.model.input:
            alternative = Model(**{**settings.model.model_dump(), "input": other})
            candidate = fit_model(train, y_train, dataset, alternative, version=version, seed=seed)
            baselines[other] = classification_metrics(y_holdout, candidate.score(holdout)[0], candidate.threshold)
    return TrainingResult(
        model=model,
        metrics=metrics,
        baselines=baselines,
        train=train.reset_index(drop=True),
        holdout=holdout.reset_index(drop=True),
    )


def reference_set(model: ScoringModel, train: pd.DataFrame, holdout: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """A version's training data as monitoring compares against it: features, target, embedding, score, and
    each row's contributions (exact TreeSHAP, whatever `[explain]` says: the version's global importance and
    the reference of the explanation drift are read from them)."""
    explainer = Explainer.of(model, top_k=0)
    parts = []
    for split, frame in (("train", train), ("holdout", holdout)):
        scores, _, vectors, explanations = explainer.score_and_explain(frame)
        part = frame[["record_id", *dataset.feature_names]].copy()
        part.insert(1, "split", split)
        part.insert(2, "target", frame[dataset.target_column].astype(str).to_numpy())
        part["embedding"] = list(vectors)
        part["score"] = scores
        part["contributions"] = list(explanations.contributions.astype(np.float32))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
