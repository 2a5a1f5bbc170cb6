"""Every query the dashboard runs, read-only and parameterized, with the work pushed down to DuckDB.

The dashboard shows what the pipeline stored; it never calls a model and never runs SQL a person
typed. Each function here takes a cursor on the catalog and returns a small answer: a page of rows,
an aggregate, one record. Filters, aggregates, LIMIT and OFFSET run inside DuckDB over the Parquet
files, so a table of ten million predictions is never loaded into memory, and the embedding column
is never read. Values always travel as parameters; only placeholders are written into the SQL.

`CatalogReader` opens the catalog read-only and reopens it when the file was replaced (the catalog
is rebuilt into a new file and renamed over the old one when its views change).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.csv as pa_csv

from warehouse.layout import records_schema
from warehouse.store import SAFE_DUCKDB_CONFIG

CATALOG_ALIAS = "scorehouse"

# Read-only and quiet: no extension downloads, and no spilling to a temporary folder (a reader
# writes nothing anywhere; the dashboard's answers are small).
READ_CONFIG: dict[str, str | bool | int | float | list[str]] = {**SAFE_DUCKDB_CONFIG, "temp_directory": ""}

# Monitoring metrics that are one number per report (the rest are per column).
DRIFT_SHARES = ("drift_share_features", "drift_share_embedding")
PREDICTION_DRIFT = "prediction_drift"
COLUMN_DRIFT = "column_drift"
QUALITY_METRICS = ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")

# The columns `records` holds besides the dataset's features (and its optional event time).
RECORD_METADATA = frozenset(records_schema({}, event_time=True).names)

# The ordering of the `feedback_current` view (warehouse.layout): a corrected label later wins.
_LATEST_LABEL = "ORDER BY labelled_at DESC, received_at DESC, batch_id DESC"


# ---------------------------------------------------------------------------------------- reading


class CatalogMissing(FileNotFoundError):
    """There is no catalog file yet: nothing was initialised or run."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no warehouse catalog at {path}")
        self.path = path


@dataclass(frozen=True)
class _FileIdentity:
    inode: int
    mtime_ns: int
    size: int


def _identity(path: Path) -> _FileIdentity:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CatalogMissing(path) from None
    return _FileIdentity(stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _attach(path: Path) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB with the catalog attached read-only.

    Why not `duckdb.connect(path, read_only=True)`: DuckDB shares one database instance per file
    path within a process, and hands that instance back, with the replaced file's old views, for as
    long as any connection to it is open. A private instance always opens the file now on disk.
    """
    host = duckdb.connect(":memory:", config=READ_CONFIG)
    quoted = str(path).replace("'", "''")  # ATTACH takes a literal, not a parameter
    host.execute(f"ATTACH '{quoted}' AS {CATALOG_ALIAS} (READ_ONLY)")
    return host


class CatalogReader:
    """Read-only access to the catalog for many threads, following the file when it is replaced.

    Each `cursor()` is a separate DuckDB connection (one per query and thread). When the file's
    inode, mtime or size changed, the next cursor comes from a fresh instance; the old one is not
    closed (that would cut queries running in other threads) but dropped, and DuckDB frees it when
    its last cursor closes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._host: duckdb.DuckDBPyConnection | None = None
        self._opened: _FileIdentity | None = None

    def _current_host(self) -> duckdb.DuckDBPyConnection:
        identity = _identity(self.path)
        if self._host is None or identity != self._opened:
            self._host = _attach(self.path)
            self._opened = identity
        return self._host

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose default database is the catalog; closed when the block ends."""
        with self._lock:
            cursor = self._current_host().cursor()
        try:
            cursor.execute(f"USE {CATALOG_ALIAS}")
            yield cursor
        finally:
            cursor.close()


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict of column name to value, or None when there is none."""
    result = con.execute(sql, list(params))
    row = result.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in result.description or []], row, strict=True))


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


# ---------------------------------------------------------------------------------------- overview


