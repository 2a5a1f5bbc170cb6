"""Monitoring of one window of scored rows against the monitored version's reference set.

Pure computation: data frames in, numbers, verdicts and an HTML report out. Each decision rule lives
in its own module and is only applied here: per-column drift in `pipeline.drift`, the quality alert in
`pipeline.quality_alert`, the CBPE estimate and its gap in `pipeline.cbpe`; the report is drawn by
`pipeline.evidently_report`, the only module that imports Evidently.

Frames carry "record_id", the feature columns, the embedding columns, "score" (the model's
P(positive)) and "target" (0/1, NaN where no label). In the reference, only the hold-out rows (which
the version never trained on) carry a target: they are the out-of-sample baseline of quality, of the
score distribution (prediction drift) and of CBPE's calibration. The caller removes from the window
the rows the version trained on (`exclude_trained`), so realised quality is never in-sample.

Reproducible: both frames are put in record_id order before anything is computed or sampled, so
the same rows give bit-identical numbers whatever order a query returned them in. Every decision
uses every row (the statistics are fast: see `pipeline.stats`); only Evidently's HTML report is drawn
on a sample of at most `max_rows` rows, and says so.

Metrics emitted, in this order: drift_share_features, drift_share_embedding, column_drift (per
column: value = distance, p_value = the test's), prediction_drift, the five realised quality metrics
(the configured one carries the alert test's p-value and verdict), quality_min_detectable_drop,
estimated_<m> and estimated_<m>_labelled (CBPE), cbpe_gap_roc_auc.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.cbpe import (
    QUALITY_METRICS,
    cbpe_gap,
    estimate_quality,
    expected_quality,
    expected_roc_auc,
    fit_calibrator,
)
from pipeline.config import Monitoring
from pipeline.drift import ColumnDrift, ColumnStatistics, DriftRule, column_statistics, drift_columns, drifted_share
from pipeline.evidently_report import Stamp
from pipeline.quality_alert import ALERT as QUALITY_ALERT
from pipeline.quality_alert import TOO_FEW, QualityRule, QualityTest, test_quality
from pipeline.stats import DEFAULT_RESAMPLES, estimate

__all__ = [
    "QUALITY_METRICS",
    "MetricValue",
    "MonitorResult",
    "MonitorRules",
    "estimate_quality",
    "exclude_trained",
    "expected_roc_auc",
    "monitor_window",
    "sample_positions",
    "save_report",
]

SCORE, TARGET, ID = "score", "target", "record_id"
# Evidently's pages are pictures for people, never a decision: drawn on at most this many rows per side.
# Measured here, its drift report on 20,000 rows cost 30 s of a 1M-row window's 30 s budget.
REPORT_ROWS = 5_000
OK, ALERT, INFO = "ok", "alert", "info"
NAN = float("nan")


@dataclass(frozen=True)
class MetricValue:
    """One monitored number, with what it rests on and a sentence a person understands."""

    metric: str
    value: float  # NaN when undefined, never a stand-in
    column: str | None = None
    threshold: float | None = None  # the effect-size bar (drift) or the alert bar the value was compared with
    status: str = INFO  # "ok" | "alert" | "info"
    sample_size: int = 0  # rows (or labels, for realised quality) the value rests on
    detail: str = ""
    p_value: float | None = None  # the test's p-value, where a test decides
    p_value_threshold: float | None = None  # significant below this


@dataclass(frozen=True, kw_only=True)
class MonitorRules:
    """Every threshold of the monitor, from [monitoring] of the config."""

    drift: DriftRule = field(default_factory=DriftRule)
    drift_share_threshold: float = 0.1
    quality_metric: str = "roc_auc"
    quality: QualityRule = field(default_factory=QualityRule)
    cbpe_max_gap: float = 0.02
    resamples: int = DEFAULT_RESAMPLES

    @classmethod
    def from_settings(cls, monitoring: Monitoring) -> MonitorRules:
        """The thresholds of the [monitoring] section."""
        m = monitoring
        return cls(
            drift=DriftRule(p_value=m.column_p_value, distance=m.column_distance),
            drift_share_threshold=m.drift_share_threshold,
            quality_metric=m.quality_metric,
            quality=QualityRule(
                alpha=m.quality_alpha,
                min_drop=m.max_quality_drop,
                detectable_drop=m.detectable_drop,
                min_labels=m.min_labels,
                min_class_labels=m.min_class_labels,
            ),
            cbpe_max_gap=m.cbpe_max_gap,
        )


@dataclass(frozen=True)
class MonitorResult:
    """Everything one monitoring run found, the alerts it raises, and the report that shows it."""

    metrics: list[MetricValue]
    firing: dict[str, str]  # alert (drift | prediction_drift | quality) -> why, for this window
    sampled: bool  # the Evidently report was drawn on a sample
    current_rows: int
    html: str = ""
    snapshots: dict[str, Any] = field(default_factory=dict)  # Evidently's, for its UI
    quality: QualityTest | None = None

    def get(self, metric: str, column: str | None = None) -> MetricValue:
        """The metric of that name (and column); KeyError if there is none."""
        for value in self.metrics:
            if value.metric == metric and value.column == column:
                return value
        raise KeyError(f"no metric {metric!r} for column {column!r}")


def save_report(result: MonitorResult, path: Path | str) -> Path:
    """Write the result's HTML report to `path` (its folder must exist) and return the path."""
    target = Path(path)
    target.write_text(result.html, encoding="utf-8")
    return target


