"""The one place that talks to Evidently: it builds the reports people read, and reads back two fields.

Decisions never rest on Evidently's JSON (its metric type names and layout changed between 0.6 and
0.7): the numbers that alert are computed in `pipeline.drift`, `pipeline.stats` and `pipeline.cbpe`.
Evidently draws the reports (the HTML page and the snapshots for its UI). `evidently_values` reads
only `metrics[].config.type`, `metrics[].config.column` and `metrics[].value` from a snapshot's
dict; tests/unit/test_monitoring.py pins those fields, so an upgrade that moves them fails one test.

Evidently is imported lazily (about 6 s) with DO_NOT_TRACK set, so it never sends usage events.
"""

from __future__ import annotations

import html
import importlib
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

SCORE = "score"
TARGET = "target"

# Scorehouse's own numbers of a window, charted by the Evidently UI's dashboard (see `numbers_report`).
NUMBERS = (
    "drift_share_features",
    "drift_share_embedding",
    "prediction_drift",
    "roc_auc",
    "estimated_roc_auc",
    "estimated_roc_auc_labelled",
)


@dataclass(frozen=True, kw_only=True)
class Stamp:
    """What a report's snapshots are filed under in the Evidently UI: the window's end (the time axis of its
    dashboard), tags (the model version, the dataset) and metadata."""

    when: datetime
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def run_arguments(self) -> dict[str, Any]:
        # Evidently compares naive times; the window's end is UTC.
        naive = self.when.astimezone(UTC).replace(tzinfo=None) if self.when.tzinfo else self.when
        return {"timestamp": naive, "tags": list(self.tags), "metadata": dict(self.metadata)}


def _evidently() -> Any:
    """Import Evidently once it is needed, with usage reporting switched off (no network at run time)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import evidently

    return evidently


def import_in_background() -> threading.Thread:
    """Start importing what a report and its snapshots need (about 6 s of Python on this machine) on a thread,
    so that the caller reads its data meanwhile: DuckDB and Arrow read outside the GIL. Join the thread
    before importing anything of the monitoring stack: two threads importing the same packages at once can
    each hold a lock the other waits for, and Python then hands one of them a half-initialised module."""

    def load() -> None:
        _evidently()
        importlib.import_module("evidently.presets")
        importlib.import_module("evidently.metrics")
        importlib.import_module("evidently.ui.workspace")

    thread = threading.Thread(target=load, name="import-evidently", daemon=True)
    thread.start()
    return thread


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    embedding: Sequence[str],
    stamp: Stamp | None = None,
) -> Any:
    """Evidently's drift report (a DataDriftPreset over features and embedding, ValueDrift on the score)."""
    evidently = _evidently()
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical, *embedding, SCORE]
    definition = evidently.DataDefinition(
        numerical_columns=[*numeric, *embedding, SCORE], categorical_columns=list(categorical)
    )
    items: list[Any] = [DataDriftPreset(columns=[*numeric, *categorical, *embedding]), ValueDrift(column=SCORE)]
    report = evidently.Report(items)
    return report.run(
        evidently.Dataset.from_pandas(current[columns], data_definition=definition),
        evidently.Dataset.from_pandas(reference[columns], data_definition=definition),
        **(stamp.run_arguments() if stamp else {}),
    )


def quality_report(
    reference: pd.DataFrame | None, labelled: pd.DataFrame, threshold: float, stamp: Stamp | None = None
) -> Any:
    """Evidently's ClassificationPreset on labelled rows (the target 0/1, both classes present)."""
    evidently = _evidently()
    from evidently.presets import ClassificationPreset

    definition = evidently.DataDefinition(
        numerical_columns=[SCORE],
        categorical_columns=[TARGET],
        classification=[evidently.BinaryClassification(target=TARGET, prediction_probas=SCORE, pos_label=1)],
    )
    columns = [SCORE, TARGET]
    ref = None if reference is None else evidently.Dataset.from_pandas(reference[columns], data_definition=definition)
    report = evidently.Report([ClassificationPreset(probas_threshold=threshold)], include_tests=False)
    return report.run(
        evidently.Dataset.from_pandas(labelled[columns], data_definition=definition),
        ref,
        **(stamp.run_arguments() if stamp else {}),
    )


def numbers_report(values: Mapping[str, float], stamp: Stamp | None = None) -> Any:
    """Scorehouse's own numbers of one window (drift shares, prediction drift, realised and estimated ROC AUC)
    as an Evidently snapshot: one `MeanValue` per number over a one-row frame. The Evidently UI's dashboard
    charts these, so it shows the very values the alerts rest on, not Evidently's own drift tests.
    Undefined numbers (no labels yet) are left out."""
    evidently = _evidently()
    from evidently.metrics import MeanValue

    known = {name: float(values[name]) for name in NUMBERS if name in values and math.isfinite(values[name])}
    if not known:
        return None
    frame = pd.DataFrame([known])
    definition = evidently.DataDefinition(numerical_columns=list(known))
    report = evidently.Report([MeanValue(column=name) for name in known])
    return report.run(
        evidently.Dataset.from_pandas(frame, data_definition=definition),
        None,
        **(stamp.run_arguments() if stamp else {}),
    )


def evidently_values(snapshot: dict[str, Any]) -> dict[tuple[str, str | None], Any]:
    """(metric type name, column) -> value, for every metric of a snapshot's dict (`json.loads(snapshot.json())`)."""
    values: dict[tuple[str, str | None], Any] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        values[(str(config["type"]).rsplit(":", 1)[-1], config.get("column"))] = metric["value"]
    return values


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


def format_value(value: float | None) -> str:
    """A number for the summary table: 4 significant digits, NaN shown as such, None as blank."""
    if value is None:
        return ""
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _summary_table(metrics: Sequence[Any]) -> str:
    """The metrics (pipeline.monitoring.MetricValue) as an HTML table, alerts highlighted."""
    header = "".join(f"<th>{name}</th>" for name in ("metric", "column", "value", "threshold", "status", "n", "detail"))
    rows = []
    for m in metrics:
        cells = [
            f"<td>{html.escape(m.metric)}</td>",
            f"<td>{html.escape(m.column or '')}</td>",
            f"<td class='num'>{format_value(m.value)}</td>",
            f"<td class='num'>{format_value(m.threshold)}</td>",
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


def render_html(
    metrics: Sequence[Any],
    note: str,
    drift_snapshot: Any,
    quality_snapshot: Any,
    quality_reason: str,
    current_rows: int,
) -> str:
    """One self-contained page: the summary table, then Evidently's drift and quality reports."""
    alerts = sum(m.status == "alert" for m in metrics)
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