@dataclass(frozen=True, kw_only=True)
class Totals:
    """How much the warehouse holds."""

    records: int
    predictions: int
    labels: int  # label rows received (a corrected label counts again)
    quarantined_rows: int
    rejected_labels: int
    model_versions: int
    reports: int


@dataclass(frozen=True, kw_only=True)
class Champion:
    """The version in production now and its hold-out metrics."""

    model_version: str
    since: datetime
    roc_auc: float | None
    f1: float | None
    balanced_accuracy: float | None
    threshold: float | None
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class Batch:
    """The latest batch written to a table: what it came from, how many rows it holds, and when."""

    source: str  # the file ingested, or the model version that scored
    rows: int
    written_at: datetime


@dataclass(frozen=True, kw_only=True)
class Alert:
    """One monitored number that crossed its threshold."""

    run_at: datetime
    model_version: str
    metric: str
    column_name: str | None
    value: float
    threshold: float | None
    detail: str | None
    report_path: str | None


def totals(con: duckdb.DuckDBPyConnection) -> Totals:
    """Counts per table, each answered from Parquet metadata or one narrow column."""
    row = _row(
        con,
        """
        SELECT (SELECT count(*) FROM records) AS records,
               (SELECT count(*) FROM predictions) AS predictions,
               (SELECT count(*) FROM feedback) AS labels,
               (SELECT count(*) FROM quarantine) AS quarantined_rows,
               (SELECT count(*) FROM feedback_rejects) AS rejected_labels,
               (SELECT count(DISTINCT model_version) FROM models WHERE event = 'trained') AS model_versions,
               (SELECT count(DISTINCT report_id) FROM monitoring) AS reports
        """,
    )
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return Totals(**{name: int(value) for name, value in row.items()})


def champion(con: duckdb.DuckDBPyConnection) -> Champion | None:
    """The current champion, or None before the first training."""
    row = _row(
        con,
        """
        SELECT c.model_version, h.champion_from AS since, c.roc_auc, c.f1, c.balanced_accuracy, c.threshold,
               h.reason
        FROM champion c JOIN champion_history h ON h.model_version = c.model_version AND h.champion_until IS NULL
        """,
    )
    return None if row is None else Champion(**row)


def _latest(con: duckdb.DuckDBPyConnection, table: str, time_column: str) -> datetime | None:
    """The newest time in a table: a min/max over a timestamp column, cheap even on millions of rows."""
    row = con.execute(f"SELECT max({time_column}) FROM {table}").fetchone()
    return None if row is None else row[0]


def last_ingest(con: duckdb.DuckDBPyConnection) -> Batch | None:
    """The latest ingested file and how many of its rows were stored. A file's rows share one
    `ingested_at`, so an equality on it lets DuckDB skip every other file by its statistics."""
    newest = _latest(con, "records", "ingested_at")
    if newest is None:
        return None
    row = _row(
        con,
        "SELECT source_file AS source, count(*) AS rows, max(ingested_at) AS written_at FROM records "
        "WHERE ingested_at = ? GROUP BY source_file ORDER BY source_file LIMIT 1",
        [newest],
    )
    return None if row is None else Batch(**row)


def last_scoring(con: duckdb.DuckDBPyConnection) -> Batch | None:
    """The latest scoring chunk and the model version that scored it (a chunk shares one `scored_at`)."""
    newest = _latest(con, "predictions", "scored_at")
    if newest is None:
        return None
    row = _row(
        con,
        "SELECT model_version AS source, count(*) AS rows, max(scored_at) AS written_at FROM predictions "
        "WHERE scored_at = ? GROUP BY batch_id, model_version ORDER BY model_version LIMIT 1",
        [newest],
    )
    return None if row is None else Batch(**row)


def last_alert(con: duckdb.DuckDBPyConnection) -> Alert | None:
    """The latest alert of a whole report (drift share, prediction drift, quality), not of one column."""
    row = _row(
        con,
        f"""
        SELECT run_at, model_version, metric, column_name, value, threshold, detail, report_path
        FROM monitoring_alerts WHERE metric <> '{COLUMN_DRIFT}' ORDER BY run_at DESC, metric LIMIT 1
        """,
    )
    return None if row is None else Alert(**row)


