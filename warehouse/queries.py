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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb
import pandas as pd
import pyarrow.csv as pa_csv

from warehouse.layout import ALERT_OF_METRIC, FLOW_RUN_ID, records_schema
from warehouse.store import SAFE_DUCKDB_CONFIG

if TYPE_CHECKING:
    from warehouse.store import Warehouse

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


class SnapshotReader:
    """Read-only access for many threads to a warehouse that has no catalog file people can open: one on
    object storage, which DuckDB reads only through its httpfs extension (never downloaded here).

    Each thread keeps one in-process session with every table registered as an Arrow dataset of one
    snapshot (pyarrow reads object storage itself), so a page sees whole commits only. At most every
    `recheck_seconds` the tables' versions are read from their logs; a session is renewed when one moved.
    """

    def __init__(self, store: Warehouse, recheck_seconds: float = 5.0) -> None:
        self.store = store
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()  # the store's cached log handles are not shared across threads
        self._local = threading.local()

    def _versions(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(self.store.version(name) for name in self.store.tables)

    def _session(self) -> duckdb.DuckDBPyConnection:
        local = self._local
        now = time.monotonic()
        if getattr(local, "session", None) is not None and now - local.checked < self.recheck_seconds:
            return cast(duckdb.DuckDBPyConnection, local.session)
        versions = self._versions()
        if getattr(local, "versions", None) != versions:
            with self._lock:
                pinned = dict(zip(self.store.tables, versions, strict=True))
                session = self.store.session(version=pinned, config=READ_CONFIG)
            if getattr(local, "session", None) is not None:
                local.session.close()
            local.session, local.versions = session, versions
        local.checked = now
        return cast(duckdb.DuckDBPyConnection, local.session)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's session on the tables' current snapshot (kept open for the thread's next query)."""
        yield self._session()


Reader = CatalogReader | SnapshotReader


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


def _run_column(con: duckdb.DuckDBPyConnection, table: str, alias: str = "") -> str:
    """SQL for a table's `flow_run_id` (the Prefect run that wrote a row), or a null in its place when the
    catalog was built before the column existed (until the next flow run rebuilds it)."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
        [table, FLOW_RUN_ID],
    ).fetchall()  # consumed whole: DuckDB 2 refuses the next query while a result is left open
    prefix = f"{alias}." if alias else ""
    return f"{prefix}{FLOW_RUN_ID}" if found[0][0] else "NULL::VARCHAR"


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
    flow_run_id: str | None = None  # the Prefect flow run that wrote it, where the table stores one


@dataclass(frozen=True, kw_only=True)
class Alert:
    """One monitored number that crossed its threshold."""

    run_at: datetime
    model_version: str
    alert: str  # drift | prediction_drift | quality
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
        f"SELECT source_file AS source, count(*) AS rows, max(ingested_at) AS written_at, "
        f"any_value({_run_column(con, 'records')}) AS {FLOW_RUN_ID} FROM records "
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
    """The latest alert (drift, prediction drift, quality; a drifted column is not one by itself)."""
    row = _row(
        con,
        """
        SELECT run_at, model_version, alert, metric, column_name, value, threshold, detail, report_path
        FROM monitoring_alerts ORDER BY run_at DESC, alert, metric LIMIT 1
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
    history: bool = False  # every prediction ever made, not only each record's current one

    @property
    def table(self) -> str:
        """Each record's current prediction (one row per record), or every prediction with `history`."""
        return "predictions" if self.history else "predictions_current"

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
    """The values the filters offer: the scoring days, versions and labels present. `labels` are in class
    order, negative first: a label is positive when its predictions scored at or above their threshold."""

    first_day: date | None
    last_day: date | None
    model_versions: tuple[str, ...]
    labels: tuple[str, ...]
    positive_label: str | None = None


@dataclass(frozen=True, kw_only=True)
class ScoreHistogram:
    """Filtered predictions counted by score bin and predicted label (one scan gives both the counts
    and the chart). `bins` has columns bin_start, bin_end, label, rows."""

    bins: pd.DataFrame
    rows: int
    by_label: dict[str, int]
    mean_score: float | None
    thresholds: tuple[float, ...] = ()  # the decision thresholds of the versions counted


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
        "SELECT model_version, label, min(scored_at) AS first, max(scored_at) AS last, "
        "bool_or(score >= threshold) AS positive FROM predictions GROUP BY model_version, label"
    ).fetchall()
    if not groups:
        return PredictionOptions(first_day=None, last_day=None, model_versions=(), labels=())
    roles = {str(g[1]): bool(g[4]) for g in groups if g[1] is not None}
    return PredictionOptions(
        first_day=min(g[2] for g in groups).astimezone(UTC).date(),
        last_day=max(g[3] for g in groups).astimezone(UTC).date(),
        model_versions=tuple(sorted({str(g[0]) for g in groups})),
        labels=tuple(sorted(roles, key=lambda label: (roles[label], label))),
        positive_label=next((label for label, positive in roles.items() if positive), None),
    )


def score_histogram(con: duckdb.DuckDBPyConnection, where: PredictionFilter, bins: int = 20) -> ScoreHistogram:
    """Counts of the filtered predictions per score bin (of width 1/bins) and predicted label."""
    condition, params = where.where()
    grouped = _frame(
        con,
        f"""
        SELECT least(floor(score * ?)::INTEGER, ? - 1) AS bin, label, count(*) AS rows, sum(score) AS score_sum,
               list(DISTINCT threshold) AS thresholds
        FROM {where.table} p WHERE {condition} GROUP BY bin, label ORDER BY bin, label
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
        thresholds=tuple(sorted({float(t) for ts in grouped["thresholds"] for t in ts if t is not None})),
    )


_PAGE_COLUMNS = "p.record_id, p.model_version, p.score, p.label, p.threshold, p.scored_at"
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
        return f"SELECT {_PAGE_COLUMNS} FROM {where.table} p WHERE {condition} {page}", [*params, limit, offset]
    cutoff = f"SELECT p.scored_at FROM {where.table} p WHERE {condition} ORDER BY p.scored_at DESC LIMIT 1 OFFSET ?"
    sql = f"""
        SELECT {_PAGE_COLUMNS} FROM {where.table} p
        WHERE {condition} AND p.scored_at >= coalesce(({cutoff}), '-infinity'::TIMESTAMPTZ)
        {page}
    """
    return sql, [*params, *params, offset + limit - 1, limit, offset]


# Whether a prediction was right, judged only where it was made before its outcome was known: a prediction
# scored after the label (a re-scoring by a later version, which may have trained on that label) is not judged.
MADE_AFTER_LABEL = "made after the label"


def _verdict(prediction: str, truth: str) -> str:
    """SQL for the verdict on a prediction (`prediction`.label, .scored_at) given its record's latest label
    (`truth`.true_label, .labelled_at): right, wrong, made after the label, or NULL while unlabelled."""
    return f"""CASE WHEN {truth}.true_label IS NULL THEN NULL
        WHEN {prediction}.scored_at > {truth}.labelled_at THEN '{MADE_AFTER_LABEL}'
        WHEN {truth}.true_label = {prediction}.label THEN 'right' ELSE 'wrong' END"""


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
               l.true_label, l.labelled_at, {_verdict("s", "l")} AS verdict
        FROM selected s LEFT JOIN labels l USING (record_id)
        {_PAGE_ORDER}
    """


def prediction_page(
    con: duckdb.DuckDBPyConnection, where: PredictionFilter, *, limit: int, offset: int
) -> pd.DataFrame:
    """One page of the filtered predictions, newest first, with their true labels when known."""
    selected, params = _selected(where, limit=limit, offset=offset)
    return _frame(con, _with_true_labels(selected), params)


@dataclass(frozen=True, kw_only=True)
class LabelledQuality:
    """How the filtered predictions did on the records whose label arrived. Only predictions made before
    their label are judged (`judged`); those made after it are counted apart (`made_after_label`).
    `matrix` has columns predicted, actual, rows; `roc_auc` is over the judged rows (None without both classes)."""

    matrix: pd.DataFrame
    judged: int
    made_after_label: int
    positive_label: str | None
    roc_auc: float | None

    def _count(self, predicted_positive: bool, actually_positive: bool) -> int:
        pick = (self.matrix["predicted"] == self.positive_label) == predicted_positive
        pick &= (self.matrix["actual"] == self.positive_label) == actually_positive
        return int(self.matrix.loc[pick, "rows"].sum())

    def rates(self) -> dict[str, float | None]:
        """Accuracy, precision, recall (of the positive class) and balanced accuracy; None where undefined."""
        tp, fp = self._count(True, True), self._count(True, False)
        fn, tn = self._count(False, True), self._count(False, False)

        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        recall, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
        return {
            "accuracy": ratio(tp + tn, self.judged),
            "precision": ratio(tp, tp + fp),
            "recall": recall,
            "balanced_accuracy": None if recall is None or specificity is None else (recall + specificity) / 2,
        }


def labelled_quality(
    con: duckdb.DuckDBPyConnection, where: PredictionFilter, positive_label: str | None
) -> LabelledQuality:
    """The confusion matrix and ROC AUC of the filtered predictions whose record is labelled (its latest
    label), judging only predictions made before the label; ROC AUC by average ranks (Mann-Whitney)."""
    condition, params = where.where()
    judged = f"""
        WITH selected AS (SELECT p.record_id, p.label, p.score, p.scored_at FROM {where.table} p WHERE {condition}),
        labels AS (
            SELECT record_id, label AS true_label, labelled_at FROM feedback
            WHERE record_id IN (SELECT record_id FROM selected)
            QUALIFY row_number() OVER (PARTITION BY record_id {_LATEST_LABEL}) = 1
        )
        SELECT s.label AS predicted, l.true_label AS actual, s.score, {_verdict("s", "l")} AS verdict
        FROM selected s JOIN labels l USING (record_id)
    """
    matrix = _frame(
        con,
        f"SELECT predicted, actual, verdict, count(*) AS rows FROM ({judged}) GROUP BY ALL ORDER BY ALL",
        params,
    )
    after = matrix["verdict"] == MADE_AFTER_LABEL
    auc = _row(
        con,
        f"""
        WITH j AS (SELECT actual = ? AS positive, score FROM ({judged}) WHERE verdict <> '{MADE_AFTER_LABEL}'),
        ranked AS (
            SELECT positive, avg(position) OVER (PARTITION BY score) AS rank
            FROM (SELECT *, row_number() OVER (ORDER BY score) AS position FROM j)
        ),
        n AS (SELECT count(*) FILTER (WHERE positive) AS n1, count(*) FILTER (WHERE NOT positive) AS n0 FROM j)
        SELECT CASE WHEN n1 > 0 AND n0 > 0 THEN
                   ((SELECT sum(rank) FROM ranked WHERE positive) - n1 * (n1 + 1) / 2) / (n1 * n0) END AS roc_auc
        FROM n
        """,
        [positive_label, *params],
    )
    kept = pd.DataFrame(matrix[~after].groupby(["predicted", "actual"], as_index=False)["rows"].sum())
    return LabelledQuality(
        matrix=kept,
        judged=int(kept["rows"].sum()),
        made_after_label=int(matrix.loc[after, "rows"].sum()),
        positive_label=positive_label,
        roc_auc=None if auc is None or auc["roc_auc"] is None else float(auc["roc_auc"]),
    )


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
    """Every prediction made for the record, oldest first (a new champion adds one), each with its verdict
    against the record's latest label: right, wrong, made after the label, or empty while unlabelled."""
    return _frame(
        con,
        f"""
        WITH l AS (
            SELECT label AS true_label, labelled_at FROM feedback WHERE record_id = ? {_LATEST_LABEL} LIMIT 1
        )
        SELECT p.model_version, p.score, p.label, p.threshold, p.scored_at, {_verdict("p", "l")} AS verdict
        FROM predictions p LEFT JOIN l ON TRUE
        WHERE p.record_id = ? ORDER BY p.scored_at, p.model_version
        """,
        [record_id, record_id],
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


def alerts(con: duckdb.DuckDBPyConnection, *, limit: int = 500) -> pd.DataFrame:
    """Alerts (drift, prediction drift, quality: the ones that open episodes), newest first, with the number
    that raised each."""
    return _frame(
        con,
        """
        SELECT run_at, alert, model_version, metric, value, threshold, p_value, detail
        FROM monitoring_alerts ORDER BY run_at DESC, alert, metric LIMIT ?
        """,
        [limit],
    )


def drifted_columns(con: duckdb.DuckDBPyConnection, *, limit: int = 500) -> pd.DataFrame:
    """Columns that drifted (significant and material), newest report first: parts of a drift share, not alerts."""
    return _frame(
        con,
        "SELECT run_at, model_version, column_name, distance, threshold, p_value, p_value_threshold, detail "
        "FROM drifted_columns ORDER BY run_at DESC, column_name LIMIT ?",
        [limit],
    )


def drift_columns_tested(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every column whose drift was measured, by name: what the per-column trend can show."""
    rows = con.execute(
        f"SELECT DISTINCT column_name FROM monitoring WHERE metric = '{COLUMN_DRIFT}' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def column_drift_trend(con: duckdb.DuckDBPyConnection, column: str) -> pd.DataFrame:
    """One column's drift in every report, oldest first: distance, its bar, p-value, its bar, drifted or not."""
    return _frame(
        con,
        f"""
        SELECT window_end, model_version, value AS distance, threshold AS material_at, p_value,
               p_value_threshold AS significant_below, status = 'alert' AS drifted
        FROM monitoring WHERE metric = '{COLUMN_DRIFT}' AND column_name = ? ORDER BY window_end, run_at
        """,
        [column],
    )


def prediction_drift(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Prediction drift per report, oldest first: the one quantity charted (the scores' distance from the
    hold-out scores), its materiality bar, the test's p-value and bar, which test, and the verdict."""
    return _frame(
        con,
        f"""
        SELECT window_end, model_version,
               CASE WHEN p_value IS NULL THEN 'distance only (no test recorded)'
                    ELSE 'normed Wasserstein distance, two-sample K-S test' END AS test,
               value AS distance, threshold AS material_at, p_value, p_value_threshold AS significant_below,
               CASE WHEN status = 'alert' THEN 'drift'
                    WHEN p_value < p_value_threshold THEN 'significant, not material'
                    WHEN value >= threshold THEN 'material, not significant'
                    ELSE 'no drift' END AS verdict
        FROM monitoring WHERE metric = '{PREDICTION_DRIFT}' ORDER BY window_end, run_at
        """,
    )


def reports(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per monitoring report, newest first: its window, rows, alerts (how many of drift, prediction drift
    and quality, and which), the columns that drifted, the retraining decision, where its HTML is and the Prefect
    flow run that made it (null for reports from before runs were recorded)."""
    return _frame(
        con,
        f"""
        SELECT report_id, min(run_at) AS run_at, min(window_start) AS window_start, max(window_end) AS window_end,
               any_value(model_version) AS model_version,
               max(sample_size) FILTER (WHERE metric = 'drift_share_features') AS rows,
               bool_or(sampled) AS sampled,
               count(DISTINCT {ALERT_OF_METRIC}) FILTER (WHERE status = 'alert') AS alerts,
               string_agg(DISTINCT {ALERT_OF_METRIC}, ', ' ORDER BY {ALERT_OF_METRIC})
                   FILTER (WHERE status = 'alert') AS alerted,
               count(*) FILTER (WHERE status = 'alert' AND metric = '{COLUMN_DRIFT}') AS drifted_columns,
               max(value) FILTER (WHERE metric = 'retrain_due') = 1 AS retrain_due,
               any_value(report_path) AS report_path,
               any_value({_run_column(con, "monitoring")}) AS {FLOW_RUN_ID}
        FROM monitoring GROUP BY report_id ORDER BY run_at DESC, report_id
        """,
    )


def export_monitoring(con: duckdb.DuckDBPyConnection, first_day: date | None, last_day: date | None) -> bytes:
    """As CSV, every monitoring row (each report's metrics, per column too) whose window ended between the two
    UTC days (inclusive; None: no bound), oldest first, with the report's file and the Prefect run that made it."""
    return _csv(
        con,
        f"""
        SELECT report_id, run_at, window_start, window_end, model_version, metric, column_name, value, threshold,
               status, p_value, p_value_threshold, sample_size, sampled, detail, report_path,
               {_run_column(con, "monitoring")} AS {FLOW_RUN_ID}
        FROM monitoring
        WHERE timezone('UTC', window_end)::DATE
              BETWEEN coalesce(?, DATE '0001-01-01') AND coalesce(?, DATE '9999-12-31')
        ORDER BY window_end, run_at, report_id, metric, column_name
        """,
        [first_day, last_day],
    )


def _csv(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object]) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(con.sql(sql, params=list(params)).to_arrow_table(), sink)
    return sink.getvalue()


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
    """Every promotion decision with the paired test it rests on: both models' metric on the same fresh rows,
    the gain with its interval and p-value, the guard, the rows and positives."""
    return _frame(
        con,
        f"""
        SELECT event_at, model_version, event, decision_metric AS metric, {_DECIDED_ON_SHARED_ROWS},
               decision_p_value AS p_value, guard_metric, guard_gain, guard_p_value, decision_rows AS rows,
               decision_positives AS positives, reason
        FROM models WHERE event IN ('promoted', 'rejected') AND decision_metric IS NOT NULL
        ORDER BY event_at DESC, model_version
        """,
    )


# A decision's numbers on the rows both models were scored on (kept in the decision row's metrics_json by
# `retrain`): the challenger's and the champion's value, the gain and its interval.
_DECIDED_ON_SHARED_ROWS = """
    TRY_CAST(metrics_json ->> '$.comparison.test.challenger' AS DOUBLE) AS challenger_on_shared_rows,
    metrics_json ->> '$.comparison.champion.version' AS champion,
    TRY_CAST(metrics_json ->> '$.comparison.test.champion' AS DOUBLE) AS champion_on_shared_rows,
    decision_gain AS gain, decision_low AS low, decision_high AS high
"""


def model_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every trained version with its own hold-out metrics, where it stands now (champion, retired, rejected,
    or trained: not decided yet) and, for a challenger, the decision's numbers on the rows shared with the
    champion it was compared with."""
    return _frame(
        con,
        f"""
        WITH decided AS (
            SELECT model_version, arg_max(event, event_at) AS last_event FROM models
            WHERE event <> 'trained' GROUP BY model_version
        ),
        shared AS (
            SELECT model_version, decision_metric AS metric, decision_rows, {_DECIDED_ON_SHARED_ROWS} FROM models
            WHERE event IN ('promoted', 'rejected') AND decision_metric IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY model_version ORDER BY event_at DESC) = 1
        )
        SELECT m.model_version,
               CASE WHEN c.model_version IS NOT NULL THEN 'champion' ELSE coalesce(d.last_event, 'trained') END
                   AS status,
               m.event_at AS trained_at, m.roc_auc, m.f1, m.precision, m.recall, m.balanced_accuracy,
               s.metric AS decided_on, s.challenger_on_shared_rows, s.champion AS against,
               s.champion_on_shared_rows AS against_on_shared_rows, s.gain, s.low, s.high,
               s.decision_rows AS rows_compared,
               m.threshold, m.model_input, m.train_rows, m.holdout_rows, m.data_from, m.data_to, m.reason,
               {_run_column(con, "models", "m")} AS {FLOW_RUN_ID}
        FROM models m
        LEFT JOIN decided d USING (model_version)
        LEFT JOIN champion c USING (model_version)
        LEFT JOIN shared s USING (model_version)
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
        f"""
        SELECT event_at, model_version, event, reason, actor, roc_auc, f1, balanced_accuracy,
               {_run_column(con, "models")} AS {FLOW_RUN_ID} FROM models
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

    The registry keeps it (`importance` in `metrics_json`), also for a rejected challenger, which stores no
    reference set; versions registered before that are measured on their reference set, and versions
    trained before contributions were stored have no rows."""
    names = feature_names(con)
    means = _frame(
        con,
        """
        WITH trained AS (
            SELECT model_version, min(event_at) AS trained_at,
                   any_value(CAST(json_extract(metrics_json, '$.importance') AS DOUBLE[])) AS noted
            FROM models WHERE event = 'trained' GROUP BY ALL
        ),
        noted AS (
            SELECT model_version, unnest(noted) AS importance, unnest(range(len(noted))) AS position
            FROM trained WHERE noted IS NOT NULL
        ),
        flat AS (
            SELECT model_version, unnest(contributions) AS contribution,
                   unnest(range(len(contributions))) AS position
            FROM reference
            WHERE contributions IS NOT NULL AND model_version NOT IN (SELECT model_version FROM noted)
        ),
        measured AS (
            SELECT model_version, position, avg(abs(contribution)) AS importance FROM flat GROUP BY ALL
            UNION ALL BY NAME SELECT * FROM noted
        )
        SELECT m.model_version, t.trained_at, m.position, m.importance
        FROM measured m LEFT JOIN trained t USING (model_version)
        ORDER BY t.trained_at NULLS FIRST, m.model_version, m.position
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


# ------------------------------------------------------------------------ explanations, as monitored

TOP_REASON_SHARE = "top_reason_share"
CONTRIBUTION_DRIFT = "contribution_drift"
EXPLANATION_DRIFT = "explanation_drift"


def explanation_reports(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per monitoring report, oldest first, with what it stored about explanations: the window's rows
    and how many of its predictions were explained (0: the report has no explanation rows), how many features
    had their contribution drift measured, the explanation drift with its bar, status and sentence (NaN when the
    version's reference set held no contributions), and the monitored version's reference rows that hold
    contributions (what the window was compared with)."""
    return _frame(
        con,
        f"""
        WITH per_report AS (
            SELECT report_id, min(run_at) AS run_at, min(window_start) AS window_start,
                   max(window_end) AS window_end, any_value(model_version) AS model_version,
                   max(sample_size) FILTER (WHERE metric = 'drift_share_features') AS window_rows,
                   coalesce(max(sample_size) FILTER (WHERE metric = '{TOP_REASON_SHARE}'), 0) AS explained,
                   count(*) FILTER (WHERE metric = '{CONTRIBUTION_DRIFT}') AS features_compared,
                   max(value) FILTER (WHERE metric = '{EXPLANATION_DRIFT}') AS explanation_drift,
                   max(threshold) FILTER (WHERE metric = '{EXPLANATION_DRIFT}') AS threshold,
                   any_value(status) FILTER (WHERE metric = '{EXPLANATION_DRIFT}') AS status,
                   any_value(detail) FILTER (WHERE metric = '{EXPLANATION_DRIFT}') AS detail
            FROM monitoring GROUP BY report_id
        ),
        baseline AS (
            SELECT model_version, count(*) AS reference_explained FROM reference
            WHERE contributions IS NOT NULL GROUP BY model_version
        )
        SELECT p.*, coalesce(b.reference_explained, 0) AS reference_explained
        FROM per_report p LEFT JOIN baseline b USING (model_version)
        ORDER BY p.window_end, p.run_at, p.report_id
        """,
    )


def top_reason_shares(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each report's share of explained predictions whose top reason was each feature, oldest first."""
    return _frame(
        con,
        f"""
        SELECT report_id, window_end, model_version, column_name AS feature, value AS share,
               sample_size AS explained, detail
        FROM monitoring WHERE metric = '{TOP_REASON_SHARE}' ORDER BY window_end, run_at, column_name
        """,
    )


def report_contribution_drift(con: duckdb.DuckDBPyConnection, report_id: str) -> pd.DataFrame:
    """One report's contribution drift per feature (window mean |contribution| minus the reference's, log-odds),
    the feature that gained most first."""
    return _frame(
        con,
        f"""
        SELECT column_name AS feature, value AS change, sample_size AS explained, detail FROM monitoring
        WHERE report_id = ? AND metric = '{CONTRIBUTION_DRIFT}' ORDER BY value DESC, column_name
        """,
        [report_id],
    )


def contribution_drift_trend(con: duckdb.DuckDBPyConnection, feature: str) -> pd.DataFrame:
    """One feature's contribution drift in every report that measured it, oldest first."""
    return _frame(
        con,
        f"""
        SELECT window_end, model_version, value AS change, sample_size AS explained, detail FROM monitoring
        WHERE metric = '{CONTRIBUTION_DRIFT}' AND column_name = ? ORDER BY window_end, run_at
        """,
        [feature],
    )


@dataclass(frozen=True, kw_only=True)
class ExplainedPredictions:
    """How many stored predictions carry an explanation, and whether the latest scored ones do."""

    predictions: int
    explained: int
    latest_version: str | None  # the version of the latest prediction
    latest_explained: bool  # whether the latest prediction carries one (explanations are on now)


def explained_predictions(con: duckdb.DuckDBPyConnection) -> ExplainedPredictions:
    row = _row(
        con,
        """
        SELECT count(*) AS predictions, count(base_value) AS explained,
               arg_max(model_version, scored_at) AS latest_version,
               coalesce(arg_max(base_value IS NOT NULL, scored_at), false) AS latest_explained
        FROM predictions
        """,
    )
    assert row is not None  # an aggregate always has a row
    return ExplainedPredictions(
        predictions=int(row["predictions"]),
        explained=int(row["explained"]),
        latest_version=row["latest_version"],
        latest_explained=bool(row["latest_explained"]),
    )
