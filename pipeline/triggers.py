"""Deciding whether retraining is due: every k new labels, or an alert episode that has not retrained yet.

The alerts themselves are tested elsewhere (`pipeline.drift`, `pipeline.quality_alert`) and grouped
into episodes (`pipeline.episodes`), which already apply the once-per-episode rule and the cool-down;
here the configured switches decide which of those retrains count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import Settings

# Which alert each switch of [retrain] covers: any drift alert (features, embedding or the score) is drift.
DRIFT_ALERTS = frozenset({"drift", "prediction_drift"})
QUALITY_ALERTS = frozenset({"quality"})


@dataclass(frozen=True)
class RetrainDue:
    due: bool
    fired: list[str]  # which triggers fired: labels, drift, prediction_drift, quality
    reasons: list[str]  # one sentence per trigger that fired

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no trigger fired"


def retrain_alerts(settings: Settings) -> frozenset[str]:
    """The alerts whose episodes may start a retrain, by the [retrain] switches."""
    retrain = settings.retrain
    return (DRIFT_ALERTS if retrain.on_drift else frozenset()) | (
        QUALITY_ALERTS if retrain.on_quality_drop else frozenset()
    )


def retrain_due(*, new_labels: int, episodes_retraining: Sequence[str], settings: Settings) -> RetrainDue:
    """Apply the label counter and the episodes that retrain now (already filtered by `retrain_alerts`)."""
    retrain = settings.retrain
    fired: list[str] = []
    reasons: list[str] = []
    if new_labels >= retrain.every_new_labels:
        fired.append("labels")
        reasons.append(f"{new_labels} new labels since the last training (every {retrain.every_new_labels})")
    for alert in episodes_retraining:
        fired.append(alert)
        reasons.append(f"a {alert.replace('_', ' ')} alert episode opened and has not retrained yet")
    return RetrainDue(due=bool(fired), fired=fired, reasons=reasons)
