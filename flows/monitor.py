"""`monitor`: the champion's recent window against its reference set; alerts as episodes; retraining when due.

Wiring only: the window and the reference come from the warehouse, every number and verdict from
`pipeline.monitoring`, the episodes from `pipeline.episodes`, the retrain decision from `pipeline.triggers`.
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name, dashboard_url, is_deployed, report_url, start_retrain
from flows.runtime import open_store, publish, run_name, settings_from, this_flow_run_id, utc_now
from pipeline.config import Settings
from pipeline.episodes import Episode, Step, advance
from pipeline.evidently_report import import_in_background
from pipeline.triggers import RetrainDue, retrain_alerts, retrain_due
from warehouse.layout import FLOW_RUN_ID
from warehouse.queries import last_retrain_at, open_episodes
from warehouse.registry import champion, new_labels_since_training
from warehouse.store import CommitError, Conflict, Warehouse, batch_id

if TYPE_CHECKING:
    from pipeline.evidently_report import Stamp
    from pipeline.monitoring import MonitorResult


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
    episodes: list[str] = field(default_factory=list)  # "opened drift", "resolved quality", ...


@dataclass(frozen=True)
class Window:
    # every row of the window, in record_id order: record_id, batch_id (of the prediction), score, target,
    # top_reason; the features are read for the drift sample only (`load_drift_sample`)
    rows: pd.DataFrame
    contributions: np.ndarray  # the explained rows' contributions (rows × features)
    versions: dict[str, int]  # the snapshots of records and predictions it was read from
    start: datetime
    end: datetime
    excluded: int  # rows the version trained on (or was measured on), left out


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _expand_embedding(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    vectors = np.vstack(list(frame.pop("embedding"))) if len(frame) else np.empty((0, 0))
    names = [f"emb_{i:02d}" for i in range(vectors.shape[1])]
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(vectors, columns=names)], axis=1), names


def window_column(settings: Settings) -> str:
    """The records column that puts a record in a window, by `monitoring.window_by`."""
    if settings.monitoring.window_by == "arrival":
        return "r.ingested_at"
    if not settings.dataset.event_time_column:
        raise ValueError(
            "monitoring.window_by is 'event_time' but dataset.event_time_column is not set: set it, or use 'arrival'"
        )
    return "r.event_time"


def window_bounds(last: datetime, days: int) -> tuple[datetime, datetime]:
    """Whole calendar days (UTC): the day of `last` and the `days - 1` days before it, up to `last`."""
    first_day = last.astimezone(UTC).date() - timedelta(days=days - 1)
    return datetime.combine(first_day, time.min, tzinfo=UTC), last


@task(cache_policy=NO_CACHE)
def load_window(store: Warehouse, settings: Settings, version: str, days: int, as_of: date | None) -> Window | None:
    """The records of the window as the champion scored them, with their labels so far, in record_id order,
    without the rows in the version's reference set (it trained on them, or they are its baseline)."""
    dataset = settings.dataset
    column = window_column(settings)
    cap = "" if as_of is None else f"AND {column} < $until"
    until = None if as_of is None else datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    versions = {name: store.version(name) for name in ("records", "predictions")}
    with store.connect(version=versions) as con:
        [(last,)] = con.execute(
            f"SELECT max({column}) FROM records r SEMI JOIN predictions p ON p.record_id = r.record_id "
            f"AND p.model_version = $version WHERE true {cap}",
            {"version": version} | ({"until": until} if until else {}),
        ).fetchall()
        if last is None:
            return None
        start, end = window_bounds(last, days)
        table = con.sql(
            f"""
            -- Only what every row is needed for: quality and CBPE read scores and labels, the explanation
            -- metrics contributions and top reasons; the features and the embedding are read for the drift
            -- sample alone. Reading them for every row of a 1M-row window peaked at 3.3 GB.
            -- The latest prediction of each record is chosen on its keys, then its columns are fetched.
            WITH latest AS (
                SELECT record_id, batch_id FROM predictions WHERE model_version = $version
                QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC) = 1
            ),
            scored AS (
                SELECT record_id, batch_id, score, contributions, reasons[1].feature AS top_reason FROM predictions
                SEMI JOIN latest USING (record_id, batch_id) WHERE model_version = $version
            )
            SELECT r.record_id, p.batch_id, p.score, p.top_reason, p.contributions,
                   CASE f.label WHEN $positive THEN 1.0 WHEN $negative THEN 0.0 END AS target,
                   r.record_id IN (SELECT record_id FROM reference WHERE model_version = $version) AS seen
            FROM records r JOIN scored p USING (record_id) LEFT JOIN feedback_current f USING (record_id)
            WHERE {column} >= $start AND {column} <= $end
            """,
            params={
                "version": version,
                "start": start,
                "end": end,
                "positive": dataset.classes[1],
                "negative": dataset.classes[0],
            },
        ).to_arrow_table()
    table = table.take(pc.sort_indices(table["record_id"]))  # sorted here, not by DuckDB: 200 MB less at 1M rows
    seen = table["seen"]
    table = table.filter(pc.invert(seen)).drop_columns(["seen"])
    for name in ("batch_id", "top_reason"):  # a few distinct values each: categories, not a string per row
        table = table.set_column(table.schema.get_field_index(name), name, pc.dictionary_encode(table[name]))
    return Window(
        rows=table.drop_columns(["contributions"]).to_pandas(),
        contributions=contribution_matrix(table["contributions"], len(dataset.feature_names)),
        versions=versions,
        start=start,
        end=end,
        excluded=int(pc.sum(seen).as_py() or 0),
    )


