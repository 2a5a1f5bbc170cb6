"""The tables of the warehouse and their columns.

`record_id` is the dataset's id column under one name in every table (always text, so any id
survives). Timestamps are UTC. Each table has a column with the day its rows were written (for
filtering by day) and the batch that wrote them. Every table's schema is a contract: a commit is cast
to it, and a change of it is explicit (a new column here, files written before it read as null).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pyarrow as pa

from warehouse.store import Table, Warehouse

FeatureKind = Literal["numeric", "categorical"]
# The Prefect flow run that wrote a row, where people follow a batch or a report back to its run: a nullable
# column (rows written outside a flow run, or before the column existed, hold null).
FLOW_RUN_ID = "flow_run_id"
RUN_LINKED = ("records", "quarantine", "models", "monitoring")
TS = pa.timestamp("us", tz="UTC")

QUARANTINE = pa.schema(
    [
        ("record_id", pa.string()),
        ("source_file", pa.string()),
        ("row_number", pa.int64()),  # 1-based data row in the file; null when the whole file was refused
        ("column_name", pa.string()),
        ("rule", pa.string()),
        ("value", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),  # the row as it arrived, as JSON
        ("quarantined_at", TS),
        ("quarantined_on", pa.string()),
        ("batch_id", pa.string()),
        (FLOW_RUN_ID, pa.string()),  # the Prefect flow run that wrote the row (added later: null before)
    ]
)

MODELS = pa.schema(
    [
        ("model_version", pa.string()),
        ("event", pa.string()),  # trained | promoted | rejected | retired
        ("event_at", TS),
        ("reason", pa.string()),
        ("actor", pa.string()),
        ("roc_auc", pa.float64()),
        ("f1", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("balanced_accuracy", pa.float64()),
        ("metrics_json", pa.string()),  # every metric measured, including the comparison baselines
        ("model_input", pa.string()),
        ("embedding_size", pa.int32()),
        ("threshold", pa.float64()),
        ("train_rows", pa.int64()),
        ("holdout_rows", pa.int64()),
        ("data_from", pa.string()),
        ("data_to", pa.string()),
        ("fingerprint", pa.string()),  # what the version was trained from: data hash + parameters
        ("artifact_dir", pa.string()),
        ("artifact_sha256", pa.string()),  # JSON: file name -> sha256
        # The promotion test (retrain decisions only): the gain in the primary metric on fresh rows with its
        # interval and p-value, the guard metric's change, and the rows and positives the decision rests on.
        ("decision_metric", pa.string()),
        ("decision_gain", pa.float64()),
        ("decision_low", pa.float64()),
        ("decision_high", pa.float64()),
        ("decision_p_value", pa.float64()),
        ("guard_metric", pa.string()),
        ("guard_gain", pa.float64()),
        ("guard_p_value", pa.float64()),
        ("decision_rows", pa.int64()),
        ("decision_positives", pa.int64()),
        ("compared_until", TS),  # latest label time of the compared rows: later decisions use only newer rows
        ("event_on", pa.string()),
        ("batch_id", pa.string()),
        (FLOW_RUN_ID, pa.string()),  # the Prefect flow run that wrote the row (added later: null before)
    ]
)


FEEDBACK = pa.schema(
    [
        ("record_id", pa.string()),
        ("label", pa.string()),  # the true class, one of the dataset's classes
        ("labelled_at", TS),
        ("source_file", pa.string()),
        ("row_number", pa.int64()),
        ("received_at", TS),
        ("received_on", pa.string()),
        ("batch_id", pa.string()),
    ]
)

FEEDBACK_REJECTS = pa.schema(
    [
        ("record_id", pa.string()),
        ("source_file", pa.string()),
        ("row_number", pa.int64()),  # null when the whole file was refused
        ("column_name", pa.string()),
        ("rule", pa.string()),
        ("value", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("rejected_at", TS),
        ("rejected_on", pa.string()),
        ("batch_id", pa.string()),
    ]
)

MONITORING = pa.schema(
    [
        ("report_id", pa.string()),
        ("run_at", TS),
        ("window_start", TS),
        ("window_end", TS),
        ("model_version", pa.string()),
        ("metric", pa.string()),  # e.g. drift_share_features, column_drift, f1, estimated_f1, retrain_due
        ("column_name", pa.string()),  # the column a per-column metric is about, else null
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("status", pa.string()),  # ok | alert | info
        ("sample_size", pa.int64()),  # rows the value rests on (labels, for quality metrics)
        ("sampled", pa.bool_()),  # true when the window was larger than the limit and sampled
        ("detail", pa.string()),  # a sentence: what was compared, which trigger fired and why
        ("p_value", pa.float64()),  # the test's p-value, where a test decides (drift, quality)
        ("p_value_threshold", pa.float64()),  # significant below this
        ("report_path", pa.string()),
        ("monitored_on", pa.string()),
        ("batch_id", pa.string()),
        (FLOW_RUN_ID, pa.string()),  # the Prefect flow run that wrote the row (added later: null before)
    ]
)

# One row per change of an alert episode: opened, retrain (the one retrain of the episode), resolved.
ALERT_EPISODES = pa.schema(
    [
        ("episode_id", pa.string()),
        ("alert", pa.string()),  # drift | prediction_drift | quality
        ("event", pa.string()),  # opened | retrain | resolved
        ("event_at", TS),
        ("model_version", pa.string()),
        ("report_id", pa.string()),  # the monitoring report that saw the change
        ("window_start", TS),
        ("window_end", TS),
        ("detail", pa.string()),
        ("event_on", pa.string()),
        ("batch_id", pa.string()),
    ]
)


def _feature_fields(features: Mapping[str, FeatureKind]) -> list[pa.Field]:
    return [pa.field(name, pa.float64() if kind == "numeric" else pa.string()) for name, kind in features.items()]


def records_schema(features: Mapping[str, FeatureKind], event_time: bool) -> pa.Schema:
    fields = [pa.field("record_id", pa.string())]
    if event_time:
        fields.append(pa.field("event_time", TS))
    fields += _feature_fields(features)
    fields += [
        pa.field("source_file", pa.string()),
        pa.field("row_number", pa.int64()),
        pa.field("row_hash", pa.int64()),  # hash of the stored values (64 bits; Delta has no unsigned type)
        pa.field("ingested_at", TS),
        pa.field("ingested_on", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field(FLOW_RUN_ID, pa.string()),  # the Prefect flow run that ingested it (added later: null before)
    ]
    return pa.schema(fields)


# One reason code: a feature that raised the score, its contribution (log-odds) and the record's value as text.
REASON = pa.struct([("feature", pa.string()), ("contribution", pa.float64()), ("value", pa.string())])


EXPLANATION_COLUMNS = ("base_value", "contributions", "reasons")  # null when a prediction was not explained
# True for a prediction made by a backfill (`scorehouse score --version --since`), null for the champion's
# scoring (and for every prediction written before the column existed).
BACKFILL_COLUMN = "backfill"
OPTIONAL_COLUMNS = {
    "predictions": (*EXPLANATION_COLUMNS, BACKFILL_COLUMN),
    "predictions_current": (*EXPLANATION_COLUMNS, BACKFILL_COLUMN),
    "reference": ("contributions",),
    **{name: (FLOW_RUN_ID,) for name in RUN_LINKED},
}


def predictions_schema() -> pa.Schema:
    return pa.schema(
        [
            ("record_id", pa.string()),
            ("model_version", pa.string()),
            ("score", pa.float64()),  # probability of the positive class
            ("label", pa.string()),  # the class at the model's threshold
            ("threshold", pa.float64()),
            ("embedding", pa.list_(pa.float32())),
            ("scored_at", TS),
            ("scored_on", pa.string()),
            ("batch_id", pa.string()),
            # The explanation (added later: predictions made before, or with `explain.enabled = false`, hold
            # nulls). base_value + the sum of contributions = the score's log-odds.
            ("base_value", pa.float64()),
            ("contributions", pa.list_(pa.float32())),  # one per dataset feature, in the config's order
            ("reasons", pa.list_(REASON)),  # the top reason codes, largest first
            # Made by a backfill of a version, not by the champion's scoring (added later: null before). It
            # never becomes a record's current prediction unless its version is champion (warehouse/scoring.py).
            (BACKFILL_COLUMN, pa.bool_()),
        ]
    )


def reference_schema(features: Mapping[str, FeatureKind]) -> pa.Schema:
    """The set monitoring compares production against: the training data of a version, embedded. Stored for
    every version that trained on the reference file or became champion, never for a rejected challenger."""
    return pa.schema(
        [
            pa.field("model_version", pa.string()),
            pa.field("record_id", pa.string()),
            pa.field("split", pa.string()),  # train | holdout
            pa.field("target", pa.string()),
            *_feature_fields(features),
            pa.field("embedding", pa.list_(pa.float32())),
            pa.field("score", pa.float64()),
            pa.field("batch_id", pa.string()),
            # Each row's contributions, as in `predictions` (added later: null for versions trained before).
            pa.field("contributions", pa.list_(pa.float32())),
        ]
    )


# A rejected challenger's own rows: what it trained and was compared on beyond its champion's reference set
# (which it trained on whole). Its reference set is rebuilt from them if it is ever promoted by hand.
CHALLENGER_ROWS = pa.schema(
    [
        ("model_version", pa.string()),
        ("champion_version", pa.string()),  # whose reference set it trained on as well
        ("record_id", pa.string()),
        ("split", pa.string()),  # train | holdout (the comparison rows)
        ("target", pa.string()),  # the label it was trained or compared with
        ("batch_id", pa.string()),
    ]
)


ERASURES = pa.schema(
    [
        ("erasure_id", pa.string()),
        ("requested_at", TS),
        ("actor", pa.string()),
        ("reason", pa.string()),
        ("ids", pa.int64()),  # how many ids were asked for; the ids themselves are never stored
        ("ids_sha256", pa.string()),  # a digest of the sorted ids, to prove later which request this was
        ("rows_json", pa.string()),  # table -> rows removed
        ("erased_on", pa.string()),
        ("batch_id", pa.string()),
    ]
)

# Statistics in the log only for times and versions: never ids or values (see `Table.stats_columns`).
_STATS = {
    "records": ("ingested_at",),
    "quarantine": ("quarantined_at",),
    "predictions": ("model_version", "scored_at"),
    "predictions_current": ("model_version", "scored_at"),
    "models": ("event_at",),
    "reference": ("model_version",),
    "challenger_rows": ("model_version",),
    "feedback": ("received_at",),
    "feedback_rejects": ("rejected_at",),
    "monitoring": ("run_at",),
    "alert_episodes": ("event_at",),
    "erasures": ("requested_at",),
}


def scorehouse_tables(features: Mapping[str, FeatureKind], *, event_time: bool) -> list[Table]:
    tables = [
        Table(name="records", partition_by="ingested_on", schema=records_schema(features, event_time), key="record_id"),
        Table(name="quarantine", partition_by="quarantined_on", schema=QUARANTINE),
        Table(name="predictions", partition_by="scored_on", schema=predictions_schema()),
        # One row per record: its latest prediction. Kept by `score` from the new rows of `predictions`, so
        # the question people ask most costs the same with one model version as with twenty.
        Table(name="predictions_current", partition_by="scored_on", schema=predictions_schema()),
        Table(name="models", partition_by="event_on", schema=MODELS),
        Table(name="reference", partition_by="model_version", schema=reference_schema(features)),
        Table(name="challenger_rows", partition_by="model_version", schema=CHALLENGER_ROWS),
        Table(name="feedback", partition_by="received_on", schema=FEEDBACK),
        Table(name="feedback_rejects", partition_by="rejected_on", schema=FEEDBACK_REJECTS),
        Table(name="monitoring", partition_by="monitored_on", schema=MONITORING),
        Table(name="alert_episodes", partition_by="event_on", schema=ALERT_EPISODES),
        Table(name="erasures", partition_by="erased_on", schema=ERASURES),
    ]
    return [
        Table(
            name=t.name,
            partition_by=t.partition_by,
            schema=t.schema,
            key=t.key,
            stats_columns=_STATS[t.name],
            optional=OPTIONAL_COLUMNS.get(t.name, ()),
            dictionary=repeated_text(t.schema, t.key),
        )
        for t in tables
    ]


# Text columns whose values hardly ever repeat: written without a dictionary in every table.
UNIQUE_TEXT = ("record_id", "raw")


def repeated_text(schema: pa.Schema, key: str | None) -> tuple[str, ...]:
    """The text columns of `schema` but its key and `UNIQUE_TEXT`: categories, versions, labels, days, batch
    and run ids repeat."""
    return tuple(f.name for f in schema if pa.types.is_string(f.type) and f.name not in (key, *UNIQUE_TEXT))


# Which alert a monitoring metric raises (drift | prediction_drift | quality), or NULL for a metric that
# raises none. The quality alert is the test on the configured quality metric: the one row with a p-value.
ALERT_OF_METRIC = """CASE
    WHEN metric IN ('drift_share_features', 'drift_share_embedding') THEN 'drift'
    WHEN metric = 'prediction_drift' THEN 'prediction_drift'
    WHEN metric IN ('roc_auc', 'f1', 'precision', 'recall', 'balanced_accuracy') THEN 'quality'
