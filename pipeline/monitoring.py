"""Monitoring of one window of scored rows against the reference: drift, realised and estimated quality.

Pure computation: data frames in, numbers and an HTML report out. Nothing here reads or writes a
store; `save_report` writes only the path it is handed. Evidently is imported lazily (it takes
seconds), and with DO_NOT_TRACK set so that it never tries to send usage events.

Interface
---------
    monitor_window(reference, current, *, numeric, categorical, embedding, threshold,
                   drift_share_threshold=0.5, column_p_value=0.05, column_distance=0.1,
                   max_rows=50_000, seed=0) -> MonitorResult
    estimate_quality(reference_scores, reference_target, current_scores, threshold) -> dict[str, float]
    fit_calibrator(reference_scores, reference_target) -> IsotonicRegression | None
    expected_quality(probabilities, scores, threshold) -> dict[str, float]
    expected_roc_auc(probabilities, scores) -> float
    save_report(result, path) -> Path

    MonitorResult(metrics: list[MetricValue], sampled: bool, current_rows: int, html: str, snapshots: dict)
        .get(metric, column=None) -> MetricValue
    MetricValue(metric, value, column=None, threshold=None, status="info", sample_size=0, detail="")

Frames carry the feature columns, the embedding columns, "score" (the model's P(positive)) and
"target" (0/1; NaN in `current` where no label has arrived yet). Metrics emitted, every window, in this
order (a metric that cannot be computed is there with value NaN, status "info" and the reason):

- drift_share_features, drift_share_embedding: share of drifted columns; "alert" when it exceeds
  drift_share_threshold (strictly: 0.5 alerts when more than half drift; Evidently's own share test,
  shown in the HTML, already fails at exactly the threshold).
- column_drift (column=name): one per feature and embedding column; "alert" when that column drifts.
- prediction_drift (column="score"): drift of the score distribution; "alert" when it drifts.
- roc_auc, f1, precision, recall, balanced_accuracy: realised, on the labelled rows (Evidently's
  classification metrics; balanced accuracy = (TPR + TNR) / 2). Status "info": this module sets no
  quality alert rule; the caller compares with its own baseline.
- estimated_<m> for the five metrics: CBPE estimate on the unlabelled rows;
  estimated_<m>_labelled: the same estimate on the labelled rows, to compare with the realised value.

Per-column drift tests (why these): Evidently's own default picks p-value tests (K-S, chi-square)
for a reference of at most 1000 rows and distance thresholds (normed Wasserstein, Jensen-Shannon,
0.1) above that. Distances with a fixed threshold are quiet on large samples, where p-values flag
differences too small to matter, but noisy on small ones: measured here against large references
(50k and 4k rows), normed Wasserstein between unshifted samples reaches 0.1 in 70% of 100-row windows
and 29% of 200-row windows, and Jensen-Shannon over 51 categories in 93% of 500-row windows. So the rule
is applied to the smaller of the two samples: if either has at most 1000 rows, K-S (numeric) and
chi-square (categorical) at p < column_p_value; otherwise normed Wasserstein and Jensen-Shannon at
distance >= column_distance. Without a shift a column then drifts in about 5% of windows or fewer, and
the share alarm needs more than half the columns to drift at once, which all but never happens.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.isotonic import IsotonicRegression

SCORE = "score"
TARGET = "target"
QUALITY_METRICS = ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")
# Evidently's own boundary between its small-sample (p-value) and large-sample (distance) tests.
SMALL_SAMPLE_ROWS = 1000

# How the details name Evidently's tests (its own display names are terse, e.g. "K-S p_value").
TEST_NAMES = {
    "ks": "Kolmogorov-Smirnov p-value",
    "chisquare": "chi-square p-value",
    "wasserstein": "normed Wasserstein distance",
    "jensenshannon": "Jensen-Shannon distance",
}

OK, ALERT, INFO = "ok", "alert", "info"
NAN = float("nan")


@dataclass(frozen=True)
class MetricValue:
    """One monitored number, with what it rests on and a sentence a person understands."""

    metric: str
    value: float  # NaN when undefined, never a stand-in
    column: str | None = None  # for per-column metrics
    threshold: float | None = None  # the alert threshold the value was compared with, if any
    status: str = INFO  # "ok" | "alert" | "info"
    sample_size: int = 0  # rows (or labels, for realised quality) the value rests on
    detail: str = ""


@dataclass(frozen=True)
class MonitorResult:
    """Everything one monitoring run found, and the report that shows it."""

    metrics: list[MetricValue]
    sampled: bool  # the current window had more than max_rows rows and was sampled
    current_rows: int  # rows in the window before sampling
    html: str  # self-contained HTML: summary table plus the Evidently reports
    # Evidently's own snapshots, for its UI: "drift" always, "quality" when the window had labels of both classes.
    snapshots: dict[str, Any] = field(default_factory=dict)

    def get(self, metric: str, column: str | None = None) -> MetricValue:
        """The metric of that name (and column); KeyError if there is none."""
        for value in self.metrics:
            if value.metric == metric and value.column == column:
                return value
        raise KeyError(f"no metric {metric!r} for column {column!r}")


@dataclass(frozen=True)
class _DriftTests:
    """The per-column tests chosen for a window (see the module docstring for why)."""

    num_method: str
    cat_method: str
    threshold: float
    kind: str  # "p-value" or "distance"


@dataclass(frozen=True)
class _ColumnDrift:
    """One column's drift verdict as read back from the Evidently snapshot."""

    column: str
    score: float
    method: str
    threshold: float
    drifted: bool