def contribution_matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """The contributions of the rows that have them (`width` each), as a matrix: a prediction stored
    without an explanation has none."""
    lists = column.combine_chunks()
    explained = lists.filter(pc.fill_null(pc.equal(pc.list_value_length(lists), width), False))
    return explained.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


@task(cache_policy=NO_CACHE)
def load_drift_sample(store: Warehouse, settings: Settings, version: str, window: Window) -> pd.DataFrame:
    """The window's drift sample (`pipeline.monitoring.sample_positions` of its rows), with the features
    the records hold and the embedding the version computed, from the snapshots the window was read from,
    in record_id order."""
    from pipeline.monitoring import sample_positions  # imports the monitoring stack: only here

    monitoring = settings.monitoring
    picked = window.rows.iloc[sample_positions(len(window.rows), monitoring.max_rows, monitoring.seed)]
    keys = picked[["record_id", "batch_id", "score", "target"]].astype({"batch_id": str})
    ids = pa.array(keys["record_id"], pa.string())
    features = settings.dataset.feature_names
    held = store.lookup("records", ids, ["record_id", *features], window.versions["records"])
    embedded = store.lookup(
        "predictions",
        ids,
        ["record_id", "batch_id", "embedding"],
        window.versions["predictions"],
        where=pc.field("model_version") == version,
    )
    sample = held.to_pandas().merge(embedded.to_pandas().merge(keys, on=["record_id", "batch_id"]), on="record_id")
    return sample.sort_values("record_id", ignore_index=True)[["record_id", *features, "embedding", "score", "target"]]


@task(cache_policy=NO_CACHE)
def load_reference_set(store: Warehouse, settings: Settings, version: str) -> pd.DataFrame:
    """The champion's reference set. Only its hold-out keeps the target: it is the out-of-sample baseline
    (quality, score distribution, CBPE calibration); training rows' scores are optimistic."""
    dataset = settings.dataset
    with store.connect() as con:
        return con.execute(
            f"""
            SELECT record_id, {_quoted(dataset.feature_names)}, embedding, score, contributions,
                   CASE WHEN split = 'holdout' THEN (target = $positive)::DOUBLE END AS target
            FROM reference WHERE model_version = $version ORDER BY record_id
            """,
            {"version": version, "positive": dataset.classes[1]},
        ).df()


def explanation_rows(settings: Settings, window: Window, reference: pd.DataFrame) -> list[Any]:
    """The explanation metrics of the window (pipeline/explanation_drift.py); removes the reference set's
    contributions, which the drift and quality measures do not read."""
    from pipeline.explanation_drift import explanation_metrics  # imports the monitoring stack: only here

    return explanation_metrics(
        settings.dataset.feature_names,
        window.contributions,
        list(window.rows["top_reason"]),
        list(reference.pop("contributions")),
    )