def quarantine_reasons(con: duckdb.DuckDBPyConnection, limit: int = 5) -> pd.DataFrame:
    """The commonest reasons rows were refused: column, rule, rows, files, last seen."""
    return _frame(
        con,
        "SELECT column_name, rule, rows, files, last_seen FROM quarantine_reasons "
        "ORDER BY rows DESC, column_name, rule LIMIT ?",
        [limit],
    )


# ------------------------------------------------------------------------------------- predictions


@dataclass(frozen=True, kw_only=True)
class PredictionFilter:
    """What a viewer narrowed the predictions to. An empty field does not filter."""

    scored_from: date | None = None  # inclusive, by scoring day (UTC)
    scored_to: date | None = None  # inclusive
    model_versions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # predicted labels
    score_min: float = 0.0
    score_max: float = 1.0
    labelled: bool | None = None  # True: a true label arrived; False: none yet
    record_id: str = ""  # the id or its beginning (a prefix search skips files by their statistics)
    top_reason: str = ""  # the feature that raised the score most (the first reason code)

    def where(self) -> tuple[str, list[object]]:
        """A WHERE condition over `predictions p` and its parameters. The scoring day is the partition
        column, so a date range skips whole files."""
        clauses: list[str] = []
        params: list[object] = []
        if self.scored_from is not None:
            clauses.append("p.scored_on >= ?")
            params.append(self.scored_from.isoformat())
        if self.scored_to is not None:
            clauses.append("p.scored_on <= ?")
            params.append(self.scored_to.isoformat())
        if self.model_versions:
            clauses.append(f"p.model_version IN ({_placeholders(self.model_versions)})")
            params += self.model_versions
        if self.labels:
            clauses.append(f"p.label IN ({_placeholders(self.labels)})")
            params += self.labels
        if self.score_min > 0.0 or self.score_max < 1.0:
            clauses.append("p.score BETWEEN ? AND ?")
            params += [self.score_min, self.score_max]
        if self.labelled is not None:
            exists = "EXISTS (SELECT 1 FROM feedback f WHERE f.record_id = p.record_id)"
            clauses.append(exists if self.labelled else f"NOT {exists}")
        if self.record_id.strip():
            clauses.append("starts_with(p.record_id, ?)")
            params.append(self.record_id.strip())
        if self.top_reason:
            clauses.append("p.reasons[1].feature = ?")
            params.append(self.top_reason)
        return (" AND ".join(clauses) or "TRUE"), params


@dataclass(frozen=True, kw_only=True)
class PredictionOptions:
    """The values the filters offer: the scoring days, versions and labels present."""

    first_day: date | None
    last_day: date | None
    model_versions: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ScoreHistogram:
    """Filtered predictions counted by score bin and predicted label (one scan gives both the counts
    and the chart). `bins` has columns bin_start, bin_end, label, rows."""

    bins: pd.DataFrame
    rows: int
    by_label: dict[str, int]
    mean_score: float | None


@dataclass(frozen=True, kw_only=True)
class CsvExport:
    """The filtered predictions as CSV; `capped` when more rows matched than were written."""

    data: bytes
    rows: int
    capped: bool


def prediction_options(con: duckdb.DuckDBPyConnection) -> PredictionOptions:
    """The scoring days (UTC, like the `scored_on` partitions), versions and labels present: one pass
    grouping two low-cardinality columns, cheaper than min and max over the day strings."""
    groups = con.execute(
        "SELECT model_version, label, min(scored_at) AS first, max(scored_at) AS last FROM predictions GROUP BY ALL"
    ).fetchall()
    if not groups:
        return PredictionOptions(first_day=None, last_day=None, model_versions=(), labels=())
    return PredictionOptions(
        first_day=min(g[2] for g in groups).astimezone(UTC).date(),
        last_day=max(g[3] for g in groups).astimezone(UTC).date(),
        model_versions=tuple(sorted({str(g[0]) for g in groups})),
        labels=tuple(sorted({str(g[1]) for g in groups if g[1] is not None})),
    )


