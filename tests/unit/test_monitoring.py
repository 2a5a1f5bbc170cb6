"""Monitoring computations: drift, realised quality, CBPE estimates, sampling and the HTML report.

Frames are synthetic (3 numeric, 1 categorical, 4 embedding columns), built with fixed seeds.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipeline.monitoring import (
    QUALITY_METRICS,
    MonitorResult,
    estimate_quality,
    expected_roc_auc,
    monitor_window,
    save_report,
)

NUMERIC = ["x0", "x1", "x2"]
CATEGORICAL = ["colour"]
EMBEDDING = [f"emb_{i}" for i in range(4)]
THRESHOLD = 0.5
CBPE_TOLERANCE = 0.03  # |estimated - realised| on 20,000 calibrated rows


def make_frame(
    seed: int, rows: int, *, shift: float = 0.0, labelled_share: float = 1.0, labels_follow_score: bool = True
) -> pd.DataFrame:
    """Rows with standard-normal numeric and embedding columns, a 3-value categorical, a uniform score
    and a target drawn as Bernoulli(score); `shift` moves x0 by that many standard deviations."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in [*NUMERIC, *EMBEDDING]})
    frame["x0"] += shift
    frame["colour"] = rng.choice(["red", "green", "blue"], size=rows, p=[0.5, 0.3, 0.2])
    frame["score"] = rng.uniform(size=rows)
    chance = frame["score"] if labels_follow_score else 0.5
    target = (rng.uniform(size=rows) < chance).astype(float)
    target[rng.uniform(size=rows) >= labelled_share] = np.nan
    frame["target"] = target
    return frame


