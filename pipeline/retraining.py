"""Challengers: what they train on, how, and the comparison that decides whether one is promoted.

The comparison rows are fresh: labelled production rows that neither model trained on and that no
earlier decision looked at (labelled after the last decision's `compared_until`), the latest ones by
label time, so the challenger is judged on the future it will face. Reusing one comparison set round
after round would select the challenger that fits its noise best (winner's curse); rows an earlier
decision used go to training instead. The decision itself is `pipeline.promotion`'s paired test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from xgboost import XGBClassifier

from pipeline.config import Dataset, Settings
from pipeline.metrics import classification_metrics
from pipeline.model import ScoringModel, classifier_input, fit_model
from pipeline.promotion import PromotionRule, PromotionTest, test_promotion
from pipeline.training import binary_target


@dataclass(frozen=True)
class RetrainData:
    train: pd.DataFrame  # record_id, features, target column
    holdout: pd.DataFrame  # the fresh comparison rows; the challenger's hold-out if it is promoted
    new_rows: int  # labelled production rows not in the champion's reference set
    compared_until: pd.Timestamp | None = None  # latest label time of the comparison rows
    inherited: frozenset[str] = frozenset()  # ids of the training rows that are the champion's reference set


def split_for_retraining(
    champion_reference: pd.DataFrame,
    production: pd.DataFrame,
    dataset: Dataset,
    holdout_fraction: float,
    compared_until: pd.Timestamp | None = None,
) -> RetrainData:
    """Training and fresh comparison rows for a challenger.

    `champion_reference` is the champion's reference set (`split` train/holdout, `target`);
    `production` is labelled production rows (`target`, `labelled_at`). Production rows in the
    champion's reference are left out of the comparison (the champion saw them). Of the rest, those
    labelled after `compared_until` are fresh, and the latest `holdout_fraction` of those (by label
    time, then id) are compared on; everything else trains the challenger.
    """
    seen = set(champion_reference["record_id"])
    new = production[~production["record_id"].isin(seen)].sort_values(["labelled_at", "record_id"], kind="stable")
    fresh = new if compared_until is None else new[new["labelled_at"] > compared_until]
    compared = fresh.iloc[len(fresh) - int(np.ceil(len(fresh) * holdout_fraction)) :]
    trained = new[~new["record_id"].isin(set(compared["record_id"]))]
    train, holdout = _assemble(champion_reference, trained, compared, dataset)
    return RetrainData(
        train=train,
        holdout=holdout,
        new_rows=len(new),
        compared_until=compared["labelled_at"].max() if len(compared) else None,
        inherited=frozenset(seen),
    )


def _assemble(
    champion_reference: pd.DataFrame, trained: pd.DataFrame, compared: pd.DataFrame, dataset: Dataset
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A challenger's training rows (the champion's whole reference set, then `trained`) and its comparison
    rows, with the target under the dataset's name. Every frame holds record_id, the features and `target`."""
    columns = ["record_id", *dataset.feature_names, "target"]
    rename = {"target": dataset.target_column}
    train = pd.concat([champion_reference[columns], trained[columns]]).rename(columns=rename)
    return train.reset_index(drop=True), compared[columns].rename(columns=rename).reset_index(drop=True)


def own_rows(data: RetrainData, dataset: Dataset) -> pd.DataFrame:
    """What a challenger trained and was compared on beyond its champion's reference set: record_id,
    split (train | holdout) and target. With the champion's reference set they are all its training data,
    so a rejected challenger stores only these (the `challenger_rows` table) instead of a copy of it all."""
    target = dataset.target_column
    added = data.train[~data.train["record_id"].isin(data.inherited)]
    parts = [
        frame[["record_id", target]].assign(split=split)
        for split, frame in (("train", added), ("holdout", data.holdout))
    ]
    rows = pd.concat(parts, ignore_index=True).rename(columns={target: "target"})
    return rows.assign(target=rows["target"].astype(str))[["record_id", "split", "target"]]


def rebuild_training_rows(
    champion_reference: pd.DataFrame, own: pd.DataFrame, dataset: Dataset
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A challenger's training and comparison rows again, from its champion's reference set and its own rows
    (`own_rows`, with each record's features): the rows its reference set is made of if it is promoted later."""
    split = own["split"]
    return _assemble(champion_reference, own[split == "train"], own[split == "holdout"], dataset)


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
    test: PromotionTest


def promotion_rule(settings: Settings) -> PromotionRule:
    """The promotion test's settings, from [retrain]."""
    retrain = settings.retrain
    return PromotionRule(
        metric=retrain.primary_metric,
        min_improvement=retrain.min_improvement,
        alpha=retrain.alpha,
        guard_metric=retrain.guard_metric,
        guard_tolerance=retrain.guard_tolerance,
        seed=settings.training.seed,
    )


def compare(
    champion: ScoringModel, challenger: ScoringModel, holdout: pd.DataFrame, dataset: Dataset, rule: PromotionRule
) -> Comparison:
    """Both models on the same fresh rows; the paired test decides (pipeline.promotion)."""
    y = binary_target(holdout[dataset.target_column], dataset)
    old_scores, new_scores = champion.score(holdout)[0], challenger.score(holdout)[0]
    test = test_promotion(
        y,
        old_scores,
        new_scores,
        rule,
        thresholds=(champion.threshold, challenger.threshold),
        names=(f"champion {champion.version}", challenger.version),
    )
    return Comparison(
        metric=rule.metric,
        champion=classification_metrics(y, old_scores, champion.threshold),
        challenger=classification_metrics(y, new_scores, challenger.threshold),
        margin=rule.min_improvement,
        holdout_rows=len(holdout),
        promote=test.promote,
        reason=test.reason,
        test=test,
    )
