"""`monitor`: an Evidently report over the recent window against the champion's reference set.

It measures drift (features, embedding, scores), realised quality on the labels that have arrived and
estimated quality (CBPE) where they have not, stores every number in `monitoring`, raises alerts,
and decides whether retraining is due.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name, dashboard_url, is_deployed, report_url, start_retrain
from flows.runtime import open_store, publish, run_name, settings_from, utc_now
from pipeline.config import Settings
from pipeline.triggers import Measured, RetrainDue, measure_quality, quality_dropped, retrain_due
from warehouse.registry import champion, new_labels_since_training

if TYPE_CHECKING:
    from pipeline.monitoring import MonitorResult
from warehouse.store import Warehouse, batch_id

ALERT = "alert"


@dataclass(frozen=True)
class MonitorOutcome:
    report_id: str | None  # None when there was nothing to monitor
    report_path: str | None
    alerts: list[str]
    retrain: RetrainDue
    new_report: bool
    # Evidently UI pages of this report ("drift", "quality"), when it was published to the workspace.
    report_urls: dict[str, str] = field(default_factory=dict)
    # The run of the `retrain` deployment this monitor started (deployed runs only; locally the caller retrains).
    retrain_run: str | None = None


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _expand_embedding(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    vectors = np.vstack(list(frame.pop("embedding"))) if len(frame) else np.empty((0, 0))
    names = [f"emb_{i:02d}" for i in range(vectors.shape[1])]
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(vectors, columns=names)], axis=1), names


@task(cache_policy=NO_CACHE)
def load_window(store: Warehouse, settings: Settings, version: str) -> tuple[pd.DataFrame, datetime, datetime] | None:
    """The records that arrived in the last `window_days` calendar days (up to the latest the champion scored), as the
    champion scored them, with their labels so far. Arrival, not scoring time, defines the window: a new
    champion re-scores old records, which must not pull them into the recent population."""
    dataset = settings.dataset
    arrived = "r.event_time" if dataset.event_time_column else "r.ingested_at"
    with store.connect() as con:
        row = con.execute(
            f"SELECT max({arrived}) FROM records r SEMI JOIN predictions p ON p.record_id = r.record_id "
            "AND p.model_version = ?",
            [version],
        ).fetchone()
        if row is None or row[0] is None:
            return None
        end: datetime = row[0]
        # Whole calendar days (UTC): the window is today and the N-1 days before, whatever the hour.
        first_day = end.astimezone(UTC).date() - timedelta(days=settings.monitoring.window_days - 1)
        start = datetime.combine(first_day, time.min, tzinfo=UTC)
        frame = con.execute(
            f"""
            WITH scored AS (
                SELECT * FROM predictions WHERE model_version = $version
                QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC) = 1
            )
            SELECT r.record_id, {_quoted(dataset.feature_names)}, p.embedding, p.score,
                   CASE f.label WHEN $positive THEN 1.0 WHEN $negative THEN 0.0 END AS target
            FROM records r JOIN scored p USING (record_id) LEFT JOIN feedback_current f USING (record_id)
            WHERE {arrived} >= $start AND {arrived} <= $end
            """,
            {
                "version": version,
                "start": start,
                "end": end,
                "positive": dataset.classes[1],
                "negative": dataset.classes[0],
            },
        ).df()
    return frame, start, end


@task(cache_policy=NO_CACHE)
def load_reference_set(store: Warehouse, settings: Settings, version: str) -> pd.DataFrame:
    """The champion's reference set. Only its hold-out keeps the target: training rows' scores are
    optimistic, so calibration (for the quality estimate) must not learn from them."""
    dataset = settings.dataset
    with store.connect() as con:
        return con.execute(
            f"""
            SELECT record_id, {_quoted(dataset.feature_names)}, embedding, score,
                   CASE WHEN split = 'holdout' THEN (target = $positive)::DOUBLE END AS target
            FROM reference WHERE model_version = $version
            """,
            {"version": version, "positive": dataset.classes[1]},
        ).df()


@task(cache_policy=NO_CACHE)
def measure(reference: pd.DataFrame, current: pd.DataFrame, settings: Settings, threshold: float) -> MonitorResult:
    from pipeline.monitoring import monitor_window  # imports Evidently: seconds, so only here

    reference, embedding = _expand_embedding(reference.drop(columns=["record_id"]))
    current, _ = _expand_embedding(current.drop(columns=["record_id"]))
    dataset, monitoring = settings.dataset, settings.monitoring
    return monitor_window(
        reference,
        current,
        numeric=dataset.numeric,
        categorical=dataset.categorical,
        embedding=embedding,
        threshold=threshold,
        drift_share_threshold=monitoring.drift_share_threshold,
        column_p_value=monitoring.column_p_value,
        max_rows=monitoring.max_rows,
        seed=monitoring.seed,
    )


def _quality_of(frame: pd.DataFrame, threshold: float, metric: str, seed: int) -> Measured:
    labelled = frame[frame["target"].notna()]
    return measure_quality(labelled["target"].to_numpy(), labelled["score"].to_numpy(), threshold, metric, seed)


def post_webhook(url: str, body: dict[str, Any]) -> str | None:
    """POST the alert as JSON; returns the error, if any (an unreachable receiver must not fail the run)."""
    request = urllib.request.Request(
        url, data=json.dumps(body, default=str).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return str(error)
    return None


def _monitoring_rows(metrics: list[Any], common: dict[str, Any]) -> pa.Table:
    rows = [
        {
            **common,
            "metric": m.metric,
            "column_name": m.column,
            "value": m.value,
            "threshold": m.threshold,
            "status": m.status,
            "sample_size": m.sample_size,
            "detail": m.detail,
        }
        for m in metrics
    ]
    return pa.Table.from_pylist(rows)


def report_links(outcome: MonitorOutcome) -> str:
    """Markdown links to the report in the Evidently UI and to the dashboard, and the HTML file's path."""
    pages = [f"[Evidently {name} report]({url})" for name, url in outcome.report_urls.items()]
    pages.append(f"[dashboard]({dashboard_url()})")
    return " · ".join(pages) + f"  \nHTML report: `{outcome.report_path}`"