def save_report(result: MonitorResult, path: Path | str) -> Path:
    """Write the result's HTML report to `path` (its folder must exist) and return the path."""
    target = Path(path)
    target.write_text(result.html, encoding="utf-8")
    return target


def monitor_window(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    embedding: Sequence[str],
    threshold: float,
    drift_share_threshold: float = 0.5,
    column_p_value: float = 0.05,
    column_distance: float = 0.1,
    max_rows: int = 50_000,
    seed: int = 0,
) -> MonitorResult:
    """Drift, realised quality and CBPE-estimated quality of `current` against `reference`.

    `threshold` is the model's decision threshold on the score (positive when score >= threshold).
    `drift_share_threshold`: alert when more than this share of the feature (or embedding) columns drift.
    `column_p_value` / `column_distance`: a column drifts when its test's p-value is below the first
    (either sample at most 1000 rows) or its distance reaches the second (both larger); see the module
    docstring for why. Windows (and references) above `max_rows` rows are sampled with `seed`, and
    every detail says so. Raises ValueError when either frame has no rows.
    """
    if current.empty:
        raise ValueError("the current window has no rows: there is nothing to monitor")
    if reference.empty:
        raise ValueError("the reference has no rows: there is nothing to compare with")
    features = [*numeric, *categorical]
    window, sampled = _sample(current, max_rows, seed)
    ref, ref_sampled = _sample(reference, max_rows, seed)
    note = _sampling_note(len(current), len(window), sampled, len(reference), len(ref), ref_sampled, seed)

    tests = _choose_drift_tests(len(ref), len(window), column_p_value, column_distance)
    drift_snapshot = _run_drift_report(ref, window, numeric, categorical, embedding, tests, drift_share_threshold)
    drift_metrics = _drift_metrics(
        json.loads(drift_snapshot.json()), features, embedding, tests, drift_share_threshold, len(window)
    )

    labelled = _labelled(window)
    unlabelled = window[window[TARGET].isna()]
    ref_labelled = _labelled(ref)
    quality_snapshot, quality_reason = _run_quality_report(ref_labelled, labelled, threshold)
    if quality_snapshot is None:
        quality_metrics = [
            MetricValue(name, NAN, status=INFO, sample_size=len(labelled), detail=quality_reason)
            for name in QUALITY_METRICS
        ]
    else:
        quality_metrics = _quality_metrics(json.loads(quality_snapshot.json()), labelled, threshold)

    estimated = _estimated_metrics(ref_labelled, labelled, unlabelled, threshold)
    metrics = [_with_note(m, note) for m in [*drift_metrics, *quality_metrics, *estimated]]
    page = _render_html(metrics, note, drift_snapshot, quality_snapshot, quality_reason, len(current))
    snapshots = {"drift": drift_snapshot} | ({"quality": quality_snapshot} if quality_snapshot is not None else {})
    return MonitorResult(metrics=metrics, sampled=sampled, current_rows=len(current), html=page, snapshots=snapshots)


