"""Monitoring computations: drift, realised quality, CBPE estimates, reproducibility, leakage, the Evidently adapter.

Frames are synthetic (3 numeric, 1 categorical, 4 embedding columns), built with fixed seeds. The
reference's rows are all labelled: they stand for the version's hold-out.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipeline.monitoring import (
    QUALITY_METRICS,
    MonitorResult,
    MonitorRules,
    estimate_quality,
    exclude_trained,
    expected_roc_auc,
    monitor_window,
    sample_positions,
    save_report,
)

NUMERIC = ["x0", "x1", "x2"]
CATEGORICAL = ["colour"]
EMBEDDING = [f"emb_{i}" for i in range(4)]
THRESHOLD = 0.5
CBPE_TOLERANCE = 0.03  # |estimated - realised| on 20,000 calibrated rows
RULES = MonitorRules(drift_share_threshold=0.5)


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
    frame.insert(0, "record_id", [f"s{seed}-{i:05d}" for i in range(rows)])
    return frame


def monitor(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    max_rows: int = 50_000,
    report: bool = False,
    rules: MonitorRules = RULES,
) -> MonitorResult:
    """monitor_window with the test columns, threshold 0.5 and share alarm above one half."""
    return monitor_window(
        reference,
        current,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        embedding=EMBEDDING,
        threshold=THRESHOLD,
        rules=rules,
        max_rows=max_rows,
        report=report,
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(seed=1, rows=3000)


@pytest.fixture(scope="module")
def shifted(reference: pd.DataFrame) -> MonitorResult:
    return monitor(reference, make_frame(seed=2, rows=3000, shift=0.5, labelled_share=0.5), report=True)


@pytest.fixture(scope="module")
def unshifted(reference: pd.DataFrame) -> MonitorResult:
    return monitor(reference, make_frame(seed=3, rows=3000, labelled_share=0.5))


def test_half_sd_shift_in_one_numeric_feature_flags_that_column(shifted: MonitorResult) -> None:
    flagged = [m.column for m in shifted.metrics if m.metric == "column_drift" and m.status == "alert"]
    assert flagged == ["x0"]
    x0 = shifted.get("column_drift", "x0")
    assert x0.value >= x0.threshold  # type: ignore[operator]  # material: distance at or above the bar
    assert x0.p_value is not None and x0.p_value < x0.p_value_threshold  # type: ignore[operator]  # and significant
    assert x0.p_value_threshold == pytest.approx(0.05 / 4)  # Bonferroni over the 4 feature columns
    assert "Wasserstein" in x0.detail and ": drift." in x0.detail
    share = shifted.get("drift_share_features")
    assert share.value == pytest.approx(0.25)
    assert share.status == "ok" and "x0" in share.detail  # one of four is not more than half
    assert "drift" not in shifted.firing


def test_every_column_keeps_its_distance_and_p_value_even_without_drift(unshifted: MonitorResult) -> None:
    columns = [m for m in unshifted.metrics if m.metric == "column_drift"]
    assert {m.column for m in columns} == {*NUMERIC, *CATEGORICAL, *EMBEDDING}
    assert all(m.status == "ok" and math.isfinite(m.value) and m.p_value is not None for m in columns)
    assert "Jensen-Shannon" in unshifted.get("column_drift", "colour").detail
    assert "embedding column" in unshifted.get("column_drift", "emb_0").detail
    assert unshifted.firing == {}


def test_a_large_window_needs_a_material_distance_not_only_a_tiny_p_value() -> None:
    big = make_frame(seed=4, rows=200_000, shift=0.05, labelled_share=0.0)  # real but immaterial
    x0 = monitor(make_frame(seed=5, rows=200_000), big).get("column_drift", "x0")
    assert x0.p_value < x0.p_value_threshold  # type: ignore[operator]  # significant...
    assert x0.value < x0.threshold and x0.status == "ok"  # type: ignore[operator]  # ...but below the bar


def test_share_alarm_fires_when_more_than_half_the_features_drift(reference: pd.DataFrame) -> None:
    current = make_frame(seed=5, rows=3000)
    current[["x0", "x1", "x2"]] += 0.5
    result = monitor(reference, current)
    share = result.get("drift_share_features")
    assert share.value == pytest.approx(0.75) and share.status == "alert" and share.threshold == 0.5
    assert "drift" in result.firing


def test_prediction_drift_compares_with_the_hold_out_scores_and_fires_its_own_alert(
    reference: pd.DataFrame,
) -> None:
    current = make_frame(seed=6, rows=2000, labelled_share=0.0)
    current["score"] = current["score"] ** 2  # the model now scores lower
    result = monitor(reference, current)
    assert result.get("prediction_drift", "score").status == "alert" and "prediction_drift" in result.firing
    assert "hold-out scores" in result.get("prediction_drift", "score").detail


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
        assert metric.sample_size == 300


def test_a_real_quality_drop_alerts_and_a_small_window_says_too_few_labels(reference: pd.DataFrame) -> None:
    noisy = make_frame(seed=7, rows=3000, labels_follow_score=False)  # labels no longer follow the score
    dropped = monitor(reference, noisy)
    assert dropped.get("roc_auc").status == "alert" and "quality" in dropped.firing
    assert dropped.get("roc_auc").p_value < 0.05  # type: ignore[operator]
    few = monitor(reference, make_frame(seed=8, rows=60))
    assert few.get("roc_auc").status == "info" and few.get("roc_auc").detail.startswith("Too few labels to tell")
    assert few.get("quality_min_detectable_drop").value > 0.05  # what 60 labels could have seen


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


def test_cbpe_gap_is_tracked_and_flags_a_concept_shift(reference: pd.DataFrame, unshifted: MonitorResult) -> None:
    quiet = unshifted.get("cbpe_gap_roc_auc")
    assert quiet.status == "ok" and abs(quiet.value) < 0.03
    shifted_concept = monitor(reference, make_frame(seed=9, rows=3000, labels_follow_score=False))
    gap = shifted_concept.get("cbpe_gap_roc_auc")
    assert gap.status == "alert" and gap.value > 0.2 and "UNRELIABLE" in gap.detail


def test_expected_roc_auc_with_hard_labels_is_sklearns_auc_even_with_ties() -> None:
    rng = np.random.default_rng(8)
    scores = rng.integers(0, 10, size=500) / 10  # many ties
    target = (rng.uniform(size=500) < scores).astype(int)
    assert expected_roc_auc(target.astype(float), scores) == pytest.approx(roc_auc_score(target, scores))
    assert math.isnan(expected_roc_auc(np.zeros(10), np.linspace(0, 1, 10)))


def test_the_same_rows_in_any_order_give_bit_identical_numbers(reference: pd.DataFrame) -> None:
    current = make_frame(seed=10, rows=2500, shift=0.2, labelled_share=0.5)
    first = monitor(reference, current)
    again = monitor(reference.sample(frac=1, random_state=1), current.sample(frac=1, random_state=2))
    pairs = [(a.metric, a.column, a.value, a.p_value) for a in first.metrics]
    assert pairs == [(b.metric, b.column, b.value, b.p_value) for b in again.metrics]


def test_rows_the_version_trained_on_are_left_out_of_the_window(reference: pd.DataFrame) -> None:
    current = pd.concat([make_frame(seed=11, rows=100), reference.iloc[:40]])
    kept = exclude_trained(current, reference["record_id"])
    assert len(kept) == 100 and not set(kept["record_id"]) & set(reference["record_id"])


def test_a_large_window_is_sampled_for_drift_and_every_drift_number_says_so(reference: pd.DataFrame) -> None:
    result = monitor(reference, make_frame(seed=12, rows=2500, labelled_share=0.5), max_rows=1200, report=True)
    assert result.sampled and result.current_rows == 2500
    note = "1,200 of the window's 2,500 rows and 1,200 of the reference's 3,000"
    assert note in html.unescape(result.html)
    assert all(note in m.detail for m in result.metrics if m.metric in ("column_drift", "prediction_drift"))
    assert result.get("prediction_drift", "score").sample_size == 1200
    assert result.get("roc_auc").sample_size == int(
        make_frame(seed=12, rows=2500, labelled_share=0.5)["target"].notna().sum()
    )


def test_a_window_given_as_scores_and_labels_plus_its_drift_sample_gives_the_same_numbers(
    reference: pd.DataFrame,
) -> None:
    """The flow reads features only for the drift sample: ids, scores and labels of every row, plus the
    sampled rows whole. Every number is the one the whole frame gives."""
    current = make_frame(seed=14, rows=2500, shift=0.3, labelled_share=0.5)
    whole = monitor(reference, current, max_rows=1200)
    drift_sample = current.iloc[sample_positions(len(current), 1200, seed=0)]

    def narrow(sample: pd.DataFrame) -> MonitorResult:
        return monitor_window(
            reference,
            current[["record_id", "score", "target"]],
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            embedding=EMBEDDING,
            threshold=THRESHOLD,
            rules=RULES,
            max_rows=1200,
            report=False,
            drift_sample=sample,
        )

    assert [(m.metric, m.column, m.value, m.p_value, m.detail) for m in narrow(drift_sample).metrics] == [
        (m.metric, m.column, m.value, m.p_value, m.detail) for m in whole.metrics
    ]
    with pytest.raises(ValueError, match="drift sample has 1,199 rows, not the 1,200 drawn"):
        narrow(drift_sample.iloc[1:])


def test_sample_positions_are_every_row_of_a_small_window_and_a_seeded_sorted_draw_of_a_large_one() -> None:
    assert list(sample_positions(5, 10, seed=0)) == [0, 1, 2, 3, 4]
    drawn = sample_positions(1000, 100, seed=3)
    assert len(set(drawn)) == 100 and list(drawn) == sorted(drawn) and drawn.max() < 1000
    assert list(drawn) == list(sample_positions(1000, 100, seed=3))
    assert list(drawn) != list(sample_positions(1000, 100, seed=4))


def test_window_without_labels_gives_nan_quality_and_too_few_labels(reference: pd.DataFrame) -> None:
    result = monitor(reference, make_frame(seed=13, rows=500, labelled_share=0.0))
    for name in QUALITY_METRICS:
        assert math.isnan(result.get(name).value) and result.get(name).sample_size == 0
        assert math.isnan(result.get(f"estimated_{name}_labelled").value)
        assert result.get(f"estimated_{name}").sample_size == 500
    assert result.get("roc_auc").detail.startswith("Too few labels to tell")
    assert not math.isnan(result.get("estimated_roc_auc").value)


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


def test_the_evidently_fields_the_adapter_reads_are_where_it_reads_them(shifted: MonitorResult) -> None:
    """Pins Evidently's snapshot layout: metrics[].config.type / .column and metrics[].value."""
    from pipeline.evidently_report import evidently_values

    drift = evidently_values(json.loads(shifted.snapshots["drift"].json()))
    assert isinstance(drift[("ValueDrift", "score")], float)
    assert {column for (kind, column) in drift if kind == "ValueDrift"} >= {*NUMERIC, *CATEGORICAL, *EMBEDDING}
    quality = evidently_values(json.loads(shifted.snapshots["quality"].json()))
    labelled = make_frame(seed=2, rows=3000, shift=0.5, labelled_share=0.5).dropna(subset=["target"])
    assert quality[("RocAuc", None)] == pytest.approx(roc_auc_score(labelled["target"], labelled["score"]))