def score_histogram(con: duckdb.DuckDBPyConnection, where: PredictionFilter, bins: int = 20) -> ScoreHistogram:
    """Counts of the filtered predictions per score bin (of width 1/bins) and predicted label."""
    condition, params = where.where()
    grouped = _frame(
        con,
        f"""
        SELECT least(floor(score * ?)::INTEGER, ? - 1) AS bin, label, count(*) AS rows, sum(score) AS score_sum
        FROM predictions p WHERE {condition} GROUP BY ALL ORDER BY bin, label
        """,
        [bins, bins, *params],
    )
    rows = int(grouped["rows"].sum())
    frame = pd.DataFrame(
        {
            "bin_start": grouped["bin"] / bins,
            "bin_end": (grouped["bin"] + 1) / bins,
            "label": grouped["label"],
            "rows": grouped["rows"].astype("int64"),
        }
    )
    return ScoreHistogram(
        bins=frame,
        rows=rows,
        by_label={str(k): int(v) for k, v in grouped.groupby("label")["rows"].sum().items()},
        mean_score=float(grouped["score_sum"].sum() / rows) if rows else None,
    )


_PAGE_COLUMNS = "p.record_id, p.model_version, p.score, p.label, p.threshold, p.scored_at, p.batch_id"
_PAGE_ORDER = "ORDER BY scored_at DESC, record_id, model_version"


def _selected(where: PredictionFilter, *, limit: int, offset: int) -> tuple[str, list[object]]:
    """SQL for one page of the filtered predictions in page order, and its parameters.

    A top-N sort on several keys cannot skip rows early, a top-N on `scored_at` alone can: so the
    scoring time of the page's last row is found first, and only rows at least that recent are
    sorted on every key (on 10M rows: about 0.1 s instead of 0.5 s). With the labelled filter every
    row goes through the join with the labels anyway, and finding the cutoff would join them twice."""
    condition, params = where.where()
    page = f"{_PAGE_ORDER} LIMIT ? OFFSET ?"
    if where.labelled is not None:
        return f"SELECT {_PAGE_COLUMNS} FROM predictions p WHERE {condition} {page}", [*params, limit, offset]
    cutoff = f"SELECT p.scored_at FROM predictions p WHERE {condition} ORDER BY p.scored_at DESC LIMIT 1 OFFSET ?"
    sql = f"""
        SELECT {_PAGE_COLUMNS} FROM predictions p
        WHERE {condition} AND p.scored_at >= coalesce(({cutoff}), '-infinity'::TIMESTAMPTZ)
        {page}
    """
    return sql, [*params, *params, offset + limit - 1, limit, offset]


def _with_true_labels(selected: str) -> str:
    """SQL that adds each selected prediction's latest true label and whether the prediction was right.

    DuckDB applies a filter on the `feedback_current` view after ranking every label (0.6 s for 2.4M
    labels), so the view's ordering is repeated here on the selected ids only (0.02 s)."""
    return f"""
        WITH selected AS ({selected}),
        labels AS (
            SELECT record_id, label AS true_label, labelled_at FROM feedback
            WHERE record_id IN (SELECT record_id FROM selected)
            QUALIFY row_number() OVER (PARTITION BY record_id {_LATEST_LABEL}) = 1
        )
        SELECT s.record_id, s.model_version, s.score, s.label AS predicted_label, s.threshold, s.scored_at,
               l.true_label, l.labelled_at,
               CASE WHEN l.true_label IS NOT NULL THEN l.true_label = s.label END AS correct, s.batch_id
        FROM selected s LEFT JOIN labels l USING (record_id)
        {_PAGE_ORDER}
    """


def prediction_page(
    con: duckdb.DuckDBPyConnection, where: PredictionFilter, *, limit: int, offset: int
) -> pd.DataFrame:
    """One page of the filtered predictions, newest first, with their true labels when known."""
    selected, params = _selected(where, limit=limit, offset=offset)
    return _frame(con, _with_true_labels(selected), params)


