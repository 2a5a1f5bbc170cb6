"""Deciding whether retraining is due: every k new labels, a drift alert, or a drop in quality."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import Settings


@dataclass(frozen=True)
class RetrainDue:
    due: bool
    fired: list[str]  # which triggers fired: labels, drift, quality
    reasons: list[str]  # one sentence per trigger that fired

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no trigger fired"


def quality_dropped(value: float, upper_bound: float, champion_value: float, labels: int, settings: Settings) -> bool:
    """True when realised quality, on enough labels, fell more than the allowed drop below the champion's,
    and the drop is beyond noise: the upper confidence bound of the value is below the champion's too."""
    monitoring = settings.monitoring
    numbers = (value, upper_bound, champion_value)
    if labels < monitoring.min_labels or not all(math.isfinite(n) for n in numbers):
        return False
    return champion_value - value > monitoring.max_quality_drop and upper_bound < champion_value


def retrain_due(
    *,
    new_labels: int,
    drifted_share: float,
    quality: float,
    quality_upper_bound: float,
    quality_labels: int,
    champion_quality: float,
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
    if retrain.on_quality_drop and quality_dropped(
        quality, quality_upper_bound, champion_quality, quality_labels, settings
    ):
        fired.append("quality")
        reasons.append(
            f"{monitoring.quality_metric} {quality:.3f} on {quality_labels} labels is more than "
            f"{monitoring.max_quality_drop} below the champion's {champion_quality:.3f}"
        )
    return RetrainDue(due=bool(fired), fired=fired, reasons=reasons)
