"""`collect_feedback`: label files in the feedback folder join the warehouse, or are rejected with a reason."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.drop_folder import FEEDBACK_TABLES, Entry, file_digest, file_note, put_aside, refusal, refuse, resume, scan
from flows.label_attempts import first_batch, next_attempt
from flows.runtime import open_store, publish, run_name, settings_from, utc_now
from pipeline.config import Settings
from pipeline.feedback import id_column_of, only_rows, validate_labels
from pipeline.validate import BAD_COLUMNS, UnreadableFile, as_text, read_incoming
from warehouse.store import Warehouse, repeat

EMPTY_FILE = "the label file has a header but no rows: nothing was stored; check the export that wrote it"


@dataclass
class LabelFileReport:
    name: str
    batch: str
    rows_in: int | None = None
    stored: int = 0
    rejected: int = 0
    skipped: bool = False
    refused: str | None = None
    left: str | None = None  # why it stays in the feedback folder (not taken yet, or changed while read)


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


@task(cache_policy=NO_CACHE, task_run_name="collect {entry.path.name}")
def collect_file(store: Warehouse, settings: Settings, entry: Entry) -> LabelFileReport:
    """Validate one label file; commit its rejects, then its labels (the labels batch marks it done).

    Sent again, a content is checked again only for its labels that waited for their records.
    """
    logger = get_run_logger()
    path, digest = entry.path, file_digest(entry)
    attempt = next_attempt(store, digest)
    batch = attempt.batch if attempt else first_batch(digest)
    report = LabelFileReport(name=path.name, batch=batch)
    if attempt is None:
        report.skipped = True
        logger.info("%s: this content was already collected (batch %s); moving it aside", path.name, batch)
        return report
    now = pd.Timestamp(utc_now())
    day = now.date().isoformat()
    try:
        raw = read_incoming(path)
        ids = as_text(raw, id_column_of(raw, settings.dataset))
        checked = validate_labels(raw, settings.dataset, ingested_ids(store, ids), now=now)
    except UnreadableFile as error:
        report.refused = str(error)
        logger.warning("%s refused as a whole: %s", path.name, error)
        store.commit("feedback_rejects", batch, _rejects_table(refusal(str(error)), path.name, now), partition=day)
        store.commit("feedback", batch, store.table("feedback").schema.empty_table(), partition=day)
        return report
    rows_in = raw.num_rows
    if attempt.waiting is not None:
        checked, rows_in = only_rows(checked, attempt.waiting), len(attempt.waiting)
        if checked.good.num_rows == 0:
            report.skipped = True
            logger.info("%s: already collected; its %d label(s) still wait for their records", path.name, rows_in)
            return report
    checked, refusals = resume(store, "feedback_rejects", batch, checked)
    bad = checked.bad if rows_in or refusals != batch else file_note("empty", EMPTY_FILE)
    store.commit("feedback_rejects", refusals, _rejects_table(bad, path.name, now), partition=day)
    labels = checked.good.append_column("source_file", repeat(path.name, checked.good.num_rows, pa.string()))
    labels = labels.append_column("received_at", repeat(now, labels.num_rows, pa.timestamp("us", tz="UTC")))
    store.commit("feedback", batch, labels, partition=day)
    report.rows_in, report.stored = rows_in, checked.good.num_rows
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
        note = f"left in the folder: {r.left}" if r.left else note
        rows_in = r.rows_in if r.rows_in is not None else "-"
        lines.append(f"| {r.name} | {rows_in} | {r.stored} | {r.rejected} | {note} |")
    return "\n".join(lines)


@flow(name="collect_feedback", flow_run_name=run_name("feedback"))
def collect_feedback(config: str | None = None) -> list[LabelFileReport]:
    """Store every label file waiting in the feedback folder; reject bad label rows with a reason."""
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    arrivals = scan(settings.feedback_dir, settings.drop.settle_seconds)
    refused_to = settings.rejected_dir / "labels"
    reports = [
        LabelFileReport(name=r.path.name, batch=refuse(store, FEEDBACK_TABLES, r, refused_to, logger), refused=r.reason)
        for r in arrivals.refused
    ]
    for left in arrivals.left:
        logger.info("%s left in %s: %s", left.name, settings.feedback_dir, left.why)
    for entry in arrivals.ready:
        try:
            report = collect_file(store, settings, entry)
            destination = settings.rejected_dir if report.refused else settings.processed_dir
            report.left = put_aside(entry, destination / "labels", report.batch, logger)
        except FileNotFoundError:  # a run collecting at the same time took it: its labels are stored once
            logger.info("%s was collected by another run at the same time", entry.path.name)
            continue
        reports.append(report)
    reports += [LabelFileReport(name=left.name, batch="", left=left.why) for left in arrivals.left]
    if reports:
        publish(store)
        stored, rejected = sum(r.stored for r in reports), sum(r.rejected for r in reports)
        logger.info("collected %d label file(s): %d labels stored, %d rejected", len(reports), stored, rejected)
        create_markdown_artifact(key="feedback-summary", markdown=_summary(reports), description="collect_feedback")
    else:
        logger.info("no new label files in %s", settings.feedback_dir)
    return reports