def export_predictions(con: duckdb.DuckDBPyConnection, where: PredictionFilter, max_rows: int) -> CsvExport:
    """The filtered predictions as CSV, at most `max_rows` of them (one more is read to know if capped)."""
    selected, params = _selected(where, limit=max_rows + 1, offset=0)
    table = con.sql(_with_true_labels(selected), params=params).to_arrow_table()
    capped = table.num_rows > max_rows
    table = table.slice(0, max_rows)
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return CsvExport(data=sink.getvalue(), rows=table.num_rows, capped=capped)


# ------------------------------------------------------------------------------------------ record


def record(con: duckdb.DuckDBPyConnection, record_id: str) -> dict[str, Any] | None:
    """The stored record, its features as ingested and where it came from; None if no such id."""
    return _row(con, "SELECT * FROM records WHERE record_id = ?", [record_id])


def record_predictions(con: duckdb.DuckDBPyConnection, record_id: str) -> pd.DataFrame:
    """Every prediction made for the record, oldest first (a new champion adds one)."""
    return _frame(
        con,
        "SELECT model_version, score, label, threshold, scored_at, batch_id FROM predictions "
        "WHERE record_id = ? ORDER BY scored_at, model_version",
        [record_id],
    )


def record_labels(con: duckdb.DuckDBPyConnection, record_id: str) -> pd.DataFrame:
    """Every label received for the record, the one that counts (the latest) first."""
    return _frame(
        con,
        f"SELECT label, labelled_at, received_at, source_file FROM feedback WHERE record_id = ? {_LATEST_LABEL}",
        [record_id],
    )


def record_quarantine(con: duckdb.DuckDBPyConnection, record_id: str) -> pd.DataFrame:
    """Rows with this id that were refused, and why."""
    return _frame(
        con,
        "SELECT source_file, row_number, column_name, rule, value, reason, quarantined_at FROM quarantine "
        "WHERE record_id = ? ORDER BY quarantined_at, source_file, row_number",
        [record_id],
    )