def test_the_evidently_project_gets_its_dashboard_and_snapshots_their_version_and_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from pipeline.evidently_report import Stamp, numbers_report
    from pipeline.workspace import DASHBOARD_TAB, PANELS, project_id, publish

    stamp = Stamp(when=datetime(2026, 1, 3, 6, tzinfo=UTC), tags=("v2", "tiny"), metadata={"model_version": "v2"})
    numbers = numbers_report({"drift_share_features": 0.5, "prediction_drift": 0.2, "roc_auc": float("nan")}, stamp)
    workspace = tmp_path / "evidently"
    publish(workspace, "Scorehouse monitoring: tiny", {"r1 numbers": numbers})
    publish(workspace, "Scorehouse monitoring: tiny", {"r2 numbers": numbers})  # the panels are added once

    from evidently.ui.workspace import Workspace

    project = Workspace(str(workspace)).get_project(project_id("Scorehouse monitoring: tiny"))
    assert project is not None and project.name == "Scorehouse monitoring: tiny"
    dashboard = project.dashboard.model()
    assert [p.title for p in dashboard.panels] == [title for title, _, _ in PANELS]
    assert [t.title for t in dashboard.tabs] == [DASHBOARD_TAB]
    assert dashboard.panels[0].values[0].metric_labels == {"column": "drift_share_features"}
    stored = [json.loads(p.read_text()) for p in workspace.glob("*/snapshots/*.json")]
    assert len(stored) == 2 and all(s["tags"] == ["v2", "tiny"] for s in stored)
    assert all(s["timestamp"].startswith("2026-01-03T06:00") for s in stored)
    columns = {
        r["metric_value_location"]["metric"]["params"]["column"] for s in stored for r in s["metric_results"].values()
    }
    assert columns == {"drift_share_features", "prediction_drift"}  # the undefined ROC AUC is left out


def test_the_evidently_workspace_keeps_the_latest_reports_only(tmp_path: Path) -> None:
    """Opening a workspace parses every snapshot in it: the monitor keeps the newest `keep_reports`."""
    from datetime import UTC, datetime

    from pipeline.evidently_report import Stamp, numbers_report
    from pipeline.workspace import publish

    stamp = Stamp(when=datetime(2026, 1, 3, 6, tzinfo=UTC))
    numbers = numbers_report({"drift_share_features": 0.5}, stamp)
    workspace = tmp_path / "evidently"
    published = [
        publish(workspace, "p", {f"r{i} numbers": numbers, f"r{i} more": numbers}, keep_reports=2) for i in range(4)
    ]
    kept = {p.stem for p in workspace.glob("*/snapshots/*.json")}
    assert kept == {s.snapshot_id for report in published[-2:] for s in report}