def exclude_trained(current: pd.DataFrame, trained_ids: pd.Series | Sequence[str]) -> pd.DataFrame:
    """The window without the rows the monitored version trained on (or was measured on)."""
    return current[~current[ID].isin(set(trained_ids))]


def in_fixed_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in record_id order (stable), so that sampling and sums do not depend on a query's order."""
    if ID not in frame.columns:
        return frame.reset_index(drop=True)
    if frame[ID].is_monotonic_increasing:  # the flows query in this order already: no sort of 1M strings
        return frame.reset_index(drop=True)
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def monitor_window(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    embedding: Sequence[str],
    threshold: float,
    rules: MonitorRules | None = None,
    max_rows: int = 50_000,
    seed: int = 0,
    report: bool = True,
    stamp: Stamp | None = None,
    drift_sample: pd.DataFrame | None = None,
    statistics: ColumnStatistics = column_statistics,
) -> MonitorResult:
    """Drift, realised and estimated quality of `current` against `reference`, and the alerts they raise.

    `threshold`: the model's decision threshold (positive when score >= threshold). `report=False`
    skips Evidently (no HTML, no snapshots): the numbers and verdicts are the same.
    `drift_sample`: the rows of `current` at `sample_positions(len(current), max_rows, seed)`, with their
    features, when `current` holds only ids, scores and targets (a large window is loaded that way);
    drawn from `current` when None. `statistics` computes the per-column drift statistics (here, or on a
    cluster: the numbers are the same).
    Raises ValueError when either frame has no rows.
    """
    if current.empty:
        raise ValueError("the current window has no rows: there is nothing to monitor; widen --window or wait for data")
    if reference.empty:
        raise ValueError("the reference set has no rows: there is nothing to compare with; retrain the version")
    rules = rules or MonitorRules()
    current, reference = in_fixed_order(current), in_fixed_order(reference)
    holdout = _labelled(reference)
    labelled = _labelled(current)
    # Drift is measured on at most `max_rows` rows of each side (seeded, from the fixed order): the tests
    # keep their level at any size, and sorting every column of a 1M-row window cost 40 s.
    window, ref = _sample(current, max_rows, seed), _sample(reference, max_rows, seed)
    if drift_sample is not None:
        if len(drift_sample) != len(window):
            raise ValueError(f"the drift sample has {len(drift_sample):,} rows, not the {len(window):,} drawn")
        window = in_fixed_order(drift_sample)
    sampled = len(window) < len(current) or len(ref) < len(reference)
    note = (
        f" Drift measured on a seeded sample (seed {seed}) of {len(window):,} of the window's {len(current):,} rows "
        f"and {len(ref):,} of the reference's {len(reference):,}; quality and CBPE use every row."
        if sampled
        else ""
    )
    drift = functools.partial(drift_columns, rule=rules.drift, statistics=statistics)
    features = drift(ref, window, numeric=numeric, categorical=categorical)
    embedded = drift(ref, window, numeric=embedding, categorical=[])
    [score] = drift(_sample(holdout, max_rows, seed), window, numeric=[SCORE], categorical=[])
    metrics = [
        _share("drift_share_features", "raw feature", features, rules.drift_share_threshold, len(window)),
        _share("drift_share_embedding", "embedding", embedded, rules.drift_share_threshold, len(window)),
        *(_column_metric(c, "feature") for c in features),
        *(_column_metric(c, "embedding column") for c in embedded),
        _column_metric(score, "score", metric="prediction_drift"),
    ]
    quality_metrics, quality = _quality(labelled, holdout, threshold, rules, seed)
    metrics += quality_metrics
    metrics += _estimated(holdout, labelled, current[current[TARGET].isna()], threshold, rules)
    metrics = [
        replace(m, detail=m.detail + note) if m.column is not None or "drift" in m.metric else m for m in metrics
    ]
    firing = _firing(metrics, quality)
    if not report:
        return MonitorResult(metrics, firing, sampled=sampled, current_rows=len(current), quality=quality)
    parts = (metrics, firing, quality, numeric, categorical, embedding, threshold, note, len(current))
    return _with_report(ref, window, *parts, stamp=stamp)


