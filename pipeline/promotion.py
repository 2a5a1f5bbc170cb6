"""The promotion rule: a paired test of the challenger against the champion on fresh rows.

Promote only when the one-sided lower confidence bound (level `alpha`) of the gain in the primary
metric clears `min_improvement`, and never when the guard metric is significantly worse (by more
than `guard_tolerance`) at the same level. The p-value is that of the null "the gain is at most
`min_improvement`", so `promote` is exactly `p_value < alpha` when the guard holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy.typing as npt
from scipy.stats import norm

from pipeline.stats import DEFAULT_RESAMPLES, PairedDifference, paired_difference


@dataclass(frozen=True, kw_only=True)
class PromotionRule:
    metric: str
    min_improvement: float
    alpha: float = 0.05
    guard_metric: str | None = "recall"
    guard_tolerance: float = 0.0
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class PromotionTest:
    """The decision and every number it rests on (stored with the decision)."""

    metric: str
    champion: float
    challenger: float
    gain: float
    gain_low: float  # two-sided (1 − 2·alpha) interval: its low end is the one-sided bound the rule uses
    gain_high: float
    p_value: float
    method: str
    guard_metric: str | None
    guard_gain: float
    guard_high: float
    guard_p_value: float
    rows: int
    positives: int
    promote: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _upper_tail(z: float) -> float:
    return float(norm.sf(z)) if math.isfinite(z) else (0.0 if z > 0 else 1.0)


def _guard(
    y: npt.ArrayLike, old: npt.ArrayLike, new: npt.ArrayLike, rule: PromotionRule, thresholds: tuple[float, float]
) -> tuple[float, float, float, bool]:
    """Guard gain, its upper bound, the p-value of "worse by more than the tolerance", and whether it failed."""
    if rule.guard_metric is None:
        return math.nan, math.nan, math.nan, False
    guard = paired_difference(
        y,
        old,
        new,
        rule.guard_metric,
        old_threshold=thresholds[0],
        new_threshold=thresholds[1],
        resamples=rule.resamples,
        seed=rule.seed + 1,
    )
    if not math.isfinite(guard.difference):
        return math.nan, math.nan, math.nan, False
    se = guard.se if math.isfinite(guard.se) else 0.0
    high = guard.difference + float(norm.ppf(1 - rule.alpha)) * se
    p_value = _lower_tail_p(guard, rule)
    return guard.difference, high, p_value, p_value < rule.alpha


def _lower_tail_p(guard: PairedDifference, rule: PromotionRule) -> float:
    """p-value of the null "the guard is not worse than −tolerance" (small means significantly worse)."""
    if not guard.se > 0:
        return 0.0 if guard.difference < -rule.guard_tolerance else 1.0
    return float(norm.cdf((guard.difference + rule.guard_tolerance) / guard.se))


def test_promotion(
    y_true: npt.ArrayLike,
    champion_scores: npt.ArrayLike,
    challenger_scores: npt.ArrayLike,
    rule: PromotionRule,
    *,
    thresholds: tuple[float, float],
    names: tuple[str, str] = ("champion", "challenger"),
) -> PromotionTest:
    """Decide on the same rows for both models; `y_true` is 1 for the positive class."""
    primary = paired_difference(
        y_true,
        champion_scores,
        challenger_scores,
        rule.metric,
        old_threshold=thresholds[0],
        new_threshold=thresholds[1],
        resamples=rule.resamples,
        seed=rule.seed,
    )
    z = float(norm.ppf(1 - rule.alpha))
    se = primary.se if math.isfinite(primary.se) else math.nan
    low, high = primary.difference - z * se, primary.difference + z * se
    if se > 0:
        p_value = _upper_tail((primary.difference - rule.min_improvement) / se)
    else:  # identical scores (or undefined): no evidence of a gain
        p_value = 0.0 if primary.difference > rule.min_improvement else 1.0
    guard_gain, guard_high, guard_p, guard_failed = _guard(y_true, champion_scores, challenger_scores, rule, thresholds)
    cleared = math.isfinite(primary.difference) and p_value < rule.alpha
    promote = bool(cleared and not guard_failed)
    reason = _reason(primary, rule, low, p_value, guard_gain, guard_p, guard_failed, promote, names)
    return PromotionTest(
        metric=rule.metric,
        champion=primary.old,
        challenger=primary.new,
        gain=primary.difference,
        gain_low=low,
        gain_high=high,
        p_value=p_value,
        method=primary.method,
        guard_metric=rule.guard_metric,
        guard_gain=guard_gain,
        guard_high=guard_high,
        guard_p_value=guard_p,
        rows=primary.rows,
        positives=primary.positives,
        promote=promote,
        reason=reason,
    )


test_promotion.__test__ = False  # type: ignore[attr-defined]  # a decision, not a pytest test


def _reason(
    primary: PairedDifference,
    rule: PromotionRule,
    low: float,
    p_value: float,
    guard_gain: float,
    guard_p: float,
    guard_failed: bool,
    promote: bool,
    names: tuple[str, str],
) -> str:
    """One sentence: the verdict, the gain with its bound, and what it rests on."""
    level = 1 - rule.alpha
    verdict = "promoted" if promote else "rejected"
    text = (
        f"{verdict}: {names[1]} {rule.metric} {primary.new:.4f} vs {names[0]} {primary.old:.4f} on the same "
        f"{primary.rows:,} fresh rows ({primary.positives:,} positive); gain {primary.difference:+.4f}, "
        f"{level:.0%} lower bound {low:+.4f} (needs > {rule.min_improvement:+.4f}; p = {p_value:.3g}, "
        f"{primary.method})"
    )
    if rule.guard_metric is not None:
        state = "significantly worse" if guard_failed else "not significantly worse"
        text += f"; guard {rule.guard_metric} {guard_gain:+.4f}, {state} (p = {guard_p:.3g})"
    return text