# --- sampling -------------------------------------------------------------------------------------


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> tuple[pd.DataFrame, bool]:
    """At most `max_rows` rows, drawn uniformly without replacement; whether it had to sample."""
    if len(frame) <= max_rows:
        return frame, False
    return frame.sample(n=max_rows, random_state=seed), True


def _sampling_note(
    current_rows: int, window_rows: int, sampled: bool, reference_rows: int, ref_rows: int, ref_sampled: bool, seed: int
) -> str:
    """The sentence every detail carries when a side was sampled; empty when none was."""
    parts = []
    if sampled:
        parts.append(f"the window was sampled to {window_rows:,} of its {current_rows:,} rows")
    if ref_sampled:
        parts.append(f"the reference was sampled to {ref_rows:,} of its {reference_rows:,} rows")
    if not parts:
        return ""
    return f"Sampled (seed {seed}): " + " and ".join(parts) + "."


def _with_note(metric: MetricValue, note: str) -> MetricValue:
    """The metric with the sampling note appended to its detail."""
    if not note:
        return metric
    return MetricValue(
        metric=metric.metric,
        value=metric.value,
        column=metric.column,
        threshold=metric.threshold,
        status=metric.status,
        sample_size=metric.sample_size,
        detail=f"{metric.detail} {note}",
    )


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose label has arrived, with the target as int."""
    rows = frame[frame[TARGET].notna()].copy()
    rows[TARGET] = rows[TARGET].astype(int)
    return rows


# --- drift ------------------------------------------------------------------------------------------


def _choose_drift_tests(reference_rows: int, current_rows: int, p_value: float, distance: float) -> _DriftTests:
    """p-value tests if either sample is small, distance thresholds otherwise (module docstring: why)."""
    if min(reference_rows, current_rows) <= SMALL_SAMPLE_ROWS:
        return _DriftTests("ks", "chisquare", p_value, "p-value")
    return _DriftTests("wasserstein", "jensenshannon", distance, "distance")


def _evidently() -> Any:
    """Import Evidently once it is needed, with usage reporting switched off (no network at run time)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import evidently

    return evidently