def snapshot_stamp(settings: Settings, window: Window, version: str) -> Stamp:
    """The Evidently UI files a report's snapshots at the window's end, tagged with the version and dataset."""
    from pipeline.evidently_report import Stamp

    return Stamp(
        when=window.end,
        tags=(version, settings.dataset_name),
        metadata={"model_version": version, "dataset": settings.dataset_name},
    )


@task(cache_policy=NO_CACHE)
def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift_sample: pd.DataFrame,
    settings: Settings,
    threshold: float,
    stamp: Stamp | None = None,
) -> MonitorResult:
    from pipeline.monitoring import MonitorRules, monitor_window  # imports the monitoring stack: seconds, so only here

    reference, embedding = _expand_embedding(reference)
    drift_sample, _ = _expand_embedding(drift_sample)
    measured = functools.partial(
        monitor_window,
        reference,
        current,
        numeric=settings.dataset.numeric,
        categorical=settings.dataset.categorical,
        embedding=embedding,
        threshold=threshold,
        rules=MonitorRules.from_settings(settings.monitoring),
        max_rows=settings.monitoring.max_rows,
        seed=settings.monitoring.seed,
        stamp=stamp,
        drift_sample=drift_sample,
    )
    if settings.compute.engine != "dask":
        return measured()
    from flows.engine import dask_client, statistics_on_cluster  # imports distributed only when a cluster is asked for

    with dask_client(settings.compute) as client:
        get_run_logger().info(
            "the drift statistics of %d columns run on the Dask cluster at %s",
            len(settings.dataset.feature_names) + len(embedding) + 1,
            client.scheduler.address,
        )
        return measured(statistics=statistics_on_cluster(client, settings.compute.unit_attempts))


def step_episodes(
    store: Warehouse, settings: Settings, result: MonitorResult, report_id: str, now: datetime
) -> tuple[Step, int]:
    """This window's alerts applied to the open episodes (once per episode, cool-down), and the version of
    `alert_episodes` they were read at (read before the session: a commit landing between only makes the
    episodes' commit conflict and be decided again)."""
    read_at = store.version("alert_episodes")
    with store.connect() as con:
        rows = open_episodes(con)
        last = last_retrain_at(con)
    current = {
        str(r["alert"]): Episode(
            alert=str(r["alert"]),
            episode_id=str(r["episode_id"]),
            opened_at=r["opened_at"].to_pydatetime(),
            retrained=bool(r["retrained"]),
        )
        for r in rows.to_dict("records")
    }
    step = advance(
        current,
        result.firing,
        now=now,
        report_id=report_id,
        retrain_on=retrain_alerts(settings),
        last_retrain_at=last,
        cooldown=timedelta(hours=settings.retrain.cooldown_hours),
    )
    return step, read_at


# Every batch of episode changes carries this claim, committed from the version its open episodes were read
# at: two monitors of different windows deciding at once cannot both open the same alert's episode; the one
# that loses the race decides again on what the winner wrote.
EPISODES_CLAIM = "episodes"
EPISODE_ATTEMPTS = 5


def episode_rows(step: Step, common: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"episode_id": e.episode_id, "alert": e.alert, "event": e.event, "detail": e.detail, **common}
            for e in step.events
        ]
    )


@task(cache_policy=NO_CACHE)
def decide_episodes(
    store: Warehouse, settings: Settings, result: MonitorResult, report_id: str, now: datetime, common: dict[str, Any]
) -> Step:
    """Apply this window's alerts to the open episodes and commit the changes as one batch (none when nothing
    changed), deciding again after a concurrent monitor's episodes landed first."""
    for _ in range(EPISODE_ATTEMPTS):
        step, read_at = step_episodes(store, settings, result, report_id, now)
        if not step.events:
            return step
        try:
            store.commit(
                "alert_episodes",
                report_id,
                episode_rows(step, common),
                partition=now.date().isoformat(),
                marks=[(EPISODES_CLAIM, 0)],
                read_version=read_at,
            )
            return step
        except Conflict:
            continue
    raise CommitError(
        f"alert episodes of report {report_id} lost {EPISODE_ATTEMPTS} races with other monitors; run again"
    )


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
            "p_value": m.p_value,
            "p_value_threshold": m.p_value_threshold,
        }
        for m in metrics
    ]
    return pa.Table.from_pylist(rows)


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