def _summary(outcome: MonitorOutcome, metrics: list[Any], start: datetime, end: datetime, version: str) -> str:
    shown = [m for m in metrics if m.column is None or m.metric == "prediction_drift"]
    retraining = f"{'due: ' if outcome.retrain.due else ''}{outcome.retrain.summary}"
    if outcome.retrain_run:
        retraining += f" (retrain deployment: run `{outcome.retrain_run}`)"
    lines = [
        f"# Monitor {version}: {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}",
        report_links(outcome),
        "",
        f"**Alerts:** {'; '.join(outcome.alerts) if outcome.alerts else 'none'}",
        f"**Retraining:** {retraining}",
        "",
        "| metric | value | threshold | status | rows |",
        "|---|---|---|---|---|",
    ]
    for m in shown:
        threshold = "" if m.threshold is None else f"{m.threshold:.3f}"
        lines.append(f"| {m.metric} | {m.value:.4f} | {threshold} | {m.status} | {m.sample_size} |")
    return "\n".join(lines)


@flow(name="monitor", flow_run_name=run_name("monitor"))
def monitor(config: str | None = None) -> MonitorOutcome:
    """Report on the last `monitoring.window_days` of the champion's predictions; alert; decide on retraining.

    Idempotent: the same window with the same labels gives the same report id and adds nothing.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    with store.connect() as con:
        registered = champion(con)
        new_labels = new_labels_since_training(con)
        champion_row = con.execute("SELECT threshold FROM champion").fetchone()
    if registered is None or champion_row is None:
        raise RuntimeError(
            "there is no champion model yet: run `scorehouse train`, or the train/scorehouse deployment, first"
        )
    threshold = float(champion_row[0])
    nothing = RetrainDue(due=False, fired=[], reasons=[])
    window = load_window(store, settings, registered.version)
    if window is None:
        logger.info("no predictions by %s yet: nothing to monitor", registered.version)
        return MonitorOutcome(None, None, [], nothing, False)
    current, start, end = window
    labels = int(current["target"].notna().sum())
    report_id = batch_id("monitor", registered.version, end.isoformat(), labels, settings.monitoring.model_dump_json())
    report_path = settings.reports_dir / f"{end:%Y%m%d-%H%M%S}-{registered.version}-{report_id[:8]}.html"
    if store.has_batch("monitoring", report_id):
        logger.info("this window and its labels were already reported: %s", report_path)
        return MonitorOutcome(report_id, str(report_path), [], nothing, False)

    reference = load_reference_set(store, settings, registered.version)
    result = measure(reference, current, settings, threshold)
    metrics = list(result.metrics)
    name, seed = settings.monitoring.quality_metric, settings.monitoring.seed
    window_quality = _quality_of(current, threshold, name, seed)
    champion_quality = _quality_of(reference, threshold, name, seed)
    if quality_dropped(window_quality, champion_quality, settings):
        index = next(i for i, m in enumerate(metrics) if m.metric == name and m.column is None)
        metrics[index] = replace(
            metrics[index],
            status=ALERT,
            threshold=champion_quality.value - settings.monitoring.max_quality_drop,
            detail=f"{metrics[index].detail} More than {settings.monitoring.max_quality_drop} below the champion's "
            f"hold-out {name} {champion_quality.value:.3f}, beyond noise (90% intervals "
            f"{window_quality.low:.3f}..{window_quality.high:.3f} and "
            f"{champion_quality.low:.3f}..{champion_quality.high:.3f} do not overlap).",
        )
    drifted = max(
        (m.value for m in metrics if m.metric in ("drift_share_features", "drift_share_embedding")), default=0.0
    )
    due = retrain_due(
        new_labels=new_labels,
        drifted_share=drifted if math.isfinite(drifted) else 0.0,
        quality=window_quality,
        champion_quality=champion_quality,
        settings=settings,
    )
    alerts = [
        f"{m.metric}{'(' + m.column + ')' if m.column else ''} = {m.value:.3f}"
        for m in metrics
        if m.status == ALERT and m.metric != "column_drift"
    ]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report_path.write_text(result.html, encoding="utf-8")
    report_urls = publish_snapshots(settings, result.snapshots, f"{end:%Y-%m-%d %H:%M} {registered.version}")

    from pipeline.monitoring import MetricValue

    decision = MetricValue("retrain_due", float(due.due), status="info", sample_size=new_labels, detail=due.summary)
    now = utc_now()
    common = {
        "report_id": report_id,
        "run_at": now,
        "window_start": start,
        "window_end": end,
        "model_version": registered.version,
        "sampled": bool(result.sampled),
        "report_path": str(report_path),
    }
    store.commit(
        "monitoring", report_id, _monitoring_rows([*metrics, decision], common), partition=now.date().isoformat()
    )
    publish(store)
    outcome = MonitorOutcome(report_id, str(report_path), alerts, due, True, report_urls)
    cannot_retrain = None
    if due.due and is_deployed():
        # On a server, retraining is a run of the `retrain` deployment, not work inside this run (flows/deployed.py).
        try:
            started = start_retrain(config, trigger=due.summary, key=report_id)
        except RuntimeError as problem:  # the deployment is missing: report it, publish the rest, then fail
            cannot_retrain = problem
            outcome = replace(outcome, retrain_run=f"not started: {problem}")
        else:
            outcome = replace(outcome, retrain_run=started.name)
            logger.info("retraining is due: started run %r of the retrain deployment", started.name)
    for alert in alerts:
        logger.warning("ALERT %s (window %s .. %s, report %s)", alert, start, end, report_path)
    if alerts and settings.monitoring.webhook_url:
        error = post_webhook(
            settings.monitoring.webhook_url,
            {
                "report_id": report_id,
                "model_version": registered.version,
                "window_start": start,
                "window_end": end,
                "alerts": alerts,
                "report_path": str(report_path),
                "retrain": due.summary,
            },
        )
        if error:
            logger.warning("could not post the alert to %s: %s", settings.monitoring.webhook_url, error)
    logger.info(
        "%s rows monitored (%d labelled); retraining %s",
        len(current),
        labels,
        f"due: {due.summary}" if due.due else "not due",
    )
    create_markdown_artifact(
        key="monitor-summary",
        markdown=_summary(outcome, metrics, start, end, registered.version),
        description=f"monitor {registered.version}",
    )
    create_table_artifact(
        key="monitor-metrics",
        table=[
            {
                "metric": m.metric,
                "column": m.column or "",
                "value": round(m.value, 4),
                "status": m.status,
                "rows": m.sample_size,
            }
            for m in metrics
            if m.column is None or m.metric == "prediction_drift"
        ],
        description=f"monitoring metrics {registered.version}",
    )
    if report_urls:
        create_link_artifact(
            key="monitor-report",
            link=next(iter(report_urls.values())),
            link_text=f"Evidently report {registered.version} {end:%Y-%m-%d %H:%M}",
            description="the monitoring report in the Evidently UI",
        )
    add_to_run_name(f"{registered.version}{f', {len(alerts)} alert(s)' if alerts else ''}")
    if cannot_retrain is not None:
        raise cannot_retrain
    return outcome


def publish_snapshots(settings: Settings, snapshots: dict[str, Any], name: str) -> dict[str, str]:
    """Add the report's Evidently snapshots to the workspace the Evidently UI shows (`make reports-ui`);
    returns their pages there. The HTML file is the report of record: a workspace that cannot be written
    costs a warning, not the run."""
    from pipeline.workspace import publish

    workspace = settings.reports_dir / "evidently"
    try:
        published = publish(workspace, "Scorehouse monitoring", {f"{name} {kind}": s for kind, s in snapshots.items()})
    except Exception as error:  # the UI's copy only: the report of record is the HTML file already written
        get_run_logger().warning("could not add the report to the Evidently workspace %s: %r", workspace, error)
        return {}
    return {kind: report_url(p.project_id, p.snapshot_id) for kind, p in zip(snapshots, published, strict=True)}
