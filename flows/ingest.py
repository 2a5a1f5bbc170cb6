"""`ingest`: every new file in the incoming folder is validated; rows are stored or quarantined."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.drop_folder import INGEST_TABLES, Entry, file_digest, file_note, put_aside, refusal, refuse, resume, scan
from flows.runtime import open_store, publish, run_name, settings_from, this_flow_run_id, utc_now
from pipeline.config import Settings
from pipeline.validate import (
    BAD_COLUMNS,
    SUPPORTED_SUFFIXES,
    UnreadableFile,
    Validated,
    as_text,
    id_windows,
    read_blocks,
    validate_rows,
)
from warehouse.keys import StoredKeys
from warehouse.layout import FLOW_RUN_ID
from warehouse.store import COMMIT_ATTEMPTS, CommitError, Conflict, Warehouse, batch_id, repeat


@dataclass
class FileReport:
    """What happened to one incoming file."""

    name: str
    batch: str
    rows_in: int | None = None  # None when the file could not be read at all
    stored: int = 0
    quarantined: int = 0
    skipped: bool = False  # already ingested earlier (same content)
    refused: str | None = None  # why the whole file was refused
    left: str | None = None  # why it stays in the incoming folder (not taken yet, or changed while read)
    reasons: dict[str, int] = field(default_factory=dict)


EMPTY_FILE = "the file has a header but no rows: nothing was stored; check the export that wrote it"


# How many ids of a file are looked up in `records` at once, ahead of its blocks: one read of the stored
# ids per million rows instead of one per block (about 20 MB of ids held).
ID_WINDOW_ROWS = 1_000_000


class IdCheck:
    """Which ids of a file's blocks `records` holds at a version. For a Parquet file the ids of the coming
    blocks are looked up a window at a time (`StoredKeys`); other files are looked up block by block."""

    def __init__(self, store: Warehouse, path: Path, id_column: str, block_rows: int) -> None:
        self.keys = StoredKeys(store, "records")
        window = max(block_rows, ID_WINDOW_ROWS // block_rows * block_rows)  # whole blocks
        self.windows = id_windows(path, id_column, window)
        self.looked_ahead = 0  # the file's rows whose ids the windows read so far

    def stored(self, ids: pa.ChunkedArray, first_row: int, version: int) -> set[str]:
        """Which of `ids` (the block from file row `first_row` on) are stored at `version`."""
        last_row = first_row - 1 + len(ids)
        while self.looked_ahead < last_row:  # the window holding this block (windows of skipped blocks unread)
            window = next(self.windows, None)
            if window is None:
                break
            start, self.looked_ahead = self.looked_ahead + 1, self.looked_ahead + len(window)
            if self.looked_ahead >= last_row:
                self.keys.expect(window, start, version)
        return self.keys.among(ids, first_row, version)

    def committed(self, good: pa.Table, version: int) -> None:
        """`good` (a block's stored rows) was committed by this run, creating `version`."""
        self.keys.committed(good.column("row_number").to_numpy(), version)


def _quarantine_table(bad: pd.DataFrame, name: str, now: pd.Timestamp) -> pa.Table:
    frame = bad[BAD_COLUMNS].assign(source_file=name, quarantined_at=now, **{FLOW_RUN_ID: this_flow_run_id()})
    frame["row_number"] = frame["row_number"].astype("Int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def _reasons(bad: pd.DataFrame) -> dict[str, int]:
    counts = bad.groupby(["column_name", "rule"]).size().sort_values(ascending=False)
    return {f"{column} / {rule}": int(n) for (column, rule), n in zip(counts.index, counts.to_numpy(), strict=True)}


def _commit_block(
    store: Warehouse, checked: Validated, batch: str, name: str, now: pd.Timestamp, version: int
) -> tuple[Validated, bool]:
    """The quarantine batch first, the records batch last: the records batch marks the block as done.

    The records are merged on their id against `version`, the snapshot their ids were checked against:
    if another writer stored records since, the merge raises `Conflict` and the block is checked again.
    Returns what was committed, and whether the records batch landed now (False: it was there already).
    """
    day = now.date().isoformat()
    checked, refusals = resume(store, "quarantine", batch, checked)
    bad = checked.bad if checked.rows_in or refusals != batch else file_note("empty", EMPTY_FILE)
    store.commit("quarantine", refusals, _quarantine_table(bad, name, now), partition=day)
    records = checked.good.append_column("source_file", repeat(name, checked.good.num_rows, pa.string()))
    records = records.append_column("ingested_at", repeat(now, records.num_rows, pa.timestamp("us", tz="UTC")))
    records = records.append_column(FLOW_RUN_ID, repeat(this_flow_run_id(), records.num_rows, pa.string()))
    landed = store.commit("records", batch, records, partition=day, read_version=version)
    return checked, landed


def _store_block(
    store: Warehouse,
    settings: Settings,
    raw: pa.Table,
    batch: str,
    name: str,
    now: pd.Timestamp,
    first_row: int,
    check: IdCheck,
) -> Validated | None:
    """Validate one block against the records stored now and commit it; again if another writer won.

    None: another run committed this block (the same file ingested at the same time) since it was looked up.
    Its ids are then in the snapshot, and checked against it every row would look like a duplicate.
    """
    dataset = settings.dataset
    ids = as_text(raw, dataset.id_column) if dataset.id_column in raw.column_names else None
    for _ in range(COMMIT_ATTEMPTS):
        version = store.version("records")
        if store.has_batch("records", batch):  # looked up at or after `version`: not in it when absent now
            return None
        stored = check.stored(ids, first_row, version) if ids is not None else set()
        checked = validate_rows(raw, dataset, stored, first_row=first_row)
        try:
            checked, landed = _commit_block(store, checked, batch, name, now, version)
        except Conflict:
            continue
        if not landed:
            return None
        check.committed(checked.good, store.committed_version("records"))
        return checked
    raise CommitError(f"{name}: records lost {COMMIT_ATTEMPTS} races with other writers; run again")


@task(cache_policy=NO_CACHE, task_run_name="ingest {entry.path.name}")
def ingest_file(store: Warehouse, settings: Settings, entry: Entry) -> FileReport:
    """Validate one file block by block (`scoring.chunk_rows` rows each) and commit each block atomically.

    A block's batch id comes from the file's content and the block's position, so a run killed
    midway is finished by the next one, and a file dropped again adds nothing.
    """
    logger = get_run_logger()
    path = entry.path
    digest = file_digest(entry)
    report = FileReport(name=path.name, batch=batch_id("ingest", digest))
    now = pd.Timestamp(utc_now())
    first_row, done_before, committed = 1, 0, 0
    check = IdCheck(store, path, settings.dataset.id_column, settings.scoring.chunk_rows)
    try:
        for number, raw in enumerate(read_blocks(path, settings.scoring.chunk_rows)):
            batch = batch_id("ingest", digest, number)
            checked = _store_block(store, settings, raw, batch, path.name, now, first_row, check)
            if checked is None:
                done_before += 1
            else:
                report.stored += checked.good.num_rows
                report.quarantined += raw.num_rows - checked.good.num_rows  # now or by a killed earlier run
                for reason, n in _reasons(checked.bad).items():
                    report.reasons[reason] = report.reasons.get(reason, 0) + n
                committed += 1
            first_row += raw.num_rows
    except UnreadableFile as error:
        where = "" if first_row == 1 else f" (rows from {first_row} on; the rows before were ingested)"
        report.refused = f"{error}{where}"
        logger.warning("%s refused: %s", path.name, report.refused)
        batch, day = batch_id("ingest", digest, "refused", first_row), now.date().isoformat()
        store.commit("quarantine", batch, _quarantine_table(refusal(report.refused), path.name, now), partition=day)
        store.commit("records", batch, store.table("records").schema.empty_table(), partition=day)
        return report
    report.rows_in = first_row - 1
    report.skipped = committed == 0 and done_before > 0
    if report.skipped:
        logger.info("%s: this content was already ingested; moving it aside", path.name)
    else:
        logger.info(
            "%s: %d rows in, %d stored, %d quarantined", path.name, report.rows_in, report.stored, report.quarantined
        )
    return report


def _summary(reports: list[FileReport]) -> str:
    lines = ["# Ingest", "", "| file | rows in | stored | quarantined | note |", "|---|---|---|---|---|"]
    for r in reports:
        note = "already ingested" if r.skipped else (f"refused: {r.refused}" if r.refused else "")
        note = f"left in the folder: {r.left}" if r.left else note
        lines.append(
            f"| {r.name} | {r.rows_in if r.rows_in is not None else '-'} | {r.stored} | {r.quarantined} | {note} |"
        )
    reasons: dict[str, int] = {}
    for r in reports:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        lines += ["", "Quarantined rows by column / rule:", ""]
        lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda item: -item[1])]
    return "\n".join(lines)