def notify(settings: Settings, step: Step, body: dict[str, Any]) -> None:
    """POST each opened or resolved episode to the webhook; a receiver that fails costs a warning."""
    url = settings.monitoring.webhook_url
    for event in step.events:
        if url and event.event in ("opened", "resolved"):
            payload = body | {
                "event": event.event,
                "alert": event.alert,
                "episode_id": event.episode_id,
                "detail": event.detail,
            }
            error = post_webhook(url, payload)
            if error:
                get_run_logger().warning("could not post the %s episode to %s: %s", event.event, url, error)


def report_links(outcome: MonitorOutcome) -> str:
    """Markdown links to the report in the Evidently UI and to the dashboard, and the HTML file's path."""
    pages = [f"[Evidently {name} report]({url})" for name, url in outcome.report_urls.items()]
    pages.append(f"[dashboard]({dashboard_url()})")
    return " · ".join(pages) + f"  \nHTML report: `{outcome.report_path}`"


def _summary(outcome: MonitorOutcome, metrics: list[Any], window: Window, version: str) -> str:
    shown = [m for m in metrics if m.column is None or m.metric == "prediction_drift"]
    retraining = f"{'due: ' if outcome.retrain.due else ''}{outcome.retrain.summary}"
    if outcome.retrain_run:
        retraining += f" (retrain deployment: run `{outcome.retrain_run}`)"
    lines = [
        f"# Monitor {version}: {window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M}",
        report_links(outcome),
        "",
        f"**Alerts:** {'; '.join(outcome.alerts) if outcome.alerts else 'none'}",
        f"**Episodes:** {'; '.join(outcome.episodes) if outcome.episodes else 'no change'}",
        f"**Retraining:** {retraining}",
        f"**Left out:** {window.excluded} rows of the window that {version} trained on or was measured on",
        "",
        "| metric | value | threshold | p-value | status | rows |",
        "|---|---|---|---|---|---|",
    ]
    for m in shown:
        threshold = "" if m.threshold is None else f"{m.threshold:.3f}"
        p_value = "" if m.p_value is None else f"{m.p_value:.3g}"
        lines.append(f"| {m.metric} | {m.value:.4f} | {threshold} | {p_value} | {m.status} | {m.sample_size} |")
    return "\n".join(lines)


def publish_artifacts(outcome: MonitorOutcome, metrics: list[Any], window: Window, version: str) -> None:
    create_markdown_artifact(
        key="monitor-summary", markdown=_summary(outcome, metrics, window, version), description=f"monitor {version}"
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
        description=f"monitoring metrics {version}",
    )
    if outcome.report_urls:
        create_link_artifact(
            key="monitor-report",
            link=next(iter(outcome.report_urls.values())),
            link_text=f"Evidently report {version} {window.end:%Y-%m-%d %H:%M}",
            description="the monitoring report in the Evidently UI",
        )


