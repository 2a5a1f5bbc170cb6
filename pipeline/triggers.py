"""Deciding whether retraining is due: every k new labels, a drift alert, or a drop in quality."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.config import Settings
from pipeline.metrics import bootstrap_interval, classification_metrics


@dataclass(frozen=True)
class RetrainDue:
    due: bool
    fired: list[str]  # which triggers fired: labels, drift, quality
    reasons: list[str]  # one sentence per trigger that fired

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no trigger fired"


@dataclass(frozen=True)
class Measured:
    """A quality metric with its confidence interval and the number of labels behind it."""

    value: float
    low: float
    high: float
    labels: int


def measure_quality(y_true: np.ndarray, scores: np.ndarray, threshold: float, metric: str, seed: int) -> Measured:
    """`metric` on these labels, with its 90% bootstrap interval."""
    if len(y_true) == 0:
        return Measured(value=math.nan, low=math.nan, high=math.nan, labels=0)
    value = classification_metrics(y_true, scores, threshold)[metric]
    low, high = bootstrap_interval(y_true, scores, threshold, metric, seed=seed)
    return Measured(value=value, low=low, high=high, labels=len(y_true))


def quality_dropped(window: Measured, champion: Measured, settings: Settings) -> bool:
    """True when realised quality, on enough labels, fell more than the allowed drop below the champion's
    hold-out value, and beyond noise: the two confidence intervals do not overlap."""
    monitoring = settings.monitoring
    numbers = (window.value, window.high, champion.value, champion.low)
    if window.labels < monitoring.min_labels or not all(math.isfinite(n) for n in numbers):
        return False
    return champion.value - window.value > monitoring.max_quality_drop and window.high < champion.low


def retrain_due(
    *,
    new_labels: int,
    drifted_share: float,
    quality: Measured,
    champion_quality: Measured,
    settings: Settings,
) -> RetrainDue:
    """Apply the configured triggers to what the monitor measured."""
    retrain, monitoring = settings.retrain, settings.monitoring
    fired: list[str] = []
    reasons: list[str] = []
    if new_labels >= retrain.every_new_labels:
        fired.append("labels")
        reasons.append(f"{new_labels} new labels since the last training (every {retrain.every_new_labels})")
    if retrain.on_drift and drifted_share > monitoring.drift_share_threshold:
        fired.append("drift")
        reasons.append(f"drifted share {drifted_share:.2f} above {monitoring.drift_share_threshold:.2f}")
    if retrain.on_quality_drop and quality_dropped(quality, champion_quality, settings):
        fired.append("quality")
        reasons.append(
            f"{monitoring.quality_metric} {quality.value:.3f} on {quality.labels} labels is more than "
            f"{monitoring.max_quality_drop} below the champion's {champion_quality.value:.3f}, beyond noise"
        )
    return RetrainDue(due=bool(fired), fired=fired, reasons=reasons)