def score_rank(con: duckdb.DuckDBPyConnection, model_version: str, score: float) -> float | None:
    """The share of the version's predictions that scored below `score` (its percentile, 0..1)."""
    row = con.execute(
        "SELECT avg((score < ?)::DOUBLE) FROM predictions WHERE model_version = ?", [score, model_version]
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def recent_record_ids(con: duckdb.DuckDBPyConnection, limit: int = 3) -> list[str]:
    """Ids of the latest scored records: examples to try on the record page."""
    rows = con.execute(
        "SELECT DISTINCT record_id FROM (SELECT record_id FROM predictions ORDER BY scored_at DESC LIMIT 100) "
        "ORDER BY record_id LIMIT ?",
        [limit],
    ).fetchall()
    return [str(r[0]) for r in rows]


# -------------------------------------------------------------------------------------- monitoring


def monitoring_series(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every report-level number over time (drift shares, prediction drift, realised, estimated quality,
    retraining decisions), one row per report and metric."""
    return _frame(
        con,
        f"""
        SELECT report_id, run_at, window_start, window_end, model_version, metric, value, threshold, status,
               sample_size, sampled, detail
        FROM monitoring WHERE metric <> '{COLUMN_DRIFT}' ORDER BY window_end, run_at, metric
        """,
    )


def alerts(con: duckdb.DuckDBPyConnection, *, per_column: bool = False, limit: int = 500) -> pd.DataFrame:
    """Alerts, newest first; per-column drift alerts only when asked (a drifting report has many)."""
    scope = "" if per_column else f"WHERE metric <> '{COLUMN_DRIFT}'"
    return _frame(
        con,
        f"""
        SELECT run_at, model_version, metric, column_name, value, threshold, detail, report_path
        FROM monitoring_alerts {scope} ORDER BY run_at DESC, metric, column_name LIMIT ?
        """,
        [limit],
    )


def reports(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per monitoring report, newest first: its window, rows, alerts, the retraining decision
    and where its HTML is."""
    return _frame(
        con,
        f"""
        SELECT report_id, min(run_at) AS run_at, min(window_start) AS window_start, max(window_end) AS window_end,
               any_value(model_version) AS model_version,
               max(sample_size) FILTER (WHERE metric = 'drift_share_features') AS rows,
               bool_or(sampled) AS sampled,
               count(*) FILTER (WHERE status = 'alert' AND metric <> '{COLUMN_DRIFT}') AS alerts,
               string_agg(metric || coalesce('(' || column_name || ')', ''), ', ' ORDER BY metric)
                   FILTER (WHERE status = 'alert' AND metric <> '{COLUMN_DRIFT}') AS alerted,
               max(value) FILTER (WHERE metric = 'retrain_due') = 1 AS retrain_due,
               any_value(report_path) AS report_path
        FROM monitoring GROUP BY report_id ORDER BY run_at DESC, report_id
        """,
    )


def column_drift(con: duckdb.DuckDBPyConnection, report_id: str) -> pd.DataFrame:
    """Each column's drift in one report, drifted columns first."""
    return _frame(
        con,
        f"""
        SELECT column_name, value AS distance, threshold AS distance_threshold, p_value, p_value_threshold,
               status, detail FROM monitoring
        WHERE report_id = ? AND metric = '{COLUMN_DRIFT}'
        ORDER BY status = 'alert' DESC, value DESC, column_name
        """,
        [report_id],
    )


def episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Alert episodes, newest first: when each opened, retrained and resolved (empty while open)."""
    return _frame(
        con,
        "SELECT alert, state, opened_at, retrained_at, resolved_at, model_version, opened_because, episode_id "
        "FROM episodes ORDER BY opened_at DESC, alert",
    )


def open_episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The episodes open now, one per alert: alert, episode_id, opened_at, retrained."""
    return _frame(
        con,
        "SELECT alert, episode_id, opened_at, retrained_at IS NOT NULL AS retrained FROM episodes "
        "WHERE state = 'open' QUALIFY row_number() OVER (PARTITION BY alert ORDER BY opened_at DESC) = 1",
    )


def last_retrain_at(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the last challenger was trained by `retrain` (the start of the cool-down)."""
    row = con.execute("SELECT max(event_at) FROM models WHERE event = 'trained' AND actor LIKE 'retrain%'").fetchone()
    return row[0] if row and row[0] is not None else None


def last_compared_until(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The latest label time of the rows any promotion decision was made on: later decisions use newer rows."""
    row = con.execute("SELECT max(compared_until) FROM models WHERE event IN ('promoted', 'rejected')").fetchone()
    return row[0] if row and row[0] is not None else None


def cbpe_reliability(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The CBPE gap per report (estimated minus realised ROC AUC) and whether it was flagged unreliable."""
    return _frame(
        con,
        "SELECT run_at, window_end, model_version, value AS gap, threshold AS bound, status = 'alert' AS unreliable, "
        "sample_size AS labels, detail FROM monitoring WHERE metric = 'cbpe_gap_roc_auc' ORDER BY window_end, run_at",
    )


# ------------------------------------------------------------------------------------------ models


def decisions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every promotion decision with the paired test it rests on: gain, interval, p-value, guard, rows."""
    return _frame(
        con,
        """
        SELECT event_at, model_version, event, decision_metric AS metric, decision_gain AS gain,
               decision_low AS low, decision_high AS high, decision_p_value AS p_value, guard_metric, guard_gain,
               guard_p_value, decision_rows AS rows, decision_positives AS positives, reason
        FROM models WHERE event IN ('promoted', 'rejected') AND decision_metric IS NOT NULL
        ORDER BY event_at DESC, model_version
        """,
    )


def model_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every trained version with its hold-out metrics and where it stands now: champion, retired,
    rejected, or trained (not decided yet)."""
    return _frame(
        con,
        """
        WITH decided AS (
            SELECT model_version, arg_max(event, event_at) AS last_event FROM models
            WHERE event <> 'trained' GROUP BY model_version
        )
        SELECT m.model_version,
               CASE WHEN c.model_version IS NOT NULL THEN 'champion' ELSE coalesce(d.last_event, 'trained') END
                   AS status,
               m.event_at AS trained_at, m.roc_auc, m.f1, m.precision, m.recall, m.balanced_accuracy,
               m.threshold, m.model_input, m.train_rows, m.holdout_rows, m.data_from, m.data_to, m.reason
        FROM models m
        LEFT JOIN decided d USING (model_version)
        LEFT JOIN champion c USING (model_version)
        WHERE m.event = 'trained' ORDER BY m.event_at, m.model_version
        """,
    )


def champion_periods(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Which version was champion when; `champion_until` is empty for the one in production."""
    return _frame(
        con,
        "SELECT model_version, champion_from, champion_until, reason, actor FROM champion_history "
        "ORDER BY champion_from",
    )


def registry_events(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every registry event (trained, promoted, rejected, retired), newest first, with its reason."""
    return _frame(
        con,
        """
        SELECT event_at, model_version, event, reason, actor, roc_auc, f1, balanced_accuracy FROM models
        ORDER BY event_at DESC,
                 CASE event WHEN 'retired' THEN 0 WHEN 'promoted' THEN 1 WHEN 'rejected' THEN 1 ELSE 2 END,
                 model_version
        """,
    )


# ------------------------------------------------------------------------------------- explanations


def feature_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The dataset's features in the order of the `contributions` lists: the columns of `reference` between
    `target` and `embedding` (the layout writes them in the config's order)."""
    columns = [
        str(row[0])
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'reference' ORDER BY ordinal_position"
        ).fetchall()
    ]
    if "target" not in columns or "embedding" not in columns:
        return []
    return columns[columns.index("target") + 1 : columns.index("embedding")]


def record_explanation(con: duckdb.DuckDBPyConnection, record_id: str) -> dict[str, Any] | None:
    """The latest prediction of the record with its stored explanation (base value, score, reason codes
    largest first); `base_value` is None when it was scored without one. None if it was never scored."""
    row = _row(
        con,
        "SELECT model_version, score, label, base_value, reasons, scored_at FROM predictions "
        "WHERE record_id = ? ORDER BY scored_at DESC, model_version DESC LIMIT 1",
        [record_id],
    )
    if row is not None and row["reasons"] is None:
        row["reasons"] = []
    return row


def global_importance(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each version's global importance: the mean |contribution| of each feature over its reference set,
    with its change since the version trained before it (null for the first, or a feature it lacked).
    Versions trained before contributions were stored have no rows."""
    names = feature_names(con)
    means = _frame(
        con,
        """
        WITH trained AS (SELECT model_version, min(event_at) AS trained_at FROM models WHERE event = 'trained'
                         GROUP BY ALL),
        flat AS (
            SELECT model_version, unnest(contributions) AS contribution,
                   unnest(range(len(contributions))) AS position
            FROM reference WHERE contributions IS NOT NULL
        )
        SELECT f.model_version, t.trained_at, f.position, avg(abs(f.contribution)) AS importance
        FROM flat f LEFT JOIN trained t USING (model_version)
        GROUP BY ALL ORDER BY t.trained_at NULLS FIRST, f.model_version, f.position
        """,
    )
    if means.empty or len(names) <= int(means["position"].max()):
        return pd.DataFrame(columns=["model_version", "feature", "importance", "change"])
    means["feature"] = [names[int(i)] for i in means["position"]]
    order = list(dict.fromkeys(means["model_version"]))
    wide = means.pivot(index="model_version", columns="feature", values="importance").reindex(order)
    change = wide.diff().reset_index().melt(id_vars="model_version", var_name="feature", value_name="change")
    out = means.merge(change, on=["model_version", "feature"], how="left")
    return out[["model_version", "feature", "importance", "change"]].reset_index(drop=True)