@flow(name="monitor", flow_run_name=run_name("monitor"))
def monitor(config: str | None = None, window_days: int | None = None, as_of: date | None = None) -> MonitorOutcome:
    """Report on a window of the champion's predictions; open or close alert episodes; decide on retraining.

    The window is `window_days` (default `monitoring.window_days`) calendar days by `monitoring.window_by`,
    ending with the latest record, or with the day `as_of` to (re)monitor a past period.
    Idempotent: the same window with the same labels gives the same report id and adds nothing.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    days = window_days or settings.monitoring.window_days
    with store.connect() as con:
        registered = champion(con)
        new_labels = new_labels_since_training(con)
        champion_row = con.execute("SELECT threshold FROM champion").fetchone()
    if registered is None or champion_row is None:
        raise RuntimeError(
            "there is no champion model yet: run `scorehouse train`, or the train/scorehouse deployment, first"
        )
    version, threshold = registered.version, float(champion_row[0])
    nothing = RetrainDue(due=False, fired=[], reasons=[])
    importing = import_in_background()  # Evidently, while the window is read (DuckDB and Arrow imports only)
    window = load_window(store, settings, version, days, as_of)
    importing.join()
    if window is None or window.rows.empty:
        logger.info("no predictions by %s in the window yet: nothing to monitor", version)
        return MonitorOutcome(None, None, [], nothing, False)
    labels = int(window.rows["target"].notna().sum())
    report_id = batch_id(
        "monitor",
        version,
        window.start.isoformat(),
        window.end.isoformat(),
        labels,
        settings.monitoring.model_dump_json(),
    )
    report_path = settings.reports_dir / f"{window.end:%Y%m%d-%H%M%S}-{version}-{report_id[:8]}.html"
    if store.has_batch("monitoring", report_id):
        logger.info("this window and its labels were already reported: %s", report_path)
        return MonitorOutcome(report_id, str(report_path), [], nothing, False)

    reference = load_reference_set(store, settings, version)
    explained = explanation_rows(settings, window, reference)  # takes the reference's contributions out
    drift_sample = load_drift_sample(store, settings, version, window)
    result = measure(
        reference, window.rows, drift_sample, settings, threshold, stamp=snapshot_stamp(settings, window, version)
    )
    now = utc_now()
    common = {
        "report_id": report_id,
        "window_start": window.start,
        "window_end": window.end,
        "model_version": version,
    }
    step = decide_episodes(store, settings, result, report_id, now, {**common, "event_at": now})
    due = retrain_due(new_labels=new_labels, episodes_retraining=step.retrain_for, settings=settings)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    report_path.write_text(result.html, encoding="utf-8")
    report_urls = publish_snapshots(settings, result.snapshots, f"{window.end:%Y-%m-%d %H:%M} {version}")

    from pipeline.monitoring import MetricValue

    metrics = [
        *result.metrics,
        MetricValue(
            "rows_left_out",
            float(window.excluded),
            status="info",
            sample_size=len(window.rows),
            detail=f"window rows left out because {version} trained on them or they are its hold-out",
        ),
        MetricValue("retrain_due", float(due.due), status="info", sample_size=new_labels, detail=due.summary),
        *explained,
    ]
    store.commit(
        "monitoring",
        report_id,
        _monitoring_rows(
            metrics,
            {
                **common,
                "run_at": now,
                "sampled": result.sampled,
                "report_path": str(report_path),
                FLOW_RUN_ID: this_flow_run_id(),
            },
        ),
        partition=now.date().isoformat(),
    )
    publish(store)
    alerts = list(result.firing)  # names; the sentences are in the log, the report and `monitoring`
    episodes = [f"{e.event} {e.alert}" for e in step.events]
    outcome = MonitorOutcome(report_id, str(report_path), alerts, due, True, report_urls, episodes=episodes)
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
    for alert, why in result.firing.items():
        logger.warning("ALERT %s: %s (window %s .. %s, report %s)", alert, why, window.start, window.end, report_path)
    notify(
        settings,
        step,
        {
            "report_id": report_id,
            "model_version": version,
            "window_start": window.start,
            "window_end": window.end,
            "alerts": alerts,
            "report_path": str(report_path),
            "retrain": due.summary,
        },
    )
    logger.info(
        "%s rows monitored (%d labelled, %d left out); retraining %s",
        len(window.rows),
        labels,
        window.excluded,
        f"due: {due.summary}" if due.due else "not due",
    )
    publish_artifacts(outcome, metrics, window, version)
    add_to_run_name(f"{version}{f', {len(alerts)} alert(s)' if alerts else ''}")
    if cannot_retrain is not None:
        raise cannot_retrain
    return outcome


def monitoring_project(settings: Settings) -> str:
    """The Evidently project a config's reports go to: one per dataset, so two configs never mix."""
    return f"Scorehouse monitoring: {settings.dataset_name}"


def publish_snapshots(settings: Settings, snapshots: dict[str, Any], name: str) -> dict[str, str]:
    """Add the report's Evidently snapshots to the workspace the Evidently UI shows (`make reports-ui`);
    returns their pages there. The HTML file is the report of record: a workspace that cannot be written
    costs a warning, not the run."""
    from pipeline.workspace import publish

    workspace = settings.reports_dir / "evidently"
    try:
        project = monitoring_project(settings)
        published = publish(
            workspace,
            project,
            {f"{name} {kind}": s for kind, s in snapshots.items()},
            keep_reports=settings.maintenance.workspace_reports,
        )
    except Exception as error:  # the UI's copy only: the report of record is the HTML file already written
        get_run_logger().warning("could not add the report to the Evidently workspace %s: %r", workspace, error)
        return {}
    return {kind: report_url(p.project_id, p.snapshot_id) for kind, p in zip(snapshots, published, strict=True)}
