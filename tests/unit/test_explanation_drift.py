"""Explanation metrics of a monitoring window: top reason shares, mean |contribution| drift, importance moved."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.explanation_drift import explanation_metrics

FEATURES = ["rate", "amount", "state"]


def by_column(metrics: list, name: str) -> dict[str | None, float]:  # type: ignore[type-arg]
    return {m.column: m.value for m in metrics if m.metric == name}


def test_shares_drift_and_moved_importance_are_measured_on_the_explained_rows() -> None:
    window = [np.array([2.0, 0.5, 0.0]), np.array([-2.0, 1.5, 0.0]), None, float("nan")]  # two not explained
    reference = [[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]]

    metrics = explanation_metrics(FEATURES, window, ["rate", "amount", None, None], reference)

    assert by_column(metrics, "top_reason_share") == {"rate": 0.5, "amount": 0.5, "state": 0.0}
    assert by_column(metrics, "contribution_drift") == pytest.approx({"rate": 1.0, "amount": 0.0, "state": 0.0})
    # shares: window rate 2/3, amount 1/3; reference 1/2, 1/2 -> 1/6 of the importance moved
    assert by_column(metrics, "explanation_drift") == pytest.approx({None: 1 / 6})
    assert all(m.status == "info" and m.sample_size == 2 for m in metrics)


def test_the_same_drivers_move_nothing_and_a_reference_without_contributions_says_so() -> None:
    same = explanation_metrics(FEATURES, [[1.0, -2.0, 0.5]], ["amount"], [[-1.0, 2.0, 0.5]])
    assert by_column(same, "explanation_drift") == {None: 0.0}

    old = explanation_metrics(FEATURES, [[1.0, -2.0, 0.5]], ["amount"], [None, None])
    drift = [m for m in old if m.metric == "explanation_drift"]
    assert np.isnan(drift[0].value) and "trained before they were stored" in drift[0].detail
    assert not [m for m in old if m.metric == "contribution_drift"]


def test_a_window_without_explanations_adds_no_rows() -> None:
    assert explanation_metrics(FEATURES, [None, None], [None, None], [[1.0, 1.0, 1.0]]) == []


def test_contributions_read_as_a_matrix_of_the_explained_rows_give_the_same_metrics() -> None:
    """The monitor reads the window's contributions from Arrow as one float32 matrix of the rows that have
    them (flows.monitor.contribution_matrix); the metrics equal those of the per-row lists, bit for bit."""
    import pyarrow as pa

    from flows.monitor import contribution_matrix

    rng = np.random.default_rng(5)
    rows = [list(rng.normal(size=3).astype(np.float32)) for _ in range(200)]
    stored = pa.chunked_array([pa.array([*rows[:100], None], pa.list_(pa.float32())), pa.array(rows[100:])])
    matrix = contribution_matrix(stored, len(FEATURES))
    assert matrix.shape == (200, 3) and matrix.dtype == np.float32
    reasons = [FEATURES[i % 3] for i in range(200)]
    reference = [[1.0, 2.0, 3.0]]
    from_lists = explanation_metrics(FEATURES, [np.asarray(r) for r in rows], reasons, reference)
    assert explanation_metrics(FEATURES, matrix, reasons, reference) == from_lists
    assert explanation_metrics(FEATURES, matrix[:0], [], reference) == []
