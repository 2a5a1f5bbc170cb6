"""A short answer to "what is in the warehouse?": counts, the champion, the last batches, the alerts.

It reads the people's catalog of views with DuckDB alone (no Delta reader, no pandas), so `scorehouse status`
answers in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

_ALIAS = "scorehouse"
# Offline and read-only, like every reader of the catalog (the same settings as warehouse.store's readers).
_READ_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def open_catalog(path: Path) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB with the catalog attached read-only and in use (see `warehouse.queries`)."""
    con = duckdb.connect(":memory:", config=_READ_CONFIG)
    quoted = str(path).replace("'", "''")  # ATTACH takes a literal, not a parameter
    con.execute(f"ATTACH '{quoted}' AS {_ALIAS} (READ_ONLY)")
    con.execute(f"USE {_ALIAS}")
    return con


def alert_summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The one notion of alert (drift, prediction drift, quality; see the `monitoring_alerts` view) counted
    the ways people ask: reports with an alert, episodes opened and still open; and, apart, the columns that
    drifted in the latest report (parts of a drift share, not alerts)."""

    def one(sql: str) -> Any:
        row = con.execute(sql).fetchone()
        return row[0] if row else None

    opened = con.execute("SELECT DISTINCT alert FROM episodes WHERE state = 'open' ORDER BY 1").fetchall()
    return {
        "reports_with_alerts": one("SELECT count(DISTINCT report_id) FROM monitoring_alerts"),
        "alert_episodes": one("SELECT count(*) FROM episodes"),
        "open_alerts": [row[0] for row in opened],
        "drifted_columns_in_latest_report": one(
            "SELECT count(*) FROM drifted_columns WHERE report_id = (SELECT arg_max(report_id, run_at) FROM monitoring)"
        ),
    }


def warehouse_status(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts per table, the alerts, the champion and the latest ingest and scoring batches."""

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
        **alert_summary(con),
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