# --- drift ------------------------------------------------------------------------------------------


def _share(name: str, label: str, columns: list[ColumnDrift], bar: float, rows: int) -> MetricValue:
    """Share of drifted columns in one family; alert when it exceeds `bar` (strictly)."""
    if not columns:
        return MetricValue(name, NAN, threshold=bar, detail=f"No {label} columns to test.")
    share = drifted_share(columns)
    drifted = [c.column for c in columns if c.drifted]
    return MetricValue(
        metric=name,
        value=share,
        threshold=bar,
        status=ALERT if share > bar else OK,
        sample_size=rows,
        detail=(
            f"{len(drifted)} of {len(columns)} {label} columns drifted ({', '.join(drifted) or 'none'}): "
            f"significant (family-wise p < {columns[0].level * len(columns):g}) and material "
            f"(distance >= {columns[0].bar:g}); alert when more than {bar:.0%} drift."
        ),
    )


def _column_metric(drift: ColumnDrift, kind: str, *, metric: str = "column_drift") -> MetricValue:
    what = "the score distribution against the hold-out scores" if kind == "score" else f"{kind} {drift.column!r}"
    return MetricValue(
        metric=metric,
        value=drift.distance,
        column=drift.column,
        threshold=drift.bar,
        status=ALERT if drift.drifted else OK,
        sample_size=drift.rows,
        detail=f"Drift of {what}: {drift.detail}",
        p_value=drift.p_value,
        p_value_threshold=drift.level,
    )


# --- realised quality ---------------------------------------------------------------------------------


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame[TARGET].notna()].copy()
    rows[TARGET] = rows[TARGET].astype(int)
    return rows


def _quality(
    labelled: pd.DataFrame, holdout: pd.DataFrame, threshold: float, rules: MonitorRules, seed: int
) -> tuple[list[MetricValue], QualityTest]:
    """The five realised metrics, the configured one with the alert test, and its detectable drop."""
    y, scores = labelled[TARGET].to_numpy(), labelled[SCORE].to_numpy(dtype=float)
    result = []
    test: QualityTest | None = None
    for name in QUALITY_METRICS:
        window = estimate(y, scores, threshold, name, resamples=rules.resamples, seed=seed)
        basis = (
            f"on {window.rows:,} labelled rows ({window.positives:,} positive), positive when score >= {threshold:g}"
        )
        detail = f"{name} {basis}; standard error {window.se:.4f} ({window.method})."
        if not math.isfinite(window.value):
            detail = f"Undefined: {name} needs labels of both classes (and a prediction of each); {basis}."
        metric = MetricValue(name, window.value, sample_size=window.rows, detail=detail)
        if name == rules.quality_metric:
            baseline = estimate(
                holdout[TARGET].to_numpy(),
                holdout[SCORE].to_numpy(dtype=float),
                threshold,
                name,
                resamples=rules.resamples,
                seed=seed,
            )
            test = test_quality(name, window, baseline, rules.quality)
            status = ALERT if test.status == QUALITY_ALERT else (INFO if test.status == TOO_FEW else OK)
            metric = replace(
                metric,
                threshold=baseline.value,
                status=status,
                detail=test.detail,
                p_value=test.p_value,
                p_value_threshold=rules.quality.alpha,
            )
        result.append(metric)
    assert test is not None  # quality_metric is one of QUALITY_METRICS (config validation)
    result.append(
        MetricValue(
            "quality_min_detectable_drop",
            test.min_detectable_drop,
            threshold=rules.quality.detectable_drop,
            status=INFO,
            sample_size=test.labels,
            detail=f"The smallest {test.metric} drop this window detects with {rules.quality.power:.0%} power "
            f"at level {rules.quality.alpha:g}; above {rules.quality.detectable_drop:g} means too few labels to tell.",
        )
    )
    return result, test


# --- estimated quality (CBPE) -----------------------------------------------------------------------


