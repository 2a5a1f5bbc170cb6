"""`collect_feedback`: label files in the feedback folder join the warehouse, or are rejected with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.drop_folder import move_aside, pending_files, refusal, resume
from flows.runtime import open_store, publish, run_name, settings_from, utc_now
from pipeline.artifacts import sha256_of
from pipeline.config import Settings
from pipeline.feedback import id_column_of, validate_labels
from pipeline.validate import BAD_COLUMNS, UnreadableFile, as_text, read_incoming
from warehouse.store import Warehouse, batch_id, repeat


@dataclass
class LabelFileReport:
    name: str
    batch: str
    rows_in: int | None = None
    stored: int = 0
    rejected: int = 0
    skipped: bool = False
    refused: str | None = None


def ingested_ids(store: Warehouse, ids: pa.ChunkedArray) -> set[str]:
    """Which of `ids` belong to stored records."""
    with store.connect() as con:
        con.register("label_ids", pa.table({"record_id": pc.unique(pc.drop_null(ids))}))
        rows = con.execute("SELECT DISTINCT record_id FROM records JOIN label_ids USING (record_id)").fetchall()
    return {row[0] for row in rows}


def _rejects_table(bad: pd.DataFrame, name: str, now: pd.Timestamp) -> pa.Table:
    frame = bad[BAD_COLUMNS].assign(source_file=name, rejected_at=now)
    frame["row_number"] = frame["row_number"].astype("Int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


@task(cache_policy=NO_CACHE, task_run_name="collect {path.name}")
def collect_file(store: Warehouse, settings: Settings, path: Path) -> LabelFileReport:
    """Validate one label file; commit its rejects, then its labels (the labels batch marks it done)."""
    logger = get_run_logger()
    batch = batch_id("feedback", sha256_of(path))
    report = LabelFileReport(name=path.name, batch=batch)
    if store.has_batch("feedback", batch):
        report.skipped = True
        logger.info("%s: this content was already collected (batch %s); moving it aside", path.name, batch)
        return report
    now = pd.Timestamp(utc_now())
    day = now.date().isoformat()
    try:
        raw = read_incoming(path)
        ids = as_text(raw, id_column_of(raw, settings.dataset))
        checked = validate_labels(raw, settings.dataset, ingested_ids(store, ids))
    except UnreadableFile as error:
        report.refused = str(error)
        logger.warning("%s refused as a whole: %s", path.name, error)
        store.commit("feedback_rejects", batch, _rejects_table(refusal(str(error)), path.name, now), partition=day)
        store.commit("feedback", batch, store.table("feedback").schema.empty_table(), partition=day)
        return report
    checked, refusals = resume(store, "feedback_rejects", batch, checked)
    store.commit("feedback_rejects", refusals, _rejects_table(checked.bad, path.name, now), partition=day)
    labels = checked.good.append_column("source_file", repeat(path.name, checked.good.num_rows, pa.string()))
    labels = labels.append_column("received_at", repeat(now, labels.num_rows, pa.timestamp("us", tz="UTC")))
    store.commit("feedback", batch, labels, partition=day)
    report.rows_in, report.stored = raw.num_rows, checked.good.num_rows
    report.rejected = report.rows_in - report.stored  # now or by a killed earlier run
    if len(checked.bad):
        logger.warning(
            "%s: %d of %d labels rejected; first: %s",
            path.name,
            report.rejected,
            report.rows_in,
            checked.bad["reason"].iloc[0],
        )
    logger.info("%s: %d labels stored, %d rejected", path.name, report.stored, report.rejected)
    return report


def _summary(reports: list[LabelFileReport]) -> str:
    lines = ["# Feedback", "", "| file | rows in | stored | rejected | note |", "|---|---|---|---|---|"]
    for r in reports:
        note = "already collected" if r.skipped else (f"refused: {r.refused}" if r.refused else "")
        rows_in = r.rows_in if r.rows_in is not None else "-"
        lines.append(f"| {r.name} | {rows_in} | {r.stored} | {r.rejected} | {note} |")
    return "\n".join(lines)


@flow(name="collect_feedback", flow_run_name=run_name("feedback"))
def collect_feedback(config: str | None = None) -> list[LabelFileReport]:
    """Store every label file waiting in the feedback folder; reject bad label rows with a reason."""
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    reports = []
    for path in pending_files(settings.feedback_dir):
        try:
            report = collect_file(store, settings, path)
            destination = settings.rejected_dir if report.refused else settings.processed_dir
            move_aside(path, destination / "labels", report.batch)
        except FileNotFoundError:  # a run collecting at the same time took it: its labels are stored once
            logger.info("%s was collected by another run at the same time", path.name)
            continue
        reports.append(report)
    if reports:
        publish(store)
        stored, rejected = sum(r.stored for r in reports), sum(r.rejected for r in reports)
        logger.info("collected %d label file(s): %d labels stored, %d rejected", len(reports), stored, rejected)
        create_markdown_artifact(key="feedback-summary", markdown=_summary(reports), description="collect_feedback")
    else:
        logger.info("no new label files in %s", settings.feedback_dir)
    return reports