def _run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    embedding: Sequence[str],
    tests: _DriftTests,
    drift_share: float,
) -> Any:
    """Evidently Report: a DataDriftPreset for the features, another for the embedding, ValueDrift on the score."""
    evidently = _evidently()
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical, *embedding, SCORE]
    definition = evidently.DataDefinition(
        numerical_columns=[*numeric, *embedding, SCORE], categorical_columns=list(categorical)
    )
    options = {
        "drift_share": drift_share,
        "num_method": tests.num_method,
        "cat_method": tests.cat_method,
        "num_threshold": tests.threshold,
        "cat_threshold": tests.threshold,
    }
    items: list[Any] = []
    features = [*numeric, *categorical]
    if features:
        items.append(DataDriftPreset(columns=features, **options))
    if embedding:
        items.append(DataDriftPreset(columns=list(embedding), **options))
    items.append(ValueDrift(column=SCORE, method=tests.num_method, threshold=tests.threshold))
    report = evidently.Report(items, include_tests=True)  # the tests carry each column's verdict
    return report.run(
        evidently.Dataset.from_pandas(current[columns], data_definition=definition),
        evidently.Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def _column_drifts(snapshot: dict[str, Any]) -> dict[str, _ColumnDrift]:
    """Each ValueDrift in the snapshot dict: score, resolved method and threshold, and its test's verdict."""
    failed = {
        test["metric_config"]["metric_id"]: test["status"] == "FAIL"
        for test in snapshot["tests"]
        if test["metric_config"]["params"]["type"].endswith(":ValueDrift")
    }
    drifts = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            drifts[config["column"]] = _ColumnDrift(
                column=config["column"],
                score=float(metric["value"]),
                method=str(config["method"]),
                threshold=float(config["threshold"]),
                drifted=failed[metric["id"]],
            )
    return drifts


def _drift_shares(snapshot: dict[str, Any]) -> dict[tuple[str, ...], float]:
    """Each DriftedColumnsCount's share of drifted columns, keyed by its columns."""
    return {
        tuple(metric["config"]["columns"]): float(metric["value"]["share"])
        for metric in snapshot["metrics"]
        if metric["config"]["type"].endswith(":DriftedColumnsCount")
    }


def _drift_detail(drift: _ColumnDrift, kind: str) -> str:
    """One sentence on a column's test: name, score, the rule and the verdict."""
    rule = "drift when below" if kind == "p-value" else "drift when at or above"
    verdict = "drift detected" if drift.drifted else "no drift"
    name = TEST_NAMES.get(drift.method, drift.method)
    return f"{name} = {drift.score:.4g} ({rule} {drift.threshold:g}): {verdict}."


def _drift_metrics(
    snapshot: dict[str, Any],
    features: list[str],
    embedding: Sequence[str],
    tests: _DriftTests,
    drift_share: float,
    rows: int,
) -> list[MetricValue]:
    """Share metrics, then one column_drift per column, then prediction_drift, from the snapshot dict."""
    drifts = _column_drifts(snapshot)
    shares = _drift_shares(snapshot)
    result = [
        _share_metric("drift_share_features", "raw feature", features, drifts, shares, drift_share, rows),
        _share_metric("drift_share_embedding", "embedding", list(embedding), drifts, shares, drift_share, rows),
    ]
    for column in [*features, *embedding]:
        drift = drifts[column]
        kind = "embedding column" if column in embedding else "feature"
        result.append(
            MetricValue(
                metric="column_drift",
                value=drift.score,
                column=column,
                threshold=drift.threshold,
                status=ALERT if drift.drifted else OK,
                sample_size=rows,
                detail=f"Drift of {kind} {column!r}: {_drift_detail(drift, tests.kind)}",
            )
        )
    score = drifts[SCORE]
    result.append(
        MetricValue(
            metric="prediction_drift",
            value=score.score,
            column=SCORE,
            threshold=score.threshold,
            status=ALERT if score.drifted else OK,
            sample_size=rows,
            detail=f"Drift of the score distribution: {_drift_detail(score, tests.kind)}",
        )
    )
    return result


def _share_metric(
    name: str,
    label: str,
    columns: list[str],
    drifts: dict[str, _ColumnDrift],
    shares: dict[tuple[str, ...], float],
    drift_share: float,
    rows: int,
) -> MetricValue:
    """Share of drifted columns in one group; alert when it exceeds `drift_share` (strictly)."""
    if not columns:
        return MetricValue(name, NAN, threshold=drift_share, detail=f"No {label} columns to test.")
    share = shares[tuple(columns)]
    drifted = [c for c in columns if drifts[c].drifted]
    named = ", ".join(drifted) if drifted else "none"
    return MetricValue(
        metric=name,
        value=share,
        threshold=drift_share,
        status=ALERT if share > drift_share else OK,
        sample_size=rows,
        detail=(
            f"{len(drifted)} of {len(columns)} {label} columns drifted ({named}); "
            f"alert when more than {drift_share:.0%} drift."
        ),
    )


# --- realised quality -------------------------------------------------------------------------------


def _both_classes(frame: pd.DataFrame) -> bool:
    """Whether the labelled rows hold at least one positive and one negative."""
    return frame[TARGET].nunique() == 2


def _run_quality_report(reference: pd.DataFrame, labelled: pd.DataFrame, threshold: float) -> tuple[Any, str]:
    """Evidently's ClassificationPreset on the labelled rows, or None and the reason it cannot run.

    The reference is passed too when it has both classes, so the report shows it side by side.
    Evidently's default tests are off: they would judge against the reference with their own
    tolerance, and this module leaves quality alerts to the caller.
    """
    if labelled.empty:
        return None, "Undefined: no row of the window has a label yet."
    if not _both_classes(labelled):
        only = int(labelled[TARGET].iloc[0])
        return None, f"Undefined: all {len(labelled):,} labels are {only}; quality needs both classes."
    evidently = _evidently()
    from evidently.presets import ClassificationPreset

    definition = evidently.DataDefinition(
        numerical_columns=[SCORE],
        categorical_columns=[TARGET],
        classification=[evidently.BinaryClassification(target=TARGET, prediction_probas=SCORE, pos_label=1)],
    )
    columns = [SCORE, TARGET]
    ref = (
        evidently.Dataset.from_pandas(reference[columns], data_definition=definition)
        if _both_classes(reference)
        else None
    )
    report = evidently.Report([ClassificationPreset(probas_threshold=threshold)], include_tests=False)
    snapshot = report.run(evidently.Dataset.from_pandas(labelled[columns], data_definition=definition), ref)
    return snapshot, ""


def _quality_values(snapshot: dict[str, Any]) -> dict[str, float]:
    """Evidently's single-value classification metrics by type name (RocAuc, F1Score, TPR, ...)."""
    return {
        metric["config"]["type"].rsplit(":", 1)[-1]: float(metric["value"])
        for metric in snapshot["metrics"]
        if isinstance(metric["value"], int | float)
    }


def _quality_metrics(snapshot: dict[str, Any], labelled: pd.DataFrame, threshold: float) -> list[MetricValue]:
    """The five realised metrics from the snapshot dict; balanced accuracy as (TPR + TNR) / 2."""
    values = _quality_values(snapshot)
    predicted_positive = int((labelled[SCORE] >= threshold).sum())
    n = len(labelled)
    positives = int(labelled[TARGET].sum())
    basis = f"on {n:,} labelled rows ({positives:,} positive), positive when score >= {threshold:g}"
    found = {
        "roc_auc": (values["RocAuc"], f"Evidently RocAuc {basis}."),
        "f1": (values["F1Score"], f"Evidently F1Score {basis}."),
        "precision": (values["Precision"], f"Evidently Precision {basis}."),
        "recall": (values["Recall"], f"Evidently Recall {basis}."),
        "balanced_accuracy": (
            (values["TPR"] + values["TNR"]) / 2,
            f"(TPR + TNR) / 2 from Evidently's TPR {values['TPR']:.4g} and TNR {values['TNR']:.4g} {basis}.",
        ),
    }
    if predicted_positive == 0:  # Evidently reports 0 there; precision is undefined, not zero
        found["precision"] = (NAN, f"Undefined: no labelled row scored at or above {threshold:g}.")
    return [MetricValue(name, value, sample_size=n, detail=detail) for name, (value, detail) in found.items()]


# --- estimated quality (CBPE) -----------------------------------------------------------------------


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


def _estimated_metrics(
    reference: pd.DataFrame, labelled: pd.DataFrame, unlabelled: pd.DataFrame, threshold: float
) -> list[MetricValue]:
    """estimated_<m> on the unlabelled rows and estimated_<m>_labelled on the labelled ones."""
    calibrator = fit_calibrator(reference[SCORE].to_numpy(), reference[TARGET].to_numpy())
    result: list[MetricValue] = []
    for suffix, part, label in (("", unlabelled, "unlabelled"), ("_labelled", labelled, "labelled")):
        if calibrator is None:
            reason = "Undefined: the reference labels hold one class only, so the scores cannot be calibrated."
            values, details = dict.fromkeys(QUALITY_METRICS, NAN), dict.fromkeys(QUALITY_METRICS, reason)
        elif part.empty:
            values = dict.fromkeys(QUALITY_METRICS, NAN)
            details = dict.fromkeys(QUALITY_METRICS, f"Undefined: the window has no {label} rows.")
        else:
            scores = part[SCORE].to_numpy(dtype=float)
            values = expected_quality(calibrator.predict(scores), scores, threshold)
            compare = " Compare with the realised value on the same rows." if label == "labelled" else ""
            text = (
                f"CBPE estimate on the {len(part):,} {label} rows: expected confusion matrix at score >= "
                f"{threshold:g} from probabilities calibrated by isotonic regression on {len(reference):,} "
                f"labelled reference rows.{compare}"
            )
            details = {name: text for name in QUALITY_METRICS}
            details = {n: (d if not math.isnan(values[n]) else f"Undefined: {d}") for n, d in details.items()}
        result.extend(
            MetricValue(f"estimated_{name}{suffix}", values[name], sample_size=len(part), detail=details[name])
            for name in QUALITY_METRICS
        )
    return result


# --- HTML ---------------------------------------------------------------------------------------------

_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.alert td { background: #fde2e1; }
iframe.report { width: 100%; height: 900px; border: 0; }
"""

# Each Evidently report is a full page with its own scripts, so it sits in an iframe (srcdoc: still
# one self-contained file); the frame grows to its content as Evidently renders and expands it.
_FIT_SCRIPT = """
function fitFrame(frame) {
  var body = frame.contentWindow.document.body;
  new ResizeObserver(function () { frame.style.height = (body.scrollHeight + 24) + "px"; }).observe(body);
}
"""


def _format_value(value: float | None) -> str:
    """A number for the summary table: 4 significant digits, NaN shown as such, None as blank."""
    if value is None:
        return ""
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _summary_table(metrics: list[MetricValue]) -> str:
    """The metrics as an HTML table, alerts highlighted."""
    header = "".join(f"<th>{name}</th>" for name in ("metric", "column", "value", "threshold", "status", "n", "detail"))
    rows = []
    for m in metrics:
        cells = [
            f"<td>{html.escape(m.metric)}</td>",
            f"<td>{html.escape(m.column or '')}</td>",
            f"<td class='num'>{_format_value(m.value)}</td>",
            f"<td class='num'>{_format_value(m.threshold)}</td>",
            f"<td>{html.escape(m.status)}</td>",
            f"<td class='num'>{m.sample_size:,}</td>",
            f"<td>{html.escape(m.detail)}</td>",
        ]
        rows.append(f"<tr class='{html.escape(m.status)}'>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _embed(snapshot: Any) -> str:
    """An Evidently snapshot's standalone page inside an iframe.

    Evidently inlines its whole JS bundle (about 3.5 MB) and its icon font, so the page needs no
    network. The one CDN address in the bundle is plotly's default `topojsonURL`, fetched only by geo
    maps, which these reports never draw (checked by rendering in Chromium with no network at all).
    """
    page = snapshot.get_html_str(as_iframe=False)
    return f'<iframe class="report" onload="fitFrame(this)" srcdoc="{html.escape(page, quote=True)}"></iframe>'


def _render_html(
    metrics: list[MetricValue],
    note: str,
    drift_snapshot: Any,
    quality_snapshot: Any,
    quality_reason: str,
    current_rows: int,
) -> str:
    """One self-contained page: the summary table, then Evidently's drift and quality reports."""
    alerts = sum(m.status == ALERT for m in metrics)
    quality = (
        _embed(quality_snapshot)
        if quality_snapshot is not None
        else f"<p>No classification report: {html.escape(quality_reason)}</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scorehouse monitoring</title>
<style>{_PAGE_STYLE}</style><script>{_FIT_SCRIPT}</script></head>
<body>
<h1>Scorehouse monitoring</h1>
<p>{current_rows:,} rows in the window; {alerts} alert(s). {html.escape(note)}</p>
<h2>Summary</h2>
{_summary_table(metrics)}
<h2>Data drift: features, embedding and score (Evidently)</h2>
{_embed(drift_snapshot)}
<h2>Classification quality on the labelled rows (Evidently)</h2>
{quality}
</body></html>
"""