def _estimated(
    holdout: pd.DataFrame,
    labelled: pd.DataFrame,
    unlabelled: pd.DataFrame,
    threshold: float,
    rules: MonitorRules,
) -> list[MetricValue]:
    """estimated_<m> on the unlabelled rows, estimated_<m>_labelled on the labelled ones, and the gap."""
    calibrator = fit_calibrator(holdout[SCORE].to_numpy(), holdout[TARGET].to_numpy())
    result: list[MetricValue] = []
    labelled_auc = NAN
    for suffix, part, label in (("", unlabelled, "unlabelled"), ("_labelled", labelled, "labelled")):
        scores = part[SCORE].to_numpy(dtype=float)
        if calibrator is None or part.empty:
            values = dict.fromkeys(QUALITY_METRICS, NAN)
            why = "the hold-out labels hold one class only" if calibrator is None else f"no {label} rows"
            text = f"Undefined: {why}."
        else:
            values = expected_quality(calibrator.predict(scores), scores, threshold)
            text = (
                f"CBPE estimate on the {len(part):,} {label} rows, calibrated by isotonic regression on the "
                f"{len(holdout):,} hold-out rows the version never trained on."
            )
        if suffix:
            labelled_auc = values["roc_auc"]
        result.extend(
            MetricValue(f"estimated_{name}{suffix}", values[name], sample_size=len(part), detail=text)
            for name in QUALITY_METRICS
        )
    realised = estimate(labelled[TARGET].to_numpy(), labelled[SCORE].to_numpy(dtype=float), threshold, "roc_auc")
    gap = cbpe_gap(
        labelled_auc, realised.value, realised.se, realised.rows, bound=rules.cbpe_max_gap, alpha=rules.quality.alpha
    )
    result.append(
        MetricValue(
            "cbpe_gap_roc_auc",
            gap.gap,
            threshold=gap.bound,
            status=ALERT if gap.unreliable else (INFO if math.isnan(gap.gap) else OK),
            sample_size=realised.rows,
            detail=gap.detail,
        )
    )
    return result


# --- verdicts and report ------------------------------------------------------------------------------


def _firing(metrics: list[MetricValue], quality: QualityTest) -> dict[str, str]:
    """The window's alerts: drift (features or embedding), prediction_drift, quality."""
    firing: dict[str, str] = {}
    shares = [m for m in metrics if m.metric in ("drift_share_features", "drift_share_embedding") and m.status == ALERT]
    if shares:
        firing["drift"] = " ".join(m.detail for m in shares)
    prediction = next(m for m in metrics if m.metric == "prediction_drift")
    if prediction.status == ALERT:
        firing["prediction_drift"] = prediction.detail
    if quality.status == QUALITY_ALERT:
        firing["quality"] = quality.detail
    return firing


def sample_positions(rows: int, max_rows: int, seed: int) -> np.ndarray:
    """The positions, ascending, of the seeded drift sample of `rows` rows in fixed order: every row when
    there are at most `max_rows`."""
    if rows <= max_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows of a frame already in fixed order, drawn with `seed`."""
    if len(frame) <= max_rows:
        return frame
    return frame.iloc[sample_positions(len(frame), max_rows, seed)]


def _with_report(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    metrics: list[MetricValue],
    firing: dict[str, str],
    quality: QualityTest | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    embedding: Sequence[str],
    threshold: float,
    note: str,
    rows: int,
    *,
    stamp: Stamp | None = None,
) -> MonitorResult:
    """Draw Evidently's reports on the rows drift was measured on, and the page that holds them; the snapshots
    for the Evidently UI are filed under `stamp` (with Scorehouse's own numbers as a third one)."""
    from pipeline import evidently_report as ev

    drift_sampled = bool(note)
    shown_ref, shown = _sample(reference, REPORT_ROWS, 0), _sample(window, REPORT_ROWS, 0)
    if len(shown) < len(window) or len(shown_ref) < len(reference):
        note += f" Evidently's pages below show {len(shown):,} window and {len(shown_ref):,} reference rows of those."
    reference, window = shown_ref, shown
    drift = ev.drift_report(
        reference, window, numeric=numeric, categorical=categorical, embedding=embedding, stamp=stamp
    )
    labelled, holdout = _labelled(window), _labelled(reference)
    quality_snapshot, reason = None, "no labelled rows of both classes in the window"
    if labelled[TARGET].nunique() == 2:
        quality_snapshot = ev.quality_report(
            holdout if holdout[TARGET].nunique() == 2 else None, labelled, threshold, stamp
        )
    page = ev.render_html(metrics, note.strip(), drift, quality_snapshot, reason, rows)
    snapshots = {"drift": drift} | ({"quality": quality_snapshot} if quality_snapshot is not None else {})
    numbers = ev.numbers_report({m.metric: m.value for m in metrics if m.column is None or m.column == SCORE}, stamp)
    snapshots |= {"numbers": numbers} if numbers is not None else {}
    return MonitorResult(metrics, firing, drift_sampled, rows, page, snapshots, quality)