END"""

# Views for people (and the flows), over the table views. Each answers one common question.
VIEWS: dict[str, str] = {
    # Each period a version was champion; `champion_until` is null for the one in production now.
    "champion_history": """
        SELECT model_version, event_at AS champion_from,
               lead(event_at) OVER (ORDER BY event_at, batch_id) AS champion_until, reason, actor
        FROM models WHERE event = 'promoted'
    """,
    # The version in production now, with its training metrics and files.
    "champion": """
        SELECT m.* FROM champion_history h JOIN models m
          ON m.model_version = h.model_version AND m.event = 'trained'
        WHERE h.champion_until IS NULL
    """,
    "quarantine_reasons": """
        SELECT column_name, rule, count(*) AS rows, count(DISTINCT source_file) AS files,
               min(quarantined_at) AS first_seen, max(quarantined_at) AS last_seen
        FROM quarantine GROUP BY ALL ORDER BY rows DESC
    """,
    # The latest label per record: a corrected label later wins, the history stays in `feedback`.
    "feedback_current": """
        SELECT * FROM feedback
        QUALIFY row_number() OVER (
            PARTITION BY record_id ORDER BY labelled_at DESC, received_at DESC, batch_id DESC
        ) = 1
    """,
    # The production set monitoring and retraining use: each labelled record with its features, its
    # embedding, its true label and the prediction made when it was first scored (by the champion then).
    "labelled_predictions": """
        WITH first_prediction AS (  -- of labelled records only: the window never sorts every prediction
            SELECT * FROM predictions
            WHERE record_id IN (SELECT record_id FROM feedback_current) AND NOT coalesce(backfill, false)
            QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at, model_version) = 1
        )
        SELECT r.*, f.label AS target, f.labelled_at, p.embedding, p.score, p.label AS predicted_label,
               p.model_version, p.scored_at
        FROM feedback_current f
        JOIN records r USING (record_id)
        JOIN first_prediction p USING (record_id)
    """,
    # One row per prediction and reason code (rank 1 raised the score most): "why was this record flagged?"
    "prediction_reasons": """
        SELECT p.record_id, p.model_version, p.scored_at, p.score, p.label, p.base_value,
               r.rank, r.reason.feature AS feature, r.reason.contribution AS contribution, r.reason.value AS value
        FROM predictions p,
             LATERAL (SELECT unnest(p.reasons) AS reason, unnest(range(1, len(p.reasons) + 1)) AS rank) r
    """,
    # The one notion of alert, the same one that opens episodes and triggers retraining: a report's drift (of
    # the features or the embedding), prediction drift or quality test in alert; `alert` names which. A
    # column that drifted is not an alert by itself (see `drifted_columns`), nor is the CBPE unreliability flag.
    "monitoring_alerts": f"""
        SELECT *, {ALERT_OF_METRIC} AS alert FROM monitoring
        WHERE status = 'alert' AND {ALERT_OF_METRIC} IS NOT NULL ORDER BY run_at DESC
    """,
    # Each column that drifted (significant and material) in a report: what makes up the drift share.
    "drifted_columns": """
        SELECT report_id, run_at, window_end, model_version, column_name, value AS distance, threshold,
               p_value, p_value_threshold, detail
        FROM monitoring WHERE status = 'alert' AND metric = 'column_drift' ORDER BY run_at DESC, column_name
    """,
    # Each alert episode with when it opened, whether it retrained, and when (if) it was resolved.
    "episodes": """
        SELECT episode_id, any_value(alert) AS alert, any_value(model_version) AS model_version,
               min(event_at) FILTER (WHERE event = 'opened') AS opened_at,
               min(event_at) FILTER (WHERE event = 'retrain') AS retrained_at,
               min(event_at) FILTER (WHERE event = 'resolved') AS resolved_at,
               CASE WHEN count(*) FILTER (WHERE event = 'resolved') > 0 THEN 'resolved' ELSE 'open' END AS state,
               any_value(detail) FILTER (WHERE event = 'opened') AS opened_because
        FROM alert_episodes GROUP BY episode_id
    """,
    # Every batch of every incoming file, with its stored and quarantined rows: a file that stored nothing
    # (all rows refused, refused as a whole, a header without rows, a link) is listed too.
    "ingest_batches": """
        SELECT source_file, batch_id, min(arrived_at) AS ingested_at, sum(stored)::BIGINT AS rows,
               sum(quarantined)::BIGINT AS quarantined
        FROM (
            SELECT source_file, batch_id, ingested_at AS arrived_at, 1 AS stored, 0 AS quarantined FROM records
            UNION ALL
            SELECT source_file, batch_id, quarantined_at, 0, 1 FROM quarantine
        )
        GROUP BY ALL ORDER BY ingested_at
    """,
}


def open_warehouse(
    root: str | Path, features: Mapping[str, FeatureKind], *, event_time: bool, catalog: Path | None = None
) -> Warehouse:
    return Warehouse(root, scorehouse_tables(features, event_time=event_time), VIEWS, catalog=catalog)
