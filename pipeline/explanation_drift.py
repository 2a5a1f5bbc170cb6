"""What drives the scores, watched like the scores: explanation metrics of a monitoring window.

- `top_reason_share` (per feature): the share of the window's explained predictions whose first reason code
  is that feature. Over successive reports it is the "share of each top reason over time".
- `contribution_drift` (per feature): the window's mean |contribution| minus the reference set's (log-odds).
- `explanation_drift`: how much the mix of importance moved, 0.5·Σ|p_window − p_reference| over the features'
  shares of the total mean |contribution| (0: the same features drive the scores in the same proportions,
  1: entirely different ones).

A change of what drives the scores is often visible before labels arrive. These rows inform (status `info`):
the alerts stay those of the drift and quality tests, whose error rates are calibrated (`make calibrate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.monitoring import INFO, NAN, MetricValue

__all__ = ["explanation_metrics", "mean_abs_contributions"]


def mean_abs_contributions(contributions: Sequence[object] | np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """The mean |contribution| of each feature over the rows that have contributions, and how many had.

    `contributions`: one entry per row, or a matrix of the explained rows only (rows × `width`)."""
    if isinstance(contributions, np.ndarray) and contributions.ndim == 2 and contributions.shape[1] == width:
        if len(contributions) == 0:
            return np.full(width, np.nan), 0
        # |float32| is exact; the mean accumulates in float64 without a float64 copy (176 MB at 1M rows)
        return np.abs(contributions).mean(axis=0, dtype=np.float64), len(contributions)
    # a prediction stored without an explanation reads as None (or NaN, through pandas)
    rows = [
        np.asarray(c, dtype=np.float64) for c in contributions if isinstance(c, list | np.ndarray) and len(c) == width
    ]
    if not rows:
        return np.full(width, np.nan), 0
    return np.abs(np.stack(rows)).mean(axis=0), len(rows)


def explanation_metrics(
    features: list[str],
    window_contributions: Sequence[object] | np.ndarray,
    window_top_reasons: Sequence[object],
    reference_contributions: Sequence[object] | np.ndarray,
) -> list[MetricValue]:
    """The explanation rows of one report (none when no prediction of the window was explained)."""
    window, explained = mean_abs_contributions(window_contributions, len(features))
    if explained == 0:
        return []
    metrics = _top_reason_shares(features, window_top_reasons, explained)
    reference, baseline = mean_abs_contributions(reference_contributions, len(features))
    if baseline == 0:
        detail = "the champion's reference set holds no contributions (trained before they were stored)"
        return [*metrics, MetricValue("explanation_drift", NAN, status=INFO, sample_size=explained, detail=detail)]
    for name, now, then in zip(features, window, reference, strict=True):
        change = f" ({now / then - 1:+.0%})" if then > 0 else ""
        metrics.append(
            MetricValue(
                "contribution_drift",
                float(now - then),
                column=name,
                status=INFO,
                sample_size=explained,
                detail=f"mean |contribution| {now:.4f} in the window against {then:.4f} in the reference{change}",
            )
        )
    moved = 0.5 * float(np.abs(window / window.sum() - reference / reference.sum()).sum())
    top = features[int(np.argmax(np.abs(window / window.sum() - reference / reference.sum())))]
    metrics.append(
        MetricValue(
            "explanation_drift",
            moved,
            status=INFO,
            sample_size=explained,
            detail=f"{moved:.1%} of the importance moved between features since the reference; most: {top}",
        )
    )
    return metrics


def _top_reason_shares(features: list[str], top_reasons: Sequence[object], explained: int) -> list[MetricValue]:
    counts = Counter(r for r in top_reasons if isinstance(r, str))
    return [
        MetricValue(
            "top_reason_share",
            counts[name] / explained,
            column=name,
            status=INFO,
            sample_size=explained,
            detail=f"{counts[name]} of {explained} explained predictions had {name} as their top reason",
        )
        for name in features
    ]