@flow(name="ingest", flow_run_name=run_name("ingest"))
def ingest(config: str | None = None) -> list[FileReport]:
    """Validate every file waiting in the incoming folder; store good rows, quarantine bad ones with a reason.

    A file with the same content as one ingested before is not ingested again. Files are moved out
    of the incoming folder once their batches are committed.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    arrivals = scan(settings.incoming_dir, settings.drop.settle_seconds)
    reports = [
        FileReport(
            name=r.path.name, batch=refuse(store, INGEST_TABLES, r, settings.rejected_dir, logger), refused=r.reason
        )
        for r in arrivals.refused
    ]
    for left in arrivals.left:
        logger.info("%s left in %s: %s", left.name, settings.incoming_dir, left.why)
    for entry in arrivals.ready:
        if entry.path.suffix.lower() not in SUPPORTED_SUFFIXES:
            logger.warning("%s is not a CSV or Parquet file; it will be refused", entry.path.name)
        try:
            report = ingest_file(store, settings, entry)
            destination = settings.rejected_dir if report.refused else settings.processed_dir
            report.left = put_aside(entry, destination, report.batch, logger)
        except FileNotFoundError:  # a run ingesting at the same time took it: its rows are stored once
            logger.info("%s was ingested by another run at the same time", entry.path.name)
            continue
        reports.append(report)
    reports += [FileReport(name=left.name, batch="", left=left.why) for left in arrivals.left]
    if not reports:
        logger.info("no new files in %s", settings.incoming_dir)
        return []
    stored = sum(r.stored for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    publish(store)
    logger.info("ingested %d file(s): %d rows stored, %d quarantined", len(reports), stored, quarantined)
    create_markdown_artifact(key="ingest-summary", markdown=_summary(reports), description="ingest")
    return reports
