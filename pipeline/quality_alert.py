"""The quality alert: a one-sided test of the window's metric against the champion's out-of-sample baseline.

H0: the window's metric is at least the baseline. The window and the baseline (the champion's
hold-out, rows it never trained on) are independent samples, so the standard error of the drop is
sqrt(se_window² + se_baseline²). An alert needs both a significant drop (p < alpha) and a drop of
at least `min_drop` (materiality: on 200k labels a drop of 0.002 is significant and irrelevant).

Every verdict states the smallest drop the window could have detected with `power`: when that is
larger than `detectable_drop`, a quiet window says "too few labels to tell" instead of "ok".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from pipeline.stats import Estimate

ALERT, OK, TOO_FEW = "alert", "ok", "too_few_labels"


@dataclass(frozen=True, kw_only=True)
class QualityRule:
    alpha: float = 0.05
    power: float = 0.8
    min_drop: float = 0.02
    detectable_drop: float = 0.05
    min_labels: int = 100
    # Labels of the rarer class, in the window and in the baseline. DeLong's normal approximation was
    # measured too liberal below that (bench/calibrate.py: 9% false alerts at level 5% on the sample's
    # windows of about 100 positives against a hold-out of 75), so fewer is "too few labels to tell".
    min_class_labels: int = 100


@dataclass(frozen=True, kw_only=True)
class QualityTest:
    metric: str
    value: float
    baseline: float
    drop: float
    se: float
    p_value: float
    min_detectable_drop: float
    labels: int
    positives: int
    status: str  # alert | ok | too_few_labels
    detail: str


def minimum_detectable_drop(se: float, alpha: float, power: float) -> float:
    """The true drop this one-sided test detects with probability `power` at level `alpha`."""
    return float((norm.ppf(1 - alpha) + norm.ppf(power)) * se)


def test_quality(metric: str, window: Estimate, baseline: Estimate, rule: QualityRule) -> QualityTest:
    """The verdict on one window; NaN numbers (no labels, one class) give "too few labels to tell"."""
    drop = baseline.value - window.value
    se = math.hypot(window.se, baseline.se)  # NaN when either is undefined
    p_value = float(norm.sf(drop / se)) if math.isfinite(drop) and se > 0 else math.nan
    mdd = minimum_detectable_drop(se, rule.alpha, rule.power) if math.isfinite(se) else math.nan
    enough = window.rows >= rule.min_labels and min(_rarer(window), _rarer(baseline)) >= rule.min_class_labels
    if enough and math.isfinite(p_value) and p_value < rule.alpha and drop >= rule.min_drop:
        status = ALERT
    elif not enough or not math.isfinite(mdd) or mdd > rule.detectable_drop:
        status = TOO_FEW
    else:
        status = OK
    return QualityTest(
        metric=metric,
        value=window.value,
        baseline=baseline.value,
        drop=drop,
        se=se,
        p_value=p_value,
        min_detectable_drop=mdd,
        labels=window.rows,
        positives=window.positives,
        status=status,
        detail=_detail(metric, window, baseline, drop, p_value, mdd, status, rule),
    )


def _rarer(estimate: Estimate) -> int:
    return min(estimate.positives, estimate.rows - estimate.positives)


test_quality.__test__ = False  # type: ignore[attr-defined]  # a decision, not a pytest test


def _detail(
    metric: str,
    window: Estimate,
    baseline: Estimate,
    drop: float,
    p_value: float,
    mdd: float,
    status: str,
    rule: QualityRule,
) -> str:
    basis = f"{window.rows:,} labels ({window.positives:,} positive)"
    if not math.isfinite(drop):
        return f"Too few labels to tell: {metric} is undefined on {basis}; it needs both classes."
    numbers = (
        f"{metric} {window.value:.4f} on {basis} vs the champion's out-of-sample {baseline.value:.4f} "
        f"on {baseline.rows:,} rows: drop {drop:+.4f}, one-sided p = {p_value:.3g} ({window.method}); "
        f"smallest drop detectable with {rule.power:.0%} power: {mdd:.4f}."
    )
    if status == ALERT:
        return f"Quality dropped: {numbers} Alert: p < {rule.alpha:g} and drop >= {rule.min_drop:g}."
    if status == TOO_FEW:
        if window.rows < rule.min_labels:
            why = f"fewer than {rule.min_labels} labels"
        elif min(_rarer(window), _rarer(baseline)) < rule.min_class_labels:
            why = f"fewer than {rule.min_class_labels} labels of the rarer class in the window or the baseline"
        else:
            why = f"it could not see a drop of {rule.detectable_drop:g}"
        return f"Too few labels to tell ({why}): {numbers}"
    return f"No significant drop: {numbers}"
