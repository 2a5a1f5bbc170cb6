"""Challengers: what they train on, how, and the comparison that decides whether one is promoted.

The comparison is fair by construction: champion and challenger are measured on the same held-out
rows, which neither trained on: the champion's own hold-out plus the latest labelled production rows
(time-ordered, so the challenger is judged on the future it will face).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from xgboost import XGBClassifier

from pipeline.config import Dataset, Settings
from pipeline.metrics import classification_metrics
from pipeline.model import ScoringModel, classifier_input, fit_model
from pipeline.training import binary_target


@dataclass(frozen=True)
class RetrainData:
    train: pd.DataFrame  # record_id, features, target column
    holdout: pd.DataFrame
    new_rows: int  # labelled production rows not in the champion's training data


def split_for_retraining(
    champion_reference: pd.DataFrame, production: pd.DataFrame, dataset: Dataset, holdout_fraction: float
) -> RetrainData:
    """Training and held-out rows for a challenger.

    `champion_reference` is the champion's reference set (`split` train/holdout, `target`);
    `production` is labelled production rows (`target`, `labelled_at`). Production rows the champion
    already saw are left out; of the rest, the latest `holdout_fraction` (by label time) is held out.
    """
    columns = ["record_id", *dataset.feature_names, "target"]
    seen = set(champion_reference["record_id"])
    new = production[~production["record_id"].isin(seen)].sort_values(["labelled_at", "record_id"], kind="stable")
    cut = len(new) - int(np.ceil(len(new) * holdout_fraction))
    train = pd.concat([champion_reference[champion_reference["split"] == "train"][columns], new.iloc[:cut][columns]])
    holdout = pd.concat(
        [champion_reference[champion_reference["split"] == "holdout"][columns], new.iloc[cut:][columns]]
    )
    rename = {"target": dataset.target_column}
    return RetrainData(
        train=train.rename(columns=rename).reset_index(drop=True),
        holdout=holdout.rename(columns=rename).reset_index(drop=True),
        new_rows=len(new),
    )


def train_challenger(data: RetrainData, settings: Settings, champion: ScoringModel, *, version: str) -> ScoringModel:
    """A new model version: fitted from scratch, or the champion's booster trained further (warm start)."""
    dataset, seed = settings.dataset, settings.training.seed
    y = binary_target(data.train[dataset.target_column], dataset)
    if settings.retrain.strategy == "scratch":
        return fit_model(data.train, y, dataset, settings.model, version=version, seed=seed)
    # Warm start keeps the champion's embedding: the booster's input columns must not change.
    x, _ = classifier_input(champion.embedding, data.train[dataset.feature_names], champion.model_input)
    params = {**champion.classifier.get_params(), "n_estimators": settings.retrain.warm_start_rounds}
    classifier = XGBClassifier(**params).fit(x, y, xgb_model=champion.classifier.get_booster())
    return ScoringModel(
        version=version,
        embedding=champion.embedding,
        classifier=classifier,
        model_input=champion.model_input,
        threshold=champion.threshold,
        classes=champion.classes,
        feature_names=champion.feature_names,
    )


@dataclass(frozen=True)
class Comparison:
    metric: str
    champion: dict[str, float]
    challenger: dict[str, float]
    margin: float
    holdout_rows: int
    promote: bool
    reason: str


def compare(
    champion: ScoringModel,
    challenger: ScoringModel,
    holdout: pd.DataFrame,
    dataset: Dataset,
    metric: str,
    margin: float,
) -> Comparison:
    """Measure both on the same held-out rows; the challenger wins only by at least `margin` on `metric`."""
    y = binary_target(holdout[dataset.target_column], dataset)
    old = classification_metrics(y, champion.score(holdout)[0], champion.threshold)
    new = classification_metrics(y, challenger.score(holdout)[0], challenger.threshold)
    gain = new[metric] - old[metric]
    promote = bool(np.isfinite(gain) and gain >= margin)
    verdict = "promoted" if promote else "rejected"
    reason = (
        f"{verdict}: {challenger.version} {metric} {new[metric]:.4f} vs champion {champion.version} {old[metric]:.4f} "
        f"on the same {len(holdout)} held-out rows ({gain:+.4f}; needs at least +{margin:.4f})"
    )
    return Comparison(
        metric=metric,
        champion=old,
        challenger=new,
        margin=margin,
        holdout_rows=len(holdout),
        promote=promote,
        reason=reason,
    )
