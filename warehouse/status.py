"""A short answer to "what is in the warehouse?": counts, the champion, the last batches."""

from __future__ import annotations

from typing import Any

import duckdb


def warehouse_status(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts per table, the champion and the latest ingest and scoring batches."""

    def one(sql: str) -> Any:
        row = con.execute(sql).fetchone()
        return row[0] if row else None

    champion = con.execute("SELECT model_version, roc_auc, event_at FROM champion").fetchone()
    last_ingest = con.execute(
        "SELECT source_file, rows, ingested_at FROM ingest_batches ORDER BY ingested_at DESC LIMIT 1"
    ).fetchone()
    last_score = con.execute(
        "SELECT model_version, count(*), max(scored_at) FROM predictions "
        "GROUP BY batch_id, model_version ORDER BY max(scored_at) DESC LIMIT 1"
    ).fetchone()
    return {
        "records": one("SELECT count(*) FROM records"),
        "quarantined_rows": one("SELECT count(*) FROM quarantine"),
        "predictions": one("SELECT count(*) FROM predictions"),
        "labels": one("SELECT count(*) FROM feedback_current"),
        "rejected_labels": one("SELECT count(*) FROM feedback_rejects"),
        "monitoring_reports": one("SELECT count(DISTINCT report_id) FROM monitoring"),
        "alerts": one("SELECT count(*) FROM monitoring_alerts"),
        "records_without_current_prediction": one(
            "SELECT count(*) FROM records r ANTI JOIN predictions_current p USING (record_id)"
        ),
        "model_versions": one("SELECT count(DISTINCT model_version) FROM models"),
        "champion": None
        if champion is None
        else {"version": champion[0], "roc_auc": champion[1], "since": champion[2]},
        "last_ingest": None
        if last_ingest is None
        else {"file": last_ingest[0], "rows": last_ingest[1], "at": last_ingest[2]},
        "last_scoring_batch": None
        if last_score is None
        else {"model_version": last_score[0], "rows": last_score[1], "at": last_score[2]},
    }
