"""The decision rules on hand-made inputs: the guard blocks, the quality test says what it could see."""

from __future__ import annotations

import math

import numpy as np

from pipeline.promotion import PromotionRule, test_promotion
from pipeline.quality_alert import QualityRule, minimum_detectable_drop, test_quality
from pipeline.stats import Estimate


def test_a_better_ranking_with_a_much_worse_recall_at_the_threshold_is_not_promoted() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-(2 * signal - 1)))).astype(int)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(scale=1.0, size=4000))))
    challenger = 1 / (1 + np.exp(-(2 * signal - 3)))  # ranks better, but scores far lower
    guarded = PromotionRule(metric="roc_auc", min_improvement=0.005, guard_metric="recall", guard_tolerance=0.02)
    decision = test_promotion(y, champion, challenger, guarded, thresholds=(0.5, 0.5))
    assert decision.gain_low > 0.005  # the primary test alone would promote
    assert not decision.promote and decision.guard_gain < -0.1 and decision.guard_p_value < 0.05
    assert "significantly worse" in decision.reason
    unguarded = PromotionRule(metric="roc_auc", min_improvement=0.005, guard_metric=None)
    assert test_promotion(y, champion, challenger, unguarded, thresholds=(0.5, 0.5)).promote


def test_the_decision_stores_what_it_rests_on() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=500)
    scores = rng.uniform(size=500)
    decision = test_promotion(y, scores, scores, PromotionRule(metric="f1", min_improvement=0.0), thresholds=(0.5, 0.5))
    assert not decision.promote and decision.gain == 0 and decision.p_value == 1.0
    assert decision.rows == 500 and decision.positives == int(y.sum()) and "paired bootstrap" in decision.method


def estimate(value: float, se: float, rows: int, positives: int) -> Estimate:
    return Estimate(value=value, se=se, rows=rows, positives=positives, method="DeLong")


def test_a_significant_material_drop_alerts() -> None:
    rule = QualityRule()
    verdict = test_quality("roc_auc", estimate(0.70, 0.01, 4000, 800), estimate(0.76, 0.01, 3000, 600), rule)
    assert verdict.status == "alert" and verdict.p_value < 0.05 and math.isclose(verdict.drop, 0.06)


def test_a_quiet_window_on_few_labels_says_too_few_labels_to_tell() -> None:
    rule = QualityRule()
    verdict = test_quality("roc_auc", estimate(0.74, 0.05, 300, 120), estimate(0.76, 0.02, 3000, 600), rule)
    assert verdict.status == "too_few_labels" and verdict.min_detectable_drop > rule.detectable_drop
    assert verdict.detail.startswith("Too few labels to tell")
    rare = test_quality("roc_auc", estimate(0.60, 0.01, 5000, 60), estimate(0.76, 0.01, 3000, 600), rule)
    assert rare.status == "too_few_labels" and "rarer class" in rare.detail  # a big drop on 60 positives


def test_a_tiny_significant_drop_on_a_huge_window_is_not_material() -> None:
    verdict = test_quality(
        "roc_auc", estimate(0.755, 0.001, 200_000, 40_000), estimate(0.760, 0.001, 50_000, 10_000), QualityRule()
    )
    assert verdict.p_value < 0.01 and verdict.status == "ok"


def test_the_detectable_drop_grows_with_the_standard_error() -> None:
    assert minimum_detectable_drop(0.02, 0.05, 0.8) > minimum_detectable_drop(0.01, 0.05, 0.8)
    assert math.isclose(minimum_detectable_drop(0.01, 0.05, 0.8), 0.0249, abs_tol=1e-3)
