"""CBPE: quality estimated from calibrated scores where labels have not arrived (as in NannyML).

Calibration learns P(positive | score) on the champion's hold-out (rows it never trained on). The
estimate assumes that map still holds in production: under concept shift (the relationship between
features and target changed) it is wrong, and silently so. `cbpe_gap` measures that, where labels
exist, as estimated minus realised ROC AUC on the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

QUALITY_METRICS = ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")
NAN = float("nan")


def fit_calibrator(reference_scores: npt.ArrayLike, reference_target: npt.ArrayLike) -> IsotonicRegression | None:
    """Isotonic map from score to P(positive), fitted on labelled reference rows; None without both classes.

    The reference should be data the model did not train on (a hold-out): in-sample scores are
    over-confident, and the estimates would inherit that.
    """
    target = np.asarray(reference_target).astype(int)
    if len(np.unique(target)) < 2:
        return None
    calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    calibrator.fit(np.asarray(reference_scores, dtype=float), target)
    return calibrator


def expected_roc_auc(probabilities: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC expected when each row is positive with its calibrated probability (soft labels).

    The ROC curve is traced over the distinct scores (ties move together, as in sklearn) with
    expected true and false positives, and integrated with the trapezoid rule. With 0/1
    probabilities it equals sklearn's roc_auc_score. NaN when either class has zero expected mass.
    """
    p = np.asarray(probabilities, dtype=float)
    s = np.asarray(scores, dtype=float)
    positives, negatives = p.sum(), (1.0 - p).sum()
    if len(p) == 0 or positives <= 0 or negatives <= 0:
        return NAN
    distinct, group = np.unique(s, return_inverse=True)
    tp_steps = np.bincount(group, weights=p, minlength=len(distinct))[::-1]  # highest score first
    fp_steps = np.bincount(group, weights=1.0 - p, minlength=len(distinct))[::-1]
    tpr = np.concatenate([[0.0], np.cumsum(tp_steps)]) / positives
    fpr = np.concatenate([[0.0], np.cumsum(fp_steps)]) / negatives
    return float(np.trapezoid(tpr, fpr))


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero (undefined, not zero)."""
    return numerator / denominator if denominator > 0 else NAN


def expected_quality(probabilities: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> dict[str, float]:
    """The five metrics from the expected confusion matrix at `threshold` (CBPE, as in NannyML).

    A row scored at or above the threshold adds its probability to expected TP and the rest to FP;
    below, to FN and TN. Precision, recall, F1 and balanced accuracy are taken from those sums.
    """
    p = np.asarray(probabilities, dtype=float)
    predicted = np.asarray(scores, dtype=float) >= threshold
    tp, fp = float(p[predicted].sum()), float((1.0 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1.0 - p[~predicted]).sum())
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "roc_auc": expected_roc_auc(p, scores),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "balanced_accuracy": (recall + specificity) / 2,  # NaN propagates when either is undefined
    }


def estimate_quality(
    reference_scores: npt.ArrayLike, reference_target: npt.ArrayLike, current_scores: npt.ArrayLike, threshold: float
) -> dict[str, float]:
    """CBPE: calibrate on the reference, then the expected metrics on `current_scores`; NaN when undefined."""
    calibrator = fit_calibrator(reference_scores, reference_target)
    scores = np.asarray(current_scores, dtype=float)
    if calibrator is None or len(scores) == 0:
        return dict.fromkeys(QUALITY_METRICS, NAN)
    return expected_quality(calibrator.predict(scores), scores, threshold)


@dataclass(frozen=True, kw_only=True)
class CbpeGap:
    """Estimated minus realised ROC AUC on the labelled rows, and whether the estimate is unreliable."""

    gap: float
    se: float  # of the realised value: the estimate itself is nearly noiseless by comparison
    bound: float
    unreliable: bool
    detail: str


def cbpe_gap(
    estimated: float, realised: float, realised_se: float, labels: int, *, bound: float, alpha: float
) -> CbpeGap:
    """Flag the estimate when |gap| exceeds `bound` beyond noise (its lower confidence bound is above it)."""
    gap = estimated - realised
    if not (math.isfinite(gap) and math.isfinite(realised_se)):
        return CbpeGap(gap=NAN, se=NAN, bound=bound, unreliable=False, detail="Undefined: no labels of both classes.")
    margin = float(norm.ppf(1 - alpha)) * realised_se
    unreliable = abs(gap) - margin > bound
    verdict = (
        "UNRELIABLE: the estimate misses the realised value by more than the bound beyond noise; the relation "
        "between features and target has probably changed (concept shift), so do not trust estimated metrics "
        "on unlabelled rows."
        if unreliable
        else "within the bound (or not beyond noise)."
    )
    detail = (
        f"CBPE estimated ROC AUC minus realised on the same {labels:,} labelled rows: {gap:+.4f} "
        f"(noise ±{margin:.4f}, bound {bound:g}): {verdict}"
    )
    return CbpeGap(gap=gap, se=realised_se, bound=bound, unreliable=unreliable, detail=detail)
