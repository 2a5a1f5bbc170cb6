"""The statistics the decisions rest on agree with sklearn and with a plain row bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import f1_score, recall_score, roc_auc_score

from pipeline.stats import estimate, paired_difference


def scored(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated score vectors (two models that share most of their signal)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-(signal - 1)))).astype(int)
    old = signal + rng.normal(scale=0.8, size=rows)
    new = signal + rng.normal(scale=0.8, size=rows)
    return y, old, new


def row_bootstrap(y: np.ndarray, values: list[np.ndarray], statistic, resamples: int = 300) -> float:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        draws.append(statistic(y[pick], *[v[pick] for v in values]))
    return float(np.std(draws, ddof=1))


def fast_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC AUC (sklearn's validation costs more than the sum itself in a bootstrap loop)."""
    ranks = rankdata(scores)
    positives = int(y.sum())
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(y) - positives)))


def fast_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    tp = float((predicted & (y == 1)).sum())
    return 2 * tp / (predicted.sum() + y.sum())


def test_delong_auc_is_sklearns_and_its_standard_error_matches_a_bootstrap() -> None:
    y, old, _ = scored(3000, 1)
    result = estimate(y, old, 0.5, "roc_auc")
    assert result.value == pytest.approx(roc_auc_score(y, old), abs=1e-12)
    assert result.se == pytest.approx(row_bootstrap(y, [old], fast_auc), rel=0.15)
    assert result.rows == 3000 and result.positives == int(y.sum()) and result.method == "DeLong"


def test_paired_delong_uses_the_correlation_between_the_models() -> None:
    y, old, new = scored(3000, 2)
    paired = paired_difference(y, old, new, "roc_auc", old_threshold=0.5, new_threshold=0.5)
    assert paired.difference == pytest.approx(roc_auc_score(y, new) - roc_auc_score(y, old), abs=1e-12)
    bootstrap = row_bootstrap(y, [old, new], lambda t, a, b: fast_auc(t, b) - fast_auc(t, a))
    assert paired.se == pytest.approx(bootstrap, rel=0.15)
    unpaired = math.hypot(estimate(y, old, 0.5, "roc_auc").se, estimate(y, new, 0.5, "roc_auc").se)
    assert paired.se < unpaired  # pairing removes the shared noise


def test_identical_models_differ_by_exactly_nothing() -> None:
    y, old, _ = scored(500, 3)
    for metric in ("roc_auc", "recall"):
        same = paired_difference(y, old, old, metric, old_threshold=0.5, new_threshold=0.5)
        assert same.difference == 0 and same.se == pytest.approx(0, abs=1e-12)


def test_the_cell_bootstrap_of_a_threshold_metric_matches_a_row_bootstrap() -> None:
    y, old, new = scored(2000, 4)
    result = estimate(y, old, 0.5, "f1", resamples=4000)
    assert result.value == pytest.approx(f1_score(y, old >= 0.5))
    assert result.se == pytest.approx(row_bootstrap(y, [old], lambda t, s: fast_f1(t, s >= 0.5)), rel=0.15)
    paired = paired_difference(y, old, new, "recall", old_threshold=0.5, new_threshold=0.5, resamples=4000)
    assert paired.new - paired.old == pytest.approx(recall_score(y, new >= 0.5) - recall_score(y, old >= 0.5))
    bootstrap = row_bootstrap(
        y, [old, new], lambda t, a, b: ((b >= 0.5) & (t == 1)).sum() / t.sum() - ((a >= 0.5) & (t == 1)).sum() / t.sum()
    )
    assert paired.se == pytest.approx(bootstrap, rel=0.15)


def test_one_class_is_undefined_not_zero() -> None:
    result = estimate(np.zeros(20, dtype=int), np.linspace(0, 1, 20), 0.5, "roc_auc")
    assert math.isnan(result.value) and math.isnan(result.se)