def monitor(
    reference: pd.DataFrame, current: pd.DataFrame, *, max_rows: int = 50_000, column_p_value: float = 0.05
) -> MonitorResult:
    """monitor_window with the test columns, threshold 0.5 and share alarm above one half."""
    return monitor_window(
        reference,
        current,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        embedding=EMBEDDING,
        threshold=THRESHOLD,
        drift_share_threshold=0.5,
        column_p_value=column_p_value,
        max_rows=max_rows,
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(seed=1, rows=3000)


@pytest.fixture(scope="module")
def shifted(reference: pd.DataFrame) -> MonitorResult:
    return monitor(reference, make_frame(seed=2, rows=3000, shift=0.5, labelled_share=0.5))


@pytest.fixture(scope="module")
def unshifted(reference: pd.DataFrame) -> MonitorResult:
    return monitor(reference, make_frame(seed=3, rows=3000, labelled_share=0.5))


def test_half_sd_shift_in_one_numeric_feature_flags_that_column(shifted: MonitorResult) -> None:
    flagged = [m.column for m in shifted.metrics if m.metric == "column_drift" and m.status == "alert"]
    assert flagged == ["x0"]
    x0 = shifted.get("column_drift", "x0")
    assert x0.value >= x0.threshold  # type: ignore[operator]
    assert "Wasserstein" in x0.detail and "drift detected" in x0.detail
    assert x0.sample_size == 3000
    # one column of four drifting is not "more than half": the window-level alarm stays quiet
    share = shifted.get("drift_share_features")
    assert share.value == pytest.approx(0.25)
    assert share.status == "ok" and "x0" in share.detail


def test_unshifted_window_of_the_same_size_raises_no_alert(unshifted: MonitorResult) -> None:
    assert [m for m in unshifted.metrics if m.status == "alert"] == []
    assert unshifted.get("drift_share_features").value == 0.0
    assert unshifted.get("drift_share_embedding").value == 0.0
    assert unshifted.get("prediction_drift", "score").status == "ok"


def test_every_column_and_the_score_get_a_drift_metric(unshifted: MonitorResult) -> None:
    columns = {m.column for m in unshifted.metrics if m.metric == "column_drift"}
    assert columns == {*NUMERIC, *CATEGORICAL, *EMBEDDING}
    assert "Jensen-Shannon" in unshifted.get("column_drift", "colour").detail
    assert "embedding column" in unshifted.get("column_drift", "emb_0").detail


def test_small_window_uses_p_value_tests_and_still_finds_the_shift(reference: pd.DataFrame) -> None:
    result = monitor(reference, make_frame(seed=4, rows=400, shift=0.5), column_p_value=0.01)
    x0 = result.get("column_drift", "x0")
    assert x0.status == "alert" and x0.threshold == 0.01 and x0.value < 0.01
    assert "Kolmogorov-Smirnov p-value" in x0.detail
    assert "chi-square" in result.get("column_drift", "colour").detail
    assert result.get("drift_share_features").status == "ok"


def test_share_alarm_fires_when_more_than_half_the_features_drift(reference: pd.DataFrame) -> None:
    current = make_frame(seed=5, rows=3000)
    current[["x0", "x1", "x2"]] += 0.5
    share = monitor(reference, current).get("drift_share_features")
    assert share.value == pytest.approx(0.75)
    assert share.status == "alert" and share.threshold == 0.5


def test_realised_quality_matches_sklearn_on_a_small_labelled_window(reference: pd.DataFrame) -> None:
    current = make_frame(seed=6, rows=300)
    result = monitor(reference, current)
    y, scores = current["target"].astype(int), current["score"]
    predicted = (scores >= THRESHOLD).astype(int)
    expected = {
        "roc_auc": roc_auc_score(y, scores),
        "f1": f1_score(y, predicted),
        "precision": precision_score(y, predicted),
        "recall": recall_score(y, predicted),
        "balanced_accuracy": balanced_accuracy_score(y, predicted),
    }
    for name, value in expected.items():
        metric = result.get(name)
        assert metric.value == pytest.approx(value, abs=1e-9), name
        assert metric.sample_size == 300 and metric.status == "info"


def test_balanced_accuracy_is_the_mean_of_tpr_and_tnr(shifted: MonitorResult) -> None:
    # recomputed from the confusion matrix of the same labelled rows
    current = make_frame(seed=2, rows=3000, shift=0.5, labelled_share=0.5).dropna(subset=["target"])
    tn, fp, fn, tp = confusion_matrix(current["target"].astype(int), current["score"] >= THRESHOLD).ravel()
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    balanced = shifted.get("balanced_accuracy")
    assert balanced.value == pytest.approx((tpr + tnr) / 2, abs=1e-12)
    assert balanced.sample_size == len(current)
    assert "TPR" in balanced.detail and "TNR" in balanced.detail


def test_cbpe_estimate_is_close_to_the_realised_value_on_calibrated_data() -> None:
    rng = np.random.default_rng(7)
    ref_scores = rng.uniform(size=20_000)
    ref_target = (rng.uniform(size=20_000) < ref_scores).astype(int)
    scores = rng.uniform(size=20_000)
    target = (rng.uniform(size=20_000) < scores).astype(int)
    predicted = (scores >= 0.3).astype(int)  # a threshold away from the middle
    realised = {
        "roc_auc": roc_auc_score(target, scores),
        "f1": f1_score(target, predicted),
        "precision": precision_score(target, predicted),
        "recall": recall_score(target, predicted),
        "balanced_accuracy": balanced_accuracy_score(target, predicted),
    }
    estimated = estimate_quality(ref_scores, ref_target, scores, 0.3)
    assert set(estimated) == set(QUALITY_METRICS)
    for name, value in realised.items():
        assert abs(estimated[name] - value) < CBPE_TOLERANCE, (name, estimated[name], value)


def test_expected_roc_auc_with_hard_labels_is_sklearns_auc_even_with_ties() -> None:
    rng = np.random.default_rng(8)
    scores = rng.integers(0, 10, size=500) / 10  # many ties
    target = (rng.uniform(size=500) < scores).astype(int)
    assert expected_roc_auc(target.astype(float), scores) == pytest.approx(roc_auc_score(target, scores))
    assert math.isnan(expected_roc_auc(np.zeros(10), np.linspace(0, 1, 10)))


def test_cbpe_metrics_cover_the_unlabelled_and_the_labelled_rows(shifted: MonitorResult) -> None:
    labels = shifted.get("roc_auc").sample_size
    for name in QUALITY_METRICS:
        unlabelled, labelled = shifted.get(f"estimated_{name}"), shifted.get(f"estimated_{name}_labelled")
        assert unlabelled.sample_size == 3000 - labels and "unlabelled rows" in unlabelled.detail
        assert labelled.sample_size == labels and "labelled rows" in labelled.detail
        assert abs(labelled.value - shifted.get(name).value) < 0.05, name


def test_estimate_is_nan_when_the_reference_has_one_class() -> None:
    values = estimate_quality(np.linspace(0, 1, 50), np.zeros(50), np.linspace(0, 1, 20), THRESHOLD)
    assert all(math.isnan(v) for v in values.values())


def test_window_above_max_rows_is_sampled_and_every_detail_says_so(reference: pd.DataFrame) -> None:
    result = monitor(reference, make_frame(seed=9, rows=2500, labelled_share=0.5), max_rows=1200)
    assert result.sampled and result.current_rows == 2500
    assert all("sampled to 1,200 of its 2,500 rows" in m.detail for m in result.metrics)
    # the reference (3000 rows) is above max_rows too, and is sampled the same way
    assert all("reference was sampled to 1,200 of its 3,000 rows" in m.detail for m in result.metrics)
    assert result.get("prediction_drift", "score").sample_size == 1200


def test_window_at_or_below_max_rows_is_not_sampled(unshifted: MonitorResult) -> None:
    assert not unshifted.sampled and unshifted.current_rows == 3000
    assert not any("Sampled" in m.detail for m in unshifted.metrics)


def test_window_without_labels_gives_nan_quality_with_status_info(reference: pd.DataFrame) -> None:
    result = monitor(reference, make_frame(seed=10, rows=500, labelled_share=0.0))
    for name in QUALITY_METRICS:
        metric = result.get(name)
        assert math.isnan(metric.value) and metric.status == "info" and metric.sample_size == 0
        assert "no row of the window has a label" in metric.detail
        assert math.isnan(result.get(f"estimated_{name}_labelled").value)
        assert result.get(f"estimated_{name}").sample_size == 500
    assert not math.isnan(result.get("estimated_roc_auc").value)
    assert "No classification report" in result.html


def test_window_with_one_class_of_labels_gives_nan_quality(reference: pd.DataFrame) -> None:
    current = make_frame(seed=11, rows=200)
    current["target"] = 0.0
    metric = monitor(reference, current).get("roc_auc")
    assert math.isnan(metric.value) and metric.status == "info" and "both classes" in metric.detail


def test_empty_window_is_refused(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no rows"):
        monitor(reference, reference.iloc[:0])


def test_html_report_is_self_contained_and_saved(shifted: MonitorResult, tmp_path: Path) -> None:
    page = html.unescape(shifted.html)  # the Evidently reports sit escaped in iframe srcdoc attributes
    assert page.count("drawDashboard(") == 2  # drift and classification reports
    assert re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"']?(https?:)?//", page) is None
    assert "column_drift" in shifted.html and "class='alert'" in shifted.html
    path = save_report(shifted, tmp_path / "window.html")
    assert path.read_text(encoding="utf-8") == shifted.html
